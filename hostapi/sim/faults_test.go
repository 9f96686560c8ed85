package sim_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
)

func twoHosts(t *testing.T, cfg sim.Config) (*sim.Fleet, *sim.Host, *sim.Host) {
	t.Helper()
	if cfg.Hosts == nil {
		cfg.Hosts = []sim.HostConfig{{Name: "a"}, {Name: "b"}}
	}
	f := newFleet(t, cfg)
	return f, f.Host(cfg.Hosts[0].Name), f.Host(cfg.Hosts[1].Name)
}

func running(t *testing.T, h *sim.Host, name string) *hostapi.VMInfo {
	t.Helper()
	vm, err := h.CreateVM(t.Context(), tinySpec(name))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context(), vm.ID); err != nil {
		t.Fatal(err)
	}
	return vm
}

func wantIs(t *testing.T, what string, err, target error) {
	t.Helper()
	var oe *hostapi.OpError
	if !errors.Is(err, target) || !errors.As(err, &oe) {
		t.Errorf("%s: got %v, want an *OpError matching %v", what, err, target)
	}
}

func TestHostDown(t *testing.T) {
	_, a, _ := twoHosts(t, sim.Config{})
	ctx := t.Context()
	vm := running(t, a, "vm")
	evctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := a.Events(evctx)

	a.SetFaults(sim.Faults{Down: true})
	_, err := a.Host(ctx)
	wantIs(t, "Host", err, hostapi.ErrHostUnreachable)
	_, err = a.VMs(ctx)
	wantIs(t, "VMs", err, hostapi.ErrHostUnreachable)
	wantIs(t, "PowerOff", a.PowerOff(ctx, vm.ID), hostapi.ErrHostUnreachable)
	_, err = a.CreateDisk(ctx, hostapi.DiskSpec{Pool: "default", Name: "d", Size: 1 << 20})
	wantIs(t, "CreateDisk", err, hostapi.ErrHostUnreachable)
	var last error
	for _, err := range events {
		last = err
	}
	wantIs(t, "Events", last, hostapi.ErrHostUnreachable)

	a.SetFaults(sim.Faults{})
	got, err := a.VM(ctx, vm.ID)
	if err != nil || got.State != hostapi.StateRunning {
		t.Errorf("VM after the host came back: got %v, %v; want it running", got, err)
	}
}

func TestMigrationFailsHalfway(t *testing.T) {
	_, a, b := twoHosts(t, sim.Config{})
	ctx := t.Context()
	vm := running(t, a, "vm")
	before, _ := b.Host(ctx)
	a.SetFaults(sim.Faults{FailMigrationAt: 0.5})
	var done, total int64
	err := a.Migrate(ctx, vm.ID, b, &hostapi.MigrateOptions{Live: true, Progress: func(d, t int64) { done, total = d, t }})
	wantIs(t, "Migrate", err, hostapi.ErrHostUnreachable)
	if done <= 0 || done >= total {
		t.Errorf("progress: got %d of %d, want part of the way", done, total)
	}
	if got, err := a.VM(ctx, vm.ID); err != nil || got.State != hostapi.StateRunning {
		t.Errorf("VM on the source: got %v, %v; want it running", got, err)
	}
	if _, err := b.VM(ctx, vm.Name); !errors.Is(err, hostapi.ErrNotFound) {
		t.Errorf("VM on the destination: got %v, want ErrNotFound", err)
	}
	after, _ := b.Host(ctx)
	if after.MemoryFree != before.MemoryFree {
		t.Errorf("destination's free memory: got %d, want %d as before", after.MemoryFree, before.MemoryFree)
	}
	a.SetFaults(sim.Faults{})
	if err := a.Migrate(ctx, vm.ID, b, &hostapi.MigrateOptions{Live: true}); err != nil {
		t.Errorf("Migrate once the fault is gone: %v", err)
	}
}

func TestMigrationDestinationDown(t *testing.T) {
	_, a, b := twoHosts(t, sim.Config{})
	vm := running(t, a, "vm")
	b.SetFaults(sim.Faults{Down: true})
	wantIs(t, "Migrate", a.Migrate(t.Context(), vm.ID, b, &hostapi.MigrateOptions{Live: true}), hostapi.ErrHostUnreachable)
	if got, err := a.VM(t.Context(), vm.ID); err != nil || got.State != hostapi.StateRunning {
		t.Errorf("VM on the source: got %v, %v; want it running", got, err)
	}
}

func TestSlowDisk(t *testing.T) {
	copyTime := func(t *testing.T, f sim.Faults) time.Duration {
		var took time.Duration
		synctest.Test(t, func(t *testing.T) {
			h := newFleet(t, sim.Config{Count: 1, TimeScale: 1}).Hosts()[0]
			h.SetFaults(f)
			img := hostapi.Image{Name: "img", Format: "raw", Size: 10 << 20, Open: zeros(10 << 20)}
			start := time.Now()
			if _, err := h.CopyImage(t.Context(), img, hostapi.DiskSpec{Pool: "default", Name: "d"}, nil); err != nil {
				t.Fatal(err)
			}
			took = time.Since(start)
		})
		return took
	}
	fast := copyTime(t, sim.Faults{})
	slow := copyTime(t, sim.Faults{DiskSpeed: 1 << 20})
	// Simulated time in a bubble is exact: 10 MiB at 1 MiB/s.
	if slow != 10*time.Second || fast >= slow {
		t.Errorf("copy of 10 MiB: got %v on a 1 MiB/s disk and %v on the default one, want 10s and less", slow, fast)
	}
}

