package vmm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vmmkit/vmmkit/internal/keylock"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/vmm/store"
	"github.com/vmmkit/vmmkit/vmm/store/postgres"
	"github.com/vmmkit/vmmkit/vmm/store/sqlite"
)

// leaderName is the lease row of the manager that watches the hosts.
const leaderName = "vmm-leader"

// A Manager keeps the inventory of a fleet (host groups, hosts, VMs) in a
// Store, runs every long operation as a persistent job, and carries out
// the workflows that cross packages: CreateVM, MigrateVM, ConvertPhysical,
// Optimize, Consolidate, AddHostsFromAD. Several Managers may share one
// PostgreSQL store: each job runs on one of them, and one of them (the
// leader) watches the hosts and keeps the VMs' states current.
//
// A Manager is safe for concurrent use. Close it when done.
type Manager struct {
	cfg        Config
	st         store.Store
	closeStore bool
	log        *slog.Logger
	id         string
	placer     *placement.Placer
	connectors map[string]Connector
	handlers   map[string]JobFunc
	kinds      []string

	ctx    context.Context // ends at Close
	stop   context.CancelFunc
	wg     sync.WaitGroup
	leadWG sync.WaitGroup

	addMu       sync.Mutex // AddHost's check and insert, one at a time
	mu          sync.Mutex
	hosts       map[string]*hostConn // by host ID
	running     map[string]*Run      // jobs this manager runs, by ID
	watch       map[string]*watchEntry
	wakeCh      chan struct{}
	pending     map[string]map[string]placement.Vector // demand of VMs being made, by host ID and VM name
	groupLocks  keylock.Map[string]                    // placements in a group, one at a time
	vmLocks     keylock.Map[string]                    // checkpoint jobs of a VM, one at a time
	leading     bool
	stopLead    context.CancelFunc
	leadContext context.Context
	closed      bool
}

// New opens the store (unless Config.Store is given), loads the inventory,
// takes the leadership if no other manager holds it, and starts the job
// workers. The caller closes the Manager.
func New(cfg Config) (*Manager, error) {
	cfg.defaults()
	m := &Manager{
		cfg:     cfg,
		st:      cfg.Store,
		log:     cfg.Logger,
		id:      cfg.Instance,
		hosts:   map[string]*hostConn{},
		running: map[string]*Run{},
		watch:   map[string]*watchEntry{},
		wakeCh:  make(chan struct{}),
		pending: map[string]map[string]placement.Vector{},
	}
	if m.id == "" {
		hn, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		m.id = fmt.Sprintf("%s-%d-%s", hn, os.Getpid(), hex.EncodeToString(b[:]))
	}
	placer, err := placement.New(cfg.Placement)
	if err != nil {
		return nil, fmt.Errorf("vmm: placement: %w", err)
	}
	m.placer = placer
	m.connectors = map[string]Connector{"libvirt": LibvirtConnector(nil)}
	if cfg.Sim != nil {
		m.connectors["sim"] = SimConnector(cfg.Sim)
	}
	maps.Copy(m.connectors, cfg.Connectors)
	m.handlers = map[string]JobFunc{
		KindCreateVM:        m.runCreateVM,
		KindMigrateVM:       m.runMigrateVM,
		KindEvacuate:        m.runEvacuate,
		KindOptimize:        m.runOptimize,
		KindConvertPhysical: m.runConvertPhysical,
		KindAddHosts:        m.runAddHosts,
		KindVMAction:        m.runVMAction,
		KindDeleteVM:        m.runDeleteVM,
	}
	for k, f := range cfg.Jobs {
		if _, ok := m.handlers[k]; ok {
			return nil, fmt.Errorf("vmm: Config.Jobs: kind %q is the manager's own", k)
		}
		m.handlers[k] = f
	}
	m.kinds = slices.Sorted(maps.Keys(m.handlers))

	if m.st == nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.CallTimeout)
		defer cancel()
		if cfg.PostgresDSN != "" {
			m.st, err = postgres.Open(ctx, cfg.PostgresDSN)
		} else {
			if dir := filepath.Dir(cfg.StorePath); dir != "" {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return nil, fmt.Errorf("vmm: store folder: %w", err)
				}
			}
			m.st, err = sqlite.New(ctx, sqlite.Config{Path: cfg.StorePath, Now: cfg.Now})
		}
		if err != nil {
			return nil, fmt.Errorf("vmm: open store: %w", err)
		}
		m.closeStore = true
	}
	if m.cfg.WorkDir == "" {
		m.cfg.WorkDir = filepath.Join(filepath.Dir(cfg.StorePath), "vmmkit-work")
	}
	m.ctx, m.stop = context.WithCancel(context.Background())

	// Load the hosts, so that jobs and the leader find their connections.
	ctx, cancel := context.WithTimeout(m.ctx, cfg.CallTimeout)
	defer cancel()
	hosts, err := m.st.Hosts(ctx, "")
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("vmm: load hosts: %w", err)
	}
	for _, h := range hosts {
		m.hosts[h.ID] = newHostConn(h)
	}
	// One leadership attempt now, so that a lone manager leads when New
	// returns; then the leader loop keeps or takes it.
	m.tryLead(ctx)
	m.wg.Go(m.leaderLoop)
	if !cfg.NoJobs {
		for range cfg.Workers {
			m.wg.Go(m.worker)
		}
	}
	m.log.Info("manager started", "instance", m.id, "hosts", len(hosts), "leader", m.isLeader())
	return m, nil
}

