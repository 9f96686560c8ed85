package consolidate

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/placement/history"
)

// rankWeek is a week of 5-minute samples.
const rankWeek = 7 * 24 * 12

// rankConst returns n samples of value x.
func rankConst(n int, x float64) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = x
	}
	return xs
}

// rankMachineOf returns a 2926 MHz machine of 4 GiB with the given CPU
// series (percent) at 5-minute intervals.
func rankMachineOf(id string, cpu []float64) Machine {
	return Machine{ID: id, CPU: 2926, Memory: 4096, Series: history.Series{
		ID: id, Start: time.Unix(1372629804, 0).UTC(), Interval: 5 * time.Minute, CPU: cpu,
	}}
}

// rankFind returns the candidate of machine id and its position.
func rankFind(t *testing.T, cs []Candidate, id string) (Candidate, int) {
	t.Helper()
	for i, c := range cs {
		if c.Machine.ID == id {
			return c, i
		}
	}
	t.Fatalf("no candidate %q", id)
	return Candidate{}, -1
}

func rankIDs(cs []Candidate) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.Machine.ID
	}
	return ids
}

func rankHasReason(c Candidate, sub string) bool {
	for _, r := range c.Reasons {
		if strings.Contains(r, sub) {
			return true
		}
	}
	return false
}

func TestRankOrdering(t *testing.T) {
	steady := rankConst(rankWeek, 5)
	// Mean 3 %, but 90 % for a quarter of an hour a day.
	spiky := rankConst(rankWeek, 0)
	for i := range spiky {
		if i%288 < 3 {
			spiky[i] = 90
		}
	}
	for i := range spiky {
		if spiky[i] == 0 {
			spiky[i] = (3*float64(len(spiky)) - 90*7*3) / float64(len(spiky)-7*3)
		}
	}
	busy := rankConst(rankWeek, 70)
	disky := rankMachineOf("disky", rankConst(rankWeek, 2))
	disky.Series.DiskIOPS = rankConst(rankWeek, 1200)
	gappy := rankConst(rankWeek, 1)
	for i := range gappy {
		if i%3 == 0 {
			gappy[i] = math.NaN()
		}
	}
	short := rankConst(100, 1)
	machines := []Machine{
		rankMachineOf("spiky", spiky),
		rankMachineOf("busy", busy),
		disky,
		rankMachineOf("steady", steady),
		rankMachineOf("gappy", gappy),
		rankMachineOf("short", short),
	}
	cs, err := Rank(context.Background(), machines, nil)
	require.NoError(t, err)
	require.Len(t, cs, len(machines))
	for _, c := range cs {
		t.Logf("%-7s consolidate=%-5v score=%.3f %q", c.Machine.ID, c.Consolidate, c.Score, c.Reasons)
		assert.GreaterOrEqual(t, c.Score, 0.0)
		assert.LessOrEqual(t, c.Score, 1.0)
	}

	// Candidates first, best first.
	assert.Equal(t, []string{"gappy", "steady", "spiky"}, rankIDs(cs[:3]))
	for i, c := range cs {
		assert.Equal(t, i < 3, c.Consolidate, c.Machine.ID)
	}

	sp, _ := rankFind(t, cs, "spiky")
	st, _ := rankFind(t, cs, "steady")
	assert.InDelta(t, 3, sp.Stats.CPU.Mean, 1e-9, "the spiky machine has the lower mean")
	assert.Less(t, sp.Score, st.Score, "yet the steady one ranks above")
	assert.Equal(t, 90.0, sp.Stats.CPU.Peak)
	assert.InDelta(t, 30, sp.Stats.CPU.PeakToMean, 1e-9)
	assert.Equal(t, 1.0, st.Stats.CPU.PeakToMean)
	assert.Equal(t, 0.0, st.Stats.CPU.Stddev)
	assert.Equal(t, "CPU p95 5 % of 2.9 GHz, peak 5 %, peak/mean 1", st.Reasons[0])

	b, _ := rankFind(t, cs, "busy")
	assert.False(t, b.Consolidate)
	assert.Equal(t, "CPU: sustained 70 % (p50), above the 30 % limit", b.Reasons[0])
	assert.True(t, rankHasReason(b, "CPU: p95 70 %, above the 60 % limit"))

	d, _ := rankFind(t, cs, "disky")
	assert.False(t, d.Consolidate)
	assert.Equal(t, "disk: sustained 1200 IOPS (p50), above the 500 IOPS limit", d.Reasons[0])
	assert.Equal(t, 1200.0, d.Stats.DiskIOPS.P50)
	assert.True(t, rankHasReason(d, "disk p95 1200 IOPS"))

	g, _ := rankFind(t, cs, "gappy")
	assert.True(t, g.Consolidate)
	assert.Equal(t, rankWeek*2/3, g.Stats.CPU.Samples, "NaN gaps are skipped")
	assert.Equal(t, 1.0, g.Stats.CPU.Mean)
	assert.Equal(t, 1.0, g.Stats.CPU.Peak)

	s, _ := rankFind(t, cs, "short")
	assert.False(t, s.Consolidate)
	assert.Equal(t, "not enough history: 100 CPU samples of 100, need 288", s.Reasons[0])
}

