// Package sim simulates a fleet of virtualization hosts in memory: each
// host is a hostapi.Driver with cores, memory, storage pools, networks
// and disk formats; VMs hold host memory while they run and a CPU load
// from a model the caller chooses; disks debit their pools; operations
// take realistic durations on a clock tests can drive; and faults can be
// injected. It is the default driver of vmmkit's examples and tests and
// of capacity studies: ten thousand hosts cost a few megabytes and
// milliseconds.
//
//	fleet, err := sim.New(sim.Config{Count: 3})
//	...
//	h := fleet.Host("host1") // a hostapi.Driver
//	vm, err := h.CreateVM(ctx, hostapi.VMSpec{Name: "web01", VCPUs: 2, Memory: 4 << 30})
//
// # Resources
//
// A running, paused or shutting-down VM holds its memory: HostInfo's
// MemoryFree is the host's memory less theirs (and less that of VMs
// migrating in), and Start fails with hostapi.ErrCapacity when it would
// go below zero. A running VM uses Config.Load of its vCPUs (20 % by
// default), which HostInfo.CPUUsed sums and VMStats reports. A new empty
// disk debits its full size from its pool, a differencing disk 1 MiB, a
// copied image the bytes read.
//
// # Consoles
//
// A running, paused or shutting-down VM reports a console
// "vnc://<host name>:<5900+n>" in VMInfo.Console, n the lowest display
// number no other such VM of its host has, as libvirt's autoport gives
// them; it keeps it until it stops, is deleted or migrates (getting one on
// its new host). No server listens there: the address is for callers'
// tests and user interfaces.
//
// # Time
//
// Each operation takes a realistic time multiplied by Config.TimeScale,
// waited for on Config.Clock (ctx can cut it short; the operation then
// changes nothing): define 0.1 s, start 2 s, guest shutdown 8 s, power off
// 0.5 s, pause and resume 0.2 s, reboot 5 s, delete 0.3 s, checkpoints
// 1 s, creating a disk 0.2 s, copying at the disk speed (200 MB/s),
// migrating 1 s plus the memory at 1 GiB/s plus the disks at the disk
// speed. With TimeScale 0, the default, everything is instant and no
// clock is waited on. Tests of timing use a *ManualClock, or the real
// clock inside a testing/synctest bubble.
//
// While an operation runs its VM is busy: another operation on it fails
// with hostapi.ErrInvalidState, except PowerOff during a Shutdown.
// Operations on different VMs run in parallel.
//
// # Faults
//
// Host.SetFaults makes a host unreachable, fail migrations part-way (the
// VM keeps running on the source), copy slowly, refuse disks in chosen
// pools, or ignore guest shutdown. See Faults.
//
// # Migration
//
// Migrate moves a VM between hosts of one Fleet, live or not, with or
// without its storage, and reports progress; see Host.Migrate.
package sim
