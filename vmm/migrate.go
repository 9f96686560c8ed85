package vmm

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// MigrateSpec says which VM to move where.
type MigrateSpec struct {
	VM string `json:"vm"` // the VM's ID in the inventory
	// To is the ID of the destination host; "" means the best rated host
	// of the VM's group other than its own.
	To string `json:"to,omitempty"`
	// Offline moves a running VM stopped-and-restarted even when the
	// hosts can migrate it live.
	Offline bool   `json:"offline,omitempty"`
	User    string `json:"user,omitempty"`
}

// MigrateResult is the result of a migrate-vm job.
type MigrateResult struct {
	From  string  `json:"from"` // host IDs
	To    string  `json:"to"`
	Live  bool    `json:"live"`
	Stars float64 `json:"stars"` // the destination's rating
}

// MigrateVM queues a job that moves a VM to another host of its group:
// the destination chosen by placement unless given, live when both hosts
// can. The VM keeps running on its host if the migration fails.
func (m *Manager) MigrateVM(ctx context.Context, spec MigrateSpec) (store.Job, error) {
	vm, err := m.st.VM(ctx, spec.VM)
	if err != nil {
		return store.Job{}, err
	}
	if vm.HostID == "" || vm.State == VMCreating || vm.State == VMMissing {
		return store.Job{}, &store.OpError{Op: "migrate VM", ID: vm.Name, Err: fmt.Errorf("%w: the VM is %s", store.ErrConflict, vm.State)}
	}
	return m.Submit(ctx, KindMigrateVM, spec.User, spec, "target", "migrate")
}

func (m *Manager) runMigrateVM(ctx context.Context, r *Run) error {
	var in MigrateSpec
	if err := r.Input(&in); err != nil {
		return err
	}
	t, err := Do(ctx, r, "target", func(ctx context.Context, _ bool) (migTarget, error) {
		return m.chooseTarget(ctx, in.VM, in.To, "")
	})
	if err != nil {
		return err
	}
	res, err := Do(ctx, r, "migrate", func(ctx context.Context, _ bool) (MigrateResult, error) {
		return m.migrate(ctx, r, in.VM, t, !in.Offline)
	})
	if err != nil {
		return err
	}
	return r.SetResult(res)
}

type migTarget struct {
	From  string  `json:"from"`
	To    string  `json:"to"`
	Stars float64 `json:"stars"`
}

// chooseTarget picks the host VM vmID goes to: to when given (it must pass
// placement's filters), else the best rated host of its group other than
// its own and except.
func (m *Manager) chooseTarget(ctx context.Context, vmID, to, except string) (migTarget, error) {
	vm, err := m.st.VM(ctx, vmID)
	if err != nil {
		return migTarget{}, err
	}
	g, err := m.st.Group(ctx, vm.GroupID)
	if err != nil {
		return migTarget{}, err
	}
	src, err := m.driver(ctx, vm.HostID)
	if err != nil {
		return migTarget{}, err
	}
	cctx, cancel := m.callCtx(ctx)
	info, err := src.VM(cctx, vm.Name)
	cancel()
	if err != nil {
		return migTarget{}, fmt.Errorf("VM %s on its host: %w", vm.Name, err)
	}
	hosts, err := m.placementHosts(ctx, g, 0)
	if err != nil {
		return migTarget{}, err
	}
	var cand []*placement.Host
	for _, h := range hosts {
		if h.ID != vm.HostID && h.ID != except {
			cand = append(cand, h)
		}
	}
	if len(cand) == 0 {
		return migTarget{}, fmt.Errorf("group %s has no other host", g.Name)
	}
	pvm := &placement.VM{ID: vm.ID, VCPU: info.VCPUs, Memory: float64(info.Memory >> 20), Group: g.ID}
	ratings, err := m.placer.Rate(ctx, pvm, cand)
	if err != nil {
		return migTarget{}, err
	}
	for _, rt := range ratings {
		if to != "" && rt.Host.ID != to {
			continue
		}
		if rt.Err != nil {
			return migTarget{}, fmt.Errorf("no host can take VM %s: %s: %v", vm.Name, rt.Host.Labels["name"], rt.Err)
		}
		return migTarget{From: vm.HostID, To: rt.Host.ID, Stars: rt.Stars}, nil
	}
	return migTarget{}, fmt.Errorf("host %s is not another host of group %s", to, g.Name)
}