func TestRankStats(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(i + 1)
	}
	xs = append(xs, math.NaN())
	st, err := rankStats(xs, math.Inf(1))
	require.NoError(t, err)
	assert.Equal(t, 100, st.Samples)
	assert.Equal(t, 50.5, st.Mean)
	assert.Equal(t, 50.0, st.P50)
	assert.Equal(t, 95.0, st.P95)
	assert.Equal(t, 99.0, st.P99)
	assert.Equal(t, 100.0, st.Peak)
	assert.InDelta(t, 100/50.5, st.PeakToMean, 1e-12)
	assert.InDelta(t, math.Sqrt((100*100-1)/12.0), st.Stddev, 1e-9)

	st, err = rankStats([]float64{0, 0, math.NaN()}, 100)
	require.NoError(t, err)
	assert.Equal(t, ResourceStats{Samples: 2, PeakToMean: 1}, st)

	st, err = rankStats(nil, 100)
	require.NoError(t, err)
	assert.Equal(t, ResourceStats{}, st)

	// The percentiles are history.Percentile's, one definition for the
	// module.
	odd := []float64{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6}
	st, err = rankStats(odd, 100)
	require.NoError(t, err)
	for _, q := range []struct {
		got float64
		p   float64
	}{{st.P50, 50}, {st.P95, 95}, {st.P99, 99}} {
		assert.Equal(t, history.Percentile(odd, q.p), q.got, "p%v", q.p)
	}
}

func TestRankScore(t *testing.T) {
	// Idle and flat: 1.
	assert.Equal(t, 1.0, rankScore(ResourceStats{Samples: 1, PeakToMean: 1}, 0, 0))
	// Flat 5 %: 1 − 0.05.
	flat := ResourceStats{Samples: 1, Mean: 5, P50: 5, P95: 5, P99: 5, Peak: 5, PeakToMean: 1}
	assert.InDelta(t, 0.95, rankScore(flat, 0, 0), 1e-12)
	// I/O at the limit and a machine at the largest share take 30 % and
	// 20 % off.
	assert.InDelta(t, 0.95*0.7*0.8, rankScore(flat, 1, 1), 1e-12)
	// Fully busy: 0.
	full := ResourceStats{Samples: 1, Mean: 100, P50: 100, P95: 100, P99: 100, Peak: 100, PeakToMean: 1}
	assert.Equal(t, 0.0, rankScore(full, 0, 0))
	// Above 100 % (a trace quirk) is capped.
	over := ResourceStats{Samples: 1, Mean: 150, P50: 150, P95: 150, P99: 150, Peak: 150, PeakToMean: 1}
	assert.Equal(t, 0.0, rankScore(over, 0, 0))
	// A small peak hardly counts as a burst; a high one does.
	lowBurst := ResourceStats{Samples: 1, Mean: 0.1, P95: 0.1, P99: 0.1, Peak: 1, PeakToMean: 10}
	highBurst := ResourceStats{Samples: 1, Mean: 1, P95: 1, P99: 1, Peak: 100, PeakToMean: 100}
	assert.Greater(t, rankScore(lowBurst, 0, 0), 0.99)
	assert.InDelta(t, (1-0.1*0.01-0.2*0.01-0.3*0.01-0.4)*0.75, rankScore(highBurst, 0, 0), 1e-12)
}

