package vmm

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// States of a VM record besides the hosts' own (hostapi.State's names:
// "stopped", "running", "paused", "shutting down", "crashed").
const (
	// VMCreating: a CreateVM job owns the record until it ends.
	VMCreating = "creating"
	// VMMissing: the VM's host answered and does not have it.
	VMMissing = "missing"
	// VMFailed: its CreateVM job failed and could not take back what it
	// did on the host, which did not answer; the leader does it when the
	// host answers again, and removes the record.
	VMFailed = "failed"
)

// Group goals, the Goal of a store.HostGroup.
const (
	GoalBalance = "balance" // spread the load (placement.LoadBalance)
	GoalPack    = "pack"    // use as few hosts as possible (placement.Consolidate)
)

func goalOf(g string) (placement.Goal, error) {
	switch g {
	case "", GoalBalance:
		return placement.LoadBalance, nil
	case GoalPack:
		return placement.Consolidate, nil
	}
	return 0, fmt.Errorf("%w: goal %q is neither %q nor %q", store.ErrInvalid, g, GoalBalance, GoalPack)
}

// hostConn is the manager's connection to one host.
type hostConn struct {
	id     string
	synced chan struct{} // closed after the leader's first sync attempt

	mu      sync.Mutex
	rec     store.Host
	drv     hostapi.Driver
	err     error // why the last connection attempt failed
	info    *hostapi.HostInfo
	infoAt  time.Time
	known   *hostapi.HostInfo // the last facts the host gave
	dialing chan struct{}     // closed when the dial under way ends
	watched bool
}

func newHostConn(h store.Host) *hostConn {
	return &hostConn{id: h.ID, rec: h, synced: make(chan struct{})}
}

func (hc *hostConn) record() store.Host {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return hc.rec
}

func (hc *hostConn) close() {
	hc.mu.Lock()
	drv := hc.drv
	hc.drv = nil
	hc.mu.Unlock()
	if drv != nil {
		drv.Close()
	}
}

// driver returns the host's driver, connecting first when needed.
func (m *Manager) driver(ctx context.Context, hostID string) (hostapi.Driver, error) {
	m.mu.Lock()
	hc := m.hosts[hostID]
	m.mu.Unlock()
	if hc == nil {
		// Added by another manager since this one started.
		h, err := m.st.Host(ctx, hostID)
		if err != nil {
			return nil, fmt.Errorf("vmm: host %s: %w", hostID, err)
		}
		m.mu.Lock()
		if hc = m.hosts[hostID]; hc == nil {
			hc = newHostConn(h)
			m.hosts[hostID] = hc
		}
		m.mu.Unlock()
	}
	return m.connect(ctx, hc)
}

