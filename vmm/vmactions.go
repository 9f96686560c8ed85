package vmm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// Job kinds of VM actions.
const (
	KindVMAction = "vm-action"
	KindDeleteVM = "delete-vm"
)

// VM actions of VMAction.
const (
	ActionStart    = "start"
	ActionShutdown = "shutdown" // ask the guest
	ActionPowerOff = "poweroff" // pull the plug
	ActionPause    = "pause"
	ActionResume   = "resume"
	ActionReboot   = "reboot"
)

type vmActionInput struct {
	VM     string `json:"vm"`
	Action string `json:"action"`
}

// VMAction queues a job that starts, shuts down, powers off, pauses,
// resumes or reboots a VM of the inventory, and records its state after.
// A VM already in the state asked for (a start of a running VM) succeeds
// without doing anything; an action its state does not allow fails the job
// with the host's reason.
func (m *Manager) VMAction(ctx context.Context, vmID, action, user string) (store.Job, error) {
	switch action {
	case ActionStart, ActionShutdown, ActionPowerOff, ActionPause, ActionResume, ActionReboot:
	default:
		return store.Job{}, &store.OpError{Op: "VM action", ID: vmID, Err: fmt.Errorf("%w: unknown action %q", store.ErrInvalid, action)}
	}
	if _, err := m.placedVM(ctx, vmID); err != nil {
		return store.Job{}, err
	}
	return m.Submit(ctx, KindVMAction, user, vmActionInput{VM: vmID, Action: action}, action)
}

// placedVM returns a VM record that is on a host and owned by no job.
func (m *Manager) placedVM(ctx context.Context, vmID string) (store.VM, error) {
	vm, err := m.st.VM(ctx, vmID)
	if err != nil {
		return vm, err
	}
	if vm.HostID == "" || vm.State == VMCreating || vm.State == VMFailed || vm.State == VMMissing {
		return vm, &store.OpError{Op: "VM action", ID: vm.Name, Err: fmt.Errorf("%w: the VM is %s", store.ErrConflict, vm.State)}
	}
	return vm, nil
}

func (m *Manager) runVMAction(ctx context.Context, r *Run) error {
	var in vmActionInput
	if err := r.Input(&in); err != nil {
		return err
	}
	st, err := Do(ctx, r, in.Action, func(ctx context.Context, _ bool) (hostapi.State, error) {
		vm, err := m.placedVM(ctx, in.VM)
		if err != nil {
			return 0, err
		}
		drv, err := m.driver(ctx, vm.HostID)
		if err != nil {
			return 0, err
		}
		cctx, cancel := m.callCtx(ctx)
		defer cancel()
		v, err := drv.VM(cctx, vm.Name)
		if err != nil {
			return 0, err
		}
		want, act := hostapi.StateRunning, drv.Start
		switch in.Action {
		case ActionShutdown:
			want, act = hostapi.StateStopped, drv.Shutdown
		case ActionPowerOff:
			want, act = hostapi.StateStopped, drv.PowerOff
		case ActionPause:
			want, act = hostapi.StatePaused, drv.Pause
		case ActionResume:
			act = drv.Resume
		case ActionReboot:
			want, act = hostapi.StateUnknown, drv.Reboot // always done
		}
		if v.State != want || want == hostapi.StateUnknown {
			if err := act(cctx, v.ID); err != nil {
				return 0, err
			}
		}
		after, err := drv.VM(cctx, v.ID)
		if err != nil {
			return 0, err
		}
		return after.State, nil
	})
	if err != nil {
		return err
	}
	if _, err := m.updateVM(ctx, in.VM, func(vm *store.VM) bool {
		vm.State = st.String()
		return true
	}); err != nil {
		return err
	}
	return r.SetResult(map[string]string{"state": st.String()})
}

// DeleteVM queues a job that removes a VM: powered off if it runs, deleted
// from its host with the disks the manager made for it, then taken out of
// the inventory. A VM its host no longer has (VMMissing) is only taken out
// of the inventory.
func (m *Manager) DeleteVM(ctx context.Context, vmID, user string) (store.Job, error) {
	vm, err := m.st.VM(ctx, vmID)
	if err != nil {
		return store.Job{}, err
	}
	if vm.State == VMCreating || vm.State == VMFailed {
		return store.Job{}, &store.OpError{Op: "delete VM", ID: vm.Name, Err: fmt.Errorf("%w: the VM is %s (cancel its job instead)", store.ErrConflict, vm.State)}
	}
	return m.Submit(ctx, KindDeleteVM, user, vmActionInput{VM: vmID, Action: "delete"}, "delete")
}

func (m *Manager) runDeleteVM(ctx context.Context, r *Run) error {
	var in vmActionInput
	if err := r.Input(&in); err != nil {
		return err
	}
	_, err := Do(ctx, r, "delete", func(ctx context.Context, _ bool) (bool, error) {
		vm, err := m.st.VM(ctx, in.VM)
		if errors.Is(err, store.ErrNotFound) {
			return true, nil // deleted by an earlier attempt
		}
		if err != nil {
			return false, err
		}
		if vm.HostID != "" {
			drv, err := m.driver(ctx, vm.HostID)
			if err != nil {
				return false, err
			}
			cctx, cancel := m.callCtx(ctx)
			defer cancel()
			v, err := drv.VM(cctx, vm.Name)
			switch {
			case errors.Is(err, hostapi.ErrNotFound):
			case err != nil:
				return false, err
			default:
				if v.State != hostapi.StateStopped {
					if err := drv.PowerOff(cctx, v.ID); err != nil && !errors.Is(err, hostapi.ErrInvalidState) {
						return false, err
					}
				}
				if err := drv.DeleteVM(cctx, v.ID, nil); err != nil && !errors.Is(err, hostapi.ErrNotFound) {
					return false, err
				}
				// The disks the manager copied for it.
				for _, d := range v.Disks {
					if d.Pool == "" || !isOwnDisk(d.Name, vm) {
						continue
					}
					if err := drv.DeleteDisk(cctx, d.Pool, d.Name); err != nil && !errors.Is(err, hostapi.ErrNotFound) {
						return false, err
					}
				}
			}
			m.forgetHost(vm.HostID)
		}
		if err := m.st.DeleteVM(ctx, vm.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
		return true, nil
	})
	return err
}

// isOwnDisk reports whether disk name is one CreateVM made for vm.
func isOwnDisk(name string, vm store.VM) bool {
	prefix := diskPrefix(vm.Name, vm.ID)
	return len(name) > len(prefix) && strings.HasPrefix(name, prefix)
}
