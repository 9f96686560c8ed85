package sim_test

import (
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
)

// TestStorageMigration moves a VM with a pool disk: refused without
// WithStorage (the hosts share no storage), and with it the disk moves
// and the pools' free space with it.
func TestStorageMigration(t *testing.T) {
	_, a, b := twoHosts(t, sim.Config{})
	ctx := t.Context()
	const size = 64 << 20
	if _, err := a.CreateDisk(ctx, hostapi.DiskSpec{Pool: "default", Name: "root", Size: size}); err != nil {
		t.Fatal(err)
	}
	spec := tinySpec("vm")
	spec.Disks = []hostapi.DiskRef{{Pool: "default", Name: "root"}}
	vm, err := a.CreateVM(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	free := func(h *sim.Host) int64 {
		info, err := h.Host(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.Pools[0].Free
	}
	aFree, bFree := free(a), free(b)

	wantIs(t, "Migrate without storage", a.Migrate(ctx, vm.ID, b, &hostapi.MigrateOptions{Live: true}), hostapi.ErrInvalidSpec)
	var done, total int64
	opts := &hostapi.MigrateOptions{Live: true, WithStorage: true, Progress: func(d, t int64) { done, total = d, t }}
	if err := a.Migrate(ctx, vm.ID, b, opts); err != nil {
		t.Fatal(err)
	}
	if want := int64(size + spec.Memory); done != want || total != want {
		t.Errorf("progress: got %d of %d, want %d (disk and memory)", done, total, want)
	}
	if got := free(a) - aFree; got != size {
		t.Errorf("source pool: got %d bytes more free, want %d", got, size)
	}
	if got := bFree - free(b); got != size {
		t.Errorf("destination pool: got %d bytes less free, want %d", got, size)
	}
	wantIs(t, "DeleteDisk of the moved disk on the source", a.DeleteDisk(ctx, "default", "root"), hostapi.ErrNotFound)
	wantIs(t, "DeleteDisk of a disk in use", b.DeleteDisk(ctx, "default", "root"), hostapi.ErrInvalidState)
	if err := b.PowerOff(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteVM(ctx, vm.ID, &hostapi.DeleteOptions{KeepDisks: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteDisk(ctx, "default", "root"); err != nil {
		t.Errorf("DeleteDisk after the VM was deleted with KeepDisks: %v", err)
	}
}
