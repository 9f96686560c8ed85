package consolidate

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/placement/history"
)

func machine(id string, cpu float64, pct ...float64) Machine {
	return Machine{ID: id, CPU: cpu, Series: history.Series{ID: id, Interval: time.Hour, CPU: pct}}
}

func host(id string, cpu float64) *placement.Host {
	return &placement.Host{ID: id, Cores: 2, Capacity: placement.Vector{placement.CPU: cpu, placement.Memory: 1 << 20}}
}

func TestPowerModels(t *testing.T) {
	assert.Equal(t, 86.0, ML110G4.Watts(0))
	assert.Equal(t, 117.0, ML110G4.Watts(1))
	assert.InDelta(t, 114.35, ML110G5.Watts(0.5), 1e-9)
	assert.Equal(t, 135.0, ML110G5.Watts(2)) // clamped
	assert.Equal(t, 93.7, ML110G5.Watts(-1))
	assert.Equal(t, 93.7, ML110G5.Watts(math.NaN()))

	assert.Equal(t, 86.0, ML110G4Spec.Watts(0))
	assert.Equal(t, 117.0, ML110G4Spec.Watts(1))
	assert.Equal(t, 102.0, ML110G4Spec.Watts(0.5))
	assert.InDelta(t, 99.5+0.25*(102-99.5), ML110G4Spec.Watts(0.425), 1e-9)
	assert.InDelta(t, 116.0, ML110G5Spec.Watts(0.5), 1e-9)
	assert.Equal(t, 135.0, ML110G5Spec.Watts(1.5))
	assert.Equal(t, 93.7, ML110G5Spec.Watts(-0.5))
	// The linear approximation stays within 4 W of the table.
	for u := 0.0; u <= 1; u += 0.01 {
		assert.InDelta(t, ML110G4Spec.Watts(u), ML110G4.Watts(u), 4.1)
		assert.InDelta(t, ML110G5Spec.Watts(u), ML110G5.Watts(u), 4.1)
	}
}

func TestPlanAnticorrelated(t *testing.T) {
	// a and b peak at different times and fit one host together; c is
	// busy throughout and needs its own.
	ms := []Machine{
		machine("a", 1000, 90, 10, 10, 10),
		machine("b", 1000, 10, 90, 10, 10),
		machine("c", 1000, 80, 80, 80, 80),
	}
	hosts := []*placement.Host{host("h1", 1000), host("h2", 1000), host("h3", 1000)}
	res, err := Plan(context.Background(), ms, hosts, &PlanOptions{Power: Linear{Idle: 100, Max: 200}})
	require.NoError(t, err)
	assert.Equal(t, 2, res.HostsUsed)
	assert.Equal(t, 2, res.LowerBound) // 1800 at interval 0 or 1
	assert.Equal(t, 0, res.OverloadedIntervals)
	assert.Equal(t, 4, res.Intervals)
	assert.Equal(t, res.Assignments["a"], res.Assignments["b"])
	assert.NotEqual(t, res.Assignments["a"], res.Assignments["c"])
	require.Len(t, res.Hosts, 2)
	var peaks []float64
	energy := 0.0
	for _, h := range res.Hosts {
		peaks = append(peaks, h.Peak)
		energy += h.EnergyKWh
	}
	slices.Sort(peaks)
	assert.InDeltaSlice(t, []float64{0.8, 1.0}, peaks, 1e-9)
	// Host of a+b: util 1, 1, .2, .2 → 200+200+120+120 W·h; c: 4 × 180.
	assert.InDelta(t, (640+720)/1000.0, res.EnergyKWh, 1e-9)
	assert.InDelta(t, energy, res.EnergyKWh, 1e-12)
	assert.Empty(t, res.Unplaced)
	assert.Len(t, res.Plan.Assignments, 3)

	// The caller's hosts are left alone.
	assert.Equal(t, 0.0, hosts[0].Reserve[placement.CPU])
}