// migrate moves the VM from t.From to t.To, or finds it already moved.
func (m *Manager) migrate(ctx context.Context, r *Run, vmID string, t migTarget, live bool) (MigrateResult, error) {
	res := MigrateResult{From: t.From, To: t.To, Stars: t.Stars}
	vm, err := m.st.VM(ctx, vmID)
	if err != nil {
		return res, err
	}
	src, err := m.driver(ctx, t.From)
	if err != nil {
		return res, err
	}
	dst, err := m.driver(ctx, t.To)
	if err != nil {
		return res, err
	}
	// Where is it now? (An earlier attempt may have moved it.)
	cctx, cancel := m.callCtx(ctx)
	v, err := src.VM(cctx, vm.Name)
	cancel()
	if errors.Is(err, hostapi.ErrNotFound) {
		cctx, cancel := m.callCtx(ctx)
		dv, derr := dst.VM(cctx, vm.Name)
		cancel()
		if derr != nil {
			return res, fmt.Errorf("VM %s is on neither host: %w", vm.Name, err)
		}
		v = dv
	} else if err != nil {
		return res, err
	} else {
		res.Live = live && v.State == hostapi.StateRunning && src.Supports(hostapi.LiveMigration)
		// The manager puts a VM's disks in its host's pools: they move too.
		err := src.Migrate(ctx, v.ID, dst, &hostapi.MigrateOptions{Live: res.Live, WithStorage: src.Supports(hostapi.StorageMigration), Progress: func(done, total int64) {
			if total > 0 {
				r.Progress(float64(done) / float64(total))
			}
		}})
		if err != nil {
			return res, fmt.Errorf("migrating %s: %w", vm.Name, err)
		}
		cctx, cancel := m.callCtx(ctx)
		v, err = dst.VM(cctx, vm.Name)
		cancel()
		if err != nil {
			return res, err
		}
	}
	for _, id := range []string{t.From, t.To} {
		m.forgetHost(id)
	}
	_, err = m.updateVM(ctx, vmID, func(rec *store.VM) bool {
		rec.HostID, rec.State = t.To, v.State.String()
		return true
	})
	return res, err
}

// --- evacuation (maintenance mode)

type evacuateInput struct {
	HostID string `json:"host_id"`
}

func (m *Manager) runEvacuate(ctx context.Context, r *Run) error {
	var in evacuateInput
	if err := r.Input(&in); err != nil {
		return err
	}
	vms, err := Do(ctx, r, "list", func(ctx context.Context, _ bool) ([]string, error) {
		recs, err := m.st.VMs(ctx, store.VMFilter{HostID: in.HostID})
		var ids []string
		for _, v := range recs {
			if v.State != VMCreating && v.State != VMMissing {
				ids = append(ids, v.ID)
			}
		}
		return ids, err
	})
	if err != nil {
		return err
	}
	moved := 0
	for _, id := range vms {
		_, err := Do(ctx, r, "move "+id, func(ctx context.Context, _ bool) (MigrateResult, error) {
			vm, err := m.st.VM(ctx, id)
			if errors.Is(err, store.ErrNotFound) || err == nil && vm.HostID != in.HostID {
				return MigrateResult{}, nil // gone or moved meanwhile
			}
			if err != nil {
				return MigrateResult{}, err
			}
			t, err := m.chooseTarget(ctx, id, "", in.HostID)
			if err != nil {
				return MigrateResult{}, err
			}
			return m.migrate(ctx, r, id, t, true)
		})
		if err != nil {
			return err
		}
		moved++
	}
	return r.SetResult(map[string]int{"moved": moved})
}

// --- optimize

// OptimizeSpec says which group to rebalance.
type OptimizeSpec struct {
	Group string `json:"group"`
	// Threshold, MaxMoves: see placement.RebalanceOptions.
	Threshold float64 `json:"threshold,omitempty"`
	MaxMoves  int     `json:"max_moves,omitempty"`
	User      string  `json:"user,omitempty"`
}

