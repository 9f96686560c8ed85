package sim

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
)

// Config describes a simulated fleet. Zero fields mean the defaults given
// with each field.
type Config struct {
	// Hosts lists hosts by their own capacities; a zero field of a
	// HostConfig takes Template's value, then the default.
	Hosts []HostConfig
	// Count adds that many hosts after Hosts, named "host1", "host2", ...
	// with Template's capacities.
	Count int
	// Template holds the capacities of the hosts Count adds and the
	// defaults of those in Hosts.
	Template HostConfig

	// Clock is the fleet's time; nil means RealClock.
	Clock Clock
	// TimeScale multiplies the realistic duration of every operation
	// (see the package documentation): 1 is real speed, 0.001 a thousand
	// times faster, 0 instant (no Sleep at all).
	TimeScale float64
	// Load is the fraction (0 to 1) of its vCPUs a running VM keeps busy
	// at a time; it is called with the host's lock held and must not
	// modify vm or call the simulator. Nil means 0.2 for every VM.
	Load func(vm *hostapi.VMInfo, now time.Time) float64
	// DiskSpeed is how fast a host copies disks (CopyImage, storage
	// migration), in bytes per second of simulated time; 0 means 200 MB/s.
	// Faults.DiskSpeed overrides it for a slow disk.
	DiskSpeed int64
	// NetworkSpeed is how fast migrations move memory, in bytes per
	// second of simulated time; 0 means 1 GiB/s.
	NetworkSpeed int64
}

// HostConfig is the capacity of one simulated host.
type HostConfig struct {
	// Name is the host's name and ID, unique in the fleet.
	Name string
	// Cores is the number of cores (default 32), MHz the clock of one
	// (default 2600).
	Cores int
	MHz   float64
	// Memory in bytes (default 256 GiB).
	Memory int64
	// Pools are the host's storage pools (default one pool, "default",
	// of 4 TiB).
	Pools []PoolConfig
	// Networks are the host's networks (default "default").
	Networks []string
	// Formats are the disk formats the host runs VMs from, the first
	// preferred (default qcow2, raw, vhd, vhdx).
	Formats []string
	// Unsupported lists capabilities the host lacks (default none): the
	// operations behind them fail with hostapi.ErrUnsupported.
	Unsupported []hostapi.Capability
}

// A PoolConfig is a storage pool of a host.
type PoolConfig struct {
	Name     string
	Capacity int64 // bytes
}

// Default capacities of a simulated host.
const (
	DefaultCores    = 32
	DefaultMHz      = 2600
	DefaultMemory   = 256 << 30
	DefaultPoolSize = 4 << 40
)

const (
	defaultLoad         = 0.2
	defaultDiskSpeed    = 200e6
	defaultNetworkSpeed = 1 << 30
)

// A Fleet is a set of simulated hosts sharing one clock. Its hosts can
// migrate VMs to one another. A Fleet is safe for concurrent use; it holds
// no goroutines and needs no closing.
type Fleet struct {
	cfg    Config
	clock  Clock
	hosts  []*host
	byName map[string]*host
	seq    atomic.Uint64 // VM IDs
}

