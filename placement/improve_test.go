package placement

import (
	"context"
	"fmt"
	"math"
	"testing"
)

// improveCase: VMs with phase-shifted sine loads, which best fit packs by
// peak increase and the improvement packs tighter.
func improveCase() ([]*VM, []*Host) {
	const n = 48
	var vms []*VM
	for i := range 60 {
		s := make([]Vector, n)
		amp := 300 + float64((i*37)%500)
		for t := range s {
			s[t][CPU] = amp * (1.05 + math.Sin(2*math.Pi*float64(t+i*7)/n))
		}
		p := &Profile{Series: s}
		for _, v := range s {
			p.Peak[CPU] = max(p.Peak[CPU], v[CPU])
		}
		vms = append(vms, &VM{ID: fmt.Sprintf("vm%02d", i), Memory: 1 << 20, History: p})
	}
	var hs []*Host
	for i := range 60 {
		hs = append(hs, &Host{ID: fmt.Sprintf("h%02d", i), Cores: 2, Capacity: Vector{CPU: 5320, Memory: 1 << 30}})
	}
	return vms, hs
}

func TestImproveNoOverloadDeterministic(t *testing.T) {
	p, err := New(Config{Goal: Consolidate})
	if err != nil {
		t.Fatal(err)
	}
	vms, hs := improveCase()
	var first map[string]string
	for run := range 3 {
		// Hosts in another order each run: the plan must not change.
		hh := append(hs[run*7%len(hs):], hs[:run*7%len(hs)]...)
		plan, err := p.Place(context.Background(), vms, hh, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Unplaced) != 0 {
			t.Fatalf("unplaced: %v", plan.Unplaced)
		}
		sums := map[*Host][]float64{}
		got := map[string]string{}
		for _, a := range plan.Assignments {
			s := sums[a.Host]
			if s == nil {
				s = make([]float64, len(a.VM.History.Series))
				sums[a.Host] = s
			}
			for t, v := range a.VM.History.Series {
				s[t] += v[CPU]
			}
			got[a.VM.ID] = a.Host.ID
		}
		for h, s := range sums {
			for i, x := range s {
				if x > h.Capacity[CPU]*(1+1e-9) {
					t.Fatalf("host %s overloaded at %d: %v", h.ID, i, x)
				}
			}
		}
		if plan.HostsUsed != len(sums) {
			t.Fatalf("HostsUsed %d, hosts with VMs %d", plan.HostsUsed, len(sums))
		}
		if first == nil {
			first = got
			t.Logf("hosts used: %d", plan.HostsUsed)
			continue
		}
		for id, h := range got {
			if first[id] != h {
				t.Fatalf("run %d: %s on %s, first run %s", run, id, h, first[id])
			}
		}
	}
}

func TestImproveEmptiesHost(t *testing.T) {
	vms, hs := improveCase()
	p, err := New(Config{Goal: Consolidate})
	if err != nil {
		t.Fatal(err)
	}
	state, norm := p.newPlaceState(hs, len(vms[0].History.Series))
	order := p.placementOrder(vms, hs, norm)
	assigned, _, err := p.pass(context.Background(), order, state, PlaceOptions{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := 0
	for i := range state {
		if state[i].open {
			before++
		}
	}
	a, ok, err := p.improve(context.Background(), state, assigned, len(vms[0].History.Series), nil)
	if err != nil {
		t.Fatal(err)
	}
	after := before
	if ok {
		after = 0
		st := p.replay(hs, len(vms[0].History.Series), a)
		for i := range st {
			if st[i].open {
				after++
			}
			for _, x := range st[i].series {
				if x > st[i].usable[CPU] {
					t.Fatalf("host %s overloaded", st[i].h.ID)
				}
			}
		}
	}
	t.Logf("best fit %d hosts, improved %d", before, after)
	if after > before {
		t.Fatalf("improve used more hosts: %d > %d", after, before)
	}
}