// Close stops the workers (a job they were running is queued again, to be
// resumed by this or another manager), stops watching the hosts, resigns
// the leadership, closes the host connections and, when the Manager opened
// it, the store.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	if m.stop != nil {
		m.stop()
	}
	m.wg.Wait()
	m.leadWG.Wait()
	var errs []error
	if m.st != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if m.isLeader() {
			errs = append(errs, m.st.Resign(ctx, leaderName, m.id))
		}
		cancel()
	}
	m.mu.Lock()
	conns := slices.Collect(maps.Values(m.hosts))
	m.mu.Unlock()
	for _, hc := range conns {
		hc.close()
	}
	if m.closeStore && m.st != nil {
		errs = append(errs, m.st.Close())
	}
	return errors.Join(errs...)
}

// Store returns the manager's store, for reading the inventory and jobs
// directly. Changes to hosts and VMs should go through the Manager.
func (m *Manager) Store() store.Store { return m.st }

// Library returns the image library of Config.Library (nil when none).
func (m *Manager) Library() *library.Library { return m.cfg.Library }

// Placement returns the placer that rates hosts for this manager.
func (m *Manager) Placement() *placement.Placer { return m.placer }

// Instance returns the name of this manager among those sharing its store.
func (m *Manager) Instance() string { return m.id }

// callCtx bounds one driver call by Config.CallTimeout.
func (m *Manager) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.cfg.CallTimeout)
}

// --- leadership

func (m *Manager) isLeader() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leading
}