// New returns a fleet of the hosts cfg describes. It fails when two hosts
// have one name or a host's capacities are negative.
func New(cfg Config) (*Fleet, error) {
	f := &Fleet{cfg: cfg, clock: cfg.Clock}
	if f.clock == nil {
		f.clock = realClock{}
	}
	if cfg.TimeScale < 0 || cfg.DiskSpeed < 0 || cfg.NetworkSpeed < 0 || cfg.Count < 0 {
		return nil, errors.New("sim: negative TimeScale, DiskSpeed, NetworkSpeed or Count")
	}
	f.cfg.Load = cfg.Load
	if f.cfg.DiskSpeed == 0 {
		f.cfg.DiskSpeed = defaultDiskSpeed
	}
	if f.cfg.NetworkSpeed == 0 {
		f.cfg.NetworkSpeed = defaultNetworkSpeed
	}
	tmpl := withDefaults(cfg.Template, HostConfig{})
	n := len(cfg.Hosts) + cfg.Count
	f.hosts = make([]*host, 0, n)
	f.byName = make(map[string]*host, n)
	add := func(hc HostConfig) error {
		if hc.Name == "" {
			return errors.New("sim: a host without a name")
		}
		if _, dup := f.byName[hc.Name]; dup {
			return fmt.Errorf("sim: two hosts named %q", hc.Name)
		}
		if hc.Cores < 0 || hc.MHz < 0 || hc.Memory < 0 {
			return fmt.Errorf("sim: host %q: negative capacity", hc.Name)
		}
		h := newHost(f, hc)
		f.hosts = append(f.hosts, h)
		f.byName[hc.Name] = h
		return nil
	}
	for _, hc := range cfg.Hosts {
		if err := add(withDefaults(hc, tmpl)); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Count {
		hc := tmpl
		hc.Name = fmt.Sprintf("host%d", i+1)
		if err := add(hc); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func withDefaults(hc, d HostConfig) HostConfig {
	if hc.Cores == 0 {
		hc.Cores = d.Cores
		if hc.Cores == 0 {
			hc.Cores = DefaultCores
		}
	}
	if hc.MHz == 0 {
		hc.MHz = d.MHz
		if hc.MHz == 0 {
			hc.MHz = DefaultMHz
		}
	}
	if hc.Memory == 0 {
		hc.Memory = d.Memory
		if hc.Memory == 0 {
			hc.Memory = DefaultMemory
		}
	}
	if hc.Pools == nil {
		hc.Pools = d.Pools
		if hc.Pools == nil {
			hc.Pools = []PoolConfig{{Name: "default", Capacity: DefaultPoolSize}}
		}
	}
	if hc.Networks == nil {
		hc.Networks = d.Networks
		if hc.Networks == nil {
			hc.Networks = []string{"default"}
		}
	}
	if hc.Formats == nil {
		hc.Formats = d.Formats
		if hc.Formats == nil {
			hc.Formats = []string{"qcow2", "raw", "vhd", "vhdx"}
		}
	}
	if hc.Unsupported == nil {
		hc.Unsupported = d.Unsupported
	}
	return hc
}

// Host returns a new connection to the named host, or nil when the fleet
// has none. Each call returns a connection of its own, which its Close
// closes; the host and its VMs live on.
func (f *Fleet) Host(name string) *Host {
	h := f.byName[name]
	if h == nil {
		return nil
	}
	return &Host{h: h}
}

// Hosts returns a new connection to every host, in the order of the
// Config (Hosts, then those Count added).
func (f *Fleet) Hosts() []*Host {
	hs := make([]*Host, len(f.hosts))
	conns := make([]Host, len(f.hosts))
	for i, h := range f.hosts {
		conns[i].h = h
		hs[i] = &conns[i]
	}
	return hs
}

// Names returns the hosts' names, in the order of Hosts.
func (f *Fleet) Names() []string {
	names := make([]string, len(f.hosts))
	for i, h := range f.hosts {
		names[i] = h.name
	}
	return names
}

// Clock returns the fleet's clock.
func (f *Fleet) Clock() Clock { return f.clock }

func (f *Fleet) newID() string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", f.seq.Add(1))
}

func (f *Fleet) load(vm *hostapi.VMInfo, now time.Time) float64 {
	if f.cfg.Load == nil {
		return defaultLoad
	}
	l := f.cfg.Load(vm, now)
	if !(l >= 0) { // NaN too
		return 0
	}
	return min(l, 1)
}

// Realistic durations of operations at TimeScale 1.
const (
	durDefine     = 100 * time.Millisecond
	durStart      = 2 * time.Second
	durShutdown   = 8 * time.Second
	durPowerOff   = 500 * time.Millisecond
	durPause      = 200 * time.Millisecond
	durReboot     = 5 * time.Second
	durDelete     = 300 * time.Millisecond
	durCheckpoint = time.Second
	durDisk       = 200 * time.Millisecond
	durMigrate    = time.Second // set-up and switch-over, besides the bytes moved
)
