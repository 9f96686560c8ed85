package sim_test

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
)

func TestManualClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := sim.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		h := newFleet(t, sim.Config{Count: 1, Clock: clock, TimeScale: 1}).Hosts()[0]
		ctx := t.Context()
		created := make(chan *hostapi.VMInfo)
		go func() {
			vm, err := h.CreateVM(ctx, tinySpec("vm"))
			if err != nil {
				t.Error(err)
			}
			created <- vm
		}()
		synctest.Wait()
		if n := clock.Sleepers(); n != 1 {
			t.Fatalf("Sleepers: got %d, want CreateVM waiting", n)
		}
		clock.Advance(time.Second)
		vm := <-created

		started := make(chan error)
		go func() { started <- h.Start(ctx, vm.ID) }()
		synctest.Wait()
		clock.Advance(time.Second) // half of a start
		synctest.Wait()
		select {
		case err := <-started:
			t.Fatalf("Start returned after 1 s of its 2: %v", err)
		default:
		}
		wantIs(t, "PowerOff while starting", h.PowerOff(ctx, vm.ID), hostapi.ErrInvalidState)
		clock.Advance(time.Second)
		if err := <-started; err != nil {
			t.Fatal(err)
		}
		st, err := h.Stats(ctx, vm.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Time.Equal(clock.Now()) || st.CPUTime != 0 {
			t.Errorf("Stats at start: got time %v, CPU %v; want the clock's %v, no CPU yet", st.Time, st.CPUTime, clock.Now())
		}
		clock.Advance(10 * time.Second)
		st, _ = h.Stats(ctx, vm.ID)
		// 1 vCPU at the default load of 20 % for 10 s.
		if st.CPUTime != 2*time.Second {
			t.Errorf("CPUTime after 10 s: got %v, want 2s", st.CPUTime)
		}
	})
}

func TestCancelMidOperation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFleet(t, sim.Config{Count: 1, TimeScale: 1}).Hosts()[0]
		vm, err := h.CreateVM(t.Context(), tinySpec("vm"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second) // a start takes 2
		defer cancel()
		wantIs(t, "Start", h.Start(ctx, vm.ID), context.DeadlineExceeded)
		if got, _ := h.VM(t.Context(), vm.ID); got.State != hostapi.StateStopped {
			t.Errorf("after a cancelled Start: got %v, want stopped", got.State)
		}
		if err := h.Start(t.Context(), vm.ID); err != nil {
			t.Errorf("Start after a cancelled one: %v", err)
		}
	})
}

func TestPowerOffCutsShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFleet(t, sim.Config{Count: 1, TimeScale: 1}).Hosts()[0]
		vm := running(t, h, "vm")
		done := make(chan error)
		go func() { done <- h.Shutdown(t.Context(), vm.ID) }()
		synctest.Wait()
		if got, _ := h.VM(t.Context(), vm.ID); got.State != hostapi.StateShutdown {
			t.Errorf("during Shutdown: got %v, want shutting down", got.State)
		}
		if err := h.PowerOff(t.Context(), vm.ID); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Errorf("Shutdown cut short by PowerOff: got %v, want nil (the VM is off)", err)
		}
	})
}

// TestDurations checks the simulated durations in a synctest bubble,
// where the real clock's time is exact.
func TestDurations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, a, b := twoHosts(t, sim.Config{TimeScale: 1})
		ctx := t.Context()
		spec := tinySpec("vm")
		spec.Memory = 2 << 30
		took := func(f func() error) time.Duration {
			t.Helper()
			start := time.Now()
			if err := f(); err != nil {
				t.Fatal(err)
			}
			return time.Since(start)
		}
		var vm *hostapi.VMInfo
		cases := []struct {
			name string
			f    func() error
			want time.Duration
		}{
			{"CreateVM", func() (err error) { vm, err = a.CreateVM(ctx, spec); return err }, 100 * time.Millisecond},
			{"Start", func() error { return a.Start(ctx, vm.ID) }, 2 * time.Second},
			// 1 s, and 2 GiB at 1 GiB/s.
			{"Migrate", func() error { return a.Migrate(ctx, vm.ID, b, &hostapi.MigrateOptions{Live: true}) }, 3 * time.Second},
			{"Shutdown", func() error { return b.Shutdown(ctx, vm.ID) }, 8 * time.Second},
		}
		for _, tc := range cases {
			if got := took(tc.f); got != tc.want {
				t.Errorf("%s: took %v, want %v", tc.name, got, tc.want)
			}
		}
	})
}

