package hostapitest

import (
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
)

// testCheckpoints records a stopped and a running VM, lists, reverts and
// deletes the checkpoints.
func testCheckpoints(t *testing.T, s *Setup) {
	d := s.Driver
	if !d.Supports(hostapi.Checkpoints) {
		t.Skip("no checkpoints")
	}
	vm := newVM(t, s, "checkpoints")
	id := vm.ID
	cpStopped, err := d.CreateCheckpoint(testCtx(t), id, "stopped")
	must(t, "CreateCheckpoint of a stopped VM", err)
	if cpStopped.Name != "stopped" || cpStopped.Memory || cpStopped.Created.IsZero() {
		t.Errorf("CreateCheckpoint of a stopped VM: got %+v, want name \"stopped\", a time, no memory", cpStopped)
	}
	must(t, "Start", d.Start(testCtx(t), id))
	cpRunning, err := d.CreateCheckpoint(testCtx(t), id, "running")
	must(t, "CreateCheckpoint of a running VM", err)
	if want := d.Supports(hostapi.MemoryCheckpoints); cpRunning.Memory != want {
		t.Errorf("CreateCheckpoint of a running VM: got Memory %v, want %v (MemoryCheckpoints)", cpRunning.Memory, want)
	}
	wantState(t, d, id, hostapi.StateRunning)

	_, err = d.CreateCheckpoint(testCtx(t), id, "stopped")
	wantErr(t, "CreateCheckpoint of a taken name", err, hostapi.ErrExists)

	list := func(want ...string) {
		t.Helper()
		cps, err := d.Checkpoints(testCtx(t), id)
		must(t, "Checkpoints", err)
		var got []string
		for _, cp := range cps {
			got = append(got, cp.Name)
		}
		if len(got) != len(want) {
			t.Errorf("Checkpoints: got %q, want %q, oldest first", got, want)
			return
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("Checkpoints: got %q, want %q, oldest first", got, want)
				return
			}
		}
	}
	list("stopped", "running")

	must(t, "RevertCheckpoint to the stopped VM", d.RevertCheckpoint(testCtx(t), id, "stopped"))
	wantState(t, d, id, hostapi.StateStopped)
	list("stopped", "running")

	if cpRunning.Memory {
		must(t, "RevertCheckpoint to the running VM", d.RevertCheckpoint(testCtx(t), id, "running"))
		wantState(t, d, id, hostapi.StateRunning)
	}

	must(t, "DeleteCheckpoint", d.DeleteCheckpoint(testCtx(t), id, "stopped"))
	list("running")
	wantErr(t, "DeleteCheckpoint again", d.DeleteCheckpoint(testCtx(t), id, "stopped"), hostapi.ErrNotFound)
	wantErr(t, "RevertCheckpoint to a deleted one", d.RevertCheckpoint(testCtx(t), id, "stopped"), hostapi.ErrNotFound)
	must(t, "DeleteCheckpoint", d.DeleteCheckpoint(testCtx(t), id, "running"))
	list()
}
