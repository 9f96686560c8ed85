package placement

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// fleet makes n hosts like the ones of the quality experiment (32 cores ×
// 2926 MHz, 256 GiB), a tenth of them in maintenance or not responding,
// half-used at random.
func fleet(n int, seed uint64) []*Host {
	r := rand.New(rand.NewPCG(seed, 1))
	hs := make([]*Host, n)
	for i := range hs {
		h := &Host{
			ID: fmt.Sprintf("h%06d", i), Group: fmt.Sprintf("g%d", i%10), Cores: 32,
			Capacity: Vector{CPU: 32 * 2926, Memory: 262144, DiskIOPS: 20000, DiskMBps: 2000, Network: 10000},
			Reserve:  Vector{CPU: 0.05, Memory: 4096},
			Formats:  []string{"vhd", "vhdx"},
			Features: []string{"live-migration"},
		}
		h.Used = Vector{CPU: r.Float64() * 40000, Memory: r.Float64() * 120000, DiskIOPS: r.Float64() * 8000, DiskMBps: r.Float64() * 800, Network: r.Float64() * 4000}
		switch r.IntN(20) {
		case 0:
			h.State = Maintenance
		case 1:
			h.State = NotResponding
		}
		hs[i] = h
	}
	return hs
}

// emptyFleet makes n empty, ready hosts.
func emptyFleet(n int) []*Host {
	hs := make([]*Host, n)
	for i := range hs {
		hs[i] = &Host{ID: fmt.Sprintf("h%06d", i), Cores: 32,
			Capacity: Vector{CPU: 32 * 2926, Memory: 262144, DiskIOPS: 20000, DiskMBps: 2000, Network: 10000},
			Reserve:  Vector{CPU: 0.05, Memory: 4096}}
	}
	return hs
}

// vmsOf makes n VMs of 1–8 vCPU and 1–32 GiB with expected use.
func vmsOf(n int, seed uint64) []*VM {
	r := rand.New(rand.NewPCG(seed, 2))
	vms := make([]*VM, n)
	for i := range vms {
		vcpu := 1 << r.IntN(4)
		vms[i] = &VM{ID: fmt.Sprintf("vm%07d", i), VCPU: vcpu, Memory: float64(1024 * (1 + r.IntN(16))),
			Expected: Vector{CPU: float64(vcpu) * 2926 * (0.05 + 0.4*r.Float64()), DiskIOPS: 50 + r.Float64()*200, DiskMBps: r.Float64() * 20, Network: r.Float64() * 100}}
	}
	return vms
}

// BenchmarkRate10kHosts rates one VM across 10 000 hosts with the default
// plugins.
//
//	go test ./placement -run '^$' -bench Rate -benchmem
func BenchmarkRate10kHosts(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			p, _ := New(Config{})
			hosts := fleet(n, 1)
			vm := &VM{ID: "web01", VCPU: 4, Memory: 16384, Expected: Vector{CPU: 3000, DiskIOPS: 200, Network: 100}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Rate(context.Background(), vm, hosts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPlace100kVMs10kHosts places 100 000 VMs on 10 000 empty hosts,
// and smaller batches for the growth table; it reports the peak heap.
//
//	go test ./placement -run '^$' -bench Place -benchtime 1x
func BenchmarkPlace100kVMs10kHosts(b *testing.B) {
	for _, c := range []struct{ vms, hosts int }{{1000, 100}, {10000, 1000}, {100000, 10000}} {
		for _, goal := range []Goal{Consolidate, LoadBalance} {
			b.Run(fmt.Sprintf("vms=%d/hosts=%d/%s", c.vms, c.hosts, map[Goal]string{Consolidate: "consolidate", LoadBalance: "balance"}[goal]), func(b *testing.B) {
				p, _ := New(Config{Goal: goal})
				hosts := emptyFleet(c.hosts)
				vms := vmsOf(c.vms, 3)
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				var plan *Plan
				for b.Loop() {
					var err error
					plan, err = p.Place(context.Background(), vms, hosts, nil)
					if err != nil {
						b.Fatal(err)
					}
				}
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(plan.HostsUsed), "hosts")
				b.ReportMetric(float64(len(plan.Unplaced)), "unplaced")
				b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/(1<<20), "MiB/op")
			})
		}
	}
}

// BenchmarkFitMetric compares the two best-fit measures the vector
// bin-packing literature offers, the L2 norm of the room left (Place's) and
// the dot product of demand and free amounts (Tetris-style alignment), by
// the hosts they use on the synthetic fleet under Consolidate.
//
//	go test ./placement -run '^$' -bench FitMetric -benchtime 1x
func BenchmarkFitMetric(b *testing.B) {
	for _, c := range []struct{ vms, hosts int }{{1000, 100}, {10000, 1000}} {
		for _, dot := range []bool{false, true} {
			name := map[bool]string{false: "l2", true: "dot"}[dot]
			b.Run(fmt.Sprintf("vms=%d/%s", c.vms, name), func(b *testing.B) {
				p, _ := New(Config{Goal: Consolidate})
				p.fitDot = dot
				var plan *Plan
				for b.Loop() {
					plan, _ = p.Place(context.Background(), vmsOf(c.vms, 3), emptyFleet(c.hosts), nil)
				}
				b.ReportMetric(float64(plan.HostsUsed), "hosts")
			})
		}
	}
}
