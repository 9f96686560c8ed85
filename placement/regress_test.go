package placement

// Regression tests for the findings of the first review of the package.

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlaceAntiAffinityBothWays(t *testing.T) {
	// Only a names b; b, placed second, must still stay away from a.
	vms := []*VM{{ID: "a", Memory: 16 * GiB, AntiAffinity: []string{"b"}}, {ID: "b", Memory: 4 * GiB}}
	plan, err := mustNew(t, Config{Goal: Consolidate}).Place(context.Background(), vms, []*Host{host("h1", 32000, 64*GiB), host("h2", 32000, 64*GiB)}, nil)
	require.NoError(t, err)
	got := hostOf(plan)
	assert.NotEqual(t, got["a"], got["b"])
}

func TestPlaceAffinityWhateverTheSizes(t *testing.T) {
	hosts := []*Host{host("h1", 32000, 64*GiB), host("h2", 32000, 64*GiB)}
	// The VM with the rule is the larger, so it is placed first.
	vms := []*VM{{ID: "app", Memory: 8 * GiB, Affinity: []string{"db"}}, {ID: "db", Memory: 4 * GiB}, {ID: "other", Memory: 6 * GiB}}
	plan, err := mustNew(t, Config{Goal: LoadBalance}).Place(context.Background(), vms, hosts, nil)
	require.NoError(t, err)
	require.Empty(t, plan.Unplaced)
	got := hostOf(plan)
	assert.Equal(t, got["app"], got["db"])
	// Two VMs that name each other.
	vms = []*VM{{ID: "x", Memory: 8 * GiB, Affinity: []string{"y"}}, {ID: "y", Memory: 4 * GiB, Affinity: []string{"x"}}}
	plan, err = mustNew(t, Config{}).Place(context.Background(), vms, hosts, nil)
	require.NoError(t, err)
	require.Empty(t, plan.Unplaced)
	got = hostOf(plan)
	assert.Equal(t, got["x"], got["y"])
}

func TestVolumesAreDebited(t *testing.T) {
	h := host("h", 32000, 64*GiB)
	h.Volumes = []Volume{{Name: "D:", Free: 100 << 30}}
	vms := []*VM{{ID: "v1", Memory: GiB, Disk: 60 << 30}, {ID: "v2", Memory: GiB, Disk: 60 << 30}}
	plan, err := mustNew(t, Config{}).Place(context.Background(), vms, []*Host{h}, nil)
	require.NoError(t, err)
	require.Len(t, plan.Unplaced, 1)
	assert.Contains(t, plan.Unplaced[0].Err.Error(), "storage: needs 60.0 GiB on one volume, the largest free is 40.0 GiB")
	assert.Equal(t, int64(100<<30), h.Volumes[0].Free, "the caller's hosts are not changed")

	// Rebalance: two VMs cannot both move onto one 100 GiB volume.
	src1, src2, dst := host("a", 32000, 64*GiB), host("b", 32000, 64*GiB), host("c", 32000, 64*GiB)
	dst.Volumes = []Volume{{Free: 100 << 30}}
	v1 := &VM{ID: "v1", Memory: 8 * GiB, Disk: 60 << 30}
	v2 := &VM{ID: "v2", Memory: 8 * GiB, Disk: 60 << 30}
	src1.Used, src2.Used = Vector{CPU: 31000, Memory: 60 * GiB}, Vector{CPU: 31000, Memory: 60 * GiB}
	rb, err := mustNew(t, Config{}).Rebalance(context.Background(), []*Host{src1, src2, dst},
		[]Assignment{{VM: v1, Host: src1}, {VM: v2, Host: src2}}, nil)
	require.NoError(t, err)
	onC := 0
	for _, m := range rb.Moves {
		if m.To.ID == "c" {
			onC++
		}
	}
	assert.LessOrEqual(t, onC, 1)
}

func TestBadHostsInPlace(t *testing.T) {
	p := mustNew(t, Config{Goal: Consolidate})
	nan := host("nan", 32000, 64*GiB)
	nan.UsedSeries = []Vector{{CPU: math.NaN()}, {CPU: 0}}
	noCores := host("nocores", 32000, 64*GiB)
	noCores.Cores = 0
	iops := host("iops", 32000, 64*GiB)
	iops.Capacity[DiskIOPS], iops.Reserve[DiskIOPS] = 1000, 1000
	series := []Vector{{CPU: 20000}, {CPU: 20000}}
	vm := &VM{ID: "v", Memory: GiB, VCPU: 16, History: &Profile{Series: series, P95: Vector{CPU: 20000, DiskIOPS: 500}, Peak: series[0]}}
	plan, err := p.Place(context.Background(), []*VM{vm}, []*Host{nan, noCores, iops}, nil)
	require.NoError(t, err)
	require.Len(t, plan.Unplaced, 1, "a NaN series, no cores or a fully reserved resource take nothing")
	why := plan.Unplaced[0].Err.Error()
	assert.Contains(t, why, "2 host(s) by Validate")
	assert.Contains(t, why, "iops: FitsResources: disk iops: needs 500 IOPS, 0 IOPS free after 1000 IOPS reserve")

	// Series of different lengths are an error, not a silent fallback.
	other := &VM{ID: "w", Memory: GiB, History: &Profile{Series: []Vector{{CPU: 1}}}}
	_, err = p.Place(context.Background(), []*VM{vm, other}, []*Host{iops}, nil)
	assert.ErrorContains(t, err, "series must share one time line")
	// A VM with a history but no series packs flat with the others.
	flat := &VM{ID: "flat", Memory: GiB, History: &Profile{P95: Vector{CPU: 10}}}
	night := &VM{ID: "n", VCPU: 16, Memory: GiB, History: &Profile{Series: []Vector{{CPU: 20000}, {CPU: 100}}, P95: Vector{CPU: 20000}, Peak: Vector{CPU: 20000}}}
	day := &VM{ID: "d", VCPU: 16, Memory: GiB, History: &Profile{Series: []Vector{{CPU: 100}, {CPU: 20000}}, P95: Vector{CPU: 20000}, Peak: Vector{CPU: 20000}}}
	plan, err = p.Place(context.Background(), []*VM{night, day, flat}, []*Host{host("h1", 32000, 64*GiB), host("h2", 32000, 64*GiB)}, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, plan.HostsUsed)
}

