package vmm

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	// Checkpoints: see CreateCheckpoint and RevertCheckpoint.
	ActionCheckpoint       = "checkpoint"
	ActionRevert           = "revert"
	ActionDeleteCheckpoint = "delete-checkpoint"
)

type vmActionInput struct {
	VM         string `json:"vm"`
	Action     string `json:"action"`
	Checkpoint string `json:"checkpoint,omitempty"`
	Max        int    `json:"max,omitempty"` // of checkpoints
}

// maxCheckpointName bounds checkpoint names (libvirt's snapshot names are
// file names on the host).
const maxCheckpointName = 64

// CreateCheckpoint queues a job that records a checkpoint of a VM under
// name (letters, digits, '-', '_' and '.', at most 64, not starting with
// '.'). A name the VM's checkpoints already have is refused with
// store.ErrExists (a new checkpoint never silently keeps an old one). When
// max > 0 the VM may have at most max checkpoints: one more is refused
// with store.ErrQuota. Both are checked when the job is asked for and
// again in the job, under a lock of the VM in the manager that runs it.
func (m *Manager) CreateCheckpoint(ctx context.Context, vmID, name, user string, max int) (store.Job, error) {
	return m.checkpointJob(ctx, vmID, ActionCheckpoint, name, user, max)
}

// RevertCheckpoint queues a job that returns a VM to its checkpoint name
// and records its state after.
func (m *Manager) RevertCheckpoint(ctx context.Context, vmID, name, user string) (store.Job, error) {
	return m.checkpointJob(ctx, vmID, ActionRevert, name, user, 0)
}

// DeleteCheckpoint queues a job that deletes a VM's checkpoint name.
func (m *Manager) DeleteCheckpoint(ctx context.Context, vmID, name, user string) (store.Job, error) {
	return m.checkpointJob(ctx, vmID, ActionDeleteCheckpoint, name, user, 0)
}

func (m *Manager) checkpointJob(ctx context.Context, vmID, action, name, user string, max int) (store.Job, error) {
	op := "VM " + action
	if !validCheckpointName(name) {
		return store.Job{}, &store.OpError{Op: op, ID: vmID, Err: fmt.Errorf("%w: checkpoint name %q", store.ErrInvalid, name)}
	}
	if _, err := m.placedVM(ctx, vmID); err != nil {
		return store.Job{}, err
	}
	if action == ActionCheckpoint {
		cps, err := m.Checkpoints(ctx, vmID)
		if err != nil {
			return store.Job{}, err
		}
		if err := checkpointRoom(cps, name, max); err != nil {
			return store.Job{}, &store.OpError{Op: op, ID: vmID, Err: err}
		}
	}
	return m.Submit(ctx, KindVMAction, user, vmActionInput{VM: vmID, Action: action, Checkpoint: name, Max: max}, action)
}

// checkpointRoom says why a VM with checkpoints cps may not get one more
// named name, with at most max (0: any number).
func checkpointRoom(cps []hostapi.Checkpoint, name string, max int) error {
	if slices.ContainsFunc(cps, func(c hostapi.Checkpoint) bool { return c.Name == name }) {
		return fmt.Errorf("%w: a checkpoint named %q", store.ErrExists, name)
	}
	if max > 0 && len(cps) >= max {
		return fmt.Errorf("%w: the VM has %d checkpoints, the most it may have", store.ErrQuota, len(cps))
	}
	return nil
}

