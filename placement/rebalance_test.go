package placement

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const rbGiB = 1024 // MiB

// rbHost10 is a host of 10 cores × 1 GHz and 100 GiB, nothing reserved.
func rbHost10(id string) *Host {
	return &Host{ID: id, Cores: 10, Capacity: Vector{CPU: 10000, Memory: 100 * rbGiB}}
}

// rbNewVM is a VM expected to use cpu MHz and 1 GiB.
func rbNewVM(id string, cpu float64) *VM {
	return &VM{ID: id, VCPU: 10, Memory: rbGiB, Expected: Vector{CPU: cpu}}
}

// rbRun puts the VMs on their hosts (host ID → VMs), sets each host's Used
// to the sum of their demand and returns the assignments.
func rbRun(hosts []*Host, on map[string][]*VM) []Assignment {
	var placed []Assignment
	for _, h := range hosts {
		for _, vm := range on[h.ID] {
			h.Used = h.Used.Add(Sizer{}.Demand(vm, h))
			placed = append(placed, Assignment{VM: vm, Host: h})
		}
	}
	return placed
}

// rbMoves lists moves as "vm from→to".
func rbMoves(plan *RebalancePlan) []string {
	out := []string{}
	for _, m := range plan.Moves {
		out = append(out, m.VM.ID+" "+m.From.ID+"→"+m.To.ID)
	}
	return out
}

func rbLoad(t *testing.T, loads []HostLoad, id string) HostLoad {
	t.Helper()
	for _, l := range loads {
		if l.ID == id {
			return l
		}
	}
	t.Fatalf("no load for %s", id)
	return HostLoad{}
}

func rbNew(t *testing.T, cfg Config) *Placer {
	t.Helper()
	p, err := New(cfg)
	require.NoError(t, err)
	return p
}

// rbBalanceCase: h2 at 95 % CPU with ten 950 MHz VMs (none brings it under
// 80 % alone), h1 at 87 % (h1-3 alone does, and is the smallest that does),
// h3 at 20 %, h4 at 40 %.
func rbBalanceCase() ([]*Host, []Assignment) {
	hosts := []*Host{rbHost10("h1"), rbHost10("h2"), rbHost10("h3"), rbHost10("h4")}
	on := map[string][]*VM{
		"h1": {rbNewVM("h1-1", 4000), rbNewVM("h1-2", 2000), rbNewVM("h1-3", 1200), rbNewVM("h1-4", 1500)},
		"h3": {rbNewVM("h3-1", 2000)},
		"h4": {rbNewVM("h4-1", 4000)},
	}
	for k := range 10 {
		on["h2"] = append(on["h2"], rbNewVM(fmt.Sprintf("h2-%02d", k+1), 950))
	}
	return hosts, rbRun(hosts, on)
}

func TestRebalanceLoadBalanceFewestMoves(t *testing.T) {
	hosts, placed := rbBalanceCase()
	plan, err := rbNew(t, Config{}).Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	// The most loaded host first; its VMs by ID as none suffices alone, to
	// the host left least loaded; then h1's smallest sufficient VM, to h3
	// (51 %) rather than h4 (52 %).
	assert.Equal(t, []string{"h2-01 h2→h3", "h2-02 h2→h3", "h1-3 h1→h3"}, rbMoves(plan))
	assert.Equal(t, 0, plan.HostsEmptied)

	want := map[string][2]float64{"h1": {0.75, 0.87}, "h2": {0.76, 0.95}, "h3": {0.51, 0.20}, "h4": {0.40, 0.40}}
	for id, w := range want {
		assert.InDelta(t, w[0], rbLoad(t, plan.After, id).CPU, 1e-9, id)
		assert.InDelta(t, w[1], rbLoad(t, plan.Before, id).CPU, 1e-9, id)
	}
	assert.Equal(t, HostLoad{ID: "h3", CPU: 0.51, Memory: 4.0 / 100, VMs: 4}, rbRoundLoad(rbLoad(t, plan.After, "h3")))
	assert.Equal(t, []string{"h1", "h2", "h3", "h4"}, []string{plan.After[0].ID, plan.After[1].ID, plan.After[2].ID, plan.After[3].ID}, "in the order given")
	assert.Equal(t, "host h1 at 87 % CPU, above the 80 % threshold; after the move h1 at 75 % CPU, h3 at 51 % CPU", plan.Moves[2].Reason)
	assert.True(t, strings.HasPrefix(plan.Moves[0].Reason, "host h2 at 95 % CPU, above the 80 % threshold; after the move h2 at "), plan.Moves[0].Reason)

	// The input is left alone.
	assert.InDelta(t, 9500, hosts[1].Used[CPU], 1e-9)
	assert.Empty(t, hosts[2].VMs)
}