func TestRankHostAndLimits(t *testing.T) {
	big := rankMachineOf("big", rankConst(rankWeek, 50))
	big.CPU = 64 * 2926 // p95 at 50 % is 32 cores' worth
	fat := rankMachineOf("fat", rankConst(rankWeek, 1))
	fat.Memory = 200 << 10
	small := rankMachineOf("small", rankConst(rankWeek, 1))
	netty := rankMachineOf("netty", rankConst(rankWeek, 1))
	netty.Series.Network = rankConst(rankWeek, 300)
	netty.Series.DiskMBps = rankConst(rankWeek, 80)
	opts := &RankOptions{
		Host:        RankHost{CPU: 32 * 2926, Memory: 256 << 10},
		CPUP50Limit: 60, CPUP95Limit: 80,
	}
	cs, err := Rank(context.Background(), []Machine{big, fat, small, netty}, opts)
	require.NoError(t, err)
	for _, c := range cs {
		t.Logf("%-6s consolidate=%-5v score=%.3f %q", c.Machine.ID, c.Consolidate, c.Score, c.Reasons)
	}
	assert.Equal(t, "small", cs[0].Machine.ID)
	assert.True(t, cs[0].Consolidate)
	for _, c := range cs[1:] {
		assert.False(t, c.Consolidate, c.Machine.ID)
	}
	b, _ := rankFind(t, cs, "big")
	assert.Equal(t, []string{"too large for the host: CPU p95 94 GHz is 100 % of its 94 GHz (limit 50 %)"}, b.Reasons[:1])
	f, _ := rankFind(t, cs, "fat")
	assert.Equal(t, "too large for the host: memory 200 GiB is 78 % of its 256 GiB (limit 50 %)", f.Reasons[0])
	n, _ := rankFind(t, cs, "netty")
	assert.Equal(t, []string{
		"disk: sustained 80 MB/s (p50), above the 50 MB/s limit",
		"network: sustained 300 Mb/s (p50), above the 100 Mb/s limit",
		"CPU p95 1 % of 2.9 GHz, peak 1 %, peak/mean 1",
		"disk p95 80 MB/s, network p95 300 Mb/s",
	}, n.Reasons)
	// Among the rejected, by score: the I/O and size penalties are 0.3 and
	// 0.2 at most, the big machine's busy CPU costs more.
	assert.Equal(t, []string{"small", "fat", "netty", "big"}, rankIDs(cs))

	// +Inf turns a check off.
	cs, err = Rank(context.Background(), []Machine{netty}, &RankOptions{NetworkLimit: math.Inf(1), DiskMBpsLimit: math.Inf(1)})
	require.NoError(t, err)
	assert.True(t, cs[0].Consolidate, cs[0].Reasons)
	assert.InDelta(t, 0.99, cs[0].Score, 1e-12)

	// MinSamples.
	cs, err = Rank(context.Background(), []Machine{small}, &RankOptions{MinSamples: rankWeek + 1})
	require.NoError(t, err)
	assert.False(t, cs[0].Consolidate)
	assert.Equal(t, "not enough history: 2016 CPU samples of 2016, need 2017", cs[0].Reasons[0])
	// The default follows the interval: a day of hourly samples is 24.
	hourly := rankMachineOf("hourly", rankConst(24, 1))
	hourly.Series.Interval = time.Hour
	cs, err = Rank(context.Background(), []Machine{hourly}, nil)
	require.NoError(t, err)
	assert.True(t, cs[0].Consolidate, cs[0].Reasons)
}

