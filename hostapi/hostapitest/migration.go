package hostapitest

import (
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
)

// otherDriver is a Driver of another kind, which Migrate refuses.
type otherDriver struct{ hostapi.Driver }

// testMigration moves a running VM live and a stopped one offline from
// Driver to Peer.
func testMigration(t *testing.T, s *Setup) {
	if s.Peer == nil {
		t.Skip("no Setup.Peer")
	}
	src, dst := s.Driver, s.Peer

	t.Run("Live", func(t *testing.T) {
		if !src.Supports(hostapi.LiveMigration) {
			t.Skip("no live migration")
		}
		srcEvents, dstEvents := record(t, src), record(t, dst)
		vm := newVM(t, s, "live")
		must(t, "Start", src.Start(testCtx(t), vm.ID))
		var p progress
		must(t, "Migrate", src.Migrate(testCtx(t), vm.ID, dst, &hostapi.MigrateOptions{Live: true, Progress: p.record}))
		arrived(t, dst, vm, hostapi.StateRunning)
		wantGone(t, src, vm.ID)
		if _, err := dst.Stats(testCtx(t), vm.Name); err != nil {
			t.Errorf("Stats on the destination: %v", err)
		}
		p.check(t, "Migrate")
		srcEvents.expect(t, vm.ID, hostapi.EventStarted, hostapi.EventMigratedOut)
		dstEvents.expect(t, vm.ID, hostapi.EventMigratedIn)
	})
	t.Run("Offline", func(t *testing.T) {
		vm := newVM(t, s, "offline")
		must(t, "Migrate", src.Migrate(testCtx(t), vm.ID, dst, nil))
		arrived(t, dst, vm, hostapi.StateStopped)
		wantGone(t, src, vm.ID)
	})
	t.Run("OtherKind", func(t *testing.T) {
		vm := newVM(t, s, "otherkind")
		err := src.Migrate(testCtx(t), vm.ID, otherDriver{dst}, nil)
		wantErr(t, "Migrate to a Driver of another kind", err, hostapi.ErrUnsupported)
		wantState(t, src, vm.ID, hostapi.StateStopped)
		if _, err := dst.VM(testCtx(t), vm.Name); err == nil {
			t.Errorf("VM %s is on the destination after a refused migration", vm.Name)
		}
	})
}

// arrived checks that vm is on d in state want, under its name and ID.
func arrived(t *testing.T, d hostapi.Driver, vm *hostapi.VMInfo, want hostapi.State) {
	t.Helper()
	got, err := d.VM(testCtx(t), vm.Name)
	if err != nil {
		t.Fatalf("VM %s on the destination: %v", vm.Name, err)
	}
	if got.ID != vm.ID || got.State != want {
		t.Errorf("VM on the destination: got ID %s %v, want %s %v", got.ID, got.State, vm.ID, want)
	}
}