func TestPlanMargin(t *testing.T) {
	ms := []Machine{
		machine("a", 1000, 50, 10),
		machine("b", 1000, 10, 45),
		machine("c", 1000, 40, 40),
	}
	hosts := []*placement.Host{host("h1", 1000), host("h2", 1000)}
	// All three together peak at 1000 of 1000 (interval 0).
	res, err := Plan(context.Background(), ms, hosts, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, res.HostsUsed)
	assert.InDelta(t, 1.0, res.Hosts[0].Peak, 1e-12)

	// A 20 % margin leaves 800 per host: not all three on one.
	res, err = Plan(context.Background(), ms, hosts, &PlanOptions{Margin: 0.2})
	require.NoError(t, err)
	assert.Equal(t, 2, res.HostsUsed)
	for _, h := range res.Hosts {
		assert.LessOrEqual(t, h.Peak, 0.8+1e-9)
	}

	// A 60 % margin leaves 400: a (500 at its peak) fits nowhere.
	res, err = Plan(context.Background(), ms, hosts, &PlanOptions{Margin: 0.6})
	require.NoError(t, err)
	require.Len(t, res.Unplaced, 2)
	assert.Equal(t, "a", res.Unplaced[0].ID)
	assert.Equal(t, "b", res.Unplaced[1].ID)
	assert.ErrorIs(t, res.Unplaced[0].Err, placement.ErrRejected)
	assert.Contains(t, res.Unplaced[0].Err.Error(), "cpu")
	assert.NotContains(t, res.Assignments, "a")
	assert.Equal(t, 1, res.HostsUsed)
}

func TestPlanCapacityFromSeriesAndNaN(t *testing.T) {
	m := machine("a", 0, 10, math.NaN(), 20)
	m.Series.CPUCapacity = 2000
	res, err := Plan(context.Background(), []Machine{m}, []*placement.Host{host("h", 1000)}, &PlanOptions{Power: ML110G5Spec})
	require.NoError(t, err)
	require.Len(t, res.Hosts, 1)
	// The missing sample counts as the peak, 400 of 1000.
	assert.InDelta(t, 0.4, res.Hosts[0].Peak, 1e-12)
	assert.InDelta(t, (ML110G5Spec.Watts(0.2)+2*ML110G5Spec.Watts(0.4))/1000, res.EnergyKWh, 1e-12)
}

func TestPlanOverloadReplay(t *testing.T) {
	// The host ran 700 at interval 1 before: with the machine's 400 the
	// replay shows one overloaded interval, which Place avoids when it
	// knows the series. Used alone (no series) is flat.
	h := host("h", 1000)
	h.VMs = []string{"old"}
	h.Used[placement.CPU] = 100
	res, err := Plan(context.Background(), []Machine{machine("a", 1000, 40, 40)}, []*placement.Host{h}, nil)
	require.NoError(t, err)
	assert.Equal(t, 0, res.OverloadedIntervals)
	assert.InDelta(t, 0.5, res.Hosts[0].Peak, 1e-12)
	assert.Equal(t, 1, res.HostsUsed)
}

func TestPlanErrors(t *testing.T) {
	ctx := context.Background()
	hs := []*placement.Host{host("h", 1000)}
	ok := machine("a", 1000, 1, 2)
	for name, tc := range map[string]struct {
		ms    []Machine
		hosts []*placement.Host
		opts  *PlanOptions
		msg   string
	}{
		"no hosts":      {[]Machine{ok}, nil, nil, "no hosts"},
		"nil host":      {[]Machine{ok}, []*placement.Host{nil}, nil, "host 0 is nil"},
		"margin":        {[]Machine{ok}, hs, &PlanOptions{Margin: 1}, "margin"},
		"margin NaN":    {[]Machine{ok}, hs, &PlanOptions{Margin: math.NaN()}, "margin"},
		"no capacity":   {[]Machine{machine("x", 0, 1, 2)}, hs, nil, "CPU capacity"},
		"no series":     {[]Machine{machine("x", 100)}, hs, nil, "no CPU series"},
		"all NaN":       {[]Machine{machine("x", 100, math.NaN())}, hs, nil, "no sample"},
		"negative":      {[]Machine{machine("x", 100, -1)}, hs, nil, "sample 0"},
		"lengths":       {[]Machine{ok, machine("b", 100, 1)}, hs, nil, "one time line"},
		"memory":        {[]Machine{{ID: "x", CPU: 1, Memory: -1, Series: ok.Series}}, hs, nil, "memory"},
		"duplicate IDs": {[]Machine{ok, ok}, hs, nil, "duplicate"},
	} {
		_, err := Plan(ctx, tc.ms, tc.hosts, tc.opts)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), tc.msg, name)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := Plan(cctx, []Machine{ok}, hs, nil)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestLowerBound(t *testing.T) {
	hs := []*placement.Host{host("a", 100), host("b", 300), host("c", 200)}
	assert.Equal(t, 0, lowerBound([][]float64{{0, 0}}, hs, 2))
	assert.Equal(t, 1, lowerBound([][]float64{{100, 300}}, hs, 2))
	assert.Equal(t, 2, lowerBound([][]float64{{100, 300}, {1, 1}}, hs, 2))
	assert.Equal(t, 4, lowerBound([][]float64{{700}}, hs, 1))

	// Reserves and the hosts' own use shrink the room: b keeps 10 % (270
	// left) and c runs 150 at least (50 left), so 300 needs b and a.
	b := host("b", 300)
	b.Reserve[placement.CPU] = 0.1
	c := host("c", 200)
	c.UsedSeries = []placement.Vector{{placement.CPU: 180}, {placement.CPU: 150}}
	assert.Equal(t, 2, lowerBound([][]float64{{300}}, []*placement.Host{host("a", 100), b, c}, 1))
	// Through Plan, the Margin counts: 2 × 280 of 5320 needs one host, at
	// 95 % margin (266 left each) it needs three of the three hosts.
	ms := []Machine{machine("x", 1000, 28, 28), machine("y", 1000, 28, 28)}
	three := []*placement.Host{host("h1", 5320), host("h2", 5320), host("h3", 5320)}
	res, err := Plan(context.Background(), ms, three, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, res.LowerBound)
	res, err = Plan(context.Background(), ms, three, &PlanOptions{Margin: 0.95})
	require.NoError(t, err)
	assert.Equal(t, 3, res.LowerBound)
}

