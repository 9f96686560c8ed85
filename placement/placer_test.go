package placement

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const GiB = 1024 // MiB

func host(id string, cpuMHz, memMiB float64) *Host {
	return &Host{ID: id, Cores: 16, Capacity: Vector{CPU: cpuMHz, Memory: memMiB}}
}

func mustNew(t *testing.T, cfg Config) *Placer {
	t.Helper()
	p, err := New(cfg)
	require.NoError(t, err)
	return p
}

func ids(rs []Rating) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Host.ID)
	}
	return out
}

func TestRateGoals(t *testing.T) {
	busy := host("busy", 32000, 64*GiB)
	busy.Used = Vector{CPU: 24000, Memory: 48 * GiB}
	idle := host("idle", 32000, 64*GiB)
	idle.Used = Vector{CPU: 2000, Memory: 4 * GiB}
	mid := host("mid", 32000, 64*GiB)
	mid.Used = Vector{CPU: 12000, Memory: 24 * GiB}
	hosts := []*Host{busy, idle, mid}
	vm := &VM{ID: "vm", VCPU: 2, Memory: 4 * GiB, Expected: Vector{CPU: 2000}}

	rs, err := mustNew(t, Config{Goal: LoadBalance}).Rate(context.Background(), vm, hosts)
	require.NoError(t, err)
	assert.Equal(t, []string{"idle", "mid", "busy"}, ids(rs), "load balancing spreads")
	for _, r := range rs {
		assert.NoError(t, r.Err)
		assert.True(t, r.Stars >= 0 && r.Stars <= 5 && math.Mod(r.Stars*2, 1) == 0, "half stars: %v", r.Stars)
		require.Len(t, r.Scores, 1)
		assert.Equal(t, "Headroom", r.Scores[0].Plugin)
	}
	assert.Greater(t, rs[0].Stars, rs[2].Stars)

	rs, err = mustNew(t, Config{Goal: Consolidate}).Rate(context.Background(), vm, hosts)
	require.NoError(t, err)
	assert.Equal(t, []string{"busy", "mid", "idle"}, ids(rs), "consolidation packs")

	// A group's own goal wins over the default.
	for _, h := range hosts {
		h.Group = "dense"
	}
	rs, err = mustNew(t, Config{Goal: LoadBalance, GroupGoals: map[string]Goal{"dense": Consolidate}}).Rate(context.Background(), vm, hosts)
	require.NoError(t, err)
	assert.Equal(t, "busy", rs[0].Host.ID)
}

func TestRatePriority(t *testing.T) {
	// a has spare CPU, b spare memory: the sliders decide.
	a := host("a", 32000, 64*GiB)
	a.Used = Vector{CPU: 4000, Memory: 56 * GiB}
	b := host("b", 32000, 64*GiB)
	b.Used = Vector{CPU: 28000, Memory: 8 * GiB}
	vm := &VM{ID: "vm", Memory: 2 * GiB, Expected: Vector{CPU: 1000}}
	cpuFirst := mustNew(t, Config{Priority: Vector{CPU: 1, Memory: 0.1}})
	memFirst := mustNew(t, Config{Priority: Vector{CPU: 0.1, Memory: 1}})
	rs, err := cpuFirst.Rate(context.Background(), vm, []*Host{a, b})
	require.NoError(t, err)
	assert.Equal(t, "a", rs[0].Host.ID)
	rs, err = memFirst.Rate(context.Background(), vm, []*Host{a, b})
	require.NoError(t, err)
	assert.Equal(t, "b", rs[0].Host.ID)
}

func TestRateReservesAreHard(t *testing.T) {
	h := host("h", 32000, 16*GiB)
	h.Used = Vector{CPU: 1000, Memory: 8 * GiB}
	vm := &VM{ID: "vm", Memory: 6 * GiB, Expected: Vector{CPU: 500}}
	p := mustNew(t, Config{})
	rs, err := p.Rate(context.Background(), vm, []*Host{h})
	require.NoError(t, err)
	require.NoError(t, rs[0].Err, "fits without a reserve")

	h.Reserve = Vector{Memory: 4 * GiB}
	rs, err = p.Rate(context.Background(), vm, []*Host{h})
	require.NoError(t, err)
	require.ErrorIs(t, rs[0].Err, ErrRejected)
	assert.Equal(t, "FitsResources: memory: needs 6.0 GiB, 4.0 GiB free after 4.0 GiB reserve", rs[0].Err.Error())
	assert.Zero(t, rs[0].Stars)

	// CPU reserve is a fraction of capacity.
	h.Reserve = Vector{CPU: 0.97}
	rs, err = p.Rate(context.Background(), vm, []*Host{h})
	require.NoError(t, err)
	require.ErrorIs(t, rs[0].Err, ErrRejected)
	assert.Contains(t, rs[0].Err.Error(), "cpu: needs 500 MHz")
	assert.Contains(t, rs[0].Err.Error(), "after 31.0 GHz reserve")

	// A reserve also lowers the score of a host that still fits.
	h.Reserve = Vector{}
	free, err := p.Rate(context.Background(), vm, []*Host{h})
	require.NoError(t, err)
	h.Reserve = Vector{Memory: 1 * GiB}
	reserved, err := p.Rate(context.Background(), vm, []*Host{h})
	require.NoError(t, err)
	assert.Less(t, reserved[0].Score, free[0].Score)
}