func (m *Manager) connect(ctx context.Context, hc *hostConn) (hostapi.Driver, error) {
	for {
		hc.mu.Lock()
		if hc.drv != nil {
			drv := hc.drv
			hc.mu.Unlock()
			return drv, nil
		}
		if wait := hc.dialing; wait != nil {
			// Another caller dials: wait for it, without holding the
			// lock (a host slow to answer must not stall the others).
			hc.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		conn := m.connectors[hc.rec.Kind]
		rec := hc.rec
		if conn == nil {
			hc.mu.Unlock()
			return nil, fmt.Errorf("vmm: host %s: no connector for kind %q", rec.Name, rec.Kind)
		}
		done := make(chan struct{})
		hc.dialing = done
		hc.mu.Unlock()

		cctx, cancel := m.callCtx(ctx)
		drv, err := conn(cctx, rec.URI)
		cancel()
		hc.mu.Lock()
		hc.dialing = nil
		close(done)
		if err != nil {
			hc.err = err
			hc.mu.Unlock()
			return nil, fmt.Errorf("vmm: host %s: %w", rec.Name, err)
		}
		hc.drv, hc.err = drv, nil
		hc.mu.Unlock()
		return drv, nil
	}
}

// dropDriver forgets a failed connection so that the next use dials again.
func (hc *hostConn) dropDriver(drv hostapi.Driver, err error) {
	hc.mu.Lock()
	if hc.drv == drv {
		hc.drv, hc.err, hc.info = nil, err, nil
	}
	hc.mu.Unlock()
	if drv != nil {
		drv.Close()
	}
}

// hostInfo returns the host's facts, at most maxAge old.
func (m *Manager) hostInfo(ctx context.Context, hc *hostConn, maxAge time.Duration) (*hostapi.HostInfo, error) {
	hc.mu.Lock()
	if hc.info != nil && time.Since(hc.infoAt) <= maxAge {
		info := hc.info
		hc.mu.Unlock()
		return info, nil
	}
	hc.mu.Unlock()
	drv, err := m.connect(ctx, hc)
	if err != nil {
		return nil, err
	}
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	info, err := drv.Host(cctx)
	if err != nil {
		if errors.Is(err, hostapi.ErrHostUnreachable) || errors.Is(err, hostapi.ErrClosed) {
			hc.dropDriver(drv, err)
		}
		return nil, err
	}
	hc.mu.Lock()
	hc.info, hc.infoAt, hc.known = info, time.Now(), info
	hc.mu.Unlock()
	return info, nil
}

// forgetHost drops the cached facts of host id (its use changed).
func (m *Manager) forgetHost(id string) {
	m.mu.Lock()
	hc := m.hosts[id]
	m.mu.Unlock()
	if hc != nil {
		hc.forgetInfo()
	}
}

func (hc *hostConn) forgetInfo() {
	hc.mu.Lock()
	hc.info = nil
	hc.mu.Unlock()
}

// --- inventory

// CreateGroup adds a host group; g.Goal is GoalBalance (the default) or
// GoalPack, and g.Reserves what placement keeps free on its hosts.
func (m *Manager) CreateGroup(ctx context.Context, g store.HostGroup) (store.HostGroup, error) {
	if g.Goal == "" {
		g.Goal = GoalBalance
	}
	if _, err := goalOf(g.Goal); err != nil {
		return store.HostGroup{}, &store.OpError{Op: "create group", ID: g.Name, Err: err}
	}
	return m.st.CreateGroup(ctx, g)
}

// HostOptions tune AddHost.
type HostOptions struct {
	// Kind is the connector to use; "" means the URI's scheme: "sim" for
	// sim:///NAME, "libvirt" for qemu URIs.
	Kind string
	// Name is what the inventory calls the host; "" means the name the
	// host reports.
	Name string
	// Site is where the host is, for taking library replicas near it.
	Site string
}

func kindOf(uri string) string {
	u, err := url.Parse(uri)
	if err == nil && u.Scheme == "sim" {
		return "sim"
	}
	return "libvirt"
}

// AddHost connects to the host at uri, checks that it answers, and adds it
// to group groupID with the VMs it runs (they join the inventory without an
// owner). It fails with an error wrapping store.ErrExists when a host of that
// name is in the inventory, hostapi.ErrHostUnreachable when it does not answer.
func (m *Manager) AddHost(ctx context.Context, groupID, uri string, opts *HostOptions) (store.Host, error) {
	var o HostOptions
	if opts != nil {
		o = *opts
	}
	if o.Kind == "" {
		o.Kind = kindOf(uri)
	}
	if _, err := m.st.Group(ctx, groupID); err != nil {
		return store.Host{}, err
	}
	hc := newHostConn(store.Host{ID: store.NewID(), GroupID: groupID, URI: uri, Kind: o.Kind, Site: o.Site})
	info, err := m.hostInfo(ctx, hc, 0)
	if err != nil {
		hc.close()
		return store.Host{}, fmt.Errorf("vmm: add host %s: %w", uri, err)
	}
	hc.rec.Name = o.Name
	if hc.rec.Name == "" {
		hc.rec.Name = info.Name
	}
	// The hosts this manager knows (its own, and others' as of its last
	// look at the store) must not have the name or URI; the store refuses
	// a name taken meanwhile by another manager.
	m.addMu.Lock()
	defer m.addMu.Unlock()
	m.mu.Lock()
	var dup *store.Host
	for _, other := range m.hosts {
		h := other.record()
		if strings.EqualFold(h.Name, hc.rec.Name) || h.URI == uri {
			dup = &h
			break
		}
	}
	m.mu.Unlock()
	if dup != nil {
		hc.close()
		return store.Host{}, &store.OpError{Op: "add host", ID: hc.rec.Name, Err: fmt.Errorf("%w: the inventory has host %s (%s)", store.ErrExists, dup.Name, dup.URI)}
	}
	rec, err := m.st.CreateHost(ctx, hc.rec)
	if err != nil {
		hc.close()
		if errors.Is(err, store.ErrExists) {
			return store.Host{}, &store.OpError{Op: "add host", ID: hc.rec.Name, Err: fmt.Errorf("%w: the inventory has a host named %s", store.ErrExists, hc.rec.Name)}
		}
		return store.Host{}, err
	}
	hc.rec = rec
	m.mu.Lock()
	m.hosts[rec.ID] = hc
	lead := m.leading
	m.mu.Unlock()
	if lead {
		// Adopt the host's VMs now, so that the caller sees them.
		if err := m.reconcile(ctx, hc, nil, nil); err != nil {
			m.log.Warn("first sync of a new host", "host", rec.Name, "err", err)
		}
		m.mu.Lock()
		if m.leading && m.leadContext != nil {
			m.watchHost(m.leadContext, hc, nil)
		}
		m.mu.Unlock()
	}
	m.log.Info("host added", "host", rec.Name, "uri", uri, "group", groupID)
	return rec, nil
}

// RemoveHost takes a host out of the inventory. It fails with an error
// wrapping store.ErrConflict while VMs of the inventory are on it (migrate
// them, or SetMaintenance to evacuate them, first).
func (m *Manager) RemoveHost(ctx context.Context, id string) error {
	vms, err := m.st.VMs(ctx, store.VMFilter{HostID: id})
	if err != nil {
		return err
	}
	if len(vms) > 0 {
		return &store.OpError{Op: "remove host", ID: id, Err: fmt.Errorf("%w: %d VMs are on the host (%s, ...)", store.ErrConflict, len(vms), vms[0].Name)}
	}
	if err := m.st.DeleteHost(ctx, id); err != nil {
		return err
	}
	m.mu.Lock()
	hc := m.hosts[id]
	delete(m.hosts, id)
	m.mu.Unlock()
	if hc != nil {
		hc.close()
	}
	return nil
}

// SetMaintenance puts a host in maintenance mode (placement gives it no
// VMs) and queues a job that migrates its VMs to other hosts of its group,
// chosen by placement; or takes it out of maintenance (no job). It returns
// the evacuation job, or a zero Job.
func (m *Manager) SetMaintenance(ctx context.Context, hostID string, on bool, user string) (store.Job, error) {
	for {
		h, err := m.st.Host(ctx, hostID)
		if err != nil {
			return store.Job{}, err
		}
		h.Maintenance = on
		h, err = m.st.UpdateHost(ctx, h)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return store.Job{}, err
		}
		m.mu.Lock()
		if hc := m.hosts[hostID]; hc != nil {
			hc.mu.Lock()
			hc.rec = h
			hc.mu.Unlock()
		}
		m.mu.Unlock()
		break
	}
	if !on {
		return store.Job{}, nil
	}
	return m.Submit(ctx, KindEvacuate, user, evacuateInput{HostID: hostID})
}

