package sim

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
)

// A Host is a connection to one simulated host of a Fleet, and a
// hostapi.Driver. Several connections to one host see the same VMs,
// disks and faults; Close closes only its own connection. A Host is safe
// for concurrent use.
type Host struct {
	h      *host
	closed atomic.Bool
}

var _ hostapi.Driver = (*Host)(nil)

// Faults are the failures a simulated host injects. The zero value
// injects none.
type Faults struct {
	// Down makes every call fail with hostapi.ErrHostUnreachable, ends
	// event streams with it, and fails operations in progress when they
	// next check (a migration, a copy) — a host that went away.
	Down bool
	// FailMigrationAt, between 0 and 1, makes migrations out of this host
	// fail with hostapi.ErrHostUnreachable once that fraction of the
	// bytes has moved; the VM keeps running on this host. 0 means never.
	FailMigrationAt float64
	// DiskSpeed, when not 0, is the host's disk speed in bytes per second
	// (a slow disk), instead of Config.DiskSpeed.
	DiskSpeed int64
	// FullPools names pools that refuse every new disk with
	// hostapi.ErrCapacity, whatever their free space.
	FullPools []string
	// IgnoreShutdown makes guests ignore Shutdown, which then waits until
	// its ctx is done, as a guest without ACPI support would.
	IgnoreShutdown bool
}

// host is the state of a simulated host, shared by its connections.
type host struct {
	fleet    *Fleet
	name     string
	cores    int
	mhz      float64
	memory   int64
	networks []string
	formats  []string
	missing  uint64 // bit c set: Capability c unsupported

	mu       sync.Mutex
	vms      map[string]*vm // by ID
	names    map[string]*vm // by name
	incoming map[string]int64
	reserved int64       // memory of incoming migrations
	displays map[int]*vm // VNC display numbers of active VMs
	pools    []*pool
	faults   Faults
	subs     map[*sub]struct{}
}

func newHost(f *Fleet, hc HostConfig) *host {
	h := &host{
		fleet:    f,
		name:     hc.Name,
		cores:    hc.Cores,
		mhz:      hc.MHz,
		memory:   hc.Memory,
		networks: slices.Clone(hc.Networks),
		formats:  slices.Clone(hc.Formats),
		pools:    make([]*pool, len(hc.Pools)),
	}
	for i, pc := range hc.Pools {
		h.pools[i] = &pool{name: pc.Name, capacity: pc.Capacity}
	}
	for _, c := range hc.Unsupported {
		h.missing |= 1 << uint(c)
	}
	return h
}

// Name returns the host's name, which is also its ID.
func (c *Host) Name() string { return c.h.name }

// SetFaults sets the faults the host injects from now on, for every
// connection to it. Setting Down ends every event stream of the host with
// hostapi.ErrHostUnreachable.
func (c *Host) SetFaults(f Faults) {
	h := c.h
	f.FullPools = slices.Clone(f.FullPools)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = f
	if f.Down {
		for s := range h.subs {
			s.end(hostapi.ErrHostUnreachable)
		}
		clear(h.subs)
	}
}

// Faults returns the faults the host injects.
func (c *Host) Faults() Faults {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	f := c.h.faults
	f.FullPools = slices.Clone(f.FullPools)
	return f
}

// enter checks what every call checks first: the connection is open, ctx
// is not done, the host is up.
func (c *Host) enter(ctx context.Context) error {
	if c.closed.Load() {
		return hostapi.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	return c.h.downErr()
}

// need is enter, then ErrUnsupported without capability cp.
func (c *Host) need(ctx context.Context, cp hostapi.Capability) error {
	if err := c.enter(ctx); err != nil {
		return err
	}
	if !c.h.supports(cp) {
		return c.h.unsupported(cp)
	}
	return nil
}

// downErr reports a host that is down; h.mu is held.
func (h *host) downErr() error {
	if h.faults.Down {
		return hostapi.ErrHostUnreachable
	}
	return nil
}

func (c *Host) err(op, vm string, err error) error {
	return hostapi.NewOpError(op, c.h.name, vm, err)
}

func (h *host) supports(cp hostapi.Capability) bool {
	return cp > 0 && cp < 64 && h.missing&(1<<uint(cp)) == 0
}

func (h *host) unsupported(cp hostapi.Capability) error {
	return fmt.Errorf("%w: %v", hostapi.ErrUnsupported, cp)
}

// wait lets simulated time d (at TimeScale 1) pass, or returns ctx.Err().
func (h *host) wait(ctx context.Context, d time.Duration) error {
	scale := h.fleet.cfg.TimeScale
	if scale == 0 || d <= 0 {
		return ctx.Err()
	}
	return h.fleet.clock.Sleep(ctx, time.Duration(float64(d)*scale))
}

func (h *host) now() time.Time { return h.fleet.clock.Now() }

// Host returns the host's facts and its use now: MemoryFree is Memory
// less the memory of running, paused and arriving VMs; CPUUsed is the sum
// of the running VMs' loads; a pool's Free is its capacity less its disks'
// allocations.
func (c *Host) Host(ctx context.Context) (*hostapi.HostInfo, error) {
	if err := c.enter(ctx); err != nil {
		return nil, c.err("host", "", err)
	}
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	info := &hostapi.HostInfo{
		ID:                h.name,
		Name:              h.name,
		Hypervisor:        "sim",
		HypervisorVersion: Version,
		CPUCores:          h.cores,
		CPUMHz:            h.mhz,
		CPUUsed:           h.cpuUsed(),
		MemoryTotal:       h.memory,
		MemoryFree:        h.memory - h.memUsed(),
		Pools:             make([]hostapi.Pool, len(h.pools)),
		Networks:          slices.Clone(h.networks),
		Formats:           slices.Clone(h.formats),
	}
	for i, p := range h.pools {
		info.Pools[i] = hostapi.Pool{Name: p.name, Capacity: p.capacity, Free: p.free()}
	}
	return info, nil
}

// Version is the simulator's HypervisorVersion.
const Version = "1.0"

// memUsed is the memory held by VMs; h.mu is held.
func (h *host) memUsed() int64 {
	used := h.reserved
	for _, v := range h.vms {
		if v.active() {
			used += v.info.Memory
		}
	}
	return used
}

// cpuUsed is the running VMs' CPU in MHz; h.mu is held.
func (h *host) cpuUsed() float64 {
	var used float64
	now := h.now()
	for _, v := range h.vms {
		used += h.vmMHz(v, now)
	}
	return used
}

func (h *host) vmMHz(v *vm, now time.Time) float64 {
	if !v.running() {
		return 0
	}
	return h.fleet.load(&v.info, now) * float64(v.info.VCPUs) * h.mhz
}

// Supports reports whether the host can do c: everything but the
// capabilities its HostConfig.Unsupported lists.
func (c *Host) Supports(cp hostapi.Capability) bool { return c.h.supports(cp) }

// Close closes the connection: calls after it fail with
// hostapi.ErrClosed and its event streams end with that error. The host
// and its VMs are not affected. Closing twice returns ErrClosed.
func (c *Host) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.err("close", "", hostapi.ErrClosed)
	}
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.conn == c {
			s.end(hostapi.ErrClosed)
			delete(h.subs, s)
		}
	}
	return nil
}
