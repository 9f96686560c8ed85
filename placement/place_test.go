package placement

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func hostOf(plan *Plan) map[string]string {
	m := map[string]string{}
	for _, a := range plan.Assignments {
		m[a.VM.ID] = a.Host.ID
	}
	return m
}

func TestPlaceConsolidatePacks(t *testing.T) {
	hosts := []*Host{host("h1", 32000, 64*GiB), host("h2", 32000, 64*GiB), host("h3", 32000, 64*GiB)}
	var vms []*VM
	for i := range 6 {
		vms = append(vms, &VM{ID: fmt.Sprintf("vm%d", i), Memory: 20 * GiB, Expected: Vector{CPU: 1000}})
	}
	p := mustNew(t, Config{Goal: Consolidate})
	plan, err := p.Place(context.Background(), vms, hosts, nil)
	require.NoError(t, err)
	assert.Empty(t, plan.Unplaced)
	assert.Equal(t, 2, plan.HostsUsed, "three 20 GiB VMs per 64 GiB host")

	// Load balancing spreads the same VMs over every host.
	plan, err = mustNew(t, Config{Goal: LoadBalance}).Place(context.Background(), vms, hosts, nil)
	require.NoError(t, err)
	assert.Equal(t, 3, plan.HostsUsed)
	count := map[string]int{}
	for _, a := range plan.Assignments {
		count[a.Host.ID]++
	}
	assert.Equal(t, map[string]int{"h1": 2, "h2": 2, "h3": 2}, count)
}

func TestPlaceLargestFirstAndBestFit(t *testing.T) {
	// First fit in the given order would put the small VMs on h1 and leave
	// no host for the big one; largest first with best fit places all.
	hosts := []*Host{host("h1", 32000, 40*GiB), host("h2", 32000, 24*GiB)}
	vms := []*VM{
		{ID: "small1", Memory: 8 * GiB}, {ID: "small2", Memory: 8 * GiB},
		{ID: "big", Memory: 32 * GiB}, {ID: "mid", Memory: 16 * GiB},
	}
	plan, err := mustNew(t, Config{Goal: Consolidate}).Place(context.Background(), vms, hosts, nil)
	require.NoError(t, err)
	assert.Empty(t, plan.Unplaced)
	assert.Equal(t, map[string]string{"big": "h1", "mid": "h2", "small1": "h1", "small2": "h2"}, hostOf(plan))
	assert.Equal(t, []string{"big", "mid", "small1", "small2"}, func() []string {
		var s []string
		for _, a := range plan.Assignments {
			s = append(s, a.VM.ID)
		}
		return s
	}(), "placed largest first, ties by ID")
}

func TestPlaceDeterministic(t *testing.T) {
	hosts := fleet(50, 7)
	vms := vmsOf(400, 8)
	p := mustNew(t, Config{Goal: Consolidate})
	a, err := p.Place(context.Background(), vms, hosts, nil)
	require.NoError(t, err)
	rev := slices.Clone(hosts)
	slices.Reverse(rev)
	b, err := p.Place(context.Background(), vms, rev, nil)
	require.NoError(t, err)
	assert.Equal(t, hostOf(a), hostOf(b))
	assertNoOverload(t, p, hosts, a)
}

// assertNoOverload checks that no host is given more than it can give.
func assertNoOverload(t *testing.T, p *Placer, hosts []*Host, plan *Plan) {
	t.Helper()
	used := map[string]Vector{}
	for _, h := range hosts {
		used[h.ID] = h.Used
	}
	for _, a := range plan.Assignments {
		require.Equal(t, Ready, a.Host.State, "%s placed on a host %s", a.VM.ID, a.Host.State)
		used[a.Host.ID] = used[a.Host.ID].Add(p.sizer.Demand(a.VM, a.Host))
	}
	for _, h := range hosts {
		u := usable(h)
		for r := CPU; r <= Memory; r++ {
			assert.LessOrEqual(t, used[h.ID][r], u[r]+1e-6, "host %s %s", h.ID, r)
		}
	}
}

func TestPlaceRespectsFilters(t *testing.T) {
	a, b, c := host("a", 32000, 64*GiB), host("b", 32000, 64*GiB), host("c", 32000, 64*GiB)
	c.State = Maintenance
	b.Group = "test"
	vms := []*VM{
		{ID: "db", Memory: 8 * GiB},
		{ID: "app", Memory: 4 * GiB, Affinity: []string{"db"}},
		{ID: "replica", Memory: 8 * GiB, AntiAffinity: []string{"db"}},
		{ID: "tester", Memory: 4 * GiB, Group: "test"},
	}
	plan, err := mustNew(t, Config{Goal: Consolidate}).Place(context.Background(), vms, []*Host{a, b, c}, nil)
	require.NoError(t, err)
	got := hostOf(plan)
	assert.Equal(t, got["db"], got["app"], "affinity")
	assert.NotEqual(t, got["db"], got["replica"], "anti-affinity")
	assert.Equal(t, "b", got["tester"])
	for _, h := range got {
		assert.NotEqual(t, "c", h, "maintenance")
	}
}