// The replay counts a host's own use: a host that was overloaded before
// the plan stays so, and one without CPU that runs VMs has an infinite
// peak, not NaN.
func TestPlanReplaysHostsOwnUse(t *testing.T) {
	busy := host("busy", 1000)
	busy.VMs = []string{"old"}
	busy.UsedSeries = []placement.Vector{{placement.CPU: 1200}, {placement.CPU: 900}, {placement.CPU: 1100}}
	dead := host("dead", 0)
	dead.VMs = []string{"stuck"}
	dead.Used[placement.CPU] = 10
	free := host("free", 1000)
	ms := []Machine{machine("m", 1000, 10, 20, 30)}
	res, err := Plan(context.Background(), ms, []*placement.Host{busy, dead, free}, &PlanOptions{Power: ML110G5})
	require.NoError(t, err)
	require.Len(t, res.Hosts, 3)
	byID := map[string]HostUse{}
	for _, h := range res.Hosts {
		byID[h.ID] = h
	}
	assert.Equal(t, 2, byID["busy"].Overloaded)
	assert.InDelta(t, 1.2, byID["busy"].Peak, 1e-12)
	assert.True(t, math.IsInf(byID["dead"].Peak, 1))
	assert.Equal(t, 3, byID["dead"].Overloaded)
	assert.Equal(t, "free", res.Assignments["m"])
	assert.Zero(t, byID["free"].Overloaded)
	assert.InDelta(t, 0.3, byID["free"].Peak, 1e-12)
	assert.Equal(t, 5, res.OverloadedIntervals)
	assert.False(t, math.IsNaN(res.EnergyKWh))
}

// The reference experiment: the PlanetLab workload as CloudSim runs it
// (Beloglazov & Buyya, CCPE 2012), as a one-shot placement of a day.

const (
	g5MIPS = 5320 // HP ProLiant ML110 G5: 2 × 2660 MIPS
)

// vmMIPS are CloudSim's four VM types, assigned in blocks of ceil(N/4) over
// the files in name order.
var vmMIPS = [4]float64{2500, 2000, 1000, 500}

type dayResult struct {
	Day         string
	VMs         int
	Lower       int     // ceil(max_t total demand / 5320)
	Plan        int     // hosts used by Plan (margin 0)
	PlanOver    int     // overloaded host-intervals of Plan's plan
	PlanKWh     float64 // energy of Plan's plan (SPECpower G5)
	PlanFF      int     // Plan with first fit
	PlanFFOver  int
	FFDPeak     int // first-fit decreasing by each VM's peak
	FFDPeakOver int
	FFDP95      int     // first-fit decreasing by each VM's 95th percentile
	FFDP95Over  float64 // its overloaded host-time, percent
	TSFF        int     // time-series first fit (Place, FirstFit)
	TSFFOver    int
}

// planetLabMachines turns a day's traces into machines with CloudSim's VM
// types.
func planetLabMachines(series []history.Series) []Machine {
	block := (len(series) + 3) / 4
	ms := make([]Machine, len(series))
	for i, s := range series {
		ms[i] = Machine{ID: s.ID, CPU: vmMIPS[i/block], Series: s}
	}
	return ms
}

func g5Hosts(n int) []*placement.Host {
	hs := make([]*placement.Host, n)
	for i := range hs {
		hs[i] = &placement.Host{ID: fmt.Sprintf("h%05d", i), Cores: 2,
			Capacity: placement.Vector{placement.CPU: g5MIPS, placement.Memory: 1 << 30}}
	}
	return hs
}