func rbRoundLoad(l HostLoad) HostLoad {
	l.CPU = math.Round(l.CPU*1e6) / 1e6
	l.Memory = math.Round(l.Memory*1e6) / 1e6
	return l
}

func TestRebalanceLoadBalanceLargestFirstWhenNoneSuffices(t *testing.T) {
	hosts := []*Host{rbHost10("a"), rbHost10("b")}
	on := map[string][]*VM{"a": {rbNewVM("a1", 1400), rbNewVM("a2", 1300), rbNewVM("a3", 700), rbNewVM("a4", 600)}}
	for k := range 11 {
		on["a"] = append(on["a"], rbNewVM(fmt.Sprintf("a5-%02d", k), 500))
	}
	placed := rbRun(hosts, on) // a at 95 %: needs 1500 MHz off
	plan, err := rbNew(t, Config{}).Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	// a1 does most but not enough (81 %), then the smallest VM that does.
	assert.Equal(t, []string{"a1 a→b", "a5-00 a→b"}, rbMoves(plan))
	assert.InDelta(t, 0.76, plan.After[0].CPU, 1e-9)
}

func TestRebalanceMemoryAndThreshold(t *testing.T) {
	hosts := []*Host{rbHost10("a"), rbHost10("b")}
	big := &VM{ID: "big", VCPU: 2, Memory: 60 * rbGiB, Expected: Vector{CPU: 500}}
	small := &VM{ID: "small", VCPU: 2, Memory: 15 * rbGiB, Expected: Vector{CPU: 500}}
	placed := rbRun(hosts, map[string][]*VM{"a": {big, small}}) // a at 75 % memory
	p := rbNew(t, Config{})

	plan, err := p.Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	assert.Empty(t, plan.Moves, "under the default 80 %")

	plan, err = p.Rebalance(context.Background(), hosts, placed, &RebalanceOptions{Threshold: 0.7})
	require.NoError(t, err)
	assert.Equal(t, []string{"small a→b"}, rbMoves(plan))
	assert.Equal(t, "host a at 75 % memory, above the 70 % threshold; after the move a at 60 % memory, b at 15 % memory", plan.Moves[0].Reason)
}

func TestRebalanceNoMoveHelps(t *testing.T) {
	hosts := []*Host{rbHost10("a"), rbHost10("b")}
	// b at 75 %: any of a's VMs would take it above 80 %.
	placed := rbRun(hosts, map[string][]*VM{"a": {rbNewVM("a1", 4500), rbNewVM("a2", 4500)}, "b": {rbNewVM("b1", 7500)}})
	plan, err := rbNew(t, Config{}).Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	assert.Empty(t, plan.Moves)
	assert.Equal(t, plan.Before, plan.After)
}

func TestRebalanceCaps(t *testing.T) {
	p := rbNew(t, Config{})
	hosts, placed := rbBalanceCase()
	plan, err := p.Rebalance(context.Background(), hosts, placed, &RebalanceOptions{MaxMoves: 1})
	require.NoError(t, err)
	assert.Equal(t, []string{"h2-01 h2→h3"}, rbMoves(plan))

	// One migration per host: h2 gives one VM, h3 takes one, so h1's goes
	// to h4.
	hosts, placed = rbBalanceCase()
	plan, err = p.Rebalance(context.Background(), hosts, placed, &RebalanceOptions{MaxMovesPerHost: 1})
	require.NoError(t, err)
	assert.Equal(t, []string{"h2-01 h2→h3", "h1-3 h1→h4"}, rbMoves(plan))

	// Per host, 2: h2 gives two, h3 takes two; then h4.
	hosts, placed = rbBalanceCase()
	plan, err = p.Rebalance(context.Background(), hosts, placed, &RebalanceOptions{MaxMovesPerHost: 2})
	require.NoError(t, err)
	assert.Equal(t, []string{"h2-01 h2→h3", "h2-02 h2→h3", "h1-3 h1→h4"}, rbMoves(plan))
}