func validCheckpointName(name string) bool {
	if name == "" || len(name) > maxCheckpointName || name[0] == '.' {
		return false
	}
	for _, r := range name {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Checkpoints lists a VM's checkpoints, oldest first, as its host has
// them now.
func (m *Manager) Checkpoints(ctx context.Context, vmID string) ([]hostapi.Checkpoint, error) {
	var out []hostapi.Checkpoint
	err := m.onHost(ctx, vmID, func(ctx context.Context, drv hostapi.Driver, v *hostapi.VMInfo) error {
		var err error
		out, err = drv.Checkpoints(ctx, v.ID)
		return err
	})
	return out, err
}

// VMInfo returns what a VM's host says of it now: state, devices, and the
// address of its console while it runs.
func (m *Manager) VMInfo(ctx context.Context, vmID string) (hostapi.VMInfo, error) {
	var out hostapi.VMInfo
	err := m.onHost(ctx, vmID, func(_ context.Context, _ hostapi.Driver, v *hostapi.VMInfo) error {
		out = *v
		return nil
	})
	return out, err
}

// onHost calls f with the driver of a placed VM's host and what the host
// says of the VM, within the per-call timeout.
func (m *Manager) onHost(ctx context.Context, vmID string, f func(context.Context, hostapi.Driver, *hostapi.VMInfo) error) error {
	vm, err := m.placedVM(ctx, vmID)
	if err != nil {
		return err
	}
	drv, err := m.driver(ctx, vm.HostID)
	if err != nil {
		return err
	}
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	v, err := drv.VM(cctx, vm.Name)
	if err != nil {
		return err
	}
	return f(cctx, drv, v)
}

// VMAction queues a job that starts, shuts down, powers off, pauses,
// resumes or reboots a VM of the inventory, and records its state after.
// A VM already in the state asked for (a start of a running VM) succeeds
// without doing anything; an action its state does not allow fails the job
// with the host's reason.
func (m *Manager) VMAction(ctx context.Context, vmID, action, user string) (store.Job, error) {
	switch action {
	case ActionStart, ActionShutdown, ActionPowerOff, ActionPause, ActionResume, ActionReboot:
	case ActionCheckpoint, ActionRevert, ActionDeleteCheckpoint:
		return store.Job{}, &store.OpError{Op: "VM action", ID: vmID, Err: fmt.Errorf("%w: %s needs a name: use CreateCheckpoint, RevertCheckpoint or DeleteCheckpoint", store.ErrInvalid, action)}
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
	st, err := Do(ctx, r, in.Action, func(ctx context.Context, resumed bool) (hostapi.State, error) {
		if in.Checkpoint != "" {
			// Checkpoint jobs of one VM take turns here, so that two
			// cannot both find room for one more.
			defer m.vmLocks.Lock(in.VM)()
		}
		var after hostapi.State
		err := m.onHost(ctx, in.VM, func(cctx context.Context, drv hostapi.Driver, v *hostapi.VMInfo) error {
			var err error
			after, err = vmAction(cctx, drv, v, in, resumed)
			return err
		})
		return after, err
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

// vmAction does in on v and returns v's state after. A resumed step
// finds its own work done: a checkpoint there already, one deleted.
func vmAction(cctx context.Context, drv hostapi.Driver, v *hostapi.VMInfo, in vmActionInput, resumed bool) (hostapi.State, error) {
	switch in.Action {
	case ActionCheckpoint:
		cps, err := drv.Checkpoints(cctx, v.ID)
		if err != nil {
			return 0, err
		}
		if err := checkpointRoom(cps, in.Checkpoint, in.Max); err != nil {
			if !resumed || !errors.Is(err, store.ErrExists) {
				return 0, err
			}
		} else if _, err := drv.CreateCheckpoint(cctx, v.ID, in.Checkpoint); err != nil {
			return 0, err
		}
	case ActionRevert:
		if err := drv.RevertCheckpoint(cctx, v.ID, in.Checkpoint); err != nil {
			return 0, err
		}
	case ActionDeleteCheckpoint:
		if err := drv.DeleteCheckpoint(cctx, v.ID, in.Checkpoint); err != nil && !(resumed && errors.Is(err, hostapi.ErrNotFound)) {
			return 0, err
		}
	default:
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
	}
	after, err := drv.VM(cctx, v.ID)
	if err != nil {
		return 0, err
	}
	return after.State, nil
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
