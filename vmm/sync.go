package vmm

import (
	"context"
	"errors"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// watchHost starts the leader's watch of one host: a first comparison of
// the inventory with the host, then its events, reconnecting with backoff
// when the host fails. m.mu must be held.
func (m *Manager) watchHost(ctx context.Context, hc *hostConn, first *[]store.VM) {
	hc.mu.Lock()
	if hc.watched {
		hc.mu.Unlock()
		return
	}
	hc.watched = true
	hc.mu.Unlock()
	m.leadWG.Go(func() {
		defer func() {
			hc.mu.Lock()
			hc.watched = false
			hc.mu.Unlock()
		}()
		m.watchLoop(ctx, hc, first)
	})
}

func (m *Manager) watchLoop(ctx context.Context, hc *hostConn, recs *[]store.VM) {
	first := true
	markSynced := func() {
		if first {
			first = false
			select {
			case <-hc.synced:
			default:
				close(hc.synced)
			}
		}
	}
	defer markSynced()
	wait := time.Second
	for ctx.Err() == nil {
		m.mu.Lock()
		_, still := m.hosts[hc.id]
		m.mu.Unlock()
		if !still {
			return
		}
		err := m.watchOnce(ctx, hc, recs, markSynced)
		recs = nil
		markSynced()
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("host watch ended; retrying", "host", hc.record().Name, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// watchOnce subscribes to the host's events, compares the inventory with
// the host, then applies events until the connection fails.
func (m *Manager) watchOnce(ctx context.Context, hc *hostConn, recs *[]store.VM, synced func()) error {
	drv, err := m.connect(ctx, hc)
	if err != nil {
		return err
	}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	type item struct {
		ev  hostapi.Event
		err error
	}
	events := make(chan item, 256)
	go func() {
		defer close(events)
		for ev, err := range drv.Events(ectx) {
			select {
			case events <- item{ev, err}:
			case <-ectx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	if err := m.reconcile(ctx, hc, drv, recs); err != nil {
		if errors.Is(err, hostapi.ErrHostUnreachable) || errors.Is(err, hostapi.ErrClosed) {
			hc.dropDriver(drv, err)
		}
		return err
	}
	synced()
	for it := range events {
		if it.err != nil {
			hc.dropDriver(drv, it.err)
			return it.err
		}
		if err := m.applyEvent(ctx, hc, it.ev); err != nil && ctx.Err() == nil {
			m.log.Warn("applying a host event", "host", hc.record().Name, "vm", it.ev.VMName, "err", err)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("event stream ended")
}

// reconcile makes the inventory agree with what the host runs: VMs it has
// and the inventory does not are adopted, states are brought up to date,
// and VMs of the inventory it does not have are marked VMMissing. Records
// that a CreateVM job owns are left to it. drv nil means connect; known,
// when set, is the host's records (read from the store when nil).
func (m *Manager) reconcile(ctx context.Context, hc *hostConn, drv hostapi.Driver, known *[]store.VM) error {
	if drv == nil {
		var err error
		if drv, err = m.connect(ctx, hc); err != nil {
			return err
		}
	}
	h := hc.record()
	var recs []store.VM
	var err error
	if known != nil {
		recs = *known
	} else if recs, err = m.st.VMs(ctx, store.VMFilter{HostID: h.ID}); err != nil {
		return err
	}
	// Failed creations to take back, now that the host answers: before
	// the host's VMs are listed, so that what they take back is not seen.
	kept := recs[:0:0]
	for _, r := range recs {
		if r.State != VMFailed {
			kept = append(kept, r)
			continue
		}
		if err := m.finishUndo(ctx, r); err != nil {
			m.log.Warn("taking back a failed VM creation", "vm", r.Name, "err", err)
			kept = append(kept, r)
		}
	}
	recs = kept
	asOf := m.cfg.Now()
	cctx, cancel := m.callCtx(ctx)
	onHost, err := drv.VMs(cctx)
	cancel()
	if err != nil {
		return err
	}
	byName := recordsByName(recs)
	seen := make(map[string]bool, len(onHost))
	for _, v := range onHost {
		seen[v.Name] = true
		if err := m.noteVM(ctx, h, byName, v.Name, v.State, asOf, vmState(m, drv, v.Name)); err != nil {
			return err
		}
	}
	for _, r := range recs {
		if seen[r.Name] || r.State == VMCreating || r.State == VMMissing || r.State == VMFailed {
			continue
		}
		if _, err := m.updateVM(ctx, r.ID, func(vm *store.VM) bool {
			if vm.HostID != h.ID || vm.State == VMCreating || vm.UpdatedAt.After(asOf) {
				return false
			}
			vm.State = VMMissing
			return true
		}); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// noteVM records that host h has VM name in state st, as the host said at
// asOf. A record written after asOf (by a job) may be newer than st: the
// host is asked again (requery) rather than setting the record back.
func (m *Manager) noteVM(ctx context.Context, h store.Host, onHost map[string]store.VM, name string, st hostapi.State,
	asOf time.Time, requery func(ctx context.Context) (hostapi.State, error)) error {
	rec, ok := onHost[name]
	if !ok {
		// Not on this host in the inventory: migrated in, or new.
		all, err := m.st.VMs(ctx, store.VMFilter{GroupID: h.GroupID})
		if err != nil {
			return err
		}
		for _, r := range all {
			if r.Name == name {
				rec, ok = r, true
				break
			}
		}
	}
	if !ok {
		_, err := m.st.CreateVM(ctx, store.VM{Name: name, HostID: h.ID, GroupID: h.GroupID, State: st.String()})
		if errors.Is(err, store.ErrExists) {
			return nil // a CreateVM job reserved the name meanwhile
		}
		if err == nil {
			m.log.Info("VM adopted from its host", "vm", name, "host", h.Name)
		}
		return err
	}
	for range 5 {
		if rec.State == VMCreating || rec.State == VMFailed || (rec.HostID == h.ID && rec.State == st.String()) {
			return nil
		}
		stale := false
		var err error
		rec, err = m.updateVM(ctx, rec.ID, func(vm *store.VM) bool {
			if vm.State == VMCreating || vm.State == VMFailed || (vm.HostID == h.ID && vm.State == st.String()) {
				return false
			}
			if vm.UpdatedAt.After(asOf) {
				stale = true
				return false
			}
			vm.HostID, vm.State = h.ID, st.String()
			return true
		})
		if errors.Is(err, store.ErrNotFound) || err != nil || !stale {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		asOf = m.cfg.Now()
		if st, err = requery(ctx); err != nil {
			if errors.Is(err, hostapi.ErrNotFound) {
				return nil // gone since: its own event follows
			}
			return err
		}
	}
	return nil
}

// vmState asks drv for the state of VM name now.
func vmState(m *Manager, drv hostapi.Driver, name string) func(ctx context.Context) (hostapi.State, error) {
	return func(ctx context.Context) (hostapi.State, error) {
		cctx, cancel := m.callCtx(ctx)
		defer cancel()
		v, err := drv.VM(cctx, name)
		if err != nil {
			return 0, err
		}
		return v.State, nil
	}
}

// applyEvent brings the inventory up to date with one event of host hc.
// Events may be late: the host is asked for the VM's state now rather
// than taking the event's.
func (m *Manager) applyEvent(ctx context.Context, hc *hostConn, ev hostapi.Event) error {
	hc.forgetInfo()
	h := hc.record()
	drv, err := m.connect(ctx, hc)
	if err != nil {
		return err
	}
	asOf := m.cfg.Now()
	cur := vmState(m, drv, ev.VMName)
	st, err := cur(ctx)
	if err != nil && !errors.Is(err, hostapi.ErrNotFound) {
		return err
	}
	recs, lerr := m.st.VMs(ctx, store.VMFilter{HostID: h.ID})
	if lerr != nil {
		return lerr
	}
	byName := recordsByName(recs)
	if err == nil {
		return m.noteVM(ctx, h, byName, ev.VMName, st, asOf, cur)
	}
	// Deleted or migrated out: the record stays with this host only if
	// it still has the VM.
	rec, ok := byName[ev.VMName]
	if !ok || rec.State == VMCreating || rec.State == VMFailed {
		return nil
	}
	_, err = m.updateVM(ctx, rec.ID, func(vm *store.VM) bool {
		if vm.HostID != h.ID || vm.State == VMCreating || vm.State == VMFailed || vm.State == VMMissing || vm.UpdatedAt.After(asOf) {
			return false
		}
		vm.State = VMMissing
		return true
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// recordsByName indexes VM records by name.
func recordsByName(recs []store.VM) map[string]store.VM {
	m := make(map[string]store.VM, len(recs))
	for _, r := range recs {
		m[r.Name] = r
	}
	return m
}