// rbConsolidateCase: c1 at 10 % (one VM), c2 at 20 % (two), c3 at 60 %,
// c4 at 70 %, c5 empty.
func rbConsolidateCase() ([]*Host, []Assignment) {
	hosts := []*Host{rbHost10("c1"), rbHost10("c2"), rbHost10("c3"), rbHost10("c4"), rbHost10("c5")}
	return hosts, rbRun(hosts, map[string][]*VM{
		"c1": {rbNewVM("c1-1", 1000)},
		"c2": {rbNewVM("c2-1", 1000), rbNewVM("c2-2", 1000)},
		"c3": {rbNewVM("c3-1", 6000)},
		"c4": {rbNewVM("c4-1", 7000)},
	})
}

func TestRebalanceConsolidate(t *testing.T) {
	p := rbNew(t, Config{Goal: Consolidate})
	hosts, placed := rbConsolidateCase()
	plan, err := p.Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	// The least loaded first, each VM to the fullest host it fits (best
	// fit), never to the empty c5; c3 fits nowhere once c4 is full.
	assert.Equal(t, []string{"c1-1 c1→c4", "c2-1 c2→c4", "c2-2 c2→c4"}, rbMoves(plan))
	assert.Equal(t, 2, plan.HostsEmptied)
	assert.Equal(t, 0, rbLoad(t, plan.After, "c1").VMs)
	assert.Equal(t, 0, rbLoad(t, plan.After, "c2").VMs)
	assert.Equal(t, 4, rbLoad(t, plan.After, "c4").VMs)
	assert.InDelta(t, 1.0, rbLoad(t, plan.After, "c4").CPU, 1e-9)
	assert.Equal(t, "emptying host c2 (20 % CPU, 2 % memory, 2 VMs) so that it can be turned off; c4 at 90 % CPU and 3 % memory after the move", plan.Moves[1].Reason)

	// A cap of two moves: c1 is emptied, c2 would need two more, c3 one
	// (to c2, which then stays).
	hosts, placed = rbConsolidateCase()
	plan, err = p.Rebalance(context.Background(), hosts, placed, &RebalanceOptions{MaxMoves: 2})
	require.NoError(t, err)
	assert.Equal(t, []string{"c1-1 c1→c4", "c3-1 c3→c2"}, rbMoves(plan))
	assert.Equal(t, 2, plan.HostsEmptied)

	// One migration per host: c4 takes c1's VM and no more; c2 would
	// have to give two; c3's VM goes to c2.
	hosts, placed = rbConsolidateCase()
	plan, err = p.Rebalance(context.Background(), hosts, placed, &RebalanceOptions{MaxMovesPerHost: 1})
	require.NoError(t, err)
	assert.Equal(t, []string{"c1-1 c1→c4", "c3-1 c3→c2"}, rbMoves(plan))
	assert.Equal(t, 2, plan.HostsEmptied)
}

func TestRebalanceConsolidateAllOrNothing(t *testing.T) {
	hosts := []*Host{rbHost10("r1"), rbHost10("r2"), rbHost10("r3")}
	// r1's first VM fits on r2, its second nowhere: r1 keeps both.
	placed := rbRun(hosts, map[string][]*VM{
		"r1": {rbNewVM("r1-1", 3000), rbNewVM("r1-2", 3000)},
		"r2": {rbNewVM("r2-1", 7000)},
		"r3": {rbNewVM("r3-1", 8000)},
	})
	plan, err := rbNew(t, Config{Goal: Consolidate}).Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	assert.Empty(t, plan.Moves)
	assert.Equal(t, 0, plan.HostsEmptied)
	assert.Equal(t, plan.Before, plan.After)
}