func TestFullPool(t *testing.T) {
	f := newFleet(t, sim.Config{Hosts: []sim.HostConfig{{Name: "a", Pools: []sim.PoolConfig{{Name: "small", Capacity: 10 << 20}, {Name: "big", Capacity: 1 << 30}}}}})
	h := f.Host("a")
	ctx := t.Context()
	if _, err := h.CreateDisk(ctx, hostapi.DiskSpec{Pool: "small", Name: "d1", Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	_, err := h.CreateDisk(ctx, hostapi.DiskSpec{Pool: "small", Name: "d2", Size: 4 << 20})
	wantIs(t, "CreateDisk beyond the pool's free space", err, hostapi.ErrCapacity)
	img := hostapi.Image{Name: "img", Format: "raw", Size: -1, Open: zeros(4 << 20)} // size unknown until read
	_, err = h.CopyImage(ctx, img, hostapi.DiskSpec{Pool: "small", Name: "c"}, nil)
	wantIs(t, "CopyImage beyond the pool's free space", err, hostapi.ErrCapacity)
	info, _ := h.Host(ctx)
	if free := info.Pools[0].Free; free != 2<<20 {
		t.Errorf("small pool: got %d free, want %d (the failed copy released)", free, 2<<20)
	}

	h.SetFaults(sim.Faults{FullPools: []string{"big"}})
	_, err = h.CreateDisk(ctx, hostapi.DiskSpec{Pool: "big", Name: "d3", Size: 1 << 20})
	wantIs(t, "CreateDisk in a full pool", err, hostapi.ErrCapacity)
	h.SetFaults(sim.Faults{})
	if _, err := h.CreateDisk(ctx, hostapi.DiskSpec{Pool: "big", Name: "d3", Size: 1 << 20}); err != nil {
		t.Errorf("CreateDisk once the pool has room: %v", err)
	}
}

func TestIgnoreShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFleet(t, sim.Config{Count: 1}).Hosts()[0]
		vm := running(t, h, "vm")
		h.SetFaults(sim.Faults{IgnoreShutdown: true})
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		wantIs(t, "Shutdown", h.Shutdown(ctx, vm.ID), context.DeadlineExceeded)
		if got, _ := h.VM(t.Context(), vm.ID); got.State != hostapi.StateRunning {
			t.Errorf("after Shutdown's deadline: got %v, want running", got.State)
		}
		if err := h.PowerOff(t.Context(), vm.ID); err != nil {
			t.Errorf("PowerOff: %v", err)
		}
	})
}

func TestCapacity(t *testing.T) {
	f := newFleet(t, sim.Config{Hosts: []sim.HostConfig{{Name: "a", Cores: 4, Memory: 1 << 30}}})
	h := f.Host("a")
	ctx := t.Context()
	_, err := h.CreateVM(ctx, hostapi.VMSpec{Name: "wide", VCPUs: 8, Memory: 1 << 20})
	wantIs(t, "CreateVM with more vCPUs than cores", err, hostapi.ErrCapacity)
	_, err = h.CreateVM(ctx, hostapi.VMSpec{Name: "big", VCPUs: 1, Memory: 2 << 30})
	wantIs(t, "CreateVM with more memory than the host", err, hostapi.ErrCapacity)

	var ids []string
	for _, name := range []string{"v1", "v2", "v3"} {
		vm, err := h.CreateVM(ctx, hostapi.VMSpec{Name: name, VCPUs: 1, Memory: 400 << 20})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, vm.ID)
	}
	for _, id := range ids[:2] {
		if err := h.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	wantIs(t, "Start beyond free memory", h.Start(ctx, ids[2]), hostapi.ErrCapacity)
	if err := h.PowerOff(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx, ids[2]); err != nil {
		t.Errorf("Start once memory is free: %v", err)
	}
}

func TestUnsupported(t *testing.T) {
	f := newFleet(t, sim.Config{Hosts: []sim.HostConfig{{Name: "a", Unsupported: []hostapi.Capability{hostapi.Checkpoints, hostapi.Pause, hostapi.LiveMigration}}, {Name: "b"}}})
	a, b := f.Host("a"), f.Host("b")
	ctx := t.Context()
	vm := running(t, a, "vm")
	if a.Supports(hostapi.Checkpoints) || !a.Supports(hostapi.Events) {
		t.Error("Supports: does not follow HostConfig.Unsupported")
	}
	_, err := a.CreateCheckpoint(ctx, vm.ID, "c")
	wantIs(t, "CreateCheckpoint", err, hostapi.ErrUnsupported)
	wantIs(t, "Pause", a.Pause(ctx, vm.ID), hostapi.ErrUnsupported)
	wantIs(t, "live Migrate", a.Migrate(ctx, vm.ID, b, &hostapi.MigrateOptions{Live: true}), hostapi.ErrUnsupported)
}