func TestRankTies(t *testing.T) {
	ms := []Machine{
		rankMachineOf("b", rankConst(rankWeek, 1)),
		rankMachineOf("c", rankConst(10, 1)),
		rankMachineOf("a", rankConst(rankWeek, 1)),
		rankMachineOf("d", rankConst(10, 1)),
	}
	cs, err := Rank(context.Background(), ms, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c", "d"}, rankIDs(cs))
	// Machine points into the caller's slice.
	assert.Same(t, &ms[2], cs[0].Machine)
}

func TestRankBadInput(t *testing.T) {
	ctx := context.Background()

	cs, err := Rank(ctx, nil, nil)
	require.NoError(t, err)
	assert.Empty(t, cs)
	assert.NotNil(t, cs)

	// A NaN-only series is no history, not an error.
	cs, err = Rank(ctx, []Machine{rankMachineOf("nan", rankConst(rankWeek, math.NaN()))}, nil)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	assert.False(t, cs[0].Consolidate)
	assert.Equal(t, 0.0, cs[0].Score)
	assert.Equal(t, 0, cs[0].Stats.CPU.Samples)
	assert.Equal(t, []string{"not enough history: 0 CPU samples of 2016, need 288"}, cs[0].Reasons)

	// No CPU series at all.
	cs, err = Rank(ctx, []Machine{{ID: "empty"}}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"not enough history: no CPU series"}, cs[0].Reasons)

	neg := rankMachineOf("neg", rankConst(rankWeek, 1))
	neg.Series.CPU[7] = -1
	_, err = Rank(ctx, []Machine{neg}, nil)
	require.ErrorContains(t, err, `machine "neg": CPU sample 7 is -1`)

	// Regression: a CPU sample above 100 % (more than the machine has, a
	// data error such as the Bitbrains rows above their capacity) was
	// ranked as a busy machine while Plan would size on it; it is refused,
	// naming the machine and the sample.
	over := rankMachineOf("over", rankConst(rankWeek, 1))
	over.Series.CPU[12] = 103.5
	_, err = Rank(ctx, []Machine{rankMachineOf("ok", rankConst(rankWeek, 100)), over}, nil)
	require.ErrorContains(t, err, `machine "over": CPU sample 12 is 103.5 %, above 100 %`)
	// Only CPU is a percentage: other resources may be large.
	big := rankMachineOf("big", rankConst(rankWeek, 1))
	big.Series.Memory = rankConst(rankWeek, 1e6)
	_, err = Rank(ctx, []Machine{big}, nil)
	require.NoError(t, err)

	inf := rankMachineOf("inf", rankConst(rankWeek, 1))
	inf.Series.Network = rankConst(rankWeek, math.Inf(1))
	_, err = Rank(ctx, []Machine{inf}, nil)
	require.ErrorContains(t, err, `machine "inf": network sample 0 is +Inf`)

	negCap := rankMachineOf("cap", rankConst(rankWeek, 1))
	negCap.CPU = -5
	_, err = Rank(ctx, []Machine{negCap}, nil)
	require.ErrorContains(t, err, `machine "cap": capacity -5`)

	_, err = Rank(ctx, []Machine{rankMachineOf("x", nil), rankMachineOf("y", nil), rankMachineOf("x", nil)}, nil)
	require.ErrorContains(t, err, `two machines with ID "x"`)

	_, err = Rank(ctx, []Machine{{}}, nil)
	require.ErrorContains(t, err, "machine 0 has no ID")

	for _, o := range []*RankOptions{
		{CPUP50Limit: -1}, {DiskIOPSLimit: math.NaN()}, {MinSamples: -1},
		{MaxHostShare: 2}, {Host: RankHost{CPU: math.Inf(1)}}, {Host: RankHost{Memory: -1}},
	} {
		_, err = Rank(ctx, []Machine{rankMachineOf("m", rankConst(rankWeek, 1))}, o)
		assert.Error(t, err, "%+v", *o)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = Rank(cctx, []Machine{rankMachineOf("m", rankConst(rankWeek, 1))}, nil)
	require.ErrorIs(t, err, context.Canceled)
	_, err = Rank(cctx, nil, nil)
	require.ErrorIs(t, err, context.Canceled)
}

func TestRankNum(t *testing.T) {
	for x, want := range map[float64]string{
		0: "0", 4: "4", 4.04: "4", 0.5: "0.5", 6.24: "6.2", 9.96: "10", 31.4: "31", 1200: "1200", 0.00012: "0.00012",
		math.Inf(1): "+Inf",
	} {
		assert.Equal(t, want, rankNum(x), "%v", x)
	}
	assert.Equal(t, "2.9 GHz", rankMHz(2926))
	assert.Equal(t, "800 MHz", rankMHz(800))
	assert.Equal(t, "4 GiB", rankMiB(4096))
	assert.Equal(t, "512 MiB", rankMiB(512))
}
