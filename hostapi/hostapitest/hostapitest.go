// Package hostapitest is the conformance suite every hostapi.Driver passes:
// Run runs one set of subtests (host facts, the lifecycle and its invalid
// transitions, the errors, resource accounting, checkpoints, disks and
// image copies, events, migration, concurrent operations, cancellation,
// Close) against a driver.
//
// A driver's package calls it from a test named TestConformance:
//
//	func TestConformance(t *testing.T) {
//		hostapitest.Run(t, func(t *testing.T) *hostapitest.Setup {
//			return &hostapitest.Setup{Driver: d, Peer: peer, Spec: tinyGuest, Pool: "default"}
//		})
//	}
//
// # What the suite expects
//
// Everything the hostapi package documents for a Driver, and these rules
// where the contract leaves room:
//
//   - Every error is an *hostapi.OpError with Op and Host set, matching the
//     documented sentinel (or context.Canceled) with errors.Is.
//   - A method called with a ctx that is already done fails with ctx's
//     error and changes nothing.
//   - Methods are synchronous: when Start returns the VM runs, when
//     PowerOff returns it is stopped, and VM reports so at once.
//   - Shutdown either stops the VM within Setup.ShutdownTimeout and
//     returns nil, or returns ctx's deadline error; a tiny guest may
//     ignore ACPI, and then the suite powers it off (PowerOff may return
//     ErrInvalidState if the guest stopped meanwhile) and expects it
//     stopped.
//   - A running VM's Console is a URL vnc://host:port, the same from
//     Start until it stops (through Pause, Resume and Reboot); a stopped
//     VM's is "".
//   - Events yields, per VM, at least the kinds of the transitions the
//     suite makes, in order; a driver may yield more (libvirt's
//     "resumed" after a start, say). Each event's Host is HostInfo.ID.
//   - After Close every method fails with ErrClosed, and a running Events
//     sequence ends.
//
// # Names and cleanup
//
// The suite names every VM and disk "hostapitest-" followed by what it
// tests and a random suffix, and removes them with t.Cleanup (VMs from
// Driver and Peer, powered off first) even when a subtest fails. It runs
// its subtests one after another; the Concurrent subtest runs operations
// in parallel on VMs of its own. The steps of Lifecycle and
// InvalidTransitions take one VM from state to state, so run each of
// them whole (-run 'TestConformance/Lifecycle$', not one of its steps).
//
// # Speed
//
// The suite reuses a VM for several checks and never sleeps to wait for
// a state: it relies on the synchronous contract, and polls with a
// deadline only for what is asynchronous by nature (events). Against
// libvirt under TCG it starts about ten guests and migrates two.
package hostapitest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
)

// Setup is what the suite needs from a driver under test.
type Setup struct {
	// Driver is the host under test. The suite creates VMs and disks whose
	// names start with "hostapitest-" and removes them when done. The
	// Close subtest, which runs last, closes it.
	Driver hostapi.Driver
	// Peer, when set, is a second host of the same kind, for the migration
	// subtests (skipped without it).
	Peer hostapi.Driver
	// Spec returns a spec named name that boots on the host: a tiny guest.
	// The suite deletes the VMs it makes from it with nil DeleteOptions.
	Spec func(name string) hostapi.VMSpec
	// Pool is a storage pool of the host (and of Peer) for disk subtests.
	Pool string
	// Image, when set, is an image CopyImage can copy into Pool.
	Image *hostapi.Image

	// MemorySlack is how far the host's free memory may move between two
	// reads for reasons other than the suite's VMs (other processes, a
	// guest that has not touched all its memory), in bytes. 0 means the
	// driver accounts exactly, as the simulator does: free memory drops by
	// a running VM's memory and comes back when it stops, and CPUUsed
	// rises while it runs and comes back after.
	MemorySlack int64
	// ShutdownTimeout is how long Shutdown's subtests let a guest shut
	// down; 0 means 5 s.
	ShutdownTimeout time.Duration
}

// Run runs the suite; setup is called once per subtest that needs a host
// (it may return the same drivers each time, and may register cleanups
// with t.Cleanup).
func Run(t *testing.T, setup func(t *testing.T) *Setup) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s *Setup)
	}{
		{"Host", testHost},
		{"Lifecycle", testLifecycle},
		{"InvalidTransitions", testInvalidTransitions},
		{"NotFound", testNotFound},
		{"Exists", testExists},
		{"InvalidSpec", testInvalidSpec},
		{"Resources", testResources},
		{"Checkpoints", testCheckpoints},
		{"Disks", testDisks},
		{"CopyImage", testCopyImage},
		{"Migration", testMigration},
		{"Concurrent", testConcurrent},
		{"Cancellation", testCancellation},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := setup(t)
			if s == nil || s.Driver == nil || s.Spec == nil {
				t.Fatal("setup returned no Driver or Spec")
			}
			tc.run(t, s)
		})
	}
}