// TestConcurrency runs lifecycles and migrations on many VMs of three
// hosts at once, then checks that every VM is on one host and that the
// hosts' memory accounts for exactly the running VMs.
func TestConcurrency(t *testing.T) {
	f := newFleet(t, sim.Config{Count: 3, TimeScale: 0.0001})
	hosts := f.Hosts()
	ctx := t.Context()
	const n = 24
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			h := hosts[i%3]
			vm, err := h.CreateVM(ctx, tinySpec(fmt.Sprintf("vm%d", i)))
			if err != nil {
				t.Error(err)
				return
			}
			if err := h.Start(ctx, vm.ID); err != nil {
				t.Error(err)
				return
			}
			dst := hosts[(i+1)%3]
			if err := h.Migrate(ctx, vm.ID, dst, &hostapi.MigrateOptions{Live: true}); err != nil {
				t.Error(err)
				return
			}
			// Read while others change.
			if _, err := dst.Stats(ctx, vm.ID); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				if err := dst.PowerOff(ctx, vm.ID); err != nil {
					t.Error(err)
				}
			}
		})
		wg.Go(func() {
			for range 5 {
				for _, h := range hosts {
					if _, err := h.Host(ctx); err != nil {
						t.Error(err)
					}
					if _, err := h.VMs(ctx); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()

	seen := map[string]string{}
	for _, h := range hosts {
		info, err := h.Host(ctx)
		if err != nil {
			t.Fatal(err)
		}
		vms, _ := h.VMs(ctx)
		var held int64
		for _, vm := range vms {
			if other, dup := seen[vm.Name]; dup {
				t.Errorf("VM %s on %s and %s", vm.Name, other, h.Name())
			}
			seen[vm.Name] = h.Name()
			if vm.State == hostapi.StateRunning {
				held += vm.Memory
			}
		}
		if used := info.MemoryTotal - info.MemoryFree; used != held {
			t.Errorf("host %s: %d bytes used, want %d, its running VMs'", h.Name(), used, held)
		}
	}
	if len(seen) != n {
		t.Errorf("got %d VMs on the hosts, want %d", len(seen), n)
	}
}

// TestEventsInOrder checks the simulator's exact events, which the
// conformance suite checks only as a subsequence.
func TestEventsInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, a, b := twoHosts(t, sim.Config{})
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		evA, evB := a.Events(ctx), b.Events(ctx)
		vm := running(t, a, "vm")
		steps := []func() error{
			func() error { return a.Pause(ctx, vm.ID) },
			func() error { return a.Resume(ctx, vm.ID) },
			func() error { _, err := a.CreateCheckpoint(ctx, vm.ID, "c"); return err },
			func() error { return a.Migrate(ctx, vm.ID, b, &hostapi.MigrateOptions{Live: true}) },
			func() error { return b.PowerOff(ctx, vm.ID) },
			func() error { return b.DeleteVM(ctx, vm.ID, nil) },
		}
		for _, step := range steps {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		pull := func(seq iter.Seq2[hostapi.Event, error], n int) []string {
			next, stop := iter.Pull2(seq)
			defer stop()
			var got []string
			for range n {
				ev, err, ok := next()
				if !ok || err != nil {
					t.Errorf("Events: ended (%v) after %q", err, got)
					break
				}
				got = append(got, ev.Kind.String()+"/"+ev.State.String())
			}
			return got
		}
		wantA := []string{"defined/stopped", "started/running", "paused/paused", "resumed/running", "checkpoint/running", "migrated out/unknown"}
		wantB := []string{"migrated in/running", "stopped/stopped", "deleted/unknown"}
		if got := pull(evA, len(wantA)); !slices.Equal(got, wantA) {
			t.Errorf("events of the source: got %q, want %q", got, wantA)
		}
		if got := pull(evB, len(wantB)); !slices.Equal(got, wantB) {
			t.Errorf("events of the destination: got %q, want %q", got, wantB)
		}
	})
}