// Hosts lists the hosts of a group, or all of them when groupID is "".
func (m *Manager) Hosts(ctx context.Context, groupID string) ([]store.Host, error) {
	return m.st.Hosts(ctx, groupID)
}

// VMs lists the VMs of the inventory that f selects.
func (m *Manager) VMs(ctx context.Context, f store.VMFilter) ([]store.VM, error) {
	return m.st.VMs(ctx, f)
}

// updateVM applies change to the current record of VM id, again when the
// record changed under it; change returns false to write nothing. The
// store's ErrConflict also means a record the VM refers to is gone (its
// host, its group): when the record did not change, that is the error.
func (m *Manager) updateVM(ctx context.Context, id string, change func(vm *store.VM) bool) (store.VM, error) {
	for attempt := 0; ; attempt++ {
		vm, err := m.st.VM(ctx, id)
		if err != nil {
			return vm, err
		}
		read := vm.Version
		if !change(&vm) {
			return vm, nil
		}
		vm, err = m.st.UpdateVM(ctx, vm)
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			if cur, rerr := m.st.VM(ctx, id); rerr == nil && cur.Version != read {
				continue // changed meanwhile: apply the change to the new record
			}
		}
		return vm, err
	}
}

// --- placement input

// placementHosts describes the hosts of a group for placement, with the
// demand of VMs being created on them counted as used. Hosts that do not
// answer are NotResponding, hosts in maintenance Maintenance.
func (m *Manager) placementHosts(ctx context.Context, g store.HostGroup, maxAge time.Duration) ([]*placement.Host, error) {
	recs, err := m.st.Hosts(ctx, g.ID)
	if err != nil {
		return nil, err
	}
	out := make([]*placement.Host, len(recs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, h := range recs {
		m.mu.Lock()
		hc := m.hosts[h.ID]
		if hc == nil {
			hc = newHostConn(h)
			m.hosts[h.ID] = hc
		}
		m.mu.Unlock()
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ph := &placement.Host{ID: h.ID, Group: g.ID, Labels: map[string]string{"name": h.Name}}
			out[i] = ph
			// VMs being made there count until the host runs them (and
			// its facts count them): list its VMs before its facts.
			m.mu.Lock()
			pend := maps.Clone(m.pending[h.ID])
			m.mu.Unlock()
			if len(pend) > 0 {
				if drv, err := m.connect(ctx, hc); err == nil {
					cctx, cancel := m.callCtx(ctx)
					vms, err := drv.VMs(cctx)
					cancel()
					if err == nil {
						for _, v := range vms {
							if v.State == hostapi.StateRunning {
								delete(pend, v.Name)
							}
						}
					}
				}
			}
			info, err := m.hostInfo(ctx, hc, maxAge)
			switch {
			case err != nil:
				// Rated with its last known facts, so that its rating
				// says it does not respond (placement rejects it).
				ph.State = placement.NotResponding
				hc.mu.Lock()
				info = hc.known
				hc.mu.Unlock()
				if info == nil {
					info = &hostapi.HostInfo{CPUCores: 1, CPUMHz: 1, MemoryTotal: 1 << 20, MemoryFree: 1 << 20}
				}
			case h.Maintenance:
				ph.State = placement.Maintenance
			}
			fillPlacementHost(ph, info, g.Reserves)
			if ph.State == placement.NotResponding {
				return
			}
			if drv, err := m.connect(ctx, hc); err == nil && drv.Supports(hostapi.LiveMigration) {
				ph.Features = append(ph.Features, "live-migration")
			}
			for _, d := range pend {
				for r := range d {
					ph.Used[r] += d[r]
				}
			}
		})
	}
	wg.Wait()
	return out, nil
}