func TestRebalanceGroupGoals(t *testing.T) {
	// Group "lb" balances, group "pack" consolidates; no VM crosses.
	a, b := rbHost10("a"), rbHost10("b")
	a.Group, b.Group = "lb", "lb"
	c, d := rbHost10("c"), rbHost10("d")
	c.Group, d.Group = "pack", "pack"
	hosts := []*Host{a, b, c, d}
	placed := rbRun(hosts, map[string][]*VM{
		"a": {rbNewVM("a1", 5000), rbNewVM("a2", 4000)},
		"c": {rbNewVM("c1", 1000)},
		"d": {rbNewVM("d1", 3000)},
	})
	p := rbNew(t, Config{GroupGoals: map[string]Goal{"pack": Consolidate}})
	plan, err := p.Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"a2 a→b", "c1 c→d"}, rbMoves(plan))
	assert.Equal(t, 1, plan.HostsEmptied)
}

// rbFilterCase: s at 87 % must shed web-1 (the smallest VM that suffices);
// the least loaded hosts cannot take it: m is in maintenance, o in another
// group, x1 runs db-2 (web-1 must not share a host with it), x2 runs
// cache-1 (which must not share a host with web-1). ok at 50 % can.
func rbFilterCase() ([]*Host, []Assignment) {
	hosts := []*Host{rbHost10("s"), rbHost10("m"), rbHost10("o"), rbHost10("x1"), rbHost10("x2"), rbHost10("ok")}
	hosts[1].State = Maintenance
	hosts[2].Group = "other"
	web := rbNewVM("web-1", 1200)
	web.AntiAffinity = []string{"db-2"}
	cache := rbNewVM("cache-1", 1000)
	cache.AntiAffinity = []string{"web-1"}
	return hosts, rbRun(hosts, map[string][]*VM{
		"s":  {web, rbNewVM("s-big", 7500)},
		"x1": {rbNewVM("db-2", 1000)},
		"x2": {cache},
		"ok": {rbNewVM("ok-1", 5000)},
	})
}

func TestRebalanceRespectsFilters(t *testing.T) {
	p := rbNew(t, Config{})
	hosts, placed := rbFilterCase()
	plan, err := p.Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"web-1 s→ok"}, rbMoves(plan))

	// With ok too full, nothing may move: web-1 not to m, o, x1 or x2,
	// and s-big (75 %) would take any host above 80 %.
	hosts, placed = rbFilterCase()
	hosts[5].Used[CPU] = 7500
	plan, err = p.Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	assert.Empty(t, plan.Moves)

	// Affinity: app-1 must stay with app-2 (app-2's rule), app-2 may only
	// go where app-1 is; so the big VM moves instead.
	hosts = []*Host{rbHost10("s"), rbHost10("t")}
	app2 := rbNewVM("app-2", 1300)
	app2.Affinity = []string{"app-1"}
	placed = rbRun(hosts, map[string][]*VM{"s": {rbNewVM("app-1", 1200), app2, rbNewVM("big", 6200)}, "t": {rbNewVM("t-1", 1000)}})
	plan, err = p.Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"big s→t"}, rbMoves(plan))

	// Without the Affinity filter the rules do not count.
	hosts, placed = rbFilterCase()
	loose := rbNew(t, Config{Filters: []Filter{HostUp{}, &FitsResources{}}})
	plan, err = loose.Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"web-1 s→x1"}, rbMoves(plan), "x1 is the least loaded host of the group that is up")
}

func TestRebalanceCustomFilterSeesPlanState(t *testing.T) {
	// A filter allowing at most 2 VMs per host sees the VMs moved so far.
	hosts, placed := rbBalanceCase()
	p := rbNew(t, Config{Filters: append(DefaultFilters(Sizer{}), rbMaxVMs{2})})
	plan, err := p.Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	// h3 (1 VM) takes one, h4 (1 VM) one; then all hosts have 2 or more.
	assert.Equal(t, []string{"h2-01 h2→h3", "h2-02 h2→h4"}, rbMoves(plan))
}

type rbMaxVMs struct{ n int }