func TestFilters(t *testing.T) {
	ctx := context.Background()
	base := func() *Host {
		h := host("h", 32000, 64*GiB)
		h.Group, h.Formats, h.Features, h.VMs = "prod", []string{"vhdx"}, []string{"gpu"}, []string{"db1"}
		h.Volumes = []Volume{{Name: "C:", Free: 100 << 30}}
		h.Capacity[Network] = 1000
		return h
	}
	vm := func() *VM { return &VM{ID: "vm", Memory: GiB, Expected: Vector{CPU: 100}} }
	for _, tc := range []struct {
		name   string
		filter Filter
		host   func(*Host)
		vm     func(*VM)
		reason string // empty: accepted
	}{
		{"up", HostUp{}, nil, nil, ""},
		{"maintenance", HostUp{}, func(h *Host) { h.State = Maintenance }, nil, "host is in maintenance"},
		{"not responding", HostUp{}, func(h *Host) { h.State = NotResponding }, nil, "host is not responding"},
		{"any group", InGroup{}, nil, nil, ""},
		{"own group", InGroup{}, nil, func(v *VM) { v.Group = "prod" }, ""},
		{"other group", InGroup{}, nil, func(v *VM) { v.Group = "test" }, `host is in group "prod", the VM needs "test"`},
		{"feature present", HasFeatures{}, nil, func(v *VM) { v.Features = []string{"gpu"} }, ""},
		{"feature missing", HasFeatures{}, nil, func(v *VM) { v.Features = []string{"sgx"} }, `host lacks feature "sgx"`},
		{"format", HasFeatures{}, nil, func(v *VM) { v.Format = "vhd" }, `host runs disk formats [vhdx], not "vhd"`},
		{"format ok", HasFeatures{}, nil, func(v *VM) { v.Format = "vhdx" }, ""},
		{"anti-affinity", Affinity{}, nil, func(v *VM) { v.AntiAffinity = []string{"db1"} }, "runs db1, which this VM must not share a host with"},
		{"affinity met", Affinity{}, nil, func(v *VM) { v.Affinity = []string{"db1"} }, ""},
		{"affinity unmet", Affinity{}, nil, func(v *VM) { v.Affinity = []string{"db2"} }, "does not run db2, which this VM must share a host with"},
		{"fits", &FitsResources{}, nil, nil, ""},
		{"memory", &FitsResources{}, nil, func(v *VM) { v.Memory = 80 * GiB }, "memory: needs 80.0 GiB, 64.0 GiB free"},
		{"cpu", &FitsResources{}, func(h *Host) { h.Used[CPU] = 31950 }, nil, "cpu: needs 100 MHz, 50 MHz free"},
		{"network", &FitsResources{}, func(h *Host) { h.Used[Network] = 990 }, func(v *VM) { v.Expected[Network] = 20 }, "network: needs 20 Mb/s, 10 Mb/s free"},
		{"unreported resource", &FitsResources{}, nil, func(v *VM) { v.Expected[DiskIOPS] = 1e6 }, ""},
		{"storage", &FitsResources{}, nil, func(v *VM) { v.Disk = 200 << 30 }, "storage: needs 200.0 GiB on one volume, the largest free is 100.0 GiB"},
		{"default cpu", &FitsResources{}, func(h *Host) { h.Used[CPU] = 32000 - 300 }, func(v *VM) { v.Expected = Vector{} }, "cpu: needs 400 MHz, 300 MHz free"},
		{"vcpu caps cpu", &FitsResources{}, func(h *Host) { h.Used[CPU] = 32000 - 2000 }, func(v *VM) { v.VCPU = 1; v.Expected[CPU] = 9000 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, v := base(), vm()
			if tc.host != nil {
				tc.host(h)
			}
			if tc.vm != nil {
				tc.vm(v)
			}
			err := tc.filter.Filter(ctx, v, h)
			if tc.reason == "" {
				assert.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrRejected)
			assert.Equal(t, tc.reason, err.(*Rejection).Reason)
		})
	}
}