func fillPlacementHost(ph *placement.Host, info *hostapi.HostInfo, res store.Reserves) {
	ph.Cores = info.CPUCores
	ph.Capacity[placement.CPU] = info.CPUTotal()
	ph.Capacity[placement.Memory] = float64(info.MemoryTotal) / (1 << 20)
	ph.Used[placement.CPU] = info.CPUUsed
	ph.Used[placement.Memory] = float64(info.MemoryTotal-info.MemoryFree) / (1 << 20)
	ph.Reserve[placement.CPU] = float64(res.CPUPercent) / 100
	ph.Reserve[placement.Memory] = float64(res.MemoryMiB)
	for _, p := range info.Pools {
		free := p.Free
		if res.DiskGiB > 0 {
			free -= res.DiskGiB << 30
		}
		ph.Volumes = append(ph.Volumes, placement.Volume{Name: p.Name, Free: max(free, 0)})
	}
	ph.Hypervisor = info.Hypervisor
	ph.Formats = append(ph.Formats, info.Formats...)
	// Formats the host converts from (CopyImage) count as runnable.
	for _, f := range []string{"vhd", "vhdx", "raw", "qcow2"} {
		if !slices.Contains(ph.Formats, f) {
			ph.Formats = append(ph.Formats, f)
		}
	}
}