// overloaded replays a placement plan: the host-intervals in which the
// summed demand exceeds the host's CPU.
func overloaded(plan *placement.Plan, demand map[string][]float64, n int) int {
	sums := map[*placement.Host][]float64{}
	for _, a := range plan.Assignments {
		s := sums[a.Host]
		if s == nil {
			s = make([]float64, n)
			sums[a.Host] = s
		}
		for t, d := range demand[a.VM.ID] {
			s[t] += d
		}
	}
	over := 0
	for h, s := range sums {
		for _, x := range s {
			if x > h.Capacity[placement.CPU]*(1+1e-9) {
				over++
			}
		}
	}
	return over
}

// planetLabDay runs Plan and the baselines on one day's traces.
func planetLabDay(ctx context.Context, tb testing.TB, day string, series []history.Series) dayResult {
	tb.Helper()
	ms := planetLabMachines(series)
	hosts := g5Hosts(len(ms)) // one per VM always suffices
	r := dayResult{Day: day, VMs: len(ms)}

	res, err := Plan(ctx, ms, hosts, &PlanOptions{Power: ML110G5Spec})
	require.NoError(tb, err)
	require.Empty(tb, res.Unplaced)
	r.Plan, r.PlanOver, r.PlanKWh = res.HostsUsed, res.OverloadedIntervals, res.EnergyKWh
	r.Lower = res.LowerBound

	resFF, err := Plan(ctx, ms, hosts, &PlanOptions{Strategy: placement.FirstFit})
	require.NoError(tb, err)
	r.PlanFF, r.PlanFFOver = resFF.HostsUsed, resFF.OverloadedIntervals

	vms, dem, _, err := machineVMs(ms)
	require.NoError(tb, err)
	demand := make(map[string][]float64, len(vms))
	for i, vm := range vms {
		demand[vm.ID] = dem[i]
	}
	n := len(dem[0])
	run := func(sizing placement.Sizing, opts placement.PlaceOptions) (int, int) {
		p, err := placement.New(placement.Config{Goal: placement.Consolidate, Sizing: sizing})
		require.NoError(tb, err)
		plan, err := p.Place(ctx, vms, hosts, &opts)
		require.NoError(tb, err)
		require.Empty(tb, plan.Unplaced)
		return plan.HostsUsed, overloaded(plan, demand, n)
	}
	r.FFDPeak, r.FFDPeakOver = run(placement.SizePeak, placement.PlaceOptions{Strategy: placement.FirstFit, IgnoreSeries: true})
	var over int
	r.FFDP95, over = run(placement.SizeP95, placement.PlaceOptions{Strategy: placement.FirstFit, IgnoreSeries: true})
	r.FFDP95Over = 100 * float64(over) / float64(r.FFDP95*n)
	r.TSFF, r.TSFFOver = run(placement.SizeP95, placement.PlaceOptions{Strategy: placement.FirstFit})
	return r
}

func readPlanetLabDay(tb testing.TB, file string) []history.Series {
	tb.Helper()
	f, err := os.Open(file)
	require.NoError(tb, err)
	defer f.Close()
	var out []history.Series
	for s, err := range history.ReadPlanetLabTar(f) {
		require.NoError(tb, err)
		out = append(out, s)
	}
	return out
}

func TestPlanetLabSample(t *testing.T) {
	series := readPlanetLabDay(t, "../history/testdata/planetlab/20110303-sample.tar.gz")
	require.Len(t, series, 20)
	r := planetLabDay(context.Background(), t, "20110303-sample", series)
	t.Logf("%+v", r)
	assert.Equal(t, 0, r.PlanOver)
	assert.Equal(t, 0, r.PlanFFOver)
	assert.Equal(t, 0, r.FFDPeakOver)
	assert.Equal(t, 0, r.TSFFOver)
	assert.GreaterOrEqual(t, r.Plan, r.Lower)
	assert.LessOrEqual(t, r.Plan, r.TSFF)
	assert.LessOrEqual(t, r.TSFF, r.FFDPeak)
	assert.LessOrEqual(t, r.FFDP95, r.FFDPeak)
	assert.Greater(t, r.PlanKWh, 0.0)
	// Pinned: the sample's numbers (20 VMs, 5 of each type).
	assert.Equal(t, [6]int{2, 2, 2, 4, 2, 2}, [6]int{r.Lower, r.Plan, r.PlanFF, r.FFDPeak, r.FFDP95, r.TSFF})
	assert.InDelta(t, 5.671, r.PlanKWh, 0.001)
}