// Two VMs whose peaks come at different times share a host when their time
// series are packed, where packing by peak (or P95) figures needs two hosts.
func TestPlaceTimeSeries(t *testing.T) {
	day := func(peakAt int) []Vector {
		s := make([]Vector, 24)
		for i := range s {
			s[i] = Vector{CPU: 2000}
		}
		s[peakAt] = Vector{CPU: 20000}
		s[peakAt+1] = Vector{CPU: 20000}
		return s
	}
	mk := func(id string, at int) *VM {
		s := day(at)
		return &VM{ID: id, VCPU: 16, Memory: 8 * GiB, History: &Profile{Series: s,
			Mean: Vector{CPU: 3500}, P95: Vector{CPU: 20000}, Peak: Vector{CPU: 20000}}}
	}
	vms := []*VM{mk("night", 2), mk("day", 14)}
	hosts := []*Host{host("h1", 32000, 64*GiB), host("h2", 32000, 64*GiB)}
	p := mustNew(t, Config{Goal: Consolidate})
	plan, err := p.Place(context.Background(), vms, hosts, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, plan.HostsUsed, "anti-correlated peaks share a host")
	plan, err = p.Place(context.Background(), vms, hosts, &PlaceOptions{IgnoreSeries: true})
	require.NoError(t, err)
	assert.Equal(t, 2, plan.HostsUsed, "by P95 they do not")

	// Correlated peaks do not share a host even with series.
	vms = []*VM{mk("a", 2), mk("b", 2)}
	plan, err = p.Place(context.Background(), vms, hosts, nil)
	require.NoError(t, err)
	assert.Equal(t, 2, plan.HostsUsed)
	// And when nothing fits, the reason speaks of the series.
	plan, err = p.Place(context.Background(), vms, hosts[:1], nil)
	require.NoError(t, err)
	require.Len(t, plan.Unplaced, 1)
	assert.Contains(t, plan.Unplaced[0].Err.Error(), "would peak at 40.0 GHz")
}

func TestPlaceFirstFit(t *testing.T) {
	hosts := []*Host{host("h1", 32000, 64*GiB), host("h2", 32000, 64*GiB)}
	hosts[1].Used = Vector{Memory: 40 * GiB}
	vms := []*VM{{ID: "v", Memory: 20 * GiB}}
	p := mustNew(t, Config{Goal: Consolidate})
	plan, err := p.Place(context.Background(), vms, hosts, &PlaceOptions{Strategy: FirstFit})
	require.NoError(t, err)
	assert.Equal(t, "h1", hostOf(plan)["v"])
	plan, err = p.Place(context.Background(), vms, hosts, nil)
	require.NoError(t, err)
	assert.Equal(t, "h2", hostOf(plan)["v"], "best fit prefers the fuller host")
}

// With time series under consolidation, Place keeps the fewest hosts but
// spreads CPU over them rather than filling one to its peak.
func TestPlaceSeriesSpreadsCPU(t *testing.T) {
	flat := func(id string, mhz float64) *VM {
		s := make([]Vector, 12)
		for i := range s {
			s[i] = Vector{CPU: mhz}
		}
		return &VM{ID: id, VCPU: 16, Memory: 24 * GiB, History: &Profile{Series: s, Mean: s[0], P95: s[0], Peak: s[0]}}
	}
	vms := []*VM{flat("a", 15000), flat("b", 15000), flat("c", 1000), flat("d", 1000)}
	hosts := []*Host{host("h1", 32000, 64*GiB), host("h2", 32000, 64*GiB), host("h3", 32000, 64*GiB)}
	plan, err := mustNew(t, Config{Goal: Consolidate}).Place(context.Background(), vms, hosts, nil)
	require.NoError(t, err)
	assert.Equal(t, 2, plan.HostsUsed, "memory needs two hosts")
	cpu := map[string]float64{}
	for _, a := range plan.Assignments {
		cpu[a.Host.ID] += a.VM.History.Peak[CPU]
	}
	for h, c := range cpu {
		assert.LessOrEqual(t, c, 16000.0, "host %s carries %v MHz: CPU not spread", h, c)
	}
	got := hostOf(plan)
	assert.NotEqual(t, got["a"], got["b"])
}
