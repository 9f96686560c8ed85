package placement

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
)

// rbFleetSpec describes a generated fleet of running VMs.
type rbFleetSpec struct {
	hosts, vms int
	seed       uint64
	// overloaded is the share of hosts loaded above 0.8 (at most 1).
	overloaded float64
	groups     int // host groups g0, g1, ...; 0 means one unnamed group
}

const (
	rbCores   = 32
	rbCoreMHz = 2926
)

// rbFleet returns hosts of 32 cores × 2926 MHz and 256 GiB (5 % CPU and 8
// GiB reserved) running VMs of 1–8 vCPU and 1–32 GiB with an expected CPU,
// each host's Used the sum of its VMs' demand. About spec.overloaded of the
// hosts are loaded between 0.83 and 1 of their usable CPU or memory; the
// others at most 0.78. It is deterministic for a seed.
func rbFleet(spec rbFleetSpec) ([]*Host, []Assignment) {
	rng := rand.New(rand.NewPCG(spec.seed, 0x7265626c))
	hosts := make([]*Host, spec.hosts)
	for i := range hosts {
		h := &Host{
			ID:       fmt.Sprintf("h%05d", i),
			Cores:    rbCores,
			Capacity: Vector{CPU: rbCores * rbCoreMHz, Memory: 262144},
			Reserve:  Vector{CPU: 0.05, Memory: 8192},
		}
		if spec.groups > 0 {
			h.Group = fmt.Sprintf("g%d", i%spec.groups)
		}
		hosts[i] = h
	}
	memGiB := []float64{1, 2, 4, 8, 16, 32}
	memWeight := []int{20, 25, 25, 15, 10, 5} // mean ≈ 6 GiB
	vms := make([]*VM, spec.vms)
	for i := range vms {
		vcpu := 1 + rng.IntN(8)
		k, w := 0, rng.IntN(100)
		for w >= memWeight[k] {
			w -= memWeight[k]
			k++
		}
		vms[i] = &VM{
			ID:       fmt.Sprintf("vm%06d", i),
			VCPU:     vcpu,
			Memory:   memGiB[k] * 1024,
			Expected: Vector{CPU: float64(vcpu) * rbCoreMHz * (0.05 + 0.3*rng.Float64())},
		}
	}

	u := usable(hosts[0])
	s := Sizer{}
	load := func(h *Host, d Vector) float64 {
		return max((h.Used[CPU]+d[CPU])/u[CPU], (h.Used[Memory]+d[Memory])/u[Memory])
	}
	var placed []Assignment
	put := func(h *Host, vm *VM, d Vector) {
		h.Used = h.Used.Add(d)
		placed = append(placed, Assignment{VM: vm, Host: h})
	}
	perm := rng.Perm(len(hosts))
	nOver := int(float64(len(hosts))*spec.overloaded + 0.5)
	isOver := make([]bool, len(hosts))
	next := 0 // the next VM to place
	var aside []*VM
	for _, i := range perm[:nOver] {
		isOver[i] = true
		h := hosts[i]
		target := 0.83 + 0.14*rng.Float64()
		for next < len(vms) && load(h, Vector{}) < target {
			vm := vms[next]
			next++
			d := s.Demand(vm, h)
			if load(h, d) > 1 {
				aside = append(aside, vm)
				continue
			}
			put(h, vm, d)
		}
	}
	var normal []*Host
	for i, h := range hosts {
		if !isOver[i] {
			normal = append(normal, h)
		}
	}
	rest := append(aside, vms[next:]...)
	for _, vm := range rest {
		if len(normal) == 0 {
			put(hosts[rng.IntN(len(hosts))], vm, s.Demand(vm, hosts[0]))
			continue
		}
		start := rng.IntN(len(normal))
		for k := range normal {
			h := normal[(start+k)%len(normal)]
			d := s.Demand(vm, h)
			if load(h, d) <= 0.78 || k == len(normal)-1 {
				put(h, vm, d)
				break
			}
		}
	}
	return hosts, placed
}

func rbCountOver(loads []HostLoad, t float64) int {
	n := 0
	for _, l := range loads {
		if l.CPU > t || l.Memory > t {
			n++
		}
	}
	return n
}

// BenchmarkRebalance1kHosts20kVMs plans a LoadBalance round for fleets with
// about 20 % of the hosts above the 0.8 threshold; the 1k-host case is the
// target, the others show how it scales, and Consolidate the other goal.
func BenchmarkRebalance1kHosts20kVMs(b *testing.B) {
	cases := []struct {
		name       string
		hosts, vms int
		goal       Goal
	}{
		{"100hosts-2kVMs", 100, 2000, LoadBalance},
		{"1kHosts-20kVMs", 1000, 20000, LoadBalance},
		{"10kHosts-200kVMs", 10000, 200000, LoadBalance},
		{"consolidate-1kHosts-20kVMs", 1000, 20000, Consolidate},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			hosts, placed := rbFleet(rbFleetSpec{hosts: c.hosts, vms: c.vms, seed: 1, overloaded: 0.2})
			p, err := New(Config{Goal: c.goal})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var plan *RebalancePlan
			for b.Loop() {
				plan, err = p.Rebalance(ctx, hosts, placed, nil)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(plan.Moves)), "moves")
			b.ReportMetric(float64(rbCountOver(plan.Before, 0.8)), "over-before")
			b.ReportMetric(float64(rbCountOver(plan.After, 0.8)), "over-after")
			if c.goal == Consolidate {
				b.ReportMetric(float64(plan.HostsEmptied), "emptied")
			}
		})
	}
}
