package vmm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/internal/demolib"
	"github.com/vmmkit/vmmkit/internal/pgtest"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
	"github.com/vmmkit/vmmkit/vmm/store/sqlite"
)

// BenchmarkStart times a manager starting from a store of 5 000 hosts and
// 50 000 VMs on the simulator: New, then the leader's first comparison of
// the inventory with every host (WaitSynced). Target: 5 s.
func BenchmarkStart(b *testing.B) {
	const groups, hosts, perHost = 50, 5000, 10
	dir := b.TempDir()
	path := filepath.Join(dir, "vmm.db")
	fleet, err := sim.New(sim.Config{Count: hosts})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	var gids []string
	for i := range groups {
		g, err := st.CreateGroup(ctx, store.HostGroup{Name: fmt.Sprintf("g%02d", i), Goal: vmm.GoalBalance})
		if err != nil {
			b.Fatal(err)
		}
		gids = append(gids, g.ID)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	names := fleet.Names()
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < hosts; i += 8 {
				h, err := st.CreateHost(ctx, store.Host{Name: names[i], GroupID: gids[i%groups], URI: vmm.SimURI(names[i]), Kind: "sim"})
				if err != nil {
					errc <- err
					return
				}
				drv := fleet.Host(names[i])
				for k := range perHost {
					name := fmt.Sprintf("vm%05d-%d", i, k)
					if _, err := drv.CreateVM(ctx, hostapi.VMSpec{Name: name, VCPUs: 1, Memory: 1 << 30}); err != nil {
						errc <- err
						return
					}
					if _, err := st.CreateVM(ctx, store.VM{Name: name, GroupID: h.GroupID, HostID: h.ID, State: "stopped"}); err != nil {
						errc <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		b.Fatal(err)
	}
	st.Close()
	b.Logf("filled %d hosts and %d VMs in %.1f s", hosts, hosts*perHost, time.Since(t0).Seconds())
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		t0 := time.Now()
		m, err := vmm.New(vmm.Config{StorePath: path, Sim: fleet})
		if err != nil {
			b.Fatal(err)
		}
		if err := m.WaitSynced(ctx); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		b.StopTimer()
		vms, err := m.VMs(ctx, store.VMFilter{})
		if err != nil || len(vms) != hosts*perHost {
			b.Fatalf("%d VMs after the start (%v), want %d", len(vms), err, hosts*perHost)
		}
		m.Close()
		b.StartTimer()
	}
	per := total.Seconds() / float64(b.N)
	b.ReportMetric(per, "s/start")
	b.Logf("start with %d hosts and %d VMs: %.2f s (target 5 s)", hosts, hosts*perHost, per)
}

// BenchmarkCreateVMJobs times 1 000 CreateVM jobs on 50 simulated hosts
// with SQLite, from the first Submit to the last job's end. Target: at
// least 200 jobs/s.
func BenchmarkCreateVMJobs(b *testing.B) {
	for _, diff := range []bool{true, false} {
		b.Run(fmt.Sprintf("differencing=%v", diff), func(b *testing.B) {
			benchCreateVMJobs(b, func(dir string) vmm.Config {
				return vmm.Config{StorePath: filepath.Join(dir, "vmm.db")}
			}, diff)
		})
	}
}

// BenchmarkCreateVMJobsPostgres is BenchmarkCreateVMJobs on PostgreSQL
// (VMM_TEST_PG_DSN), with differencing disks.
func BenchmarkCreateVMJobsPostgres(b *testing.B) {
	benchCreateVMJobs(b, func(dir string) vmm.Config {
		return vmm.Config{PostgresDSN: pgtest.FreshDB(b) + pgPool}
	}, true)
}

// pgPool is appended to the test DSN: "" or "?pool_max_conns=N".
var pgPool = os.Getenv("VMM_BENCH_PG_POOL")

func benchCreateVMJobs(b *testing.B, config func(dir string) vmm.Config, differencing bool) {
	const hosts, jobs = 50, 1000
	ctx := context.Background()
	var rate float64
	for n := range b.N {
		b.StopTimer()
		dir := b.TempDir()
		fleet, err := sim.New(sim.Config{Count: hosts})
		if err != nil {
			b.Fatal(err)
		}
		if err := demolib.Build(filepath.Join(dir, "lib"), demolib.Options{Data: 1 << 20}); err != nil {
			b.Fatal(err)
		}
		share, err := library.NewDirShare("central", "paris", filepath.Join(dir, "lib"))
		if err != nil {
			b.Fatal(err)
		}
		lib, err := library.New(library.Options{Shares: []library.Share{share}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := lib.Refresh(ctx); err != nil {
			b.Fatal(err)
		}
		cfg := config(dir)
		cfg.Sim, cfg.Library = fleet, lib
		m, err := vmm.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		g, err := m.CreateGroup(ctx, store.HostGroup{Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		for _, name := range fleet.Names() {
			if _, err := m.AddHost(ctx, g.ID, vmm.SimURI(name), &vmm.HostOptions{Site: "paris"}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		t0 := time.Now()
		ids := make([]string, jobs)
		for i := range jobs {
			j, err := m.CreateVM(ctx, vmm.VMSpec{Name: fmt.Sprintf("vm%04d", i), Group: g.ID, Template: "web-small", Differencing: differencing})
			if err != nil {
				b.Fatal(err)
			}
			ids[i] = j.ID
		}
		for _, id := range ids {
			if _, err := m.Wait(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		secs := time.Since(t0).Seconds()
		b.StopTimer()
		rate += jobs / secs
		if n == 0 {
			b.Logf("%d CreateVM jobs on %d hosts: %.2f s, %.0f jobs/s", jobs, hosts, secs, jobs/secs)
		}
		m.Close()
		b.StartTimer()
	}
	b.ReportMetric(rate/float64(b.N), "jobs/s")
}