// tryLead takes or keeps the leadership; a manager that gains it starts
// watching the hosts, one that loses it stops.
func (m *Manager) tryLead(ctx context.Context) {
	led, err := m.st.TryLead(ctx, leaderName, m.id, m.cfg.Lease)
	if err != nil {
		m.log.Warn("leadership", "err", err)
		led = false
	}
	m.mu.Lock()
	if m.closed || led == m.leading {
		m.mu.Unlock()
		return
	}
	m.leading = led
	if !led {
		m.log.Info("no longer leading", "instance", m.id)
		m.stopLead()
		m.mu.Unlock()
		return
	}
	lctx, cancel := context.WithCancel(m.ctx)
	m.stopLead, m.leadContext = cancel, lctx
	m.mu.Unlock()
	m.log.Info("leading: watching the hosts", "instance", m.id)
	// One read of every VM serves the first comparison with each host.
	byHost := map[string][]store.VM{}
	if vms, err := m.st.VMs(ctx, store.VMFilter{}); err == nil {
		for _, v := range vms {
			byHost[v.HostID] = append(byHost[v.HostID], v)
		}
	} else {
		byHost = nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leading || m.leadContext != lctx {
		return
	}
	for id, hc := range m.hosts {
		var first *[]store.VM
		if byHost != nil {
			recs := byHost[id]
			first = &recs
		}
		m.watchHost(lctx, hc, first)
	}
}

// refreshHosts picks up hosts other managers added or removed.
func (m *Manager) refreshHosts(ctx context.Context) {
	hosts, err := m.st.Hosts(ctx, "")
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for _, h := range hosts {
		seen[h.ID] = true
		hc := m.hosts[h.ID]
		if hc == nil {
			hc = newHostConn(h)
			m.hosts[h.ID] = hc
		} else {
			hc.mu.Lock()
			hc.rec = h
			hc.mu.Unlock()
		}
		if m.leading && m.leadContext != nil {
			m.watchHost(m.leadContext, hc, nil)
		}
	}
	for id, hc := range m.hosts {
		if !seen[id] {
			delete(m.hosts, id)
			go hc.close()
		}
	}
}

func (m *Manager) leaderLoop() {
	t := time.NewTicker(m.cfg.Lease / 3)
	defer t.Stop()
	var lastRefresh, lastOptimize time.Time
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Lease/3)
			m.tryLead(ctx)
			// Every manager keeps its list of hosts current (hosts other
			// managers added or removed); the leader watches new ones.
			m.refreshHosts(ctx)
			cancel()
			if !m.isLeader() {
				continue
			}
			// The leader's periodic work, one manager doing it for all.
			now := time.Now()
			if m.cfg.RefreshEvery > 0 && m.cfg.Library != nil && now.Sub(lastRefresh) >= m.cfg.RefreshEvery {
				lastRefresh = now
				ctx, cancel := context.WithTimeout(m.ctx, m.cfg.RefreshEvery)
				if _, err := m.cfg.Library.Refresh(ctx); err != nil {
					m.log.Warn("library refresh", "err", err)
				}
				cancel()
			}
			if m.cfg.OptimizeEvery > 0 && now.Sub(lastOptimize) >= m.cfg.OptimizeEvery {
				lastOptimize = now
				ctx, cancel := context.WithTimeout(m.ctx, m.cfg.CallTimeout)
				if err := m.optimizeAll(ctx); err != nil {
					m.log.Warn("periodic optimization", "err", err)
				}
				cancel()
			}
		}
	}
}

// optimizeAll queues an Optimize job for every group with hosts that has
// none queued or running.
func (m *Manager) optimizeAll(ctx context.Context) error {
	groups, err := m.st.Groups(ctx)
	if err != nil {
		return err
	}
	busy := map[string]bool{}
	for _, st := range []store.JobState{store.JobQueued, store.JobRunning} {
		js, err := m.st.Jobs(ctx, store.JobFilter{State: st, Kind: KindOptimize})
		if err != nil {
			return err
		}
		for _, j := range js {
			var in OptimizeSpec
			if json.Unmarshal(j.Input, &in) == nil {
				busy[in.Group] = true
			}
		}
	}
	for _, g := range groups {
		if busy[g.ID] {
			continue
		}
		if hs, err := m.st.Hosts(ctx, g.ID); err != nil || len(hs) < 2 {
			continue
		}
		if _, err := m.Optimize(ctx, OptimizeSpec{Group: g.ID, User: "vmm:" + m.id}); err != nil {
			return err
		}
	}
	return nil
}

// WaitSynced waits until the manager, when it leads, has compared the
// inventory with every host once (hosts that did not answer included).
// A manager that does not lead returns at once.
func (m *Manager) WaitSynced(ctx context.Context) error {
	m.mu.Lock()
	if !m.leading {
		m.mu.Unlock()
		return nil
	}
	conns := slices.Collect(maps.Values(m.hosts))
	m.mu.Unlock()
	for _, hc := range conns {
		select {
		case <-hc.synced:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