func (rbMaxVMs) Name() string { return "MaxVMs" }
func (f rbMaxVMs) Filter(_ context.Context, _ *VM, h *Host) error {
	if len(h.VMs) >= f.n {
		return Reject("runs %d VMs", len(h.VMs))
	}
	return nil
}

type rbPanicFilter struct{}

func (rbPanicFilter) Name() string { return "Boom" }
func (rbPanicFilter) Filter(context.Context, *VM, *Host) error {
	panic("kaboom")
}

func TestRebalanceBadInput(t *testing.T) {
	ctx := context.Background()
	p := rbNew(t, Config{})
	hosts, placed := rbBalanceCase()

	_, err := p.Rebalance(ctx, nil, nil, nil)
	assert.ErrorIs(t, err, ErrNoHosts)

	stranger := rbHost10("stranger")
	_, err = p.Rebalance(ctx, hosts, append(placed[:1:1], Assignment{VM: rbNewVM("x", 1), Host: stranger}), nil)
	assert.ErrorContains(t, err, "VM x is assigned to host stranger, which is not in the host list")

	_, err = p.Rebalance(ctx, hosts, append(placed[:1:1], Assignment{VM: rbNewVM(placed[0].VM.ID, 1), Host: hosts[3]}), nil)
	assert.ErrorContains(t, err, `duplicate VM ID "h1-1"`)

	_, err = p.Rebalance(ctx, hosts, []Assignment{{VM: nil, Host: hosts[0]}}, nil)
	assert.Error(t, err)
	_, err = p.Rebalance(ctx, hosts, []Assignment{{VM: rbNewVM("x", 1)}}, nil)
	assert.Error(t, err)
	_, err = p.Rebalance(ctx, hosts, []Assignment{{VM: &VM{ID: "neg", Memory: -1}, Host: hosts[0]}}, nil)
	assert.Error(t, err)
	_, err = p.Rebalance(ctx, append(hosts, rbHost10("h1")), placed, nil)
	assert.ErrorContains(t, err, `duplicate host ID "h1"`)
	_, err = p.Rebalance(ctx, []*Host{hosts[0], nil}, nil, nil)
	assert.Error(t, err)

	listed := rbHost10("h9")
	listed.VMs = []string{"h1-1"}
	_, err = p.Rebalance(ctx, append(hosts[:4:4], listed), placed, nil)
	assert.ErrorContains(t, err, "VM h1-1 is assigned to host h1 but host h9 lists it")

	for _, o := range []RebalanceOptions{{Threshold: -0.1}, {Threshold: 1.5}, {Threshold: math.NaN()}, {Threshold: math.Inf(1)}, {MaxMoves: -1}, {MaxMovesPerHost: -2}} {
		_, err = p.Rebalance(ctx, hosts, placed, &o)
		assert.Error(t, err, "%+v", o)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = p.Rebalance(cancelled, hosts, placed, nil)
	assert.ErrorIs(t, err, context.Canceled)

	boom := rbNew(t, Config{Filters: []Filter{rbPanicFilter{}}})
	_, err = boom.Rebalance(ctx, hosts, placed, nil)
	var pe *PluginError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "Boom", pe.Plugin)
	assert.ErrorContains(t, err, "plugin Boom")
	assert.ErrorContains(t, err, "kaboom")

	// Listing the placed VMs on their own hosts is fine, and so are VMs
	// that are not placed (they stay).
	hosts, placed = rbBalanceCase()
	hosts[0].VMs = []string{"h1-1", "h1-2", "pinned"}
	plan, err := p.Rebalance(ctx, hosts, placed, nil)
	require.NoError(t, err)
	assert.Len(t, plan.Moves, 3)
	assert.Equal(t, 5, plan.Before[0].VMs)
	assert.Equal(t, 4, plan.After[0].VMs)
	assert.Equal(t, []string{"h1-1", "h1-2", "pinned"}, hosts[0].VMs, "input left alone")
}

func TestRebalanceConsolidateKeepsHostsWithPinnedVMs(t *testing.T) {
	hosts, placed := rbConsolidateCase()
	hosts[0].VMs = []string{"pinned"} // c1 runs a VM that does not move
	plan, err := rbNew(t, Config{Goal: Consolidate}).Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	// c1 is not emptied but takes c3's VM.
	assert.Equal(t, []string{"c2-1 c2→c4", "c2-2 c2→c4", "c3-1 c3→c1"}, rbMoves(plan))
	assert.Equal(t, 2, plan.HostsEmptied)
}