func TestPlaceFollowsTheConfiguredFilters(t *testing.T) {
	ctx := context.Background()
	h := host("h", 32000, 64*GiB)
	h.Used[CPU] = 10000
	vm := &VM{ID: "v", VCPU: 16, Memory: GiB, History: &Profile{P95: Vector{CPU: 5000}, Peak: Vector{CPU: 30000}}}
	peak := mustNew(t, Config{Filters: []Filter{&FitsResources{Sizer: Sizer{Sizing: SizePeak}}}})
	rs, err := peak.Rate(ctx, vm, []*Host{h})
	require.NoError(t, err)
	require.ErrorIs(t, rs[0].Err, ErrRejected)
	plan, err := peak.Place(ctx, []*VM{vm}, []*Host{h}, &PlaceOptions{IgnoreSeries: true})
	require.NoError(t, err)
	assert.Len(t, plan.Unplaced, 1, "Place sizes by the filter's sizer too")

	// Without HostUp, a host in maintenance is used by Rate and Place alike.
	h = host("m", 32000, 64*GiB)
	h.State = Maintenance
	p := mustNew(t, Config{Filters: []Filter{&FitsResources{}}})
	rs, err = p.Rate(ctx, &VM{ID: "v", Memory: GiB}, []*Host{h})
	require.NoError(t, err)
	require.NoError(t, rs[0].Err)
	plan, err = p.Place(ctx, []*VM{{ID: "v", Memory: GiB}}, []*Host{h}, nil)
	require.NoError(t, err)
	assert.Empty(t, plan.Unplaced)
}

type nilRejecter struct{}

func (nilRejecter) Name() string { return "NilRejecter" }
func (nilRejecter) Filter(context.Context, *VM, *Host) error {
	var r *Rejection
	return r
}

type badName struct{ constScorer }

func (badName) Name() string { panic("no name") }

type failsOnSmall struct{}

func (failsOnSmall) Name() string { return "FailsOnSmall" }
func (failsOnSmall) Filter(_ context.Context, _ *VM, h *Host) error {
	if h.Capacity[Memory] < 8*GiB {
		panic("boom")
	}
	return nil
}

func TestPluginMisbehaviour(t *testing.T) {
	ctx := context.Background()
	hosts := []*Host{host("h", 32000, 64*GiB)}
	var pe *PluginError
	_, err := mustNew(t, Config{Filters: []Filter{nilRejecter{}}}).Rate(ctx, &VM{ID: "v"}, hosts)
	require.ErrorAs(t, err, &pe, "a typed nil rejection is a plugin failure, not a panic")
	_, err = New(Config{Scorers: []Weighted{{Scorer: badName{}, Weight: 1}}})
	assert.ErrorContains(t, err, "Name panicked")

	// A filter failing on a host the resource check already turned down
	// fails Place when it explains an unplaced VM.
	small := host("small", 32000, 4*GiB)
	_, err = mustNew(t, Config{Filters: []Filter{failsOnSmall{}, &FitsResources{}}}).Place(ctx, []*VM{{ID: "big", Memory: 16 * GiB}}, []*Host{small}, nil)
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "FailsOnSmall", pe.Plugin)

	// The rejection a plugin returns is not changed (it may be shared).
	shared := &Rejection{Reason: "no"}
	p := mustNew(t, Config{Filters: []Filter{sharedRejecter{shared}}})
	rs, err := p.Rate(ctx, &VM{ID: "v"}, hosts)
	require.NoError(t, err)
	assert.Equal(t, "Shared: no", rs[0].Err.Error())
	assert.Empty(t, shared.Plugin)
}

type sharedRejecter struct{ r *Rejection }

func (sharedRejecter) Name() string { return "Shared" }
func (s sharedRejecter) Filter(context.Context, *VM, *Host) error {
	return s.r
}

func TestConfigAndOptionsAreChecked(t *testing.T) {
	for _, cfg := range []Config{{Goal: 7}, {Sizing: 9}, {GroupGoals: map[string]Goal{"g": 3}}} {
		_, err := New(cfg)
		assert.Error(t, err, "%+v", cfg)
	}
	_, err := mustNew(t, Config{}).Place(context.Background(), nil, []*Host{host("h", 1, 1)}, &PlaceOptions{Strategy: 9})
	assert.ErrorContains(t, err, "unknown strategy")
	var zero Placer
	_, err = zero.Rate(context.Background(), &VM{ID: "v"}, []*Host{host("h", 1, 1)})
	assert.ErrorIs(t, err, errNotNew)
	_, err = zero.Place(context.Background(), nil, []*Host{host("h", 1, 1)}, nil)
	assert.ErrorIs(t, err, errNotNew)
	_, err = zero.Rebalance(context.Background(), []*Host{host("h", 1, 1)}, nil, nil)
	assert.ErrorIs(t, err, errNotNew)
}