// OptimizeResult is the result of an optimize job.
type OptimizeResult struct {
	Moves        []PlannedMove `json:"moves"`
	HostsEmptied int           `json:"hosts_emptied"`
}

// PlannedMove is one migration of an optimize job.
type PlannedMove struct {
	VM     string `json:"vm"`
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason"`
}

// Optimize queues a job that rebalances a host group with
// placement.Rebalance, by its goal (GoalBalance spreads the load, GoalPack
// empties hosts), and carries out the migrations in order.
func (m *Manager) Optimize(ctx context.Context, spec OptimizeSpec) (store.Job, error) {
	if _, err := m.st.Group(ctx, spec.Group); err != nil {
		return store.Job{}, err
	}
	return m.Submit(ctx, KindOptimize, spec.User, spec, "plan")
}

func (m *Manager) runOptimize(ctx context.Context, r *Run) error {
	var in OptimizeSpec
	if err := r.Input(&in); err != nil {
		return err
	}
	plan, err := Do(ctx, r, "plan", func(ctx context.Context, _ bool) (OptimizeResult, error) {
		return m.planRebalance(ctx, in)
	})
	if err != nil {
		return err
	}
	for i, mv := range plan.Moves {
		_, err := Do(ctx, r, fmt.Sprintf("move %d", i+1), func(ctx context.Context, _ bool) (MigrateResult, error) {
			return m.migrate(ctx, r, mv.VM, migTarget{From: mv.From, To: mv.To}, true)
		})
		if err != nil {
			return err
		}
	}
	return r.SetResult(plan)
}

func (m *Manager) planRebalance(ctx context.Context, in OptimizeSpec) (OptimizeResult, error) {
	var res OptimizeResult
	g, err := m.st.Group(ctx, in.Group)
	if err != nil {
		return res, err
	}
	goal, err := goalOf(g.Goal)
	if err != nil {
		return res, err
	}
	cfg := m.cfg.Placement
	cfg.GroupGoals = map[string]placement.Goal{g.ID: goal}
	placer, err := placement.New(cfg)
	if err != nil {
		return res, err
	}
	hosts, err := m.placementHosts(ctx, g, 0)
	if err != nil {
		return res, err
	}
	byID := map[string]*placement.Host{}
	for _, h := range hosts {
		byID[h.ID] = h
	}
	var placed []placement.Assignment
	for _, h := range hosts {
		if h.State != placement.Ready && h.State != placement.Maintenance {
			continue
		}
		drv, err := m.driver(ctx, h.ID)
		if err != nil {
			continue
		}
		cctx, cancel := m.callCtx(ctx)
		onHost, err := drv.VMs(cctx)
		cancel()
		if err != nil {
			continue
		}
		recs, err := m.st.VMs(ctx, store.VMFilter{HostID: h.ID})
		if err != nil {
			return res, err
		}
		ids := map[string]string{}
		for _, rec := range recs {
			ids[rec.Name] = rec.ID
		}
		for _, v := range onHost {
			id, ok := ids[v.Name]
			if !ok || v.State != hostapi.StateRunning {
				continue
			}
			h.VMs = append(h.VMs, id)
			pvm := &placement.VM{ID: id, VCPU: v.VCPUs, Memory: float64(v.Memory >> 20), Group: g.ID}
			cctx, cancel := m.callCtx(ctx)
			if st, err := drv.Stats(cctx, v.ID); err == nil {
				pvm.Expected[placement.CPU] = st.CPUMHz
			}
			cancel()
			placed = append(placed, placement.Assignment{VM: pvm, Host: h})
		}
	}
	rp, err := placer.Rebalance(ctx, hosts, placed, &placement.RebalanceOptions{Threshold: in.Threshold, MaxMoves: in.MaxMoves})
	if err != nil {
		return res, err
	}
	for _, mv := range rp.Moves {
		res.Moves = append(res.Moves, PlannedMove{VM: mv.VM.ID, From: mv.From.ID, To: mv.To.ID, Reason: mv.Reason})
	}
	res.HostsEmptied = rp.HostsEmptied
	return res, nil
}
