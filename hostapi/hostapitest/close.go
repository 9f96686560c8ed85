package hostapitest

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
)

// testClose closes Setup.Driver and calls every method.
func testClose(t *testing.T, s *Setup) {
	d := s.Driver
	ctx := testCtx(t)
	var ended chan struct{}
	if d.Supports(hostapi.Events) {
		ended = make(chan struct{})
		evctx, cancel := context.WithCancel(ctx)
		defer cancel()
		seq := d.Events(evctx)
		go func() {
			defer close(ended)
			for range seq {
			}
		}()
	}
	must(t, "Close", d.Close())

	missing := newName("closed")
	calls := map[string]func() error{
		"Host":             func() error { _, err := d.Host(ctx); return err },
		"VMs":              func() error { _, err := d.VMs(ctx); return err },
		"VM":               func() error { _, err := d.VM(ctx, missing); return err },
		"CreateVM":         func() error { _, err := d.CreateVM(ctx, s.Spec(missing)); return err },
		"Start":            func() error { return d.Start(ctx, missing) },
		"Shutdown":         func() error { return d.Shutdown(ctx, missing) },
		"PowerOff":         func() error { return d.PowerOff(ctx, missing) },
		"Pause":            func() error { return d.Pause(ctx, missing) },
		"Resume":           func() error { return d.Resume(ctx, missing) },
		"Reboot":           func() error { return d.Reboot(ctx, missing) },
		"DeleteVM":         func() error { return d.DeleteVM(ctx, missing, nil) },
		"Stats":            func() error { _, err := d.Stats(ctx, missing); return err },
		"CreateCheckpoint": func() error { _, err := d.CreateCheckpoint(ctx, missing, "c"); return err },
		"Checkpoints":      func() error { _, err := d.Checkpoints(ctx, missing); return err },
		"RevertCheckpoint": func() error { return d.RevertCheckpoint(ctx, missing, "c") },
		"DeleteCheckpoint": func() error { return d.DeleteCheckpoint(ctx, missing, "c") },
		"CreateDisk": func() error {
			_, err := d.CreateDisk(ctx, hostapi.DiskSpec{Pool: s.Pool, Name: missing, Size: 1 << 20})
			return err
		},
		"CopyImage": func() error {
			img := hostapi.Image{Name: missing, Format: "raw", Size: 0, Open: func() (_ io.ReadCloser, _ error) { return nil, errors.New("unused") }}
			_, err := d.CopyImage(ctx, img, hostapi.DiskSpec{Pool: s.Pool, Name: missing}, nil)
			return err
		},
		"DeleteDisk": func() error { return d.DeleteDisk(ctx, s.Pool, missing) },
		"Events": func() error {
			for _, err := range d.Events(ctx) {
				return err
			}
			return nil
		},
	}
	if s.Peer != nil {
		calls["Migrate"] = func() error { return d.Migrate(ctx, missing, s.Peer, nil) }
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		call := calls[name]
		t.Run(name, func(t *testing.T) {
			wantErr(t, name+" after Close", call(), hostapi.ErrClosed)
		})
	}
	if ended != nil {
		select {
		case <-ended:
		case <-time.After(eventTimeout):
			t.Errorf("Events: the sequence did not end %v after Close", eventTimeout)
		}
	}
}
