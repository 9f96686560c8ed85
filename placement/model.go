package placement

import (
	"fmt"
	"math"
)

// A Resource is one dimension of a host's capacity and a VM's demand.
type Resource int

// The resources placement weighs. Units: CPU in MHz (cores × clock), memory
// in MiB, disk in I/O operations per second and MB/s, network in Mb/s.
const (
	CPU Resource = iota
	Memory
	DiskIOPS
	DiskMBps
	Network
	NumResources // the number of resources, for arrays indexed by Resource
)

var resourceNames = [NumResources]string{"cpu", "memory", "disk iops", "disk MB/s", "network"}

func (r Resource) String() string {
	if r < 0 || r >= NumResources {
		return fmt.Sprintf("Resource(%d)", int(r))
	}
	return resourceNames[r]
}

// A Vector holds one amount per resource, indexed by Resource.
type Vector [NumResources]float64

// Add returns v + w.
func (v Vector) Add(w Vector) Vector {
	for i := range v {
		v[i] += w[i]
	}
	return v
}

// Sub returns v - w.
func (v Vector) Sub(w Vector) Vector {
	for i := range v {
		v[i] -= w[i]
	}
	return v
}

// valid reports whether every amount is a finite number, not negative.
func (v Vector) valid() bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
			return false
		}
	}
	return true
}

// HostState says whether a host can take VMs.
type HostState int

// Host states. Only Ready hosts take VMs.
const (
	Ready HostState = iota
	Maintenance
	NotResponding
)

func (s HostState) String() string {
	switch s {
	case Ready:
		return "ready"
	case Maintenance:
		return "in maintenance"
	case NotResponding:
		return "not responding"
	}
	return fmt.Sprintf("HostState(%d)", int(s))
}

// A Host is a virtualization host as placement sees it.
type Host struct {
	ID    string
	Group string // host group; a VM with Group set goes only to its group
	State HostState

	// Cores is the number of physical cores; Capacity[CPU] is the sum of
	// their clocks in MHz.
	Cores    int
	Capacity Vector
	// Used is the host's current use: its VMs and its own overhead.
	Used Vector
	// Reserve is held back for the host itself and never given to VMs: a
	// rating never eats into it. CPU is a fraction of Capacity[CPU] (0.1 =
	// 10 %); the other resources are amounts in their units.
	Reserve Vector

	// Volumes lists the storage a VM's disks can go to.
	Volumes []Volume

	Hypervisor string   // "hyper-v", "kvm", ...
	Formats    []string // disk formats the host runs: "vhd", "vhdx", "qcow2", "raw"
	Features   []string // "live-migration", "nested-virtualization", "gpu", ...
	Labels     map[string]string

	// VMs lists the IDs of the VMs on the host, for affinity rules.
	VMs []string

	// UsedSeries, when set, is the host's use over time (buckets of the
	// same length and start as the VMs' History.Series): Place packs time
	// series against it instead of Used.
	UsedSeries []Vector
}

// A Volume is storage on a host.
type Volume struct {
	Name string
	Free int64 // bytes
}

// A VM is a virtual machine to place.
type VM struct {
	ID     string
	VCPU   int
	Memory float64 // MiB, reserved in full on the host
	// Disk is the storage the VM's disks need on one volume, in bytes.
	Disk   int64
	Format string // disk format of its image: "vhd", "vhdx", ...

	// Expected is what the VM is expected to use: CPU in MHz, disk and
	// network. Memory is taken from the Memory field. A zero CPU means the
	// Config's default (20 % of one of the host's cores).
	Expected Vector
	// History, when set, describes measured use and takes precedence over
	// Expected.
	History *Profile

	Group    string   // required host group, if any
	Features []string // host features required
	Labels   map[string]string

	// Affinity lists VM IDs this VM must share a host with (if they are
	// placed); AntiAffinity lists VM IDs it must not share a host with.
	Affinity     []string
	AntiAffinity []string
}

// A Profile is a VM's measured use.
type Profile struct {
	Mean, P95, Peak Vector
	// Series is the use over time in fixed buckets (for example 5
	// minutes), aligned with the hosts' UsedSeries.
	Series []Vector
}

// Goal is what a host group's placement aims for.
type Goal int

// Goals.
const (
	// LoadBalance spreads VMs so that hosts keep the most headroom.
	LoadBalance Goal = iota
	// Consolidate packs VMs onto as few hosts as possible, so that idle
	// hosts can be turned off (resource maximization).
	Consolidate
)

func (g Goal) String() string {
	if g == Consolidate {
		return "consolidate"
	}
	return "load balance"
}