func TestRateRejectedHostsStayWithReasons(t *testing.T) {
	ok := host("b-ok", 32000, 64*GiB)
	small := host("a-small", 32000, 4*GiB)
	down := host("c-down", 32000, 64*GiB)
	down.State = Maintenance
	rs, err := mustNew(t, Config{}).Rate(context.Background(), &VM{ID: "vm", Memory: 8 * GiB}, []*Host{down, small, ok})
	require.NoError(t, err)
	assert.Equal(t, []string{"b-ok", "a-small", "c-down"}, ids(rs), "fitting hosts first, then rejected by ID")
	assert.NoError(t, rs[0].Err)
	assert.ErrorIs(t, rs[1].Err, ErrRejected)
	assert.Contains(t, rs[1].Err.Error(), "memory: needs 8.0 GiB, 4.0 GiB free")
	assert.Equal(t, "HostUp: host is in maintenance", rs[2].Err.Error())
}

func TestRateTiesAreDeterministic(t *testing.T) {
	var hosts []*Host
	for _, id := range []string{"h3", "h1", "h2"} {
		hosts = append(hosts, host(id, 32000, 64*GiB))
	}
	rs, err := mustNew(t, Config{}).Rate(context.Background(), &VM{ID: "vm", Memory: GiB}, hosts)
	require.NoError(t, err)
	assert.Equal(t, []string{"h1", "h2", "h3"}, ids(rs))
}

type constScorer struct {
	name string
	s    float64
}

func (c constScorer) Name() string { return c.name }
func (c constScorer) Score(context.Context, *VM, *Host) (float64, error) {
	return c.s, nil
}

type byName struct{}

func (byName) Name() string { return "ByName" }
func (byName) Score(_ context.Context, _ *VM, h *Host) (float64, error) {
	if strings.HasPrefix(h.ID, "fav") {
		return 1, nil
	}
	return 0, nil
}

func TestCustomScorersAndWeights(t *testing.T) {
	hosts := []*Host{host("a", 32000, 64*GiB), host("fav", 32000, 64*GiB)}
	hosts[1].Used = Vector{CPU: 30000, Memory: 60 * GiB} // the default scorer dislikes it
	p := mustNew(t, Config{Scorers: []Weighted{
		{Scorer: &Headroom{}, Weight: 1},
		{Scorer: byName{}, Weight: 3},
		{Scorer: constScorer{"Const", 0.5}, Weight: 1},
	}})
	rs, err := p.Rate(context.Background(), &VM{ID: "vm", Memory: GiB}, hosts)
	require.NoError(t, err)
	assert.Equal(t, "fav", rs[0].Host.ID)
	require.Len(t, rs[0].Scores, 3)
	assert.Equal(t, PluginScore{Plugin: "ByName", Score: 1, Weight: 3}, rs[0].Scores[1])
	want := (rs[0].Scores[0].Score*1 + 1*3 + 0.5*1) / 5
	assert.InDelta(t, want, rs[0].Score, 1e-12)
}

type badPlugin struct {
	name  string
	panic bool
	err   error
	score float64
}

func (b badPlugin) Name() string { return b.name }
func (b badPlugin) Filter(context.Context, *VM, *Host) error {
	if b.panic {
		panic("boom")
	}
	return b.err
}
func (b badPlugin) Score(context.Context, *VM, *Host) (float64, error) {
	if b.panic {
		panic("boom")
	}
	return b.score, b.err
}

