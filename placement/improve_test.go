package placement

import (
	"context"
	"errors"
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
	if after >= before {
		t.Fatalf("improve used no fewer hosts: %d >= %d", after, before)
	}
}

// swapCase is a plan on three hosts of 10 CPU that fits on two, but only
// once a VM of the first host and one of the second change places: the
// lightest host's VM overloads either of the others.
func swapCase() ([]*Host, []Assignment) {
	vm := func(id string, a, b float64) *VM {
		s := []Vector{{CPU: a}, {CPU: b}}
		return &VM{ID: id, Memory: 1, History: &Profile{Series: s, Peak: Vector{CPU: max(a, b)}}}
	}
	var hs []*Host
	for i := range 3 {
		hs = append(hs, &Host{ID: fmt.Sprintf("h%d", i), Cores: 1, Capacity: Vector{CPU: 10, Memory: 100}})
	}
	a1, a2, b1, b2, c := vm("a1", 5, 1), vm("a2", 5, 1), vm("b1", 1, 5), vm("b2", 1, 5), vm("c", 4, 4)
	return hs, []Assignment{{a1, hs[0]}, {a2, hs[0]}, {b1, hs[1]}, {b2, hs[1]}, {c, hs[2]}}
}

// hostsAndOverload replays assigned: the hosts it uses and its summed CPU
// overload.
func hostsAndOverload(t *testing.T, p *Placer, hs []*Host, n int, assigned []Assignment) (int, float64) {
	t.Helper()
	used, ov := 0, 0.0
	for _, s := range p.replay(hs, n, assigned) {
		if s.open {
			used++
		}
		ov += over(s.series, nil, nil, s.usable[CPU])
	}
	return used, ov
}

func TestImproveFindsFewerHosts(t *testing.T) {
	p, err := New(Config{Goal: Consolidate})
	if err != nil {
		t.Fatal(err)
	}
	hs, assigned := swapCase()
	if used, ov := hostsAndOverload(t, p, hs, 2, assigned); used != 3 || ov != 0 {
		t.Fatalf("start: %d hosts, overload %v", used, ov)
	}
	a, ok, err := p.improve(context.Background(), p.replay(hs, 2, assigned), assigned, 2, nil)
	if err != nil || !ok {
		t.Fatalf("improve: %v, %v", ok, err)
	}
	if used, ov := hostsAndOverload(t, p, hs, 2, a); used != 2 || ov != 0 {
		t.Fatalf("improved: %d hosts, overload %v", used, ov)
	}
}

// TestImproveSearchFromOverload starts the search from a plan that
// overloads both hosts (the two VMs that peak together share one).
func TestImproveSearchFromOverload(t *testing.T) {
	p, err := New(Config{Goal: Consolidate})
	if err != nil {
		t.Fatal(err)
	}
	hs, assigned := swapCase()
	assigned[4].Host = hs[0] // c joins a1 and a2
	assigned[1].Host = hs[1] // a2 joins b1 and b2
	im, ok := p.newImprover(p.replay(hs, 2, assigned), assigned, 2)
	if !ok {
		t.Fatal("no improver")
	}
	// Bins are in host order; the third host is empty, so two bins.
	if len(im.bins) != 2 {
		t.Fatalf("%d bins", len(im.bins))
	}
	if o := over(im.bins[0].load, nil, nil, 10) + over(im.bins[1].load, nil, nil, 10); o == 0 {
		t.Fatal("no overload to start with")
	}
	found, err := im.search(context.Background(), -1)
	if err != nil || !found {
		t.Fatalf("search: %v, %v", found, err)
	}
	for b := range im.bins {
		if o := over(im.bins[b].load, nil, nil, im.bins[b].cap); o != 0 {
			t.Fatalf("bin %d overloaded by %v", b, o)
		}
	}
}

func TestImproveDeterministic(t *testing.T) {
	p, err := New(Config{Goal: Consolidate})
	if err != nil {
		t.Fatal(err)
	}
	vms, hs := improveCase()
	n := len(vms[0].History.Series)
	var first []Assignment
	for run := range 2 {
		state, norm := p.newPlaceState(hs, n)
		assigned, _, err := p.pass(context.Background(), p.placementOrder(vms, hs, norm), state, PlaceOptions{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, ok, err := p.improve(context.Background(), state, assigned, n, nil)
		if err != nil || !ok {
			t.Fatalf("improve: %v, %v", ok, err)
		}
		if run == 0 {
			first = a
			continue
		}
		for k := range a {
			if a[k] != first[k] {
				t.Fatalf("run %d: %s on %s, first run %s", run, a[k].VM.ID, a[k].Host.ID, first[k].Host.ID)
			}
		}
	}
}

// errAfter is a context whose Err turns context.Canceled after n calls.
type errAfter struct {
	context.Context
	n int
}

func (c *errAfter) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

func TestImproveCancel(t *testing.T) {
	p, err := New(Config{Goal: Consolidate})
	if err != nil {
		t.Fatal(err)
	}
	vms, hs := improveCase()
	n := len(vms[0].History.Series)
	for _, calls := range []int{0, 1, 3} {
		state, norm := p.newPlaceState(hs, n)
		assigned, _, err := p.pass(context.Background(), p.placementOrder(vms, hs, norm), state, PlaceOptions{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = p.improve(&errAfter{context.Background(), calls}, state, assigned, n, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("after %d checks: %v, want context.Canceled", calls, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Place(ctx, vms, hs, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Place: %v, want context.Canceled", err)
	}
}

// TestImproveBudget: with no work left the improvement changes nothing;
// with a little, it stops within an iteration's work of the budget.
func TestImproveBudget(t *testing.T) {
	p, err := New(Config{Goal: Consolidate})
	if err != nil {
		t.Fatal(err)
	}
	vms, hs := improveCase()
	n := len(vms[0].History.Series)
	state, norm := p.newPlaceState(hs, n)
	assigned, _, err := p.pass(context.Background(), p.placementOrder(vms, hs, norm), state, PlaceOptions{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	im, ok := p.newImprover(state, assigned, n)
	if !ok {
		t.Fatal("no improver")
	}
	im.work = 0
	if _, ok, err := im.run(context.Background(), state, assigned); ok || err != nil {
		t.Fatalf("no budget: improved %v, %v", ok, err)
	}
	im, _ = p.newImprover(state, assigned, n)
	const budget = 20_000
	im.work = budget
	if _, _, err := im.run(context.Background(), state, assigned); err != nil {
		t.Fatal(err)
	}
	// One iteration reads at most every sample of every bin a few times.
	iter := 8 * len(im.bins) * len(im.items) * n
	if spent := budget - im.work; spent > budget+iter {
		t.Fatalf("spent %d of a budget of %d", spent, budget)
	}
}
