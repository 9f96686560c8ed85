package hostapitest

import (
	"context"
	"errors"
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
)

// testCancellation calls methods with a ctx already cancelled, and
// cancels a copy as it runs.
func testCancellation(t *testing.T, s *Setup) {
	d := s.Driver
	vm := newVM(t, s, "cancel")
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	t.Run("Reads", func(t *testing.T) {
		_, err := d.Host(cancelled)
		wantErr(t, "Host", err, context.Canceled)
		_, err = d.VMs(cancelled)
		wantErr(t, "VMs", err, context.Canceled)
		_, err = d.VM(cancelled, vm.ID)
		wantErr(t, "VM", err, context.Canceled)
	})
	t.Run("CreateVM", func(t *testing.T) {
		spec := s.Spec(newName("cancel"))
		cleanupVM(t, s, spec.Name)
		_, err := d.CreateVM(cancelled, spec)
		wantErr(t, "CreateVM", err, context.Canceled)
		_, err = d.VM(testCtx(t), spec.Name)
		wantErr(t, "VM after a cancelled CreateVM", err, hostapi.ErrNotFound)
	})
	t.Run("Start", func(t *testing.T) {
		wantErr(t, "Start", d.Start(cancelled, vm.ID), context.Canceled)
		wantState(t, d, vm.ID, hostapi.StateStopped)
	})
	t.Run("DeleteVM", func(t *testing.T) {
		wantErr(t, "DeleteVM", d.DeleteVM(cancelled, vm.ID, nil), context.Canceled)
		wantState(t, d, vm.ID, hostapi.StateStopped)
	})
	t.Run("CreateDisk", func(t *testing.T) {
		if s.Pool == "" {
			t.Skip("no Setup.Pool")
		}
		name := newName("cancel")
		cleanupDisk(t, d, s.Pool, name)
		_, err := d.CreateDisk(cancelled, hostapi.DiskSpec{Pool: s.Pool, Name: name, Size: 1 << 20})
		wantErr(t, "CreateDisk", err, context.Canceled)
		wantErr(t, "DeleteDisk after a cancelled CreateDisk", d.DeleteDisk(testCtx(t), s.Pool, name), hostapi.ErrNotFound)
	})
	t.Run("CopyImage", func(t *testing.T) {
		if s.Image == nil || s.Pool == "" {
			t.Skip("no Setup.Image or Setup.Pool")
		}
		name := newName("cancel")
		cleanupDisk(t, d, s.Pool, name)
		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		_, err := d.CopyImage(ctx, *s.Image, hostapi.DiskSpec{Pool: s.Pool, Name: name}, func(done, total int64) { cancel() })
		// A copy may finish before it sees ctx done; then the disk is
		// whole. Otherwise nothing is left of it.
		del := d.DeleteDisk(testCtx(t), s.Pool, name)
		switch {
		case err == nil:
			t.Log("the copy finished before it saw the cancellation")
			must(t, "DeleteDisk of the copy", del)
		case errors.Is(err, context.Canceled):
			checkOpError(t, "CopyImage", err)
			wantErr(t, "DeleteDisk after a cancelled copy", del, hostapi.ErrNotFound)
		default:
			t.Errorf("CopyImage: got %v, want context.Canceled", err)
		}
	})
}