func TestBadPlugins(t *testing.T) {
	hosts := []*Host{host("h", 32000, 64*GiB)}
	vm := &VM{ID: "vm", Memory: GiB}
	var pe *PluginError
	for name, cfg := range map[string]Config{
		"filter panics": {Filters: []Filter{badPlugin{name: "Panicky", panic: true}}},
		"filter fails":  {Filters: []Filter{badPlugin{name: "Panicky", err: errors.New("backend down")}}},
		"scorer panics": {Scorers: []Weighted{{Scorer: badPlugin{name: "Panicky", panic: true}, Weight: 1}}},
		"scorer fails":  {Scorers: []Weighted{{Scorer: badPlugin{name: "Panicky", err: errors.New("backend down")}, Weight: 1}}},
		"scorer NaN":    {Scorers: []Weighted{{Scorer: badPlugin{name: "Panicky", score: math.NaN()}, Weight: 1}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := mustNew(t, cfg).Rate(context.Background(), vm, hosts)
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, "Panicky", pe.Plugin)
			assert.Equal(t, "h", pe.Host)
			assert.Contains(t, err.Error(), "plugin Panicky on host h")
			_, err = mustNew(t, cfg).Place(context.Background(), []*VM{vm}, hosts, nil)
			if strings.HasPrefix(name, "filter") {
				require.ErrorAs(t, err, &pe, "Place runs custom filters too")
			}
		})
	}
	// A score outside [0, 1] is clamped.
	rs, err := mustNew(t, Config{Scorers: []Weighted{{Scorer: constScorer{"Big", 7}, Weight: 1}}}).Rate(context.Background(), vm, hosts)
	require.NoError(t, err)
	assert.Equal(t, 5.0, rs[0].Stars)

	_, err = New(Config{Scorers: []Weighted{{Scorer: constScorer{"Zero", 1}, Weight: 0}}})
	assert.Error(t, err)
	_, err = New(Config{Filters: []Filter{nil}})
	assert.Error(t, err)
	_, err = New(Config{Priority: Vector{CPU: math.NaN()}})
	assert.Error(t, err)
}

func TestBadInput(t *testing.T) {
	p := mustNew(t, Config{})
	ctx := context.Background()
	vm := &VM{ID: "vm", Memory: GiB}
	ok := host("ok", 32000, 64*GiB)

	_, err := p.Rate(ctx, vm, nil)
	assert.ErrorIs(t, err, ErrNoHosts)
	_, err = p.Place(ctx, []*VM{vm}, nil, nil)
	assert.ErrorIs(t, err, ErrNoHosts)
	_, err = p.Rate(ctx, vm, []*Host{ok, host("ok", 1, 1)})
	assert.ErrorContains(t, err, `duplicate host ID "ok"`)
	_, err = p.Place(ctx, []*VM{vm, {ID: "vm"}}, []*Host{ok}, nil)
	assert.ErrorContains(t, err, `duplicate VM ID "vm"`)
	for _, bad := range []*VM{
		{ID: "nan", Memory: math.NaN()},
		{ID: "neg", Memory: -1},
		{ID: "inf", Expected: Vector{CPU: math.Inf(1)}},
		{ID: "hist", History: &Profile{P95: Vector{CPU: -5}}},
		{ID: "series", History: &Profile{Series: []Vector{{CPU: math.NaN()}}}},
	} {
		_, err := p.Rate(ctx, bad, []*Host{ok})
		assert.ErrorContains(t, err, "VM "+bad.ID, bad.ID)
	}

	// Hosts with nonsense capacities are rejected with a reason, not used.
	hosts := []*Host{ok, host("zero", 0, 64*GiB), host("nan", math.NaN(), 64*GiB), host("neg", 32000, -1)}
	rs, err := p.Rate(ctx, vm, hosts)
	require.NoError(t, err)
	assert.Equal(t, "ok", rs[0].Host.ID)
	for _, r := range rs[1:] {
		require.ErrorIs(t, r.Err, ErrRejected, r.Host.ID)
		assert.Contains(t, r.Err.Error(), "Validate: capacity")
	}

	// A VM larger than any host: rejected everywhere, unplaced with reasons.
	huge := &VM{ID: "huge", Memory: 1024 * GiB}
	rs, err = p.Rate(ctx, huge, []*Host{ok})
	require.NoError(t, err)
	assert.ErrorIs(t, rs[0].Err, ErrRejected)
	plan, err := p.Place(ctx, []*VM{huge, vm}, hosts, nil)
	require.NoError(t, err)
	require.Len(t, plan.Unplaced, 1)
	assert.Equal(t, "huge", plan.Unplaced[0].VM.ID)
	assert.ErrorIs(t, plan.Unplaced[0].Err, ErrRejected)
	assert.Contains(t, plan.Unplaced[0].Err.Error(), "1 host(s) by FitsResources, e.g. ok: FitsResources: memory: needs 1.0 TiB, 64.0 GiB free")
	assert.Contains(t, plan.Unplaced[0].Err.Error(), "3 host(s) by Validate")

	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	_, err = p.Rate(ctx2, vm, []*Host{ok})
	assert.ErrorIs(t, err, context.Canceled)
}
