package sim_test

import (
	"testing"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/hostapitest"
	"github.com/vmmkit/vmmkit/hostapi/sim"
)

func tinySpec(name string) hostapi.VMSpec {
	return hostapi.VMSpec{
		Name:   name,
		VCPUs:  1,
		Memory: 64 << 20,
		NICs:   []hostapi.NIC{{Network: "default"}},
	}
}

func newFleet(t testing.TB, cfg sim.Config) *sim.Fleet {
	t.Helper()
	f, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// conformance runs the suite on hosts a and b of a fleet of cfg, with
// faults on both.
func conformance(t *testing.T, cfg sim.Config, faults sim.Faults, shutdownTimeout time.Duration) {
	cfg.Hosts = []sim.HostConfig{{Name: "a"}, {Name: "b"}}
	f := newFleet(t, cfg)
	f.Host("a").SetFaults(faults)
	f.Host("b").SetFaults(faults)
	img := hostapi.Image{Name: "zeros.raw", Format: "raw", Size: 5<<20 + 7, Open: zeros(5<<20 + 7)}
	hostapitest.Run(t, func(t *testing.T) *hostapitest.Setup {
		return &hostapitest.Setup{
			Driver: f.Host("a"),
			Peer:   f.Host("b"),
			Spec:   tinySpec,
			Pool:   "default",
			Image:  &img,

			ShutdownTimeout: shutdownTimeout,
		}
	})
}

func TestConformance(t *testing.T) {
	conformance(t, sim.Config{}, sim.Faults{}, 0)
}

// TestConformanceTimed runs the suite with operations a thousandth of
// their real durations, so that they wait on the clock.
func TestConformanceTimed(t *testing.T) {
	conformance(t, sim.Config{TimeScale: 0.001}, sim.Faults{}, 0)
}

// TestConformanceIgnoringGuest runs the suite with guests that ignore
// Shutdown, which the suite accepts by its rule: Shutdown returns ctx's
// deadline error and the VM is powered off.
func TestConformanceIgnoringGuest(t *testing.T) {
	conformance(t, sim.Config{}, sim.Faults{IgnoreShutdown: true}, 10*time.Millisecond)
}