// planetLabDir finds the shared PlanetLab archives.
func planetLabDir() string {
	if d := os.Getenv("VMM_BENCH_PLANETLAB_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "..", "shared", "data", "planetlab")
}

// BenchmarkPlanetLab runs the reference experiment over the ten shared
// days and prints a table per day and the means. Published (Beloglazov &
// Buyya setup, G5 hosts of 5320 MIPS): lower bound 42.0 hosts mean.
func BenchmarkPlanetLab(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join(planetLabDir(), "*.tar.gz"))
	if len(files) == 0 {
		b.Skip("no PlanetLab archives in", planetLabDir(), "(set VMM_BENCH_PLANETLAB_DIR)")
	}
	slices.Sort(files)
	days := make([][]history.Series, len(files))
	for i, f := range files {
		days[i] = readPlanetLabDay(b, f)
	}
	ctx := context.Background()
	var rs []dayResult
	b.ResetTimer()
	for range b.N {
		rs = rs[:0]
		for i, f := range files {
			rs = append(rs, planetLabDay(ctx, b, strings.TrimSuffix(filepath.Base(f), ".tar.gz"), days[i]))
		}
	}
	b.StopTimer()
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-9s %5s %5s %5s %5s %7s %6s %5s %8s %6s %7s %6s %5s\n", "day", "VMs", "lower", "plan", "over", "kWh", "planFF", "over", "FFDpeak", "FFDp95", "over%", "tsFF", "over")
	var mean dayResult
	var kwh, p95over float64
	for _, r := range rs {
		fmt.Fprintf(&sb, "%-9s %5d %5d %5d %5d %7.1f %6d %5d %8d %6d %7.3f %6d %5d\n", r.Day, r.VMs, r.Lower, r.Plan, r.PlanOver, r.PlanKWh, r.PlanFF, r.PlanFFOver, r.FFDPeak, r.FFDP95, r.FFDP95Over, r.TSFF, r.TSFFOver)
		mean.VMs += r.VMs
		mean.Lower += r.Lower
		mean.Plan += r.Plan
		mean.PlanOver += r.PlanOver
		mean.PlanFF += r.PlanFF
		mean.PlanFFOver += r.PlanFFOver
		mean.FFDPeak += r.FFDPeak
		mean.FFDP95 += r.FFDP95
		mean.TSFF += r.TSFF
		mean.TSFFOver += r.TSFFOver
		kwh += r.PlanKWh
		p95over += r.FFDP95Over * float64(r.FFDP95)
	}
	d := float64(len(rs))
	m := func(x int) float64 { return float64(x) / d }
	fmt.Fprintf(&sb, "%-9s %5.0f %5.1f %5.1f %5d %7.1f %6.1f %5d %8.1f %6.1f %7.3f %6.1f %5d\n", "mean", m(mean.VMs), m(mean.Lower), m(mean.Plan), mean.PlanOver, kwh/d, m(mean.PlanFF), mean.PlanFFOver, m(mean.FFDPeak), m(mean.FFDP95), p95over/float64(mean.FFDP95), m(mean.TSFF), mean.TSFFOver)
	fmt.Fprintf(&sb, "published: lower bound 42.0, plan <= 47 with 0 overload; expected FFD peak ~152.9, FFD p95 ~75.4 at ~0.10 %% overload, time-series FF ~52.2\n")
	fmt.Print(sb.String())
	b.ReportMetric(m(mean.Plan), "hosts/day")
	b.ReportMetric(m(mean.Plan)/m(mean.Lower), "ratio")
	fmt.Printf("ratio plan/lower %.3f\nratio plan/tsFF %.3f\nratio plan/FFDpeak %.3f\nratio plan/FFDp95 %.3f\n",
		m(mean.Plan)/m(mean.Lower), float64(mean.Plan)/float64(mean.TSFF), float64(mean.Plan)/float64(mean.FFDPeak), float64(mean.Plan)/float64(mean.FFDP95))
}

func TestPlanRefusesMixedIntervals(t *testing.T) {
	a := Machine{ID: "a", CPU: 1000, Series: history.Series{Interval: 5 * time.Minute, CPU: []float64{1, 2, 3}}}
	b := Machine{ID: "b", CPU: 1000, Series: history.Series{Interval: time.Hour, CPU: []float64{1, 2, 3}}}
	h := &placement.Host{ID: "h", Cores: 2, Capacity: placement.Vector{placement.CPU: 5320, placement.Memory: 1 << 20}}
	_, err := Plan(context.Background(), []Machine{a, b}, []*placement.Host{h}, nil)
	if err == nil || !strings.Contains(err.Error(), "share one time line") {
		t.Fatalf("mixed intervals accepted: %v", err)
	}
}
