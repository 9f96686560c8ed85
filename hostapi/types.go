package hostapi

import (
	"fmt"
	"time"
)

// HostInfo is what a host is and what it has. Units: CPU in cores and MHz,
// memory and storage in bytes.
type HostInfo struct {
	// ID is stable for the host (libvirt's host UUID, the simulator's
	// name); Name is what people call it (its host name).
	ID, Name string
	// Hypervisor is the kind ("kvm", "qemu", "hyper-v", "sim") and
	// HypervisorVersion its version.
	Hypervisor, HypervisorVersion string

	CPUCores int     // physical cores (or logical CPUs when that is all the host says)
	CPUMHz   float64 // clock of one core
	// CPUUsed is the CPU the host's VMs use now, in MHz (0 when the driver
	// cannot tell).
	CPUUsed float64

	MemoryTotal, MemoryFree int64

	Pools    []Pool
	Networks []string
	// Formats lists the disk formats the host runs VMs from ("qcow2",
	// "raw", "vhd", "vhdx"); CopyImage converts others into the first.
	Formats []string
}

// CPUTotal is the host's CPU capacity in MHz.
func (h *HostInfo) CPUTotal() float64 { return float64(h.CPUCores) * h.CPUMHz }

// A Pool is a place for disks on a host.
type Pool struct {
	Name           string
	Capacity, Free int64
}

// State is a VM's power state.
type State int

// VM states.
const (
	StateUnknown State = iota
	StateStopped       // defined, not running
	StateRunning
	StatePaused   // frozen in memory
	StateShutdown // shutting down
	StateCrashed
)

var stateNames = [...]string{"unknown", "stopped", "running", "paused", "shutting down", "crashed"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// A VMSpec is what CreateVM defines.
type VMSpec struct {
	// Name is the VM's name, unique on the host.
	Name   string
	VCPUs  int
	Memory int64 // bytes
	// Disks, in the order the guest sees them.
	Disks []DiskRef
	NICs  []NIC
	// ISO, when set, is a CD-ROM image (a path on the host).
	ISO string
	// Boot is the boot order: "disk", "cdrom", "network"; nil means disk,
	// then CD-ROM.
	Boot []string
	// Labels are the caller's key-value metadata, kept with the VM.
	Labels map[string]string
}

// A DiskRef attaches a disk to a VM: a disk of a pool, or a path.
type DiskRef struct {
	Pool, Name string // a disk of the host's pool
	Path       string // or a path on the host
	ReadOnly   bool
}

// A NIC connects a VM to a host network.
type NIC struct {
	Network string
	MAC     string // empty: the driver chooses
}

// VMInfo is a VM as the host sees it.
type VMInfo struct {
	ID    string // stable: the hypervisor's UUID
	Name  string
	State State
	VCPUs int
	// Memory is the VM's memory in bytes.
	Memory int64
	Disks  []DiskRef
	NICs   []NIC
	Labels map[string]string
	// Console is the address of the VM's graphical console while it runs,
	// as a URL ("vnc://127.0.0.1:5901"); "" when the VM is not running or
	// has no console. A paused or shutting-down VM keeps the console it had
	// while running.
	Console string
}

// VMStats is a VM's use at one time.
type VMStats struct {
	Time time.Time
	// CPUTime is the CPU time the VM used since it started, and CPUMHz its
	// use now (averaged over the driver's last sampling interval).
	CPUTime    time.Duration
	CPUMHz     float64
	MemoryUsed int64
	// Disk and network counters since the VM started.
	DiskReadBytes, DiskWriteBytes int64
	NetRxBytes, NetTxBytes        int64
}

// A DiskSpec describes a disk to create.
type DiskSpec struct {
	Pool, Name string
	// Format is the disk's format ("qcow2", "raw", "vhd", "vhdx"); empty
	// means the host's first.
	Format string
	// Size is the virtual size in bytes (ignored for a differencing disk,
	// which has its parent's).
	Size int64
	// Parent, when set, makes a differencing disk over that disk of the
	// same pool.
	Parent string
}

// DiskInfo is a disk of a host.
type DiskInfo struct {
	Pool, Name, Path string
	Format           string
	Size             int64 // virtual size, bytes
	Allocated        int64 // bytes used on the host
	Parent           string
}

// A Checkpoint is a recorded state of a VM.
type Checkpoint struct {
	Name    string
	Created time.Time
	// Memory says whether the checkpoint holds the running VM's memory
	// (reverting resumes it running) or only its disks.
	Memory bool
}

// EventKind says what happened to a VM.
type EventKind int

// Event kinds.
const (
	EventDefined EventKind = iota + 1
	EventStarted
	EventStopped
	EventPaused
	EventResumed
	EventDeleted
	EventMigratedIn  // it arrived on this host
	EventMigratedOut // it left this host
	EventCrashed
	EventCheckpoint // a checkpoint was created, reverted or deleted
)

var eventNames = [...]string{"", "defined", "started", "stopped", "paused", "resumed", "deleted", "migrated in", "migrated out", "crashed", "checkpoint"}

func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// An Event is a change of a VM on a host.
type Event struct {
	Time   time.Time
	Host   string // HostInfo.ID
	VM     string // VMInfo.ID
	VMName string
	Kind   EventKind
	// State is the VM's state after the event (StateUnknown once
	// deleted or migrated out).
	State State
}

// A Capability is something a driver may or may not do.
type Capability int

// Capabilities.
const (
	LiveMigration Capability = iota + 1
	// StorageMigration: Migrate with WithStorage.
	StorageMigration
	Checkpoints
	// MemoryCheckpoints: checkpoints of a running VM hold its memory.
	MemoryCheckpoints
	DifferencingDisks
	Pause
	GuestShutdown
	// VHDDisks: the host runs VMs from VHD/VHDX disks as they are. Without
	// it, CopyImage converts them (QEMU cannot save or live-migrate a guest
	// whose disk is in the vpc format).
	VHDDisks
	Events
)

var capNames = [...]string{"", "live migration", "storage migration", "checkpoints", "memory checkpoints", "differencing disks", "pause", "guest shutdown", "VHD disks", "events"}

func (c Capability) String() string {
	if c > 0 && int(c) < len(capNames) {
		return capNames[c]
	}
	return fmt.Sprintf("Capability(%d)", int(c))
}
