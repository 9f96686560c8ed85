package hostapitest

import (
	"context"
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
)

// testNotFound calls every method that names a VM, checkpoint or disk
// with one that does not exist.
func testNotFound(t *testing.T, s *Setup) {
	d := s.Driver
	missing := newName("missing")
	cases := []struct {
		name string
		need hostapi.Capability
		call func(ctx context.Context) error
	}{
		{"VM", 0, func(ctx context.Context) error { _, err := d.VM(ctx, missing); return err }},
		{"Start", 0, func(ctx context.Context) error { return d.Start(ctx, missing) }},
		{"Shutdown", hostapi.GuestShutdown, func(ctx context.Context) error { return d.Shutdown(ctx, missing) }},
		{"PowerOff", 0, func(ctx context.Context) error { return d.PowerOff(ctx, missing) }},
		{"Pause", hostapi.Pause, func(ctx context.Context) error { return d.Pause(ctx, missing) }},
		{"Resume", hostapi.Pause, func(ctx context.Context) error { return d.Resume(ctx, missing) }},
		{"Reboot", 0, func(ctx context.Context) error { return d.Reboot(ctx, missing) }},
		{"DeleteVM", 0, func(ctx context.Context) error { return d.DeleteVM(ctx, missing, nil) }},
		{"Stats", 0, func(ctx context.Context) error { _, err := d.Stats(ctx, missing); return err }},
		{"CreateCheckpoint", hostapi.Checkpoints, func(ctx context.Context) error { _, err := d.CreateCheckpoint(ctx, missing, "c"); return err }},
		{"Checkpoints", hostapi.Checkpoints, func(ctx context.Context) error { _, err := d.Checkpoints(ctx, missing); return err }},
		{"RevertCheckpoint", hostapi.Checkpoints, func(ctx context.Context) error { return d.RevertCheckpoint(ctx, missing, "c") }},
		{"DeleteCheckpoint", hostapi.Checkpoints, func(ctx context.Context) error { return d.DeleteCheckpoint(ctx, missing, "c") }},
		{"DeleteDisk", 0, func(ctx context.Context) error { return d.DeleteDisk(ctx, s.Pool, missing) }},
		{"CreateDiskInMissingPool", 0, func(ctx context.Context) error {
			_, err := d.CreateDisk(ctx, hostapi.DiskSpec{Pool: missing, Name: missing, Size: 1 << 20})
			return err
		}},
		{"CreateDiskOverMissingParent", hostapi.DifferencingDisks, func(ctx context.Context) error {
			_, err := d.CreateDisk(ctx, hostapi.DiskSpec{Pool: s.Pool, Name: missing, Parent: missing})
			return err
		}},
	}
	if s.Peer != nil {
		cases = append(cases, struct {
			name string
			need hostapi.Capability
			call func(ctx context.Context) error
		}{"Migrate", 0, func(ctx context.Context) error { return d.Migrate(ctx, missing, s.Peer, nil) }})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.need != 0 && !d.Supports(tc.need) {
				t.Skipf("no %v", tc.need)
			}
			if s.Pool == "" && (tc.name == "DeleteDisk" || tc.name == "CreateDiskOverMissingParent") {
				t.Skip("no Setup.Pool")
			}
			if s.Pool != "" {
				cleanupDisk(t, d, s.Pool, missing)
			}
			wantErr(t, tc.name, tc.call(testCtx(t)), hostapi.ErrNotFound)
		})
	}
	t.Run("CheckpointOfExistingVM", func(t *testing.T) {
		if !d.Supports(hostapi.Checkpoints) {
			t.Skip("no checkpoints")
		}
		vm := newVM(t, s, "nocheckpoint")
		wantErr(t, "RevertCheckpoint", d.RevertCheckpoint(testCtx(t), vm.ID, missing), hostapi.ErrNotFound)
		wantErr(t, "DeleteCheckpoint", d.DeleteCheckpoint(testCtx(t), vm.ID, missing), hostapi.ErrNotFound)
	})
}

// testExists defines a VM twice.
func testExists(t *testing.T, s *Setup) {
	d := s.Driver
	vm := newVM(t, s, "exists")
	_, err := d.CreateVM(testCtx(t), s.Spec(vm.Name))
	wantErr(t, "CreateVM of a taken name", err, hostapi.ErrExists)
	got, err := d.VM(testCtx(t), vm.Name)
	must(t, "VM", err)
	if got.ID != vm.ID || got.State != hostapi.StateStopped {
		t.Errorf("VM after a second CreateVM: got ID %s %v, want %s stopped", got.ID, got.State, vm.ID)
	}
}

// testInvalidSpec defines VMs no host can run, and checks that none is
// left defined.
func testInvalidSpec(t *testing.T, s *Setup) {
	d := s.Driver
	cases := []struct {
		name   string
		modify func(*hostapi.VMSpec)
	}{
		{"NoName", func(sp *hostapi.VMSpec) { sp.Name = "" }},
		{"NoVCPUs", func(sp *hostapi.VMSpec) { sp.VCPUs = 0 }},
		{"NegativeVCPUs", func(sp *hostapi.VMSpec) { sp.VCPUs = -1 }},
		{"NoMemory", func(sp *hostapi.VMSpec) { sp.Memory = 0 }},
		{"MissingNetwork", func(sp *hostapi.VMSpec) {
			sp.NICs = append(sp.NICs, hostapi.NIC{Network: newName("nonet")})
		}},
		{"EmptyDiskRef", func(sp *hostapi.VMSpec) { sp.Disks = append(sp.Disks, hostapi.DiskRef{}) }},
		{"BadBootDevice", func(sp *hostapi.VMSpec) { sp.Boot = []string{"hostapitest-nonsense"} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := s.Spec(newName("invalid-" + tc.name))
			name := spec.Name
			tc.modify(&spec)
			cleanupVM(t, s, name)
			_, err := d.CreateVM(testCtx(t), spec)
			wantErr(t, "CreateVM", err, hostapi.ErrInvalidSpec)
			_, err = d.VM(testCtx(t), name)
			wantErr(t, "VM after a refused CreateVM", err, hostapi.ErrNotFound)
		})
	}
}
