package hostapitest

import (
	"context"
	"sync"
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
)

// concurrentVMs is how many VMs the Concurrent subtest runs at once.
const concurrentVMs = 4

// testConcurrent defines, starts, reads, stops and deletes VMs in
// parallel, each step on all of them at once.
func testConcurrent(t *testing.T, s *Setup) {
	d := s.Driver
	ctx := testCtx(t)
	specs := make([]hostapi.VMSpec, concurrentVMs)
	ids := make([]string, concurrentVMs)
	for i := range specs {
		specs[i] = s.Spec(newName("concurrent"))
		cleanupVM(t, s, specs[i].Name)
	}
	parallel := func(step string, f func(ctx context.Context, i int) error) bool {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, concurrentVMs)
		for i := range concurrentVMs {
			wg.Go(func() { errs[i] = f(ctx, i) })
		}
		wg.Wait()
		ok := true
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s of %s: %v", step, specs[i].Name, err)
				ok = false
			}
		}
		return ok
	}
	steps := []struct {
		name string
		f    func(ctx context.Context, i int) error
	}{
		{"CreateVM", func(ctx context.Context, i int) error {
			vm, err := d.CreateVM(ctx, specs[i])
			if err == nil {
				ids[i] = vm.ID
			}
			return err
		}},
		{"Start", func(ctx context.Context, i int) error { return d.Start(ctx, ids[i]) }},
		{"Stats and VMs", func(ctx context.Context, i int) error {
			if _, err := d.Stats(ctx, ids[i]); err != nil {
				return err
			}
			_, err := d.VMs(ctx)
			return err
		}},
		{"PowerOff", func(ctx context.Context, i int) error { return d.PowerOff(ctx, ids[i]) }},
		{"DeleteVM", func(ctx context.Context, i int) error { return d.DeleteVM(ctx, ids[i], nil) }},
	}
	states := map[string]hostapi.State{"Start": hostapi.StateRunning, "PowerOff": hostapi.StateStopped}
	for _, st := range steps {
		if !parallel(st.name, st.f) {
			return
		}
		if want, ok := states[st.name]; ok {
			for _, id := range ids {
				wantState(t, d, id, want)
			}
		}
	}
	for _, id := range ids {
		wantGone(t, d, id)
	}
}