// opTimeout bounds each subtest, so that a hung driver fails instead of
// blocking the test binary until its own deadline.
const opTimeout = 3 * time.Minute

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newName returns a name for a VM or disk of the suite: "hostapitest-",
// what, and a random suffix.
func newName(what string) string {
	return "hostapitest-" + what + "-" + strconv.FormatUint(rand.Uint64()&0xffffffffff, 36)
}

// newVM defines a VM from s.Spec and removes it (from Driver and Peer)
// when t ends.
func newVM(t *testing.T, s *Setup, what string) *hostapi.VMInfo {
	t.Helper()
	spec := s.Spec(newName(what))
	cleanupVM(t, s, spec.Name)
	vm, err := s.Driver.CreateVM(testCtx(t), spec)
	if err != nil {
		t.Fatalf("CreateVM(%s): %v", spec.Name, err)
	}
	if vm.ID == "" || vm.Name != spec.Name {
		t.Fatalf("CreateVM(%s): got ID %q name %q, want an ID and the spec's name", spec.Name, vm.ID, vm.Name)
	}
	return vm
}

// cleanupVM removes VM name from Driver and Peer when t ends, whatever
// state it is in.
func cleanupVM(t *testing.T, s *Setup, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, d := range []hostapi.Driver{s.Driver, s.Peer} {
			if d == nil {
				continue
			}
			vm, err := d.VM(ctx, name)
			if err != nil {
				continue
			}
			if vm.State != hostapi.StateStopped && vm.State != hostapi.StateCrashed {
				_ = d.PowerOff(ctx, vm.ID)
			}
			if err := d.DeleteVM(ctx, vm.ID, nil); err != nil && !errors.Is(err, hostapi.ErrNotFound) {
				t.Logf("cleanup: delete VM %s: %v", name, err)
			}
		}
	})
}

// cleanupDisk removes disk name of pool from d when t ends.
func cleanupDisk(t *testing.T, d hostapi.Driver, pool, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := d.DeleteDisk(ctx, pool, name); err != nil && !errors.Is(err, hostapi.ErrNotFound) {
			t.Logf("cleanup: delete disk %s/%s: %v", pool, name, err)
		}
	})
}

// wantErr checks the error contract: err is an *hostapi.OpError with Op
// and Host set that matches target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: got no error, want %v", what, target)
		return
	}
	checkOpError(t, what, err)
	if !errors.Is(err, target) {
		t.Errorf("%s: got %v, want an error matching %v", what, err, target)
	}
}

func checkOpError(t *testing.T, what string, err error) {
	t.Helper()
	var oe *hostapi.OpError
	switch {
	case !errors.As(err, &oe):
		t.Errorf("%s: got %T (%v), want an *hostapi.OpError", what, err, err)
	case oe.Op == "" || oe.Host == "" || oe.Err == nil:
		t.Errorf("%s: got OpError{Op: %q, Host: %q, Err: %v}, want Op, Host and Err set", what, oe.Op, oe.Host, oe.Err)
	}
}

// must fails t when err is not nil.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// state returns VM id's state on d.
func state(t *testing.T, d hostapi.Driver, id string) hostapi.State {
	t.Helper()
	vm, err := d.VM(testCtx(t), id)
	if err != nil {
		t.Fatalf("VM(%s): %v", id, err)
	}
	return vm.State
}

func wantState(t *testing.T, d hostapi.Driver, id string, want hostapi.State) {
	t.Helper()
	if got := state(t, d, id); got != want {
		t.Errorf("VM %s: got state %v, want %v", id, got, want)
	}
}

// wantGone checks that d has no VM id.
func wantGone(t *testing.T, d hostapi.Driver, id string) {
	t.Helper()
	_, err := d.VM(testCtx(t), id)
	wantErr(t, fmt.Sprintf("VM(%s) after it left", id), err, hostapi.ErrNotFound)
	vms, err := d.VMs(testCtx(t))
	must(t, "VMs", err)
	if slices.ContainsFunc(vms, func(v hostapi.VMInfo) bool { return v.ID == id || v.Name == id }) {
		t.Errorf("VMs: still lists %s", id)
	}
}

// shutdown stops a running VM by Shutdown, under the rule the package
// documentation states, and checks that it is stopped.
func shutdown(t *testing.T, s *Setup, d hostapi.Driver, id string) {
	t.Helper()
	if !d.Supports(hostapi.GuestShutdown) {
		wantErr(t, "Shutdown without GuestShutdown", d.Shutdown(testCtx(t), id), hostapi.ErrUnsupported)
		must(t, "PowerOff", d.PowerOff(testCtx(t), id))
		wantState(t, d, id, hostapi.StateStopped)
		return
	}
	timeout := s.ShutdownTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(testCtx(t), timeout)
	err := d.Shutdown(ctx, id)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		checkOpError(t, "Shutdown past its deadline", err)
		t.Logf("the guest did not shut down in %v (%v); powering it off", timeout, err)
		if err := d.PowerOff(testCtx(t), id); err != nil && !errors.Is(err, hostapi.ErrInvalidState) {
			t.Fatalf("PowerOff after Shutdown's deadline: %v", err)
		}
	default:
		t.Fatalf("Shutdown: %v", err)
	}
	wantState(t, d, id, hostapi.StateStopped)
}
