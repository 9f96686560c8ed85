package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vmmkit/vmmkit/vmm/store"
)

// Inventory sizes of BenchStartup: the fleet a manager must load from its
// store in at most 5 s.
const (
	BenchGroups = 50
	BenchHosts  = 5000
	BenchVMs    = 50000
)

// BenchStartup fills a fresh database with BenchGroups host groups,
// BenchHosts hosts and BenchVMs VMs (not timed), then times opening a new
// handle and loading every group, host and VM, as a manager does when it
// starts. It reports s/startup and the fill rate in records/s.
func BenchStartup(b *testing.B, newDB func(testing.TB) Opener) {
	open := newDB(b)
	s, err := open()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Now()
	fill(b, ctx, s)
	fillSecs := time.Since(t0).Seconds()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		t0 := time.Now()
		s, err := open()
		if err != nil {
			b.Fatal(err)
		}
		gs, err1 := s.Groups(ctx)
		hs, err2 := s.Hosts(ctx, "")
		vms, err3 := s.VMs(ctx, store.VMFilter{})
		if err := errors.Join(err1, err2, err3); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		if len(gs) != BenchGroups || len(hs) != BenchHosts || len(vms) != BenchVMs {
			b.Fatalf("loaded %d groups, %d hosts, %d VMs; want %d, %d, %d", len(gs), len(hs), len(vms), BenchGroups, BenchHosts, BenchVMs)
		}
		s.Close()
	}
	b.StopTimer()
	per := total.Seconds() / float64(b.N)
	b.ReportMetric(per, "s/startup")
	b.ReportMetric(float64(BenchGroups+BenchHosts+BenchVMs)/fillSecs, "fill-records/s")
	b.Logf("open and load %d hosts + %d VMs: %.3f s (limit 5 s); fill took %.1f s", BenchHosts, BenchVMs, per, fillSecs)
}

func fill(b *testing.B, ctx context.Context, s store.Store) {
	var groups []string
	for i := range BenchGroups {
		g, err := s.CreateGroup(ctx, store.HostGroup{Name: fmt.Sprintf("group%02d", i), Goal: "balance"})
		if err != nil {
			b.Fatal(err)
		}
		groups = append(groups, g.ID)
	}
	const workers = 8
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	perHost := BenchVMs / BenchHosts
	for w := range workers {
		wg.Go(func() {
			for i := w; i < BenchHosts; i += workers {
				g := groups[i%len(groups)]
				h, err := s.CreateHost(ctx, store.Host{Name: fmt.Sprintf("hv%05d", i), GroupID: g, URI: fmt.Sprintf("sim:///hv%05d", i), Kind: "sim"})
				if err != nil {
					errc <- err
					return
				}
				for k := range perHost {
					spec := fmt.Appendf(nil, `{"cpus":%d,"memory_mib":%d,"disks":[{"size_gib":40}]}`, 1+k%4, 1024<<(k%3))
					_, err := s.CreateVM(ctx, store.VM{Name: fmt.Sprintf("vm%05d-%d", i, k), GroupID: g, HostID: h.ID,
						Template: "win2003-std", Owner: "bench", State: "running", Points: 1, Spec: spec})
					if err != nil {
						errc <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// BenchJobs times jobs going through their life: created, claimed by one of
// 4 workers on each of two handles, and completed (3 writes per job). It
// reports jobs/s.
func BenchJobs(b *testing.B, newDB func(testing.TB) Opener) {
	const jobs, workers = 1000, 4
	open := newDB(b)
	handles := make([]store.Store, 2)
	for i := range handles {
		s, err := open()
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		handles[i] = s
	}
	ctx := context.Background()
	b.ResetTimer()
	t0 := time.Now()
	for range b.N {
		var wg sync.WaitGroup
		errc := make(chan error, 2*workers+1)
		wg.Go(func() {
			for range jobs {
				if _, err := handles[0].CreateJob(ctx, store.Job{Kind: "create-vm", User: "bench", Input: []byte(`{"template":"win2003-std"}`)}); err != nil {
					errc <- err
					return
				}
			}
		})
		var mu sync.Mutex
		done := 0
		for h, s := range handles {
			for w := range workers {
				owner := fmt.Sprintf("m%d-%d", h, w)
				wg.Go(func() {
					for {
						mu.Lock()
						finished := done == jobs
						mu.Unlock()
						if finished {
							return
						}
						j, err := s.ClaimJob(ctx, owner, time.Minute)
						if errors.Is(err, store.ErrNotFound) {
							time.Sleep(time.Millisecond)
							continue
						}
						if err != nil {
							errc <- err
							return
						}
						j.State, j.Progress = store.JobSucceeded, 1
						if _, err := s.UpdateJob(ctx, j); err != nil {
							errc <- err
							return
						}
						mu.Lock()
						done++
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		close(errc)
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	rate := float64(jobs*b.N) / time.Since(t0).Seconds()
	b.ReportMetric(rate, "jobs/s")
	b.Logf("%d jobs created, claimed and completed: %.0f jobs/s", jobs*b.N, rate)
}