// rbReplay carries the plan out step by step on copies of the hosts and
// checks each move against the state at that step: the VM is where the
// plan says, the destination is up, in the source's group, fits its usable
// capacity (and, under LoadBalance, the threshold), and keeps the
// anti-affinity rules both ways. It returns the hosts' final loads.
func rbReplay(t *testing.T, p *Placer, hosts []*Host, placed []Assignment, plan *RebalancePlan, threshold float64) map[string]Vector {
	t.Helper()
	used := map[string]Vector{}
	byID := map[string]*Host{}
	for _, h := range hosts {
		used[h.ID] = h.Used
		byID[h.ID] = h
	}
	where := map[string]string{}
	vms := map[string]*VM{}
	for _, a := range placed {
		where[a.VM.ID] = a.Host.ID
		vms[a.VM.ID] = a.VM
	}
	movedOnce := map[string]bool{}
	for k, m := range plan.Moves {
		from, to := byID[m.From.ID], byID[m.To.ID]
		require.Same(t, from, m.From, "move %d", k)
		require.Same(t, to, m.To, "move %d", k)
		require.Equal(t, from.ID, where[m.VM.ID], "move %d: %s is not on %s", k, m.VM.ID, from.ID)
		require.False(t, movedOnce[m.VM.ID], "move %d: %s moves twice", k, m.VM.ID)
		movedOnce[m.VM.ID] = true
		require.NotEqual(t, from.ID, to.ID)
		require.Equal(t, from.Group, to.Group, "move %d", k)
		require.Equal(t, Ready, to.State, "move %d", k)
		d := p.sizer.Demand(m.VM, to)
		u := usable(to)
		after := used[to.ID].Add(d)
		for _, r := range []Resource{CPU, Memory} {
			require.LessOrEqual(t, after[r], u[r]*(1+1e-12), "move %d: %s over its usable %s", k, to.ID, r)
			if p.goals.of(to.Group) == LoadBalance {
				require.LessOrEqual(t, after[r]/u[r], threshold+1e-12, "move %d: %s over the threshold", k, to.ID)
			}
		}
		for id, h := range where {
			if h != to.ID {
				continue
			}
			require.NotContains(t, m.VM.AntiAffinity, id, "move %d", k)
			require.NotContains(t, vms[id].AntiAffinity, m.VM.ID, "move %d", k)
		}
		out := p.sizer.Demand(m.VM, from)
		used[from.ID] = used[from.ID].Sub(out)
		used[to.ID] = after
		where[m.VM.ID] = to.ID
		require.NotEmpty(t, m.Reason)
	}
	return used
}

// rbRandomCase is a generated fleet with two groups, a few hosts in
// maintenance and anti-affinity pairs.
func rbRandomCase(seed uint64) ([]*Host, []Assignment) {
	hosts, placed := rbFleet(rbFleetSpec{hosts: 80, vms: 1600, seed: seed, overloaded: 0.25, groups: 2})
	rng := rand.New(rand.NewPCG(seed, 99))
	for _, i := range rng.Perm(len(hosts))[:6] {
		hosts[i].State = Maintenance
	}
	for k := 0; k+1 < len(placed); k += 7 {
		placed[k].VM.AntiAffinity = []string{placed[k+1+rng.IntN(len(placed)-k-1)].VM.ID}
	}
	return hosts, placed
}

