package hostapitest

import (
	"math"
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
)

// testResources reads the host's free memory and CPU use before a VM
// starts, while it runs (and is paused), and after it stops.
func testResources(t *testing.T, s *Setup) {
	d := s.Driver
	host := func(what string) *hostapi.HostInfo {
		t.Helper()
		h, err := d.Host(testCtx(t))
		must(t, "Host "+what, err)
		if h.MemoryFree < 0 || h.MemoryFree > h.MemoryTotal {
			t.Errorf("Host %s: got %d bytes free of %d", what, h.MemoryFree, h.MemoryTotal)
		}
		if h.CPUUsed < 0 || h.CPUMHz > 0 && h.CPUUsed > h.CPUTotal()+1e-6 {
			t.Errorf("Host %s: got CPUUsed %v MHz of %v", what, h.CPUUsed, h.CPUTotal())
		}
		return h
	}
	exact := s.MemorySlack == 0
	vm := newVM(t, s, "resources")
	before := host("before")

	must(t, "Start", d.Start(testCtx(t), vm.ID))
	running := host("while the VM runs")
	if drop := before.MemoryFree - running.MemoryFree; drop < vm.Memory-s.MemorySlack || exact && drop != vm.Memory {
		t.Errorf("MemoryFree: dropped by %d bytes when a VM of %d started, want %d (slack %d)", drop, vm.Memory, vm.Memory, s.MemorySlack)
	}
	if exact && !(running.CPUUsed > before.CPUUsed) {
		t.Errorf("CPUUsed: got %v MHz while a VM runs, %v before, want more", running.CPUUsed, before.CPUUsed)
	}
	st, err := d.Stats(testCtx(t), vm.ID)
	must(t, "Stats", err)
	if st.MemoryUsed > vm.Memory || st.CPUMHz < 0 || running.CPUMHz > 0 && st.CPUMHz > float64(vm.VCPUs)*running.CPUMHz+1e-6 {
		t.Errorf("Stats: got %d bytes and %v MHz, want at most %d bytes and %d vCPUs' worth", st.MemoryUsed, st.CPUMHz, vm.Memory, vm.VCPUs)
	}

	if d.Supports(hostapi.Pause) {
		must(t, "Pause", d.Pause(testCtx(t), vm.ID))
		paused := host("while the VM is paused")
		if drop := before.MemoryFree - paused.MemoryFree; drop < vm.Memory-s.MemorySlack {
			t.Errorf("MemoryFree: dropped by %d bytes with a paused VM of %d, want the VM's memory held", drop, vm.Memory)
		}
		must(t, "Resume", d.Resume(testCtx(t), vm.ID))
	}

	must(t, "PowerOff", d.PowerOff(testCtx(t), vm.ID))
	after := host("after the VM stopped")
	if diff := after.MemoryFree - before.MemoryFree; diff < -s.MemorySlack || diff > s.MemorySlack {
		t.Errorf("MemoryFree: got %d bytes after the VM stopped, %d before, want them within %d", after.MemoryFree, before.MemoryFree, s.MemorySlack)
	}
	if exact && math.Abs(after.CPUUsed-before.CPUUsed) > 1e-6 {
		t.Errorf("CPUUsed: got %v MHz after the VM stopped, %v before, want the same", after.CPUUsed, before.CPUUsed)
	}
}
