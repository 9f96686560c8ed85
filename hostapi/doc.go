// Package hostapi is the contract between vmmkit and virtualization hosts:
// the Driver interface, the records it returns (HostInfo, VMInfo, VMStats,
// DiskInfo, Checkpoint, Event), the Capability values a driver reports and
// the errors it fails with.
//
// Two drivers ship with vmmkit: hostapi/sim, a simulated fleet for
// examples, tests and capacity studies (10 000 hosts are cheap), and
// hostapi/libvirt, real KVM/QEMU hosts through libvirt's RPC protocol.
// Both pass the conformance suite hostapi/hostapitest.
//
// # Writing a driver
//
// A third driver (Hyper-V over WinRM, a cloud API, ...) is a type with the
// Driver methods for one host. What the suite checks, and what callers rely
// on:
//
//   - Every method is synchronous and ctx-first: return when the operation
//     is done on the host (VM reports the new state at once), or with
//     ctx.Err() (wrapped) when ctx is done, and never leave a goroutine
//     behind. A ctx already done fails every call, reads included, and
//     changes nothing.
//   - Fail with an *OpError{Op, Host, VM, Err} whose Err matches one of
//     ErrNotFound, ErrExists, ErrInvalidState, ErrUnsupported,
//     ErrInvalidSpec, ErrCapacity, ErrHostUnreachable or ErrClosed with
//     errors.Is, and keeps the hypervisor's own error in the chain
//     (fmt.Errorf("%w: %w", hostapi.ErrInvalidSpec, err)).
//   - The state machine: CreateVM defines a stopped VM; Start runs a
//     stopped VM; Pause/Resume freeze and thaw a running one; Shutdown and
//     PowerOff stop a running (or paused) one; DeleteVM removes a stopped
//     one. Anything else is ErrInvalidState, and changes nothing.
//   - Report capabilities truthfully with Supports and return
//     ErrUnsupported for the operations behind a missing one.
//   - Retry only idempotent calls (reads, lookups, reconnecting) in one
//     place, with backoff bound to ctx; never repeat a call that changes
//     the host unless you can tell it did not happen.
//   - Events yields one Event per state change the driver causes or
//     observes, in order per VM.
//   - Migrate accepts a destination Driver of the same kind (type-assert
//     it) and leaves the VM running on the source when it fails; the VM
//     keeps its ID on the destination.
//   - After Close, every call fails with ErrClosed and the Events
//     sequences of the Driver end.
//
// Then call hostapitest.Run from a test named TestConformance in the
// driver's package:
//
//	func TestConformance(t *testing.T) {
//		hostapitest.Run(t, func(t *testing.T) *hostapitest.Setup { ... })
//	}
package hostapi