func TestRebalanceReplayRandom(t *testing.T) {
	// Without FitsResources too: Rebalance checks capacity itself.
	noFits := []Filter{HostUp{}, InGroup{}, Affinity{}}
	for _, seed := range []uint64{1, 2, 3} {
		for _, o := range []RebalanceOptions{{}, {Threshold: 0.7}, {MaxMoves: 25}, {MaxMovesPerHost: 1}, {Threshold: 0.75, MaxMoves: 100, MaxMovesPerHost: 3}} {
			for _, filters := range [][]Filter{nil, noFits} {
				if filters != nil && seed != 1 {
					continue
				}
				t.Run(fmt.Sprintf("seed%d/%+v/filters%d", seed, o, len(filters)), func(t *testing.T) {
					hosts, placed := rbRandomCase(seed)
					p := rbNew(t, Config{GroupGoals: map[string]Goal{"g1": Consolidate}, Filters: filters})
					plan, err := p.Rebalance(context.Background(), hosts, placed, &o)
					require.NoError(t, err)
					threshold := o.Threshold
					if threshold == 0 {
						threshold = 0.8
					}
					used := rbReplay(t, p, hosts, placed, plan, threshold)

					if o.MaxMoves > 0 {
						assert.LessOrEqual(t, len(plan.Moves), o.MaxMoves)
					}
					perHost := map[string]int{}
					for _, m := range plan.Moves {
						perHost[m.From.ID]++
						perHost[m.To.ID]++
					}
					for id, n := range perHost {
						if o.MaxMovesPerHost > 0 {
							assert.LessOrEqual(t, n, o.MaxMovesPerHost, id)
						}
					}
					// After is what the replay gives.
					overBefore, overAfter := 0, 0
					for k, h := range hosts {
						u := usable(h)
						assert.InDelta(t, used[h.ID][CPU]/u[CPU], plan.After[k].CPU, 1e-9, h.ID)
						assert.InDelta(t, used[h.ID][Memory]/u[Memory], plan.After[k].Memory, 1e-9, h.ID)
						if h.Group == "g0" {
							b, a := plan.Before[k], plan.After[k]
							if b.CPU > threshold || b.Memory > threshold {
								overBefore++
							}
							if a.CPU > threshold || a.Memory > threshold {
								overAfter++
							}
						}
					}
					assert.Positive(t, overBefore)
					assert.LessOrEqual(t, overAfter, overBefore)
					if o == (RebalanceOptions{}) {
						assert.Zero(t, overAfter, "room enough for every overloaded host")
						assert.Positive(t, plan.HostsEmptied)
					}
					emptied := 0
					for k, h := range hosts {
						if h.Group == "g1" && plan.Before[k].VMs > 0 && plan.After[k].VMs == 0 {
							emptied++
						}
					}
					assert.Equal(t, plan.HostsEmptied, emptied)

					// The same plan whatever the order of the input.
					rng := rand.New(rand.NewPCG(seed, 7))
					hs2, pl2 := append([]*Host(nil), hosts...), append([]Assignment(nil), placed...)
					rng.Shuffle(len(hs2), func(i, j int) { hs2[i], hs2[j] = hs2[j], hs2[i] })
					rng.Shuffle(len(pl2), func(i, j int) { pl2[i], pl2[j] = pl2[j], pl2[i] })
					plan2, err := p.Rebalance(context.Background(), hs2, pl2, &o)
					require.NoError(t, err)
					assert.Equal(t, rbMoves(plan), rbMoves(plan2))
				})
			}
		}
	}
}

func TestRebalanceReasonsAreReadable(t *testing.T) {
	hosts, placed := rbRandomCase(4)
	p := rbNew(t, Config{GroupGoals: map[string]Goal{"g1": Consolidate}})
	plan, err := p.Rebalance(context.Background(), hosts, placed, nil)
	require.NoError(t, err)
	require.NotEmpty(t, plan.Moves)
	for _, m := range plan.Moves {
		assert.NotContains(t, m.Reason, "NaN")
		assert.NotContains(t, m.Reason, "Inf")
		assert.NotContains(t, m.Reason, "e+")
		if m.From.Group == "g0" {
			assert.Regexp(t, `^host h\d+ at \d+(\.\d)? % (CPU|memory|CPU and \d+(\.\d)? % memory), above the 80 % threshold; after the move h\d+ at .+, h\d+ at .+$`, m.Reason)
		} else {
			assert.Regexp(t, `^emptying host h\d+ \(\d+ % CPU, \d+ % memory, \d+ VMs?\) so that it can be turned off; h\d+ at \d+ % CPU and \d+ % memory after the move$`, m.Reason)
		}
	}
}
