package history

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var nan = math.NaN()

// assertFloatsNaN asserts that got equals want, NaN equal to NaN, within
// 1e-9.
func assertFloatsNaN(t *testing.T, want, got []float64, msg ...any) {
	t.Helper()
	if (want == nil) != (got == nil) || len(want) != len(got) {
		assert.Fail(t, "slices differ", "want %v, got %v %v", want, got, msg)
		return
	}
	for i := range want {
		w, g := want[i], got[i]
		if math.IsNaN(w) != math.IsNaN(g) || !math.IsNaN(w) && math.Abs(w-g) > 1e-9 {
			assert.Fail(t, "slices differ", "at %d: want %v, got %v %v", i, want, got, msg)
			return
		}
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestResample(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to time.Duration
		in, want []float64
	}{
		{"down by 3", time.Minute, 3 * time.Minute, []float64{1, 2, 3, 4, 5, nan, 7}, []float64{2, 4.5, 7}},
		{"all NaN bucket", time.Minute, 2 * time.Minute, []float64{nan, nan, 1, 3}, []float64{nan, 2}},
		{"not aligned", 2 * time.Minute, 3 * time.Minute, []float64{1, 2, 3, 4, 5}, []float64{1.5, 3, 4.5}}, // at 0,2 | 4 | 6,8
		{"up by 2", 10 * time.Minute, 5 * time.Minute, []float64{10, 20}, []float64{10, nan, 20}},
		{"same", time.Minute, time.Minute, []float64{1, nan, 3}, []float64{1, nan, 3}},
		{"one sample", time.Hour, time.Minute, []float64{4}, []float64{4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Series{ID: "x", Start: t0, Interval: tc.from, CPUCapacity: 2, MemoryCapacity: 3, CPU: tc.in, Network: slices.Clone(tc.in)}
			got, err := Resample(s, tc.to)
			require.NoError(t, err)
			assert.Equal(t, "x", got.ID)
			assert.Equal(t, t0, got.Start)
			assert.Equal(t, tc.to, got.Interval)
			assert.Equal(t, 2.0, got.CPUCapacity)
			assert.Equal(t, 3.0, got.MemoryCapacity)
			assertFloatsNaN(t, tc.want, got.CPU)
			assertFloatsNaN(t, tc.want, got.Network)
			assert.Nil(t, got.Memory)
			assert.Nil(t, got.DiskIOPS)
			assert.Nil(t, got.DiskMBps)
		})
	}
}

func TestResampleEdges(t *testing.T) {
	got, err := Resample(Series{ID: "e", Start: t0}, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 0, got.Len())
	assert.Equal(t, time.Minute, got.Interval)
	in := []float64{1, 2}
	_, err = Resample(Series{Interval: time.Minute, CPU: in}, 2*time.Minute)
	require.NoError(t, err)
	assert.Equal(t, []float64{1, 2}, in, "input unchanged")
}

// Regression: Resample panicked on bad intervals, and on a huge result it
// allocated up to 2³¹ buckets (32 GiB) before anything stopped it. Now each
// is an error naming the series, and the result is bounded by
// MaxSeriesSamples before anything is allocated.
func TestResampleRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Series
		to   time.Duration
		msg  string
	}{
		{"zero interval", Series{ID: "a", Interval: time.Minute, CPU: []float64{1}}, 0, `"a": interval 0s is not positive`},
		{"negative interval", Series{ID: "a", Interval: time.Minute, CPU: []float64{1}}, -time.Second, "not positive"},
		{"series without interval", Series{ID: "b", CPU: []float64{1}}, time.Minute, `"b": the series' interval 0s is not positive`},
		{"too many buckets", Series{ID: "c", Interval: time.Hour, CPU: make([]float64, 100)}, time.Nanosecond, "MaxSeriesSamples"},
		{"just too many", Series{ID: "d", Interval: time.Minute, CPU: make([]float64, 2)}, time.Minute / MaxSeriesSamples, "MaxSeriesSamples"},
		{"overflow", Series{ID: "e", Interval: math.MaxInt64, CPU: make([]float64, 3)}, time.Nanosecond, "MaxSeriesSamples"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Series
			var err error
			require.NotPanics(t, func() { got, err = Resample(tc.s, tc.to) })
			require.ErrorContains(t, err, tc.msg)
			assert.Equal(t, 0, got.Len())
		})
	}
	// At the limit it still works.
	got, err := Resample(Series{Interval: MaxSeriesSamples - 1, CPU: []float64{1, 2}}, 1)
	require.NoError(t, err)
	assert.Equal(t, MaxSeriesSamples, got.Len())
}

func TestFillGaps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []float64
		maxGap int
		want   []float64
		gaps   int
	}{
		{"nil", nil, 3, nil, 0},
		{"no gap", []float64{1, 2}, 3, []float64{1, 2}, 0},
		{"one", []float64{1, nan, 3}, 1, []float64{1, 2, 3}, 0},
		{"two", []float64{1, nan, nan, 4}, 2, []float64{1, 2, 3, 4}, 0},
		{"too long", []float64{1, nan, nan, 4}, 1, []float64{1, nan, nan, 4}, 1},
		{"descending", []float64{10, nan, nan, nan, 2}, 3, []float64{10, 8, 6, 4, 2}, 0},
		{"ends stay", []float64{nan, 1, nan, nan, nan, 5, nan}, 3, []float64{nan, 1, 2, 3, 4, 5, nan}, 2},
		{"mixed", []float64{0, nan, 2, nan, nan, nan, 6, nan, 8}, 2, []float64{0, 1, 2, nan, nan, nan, 6, 7, 8}, 1},
		{"zero max", []float64{1, nan, 3}, 0, []float64{1, nan, 3}, 1},
		{"all NaN", []float64{nan, nan}, 5, []float64{nan, nan}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			got, gaps := FillGaps(in, tc.maxGap)
			assertFloatsNaN(t, tc.want, got)
			assert.Equal(t, tc.gaps, gaps)
			assertFloatsNaN(t, tc.in, in, "input unchanged")
		})
	}
}

func TestPercentile(t *testing.T) {
	x := []float64{50, nan, 15, 40, 20, 35} // sorted without NaN: 15 20 35 40 50
	for _, tc := range []struct {
		x    []float64
		p    float64
		want float64
	}{
		{x, 0, 15},
		{x, 100, 50},
		{x, 50, 35},   // k = ⌈2.5⌉ = 3
		{x, 40, 20},   // k = 2: exactly 40 % at or below
		{x, 41, 35},   // k = ⌈2.05⌉ = 3
		{x, 90, 50},   // k = ⌈4.5⌉ = 5
		{x, 20, 15},   // k = 1
		{x, 12.5, 15}, // k = ⌈0.625⌉ = 1
		{[]float64{7}, 95, 7},
		{[]float64{1, 2}, 50, 1}, // lower median
		{nil, 50, nan},
		{[]float64{nan}, 50, nan},
		{x, -1, nan},
		{x, 100.5, nan},
		{x, nan, nan},
	} {
		got := Percentile(tc.x, tc.p)
		if math.IsNaN(tc.want) {
			assert.True(t, math.IsNaN(got), "Percentile(%v, %v) = %v", tc.x, tc.p, got)
		} else {
			assert.Equal(t, tc.want, got, "Percentile(%v, %v)", tc.x, tc.p)
		}
	}
	assertFloatsNaN(t, []float64{50, nan, 15, 40, 20, 35}, x, "input unchanged")
}

// Regression: Percentile interpolated between ranks while
// consolidate's Rank and Plan and the placement experiment took the
// nearest rank, so one history had two different "p95"s. Now every
// percentile is a measured sample, and the nearest rank of whole
// percentages is exact (no ⌈0.07·100⌉ = 8).
func TestPercentileNearestRank(t *testing.T) {
	x := make([]float64, 100)
	for i := range x {
		x[i] = float64(i + 1) // 1 … 100
	}
	for p := 1; p <= 100; p++ {
		assert.Equal(t, float64(p), Percentile(x, float64(p)), "p%d of 1…100", p)
	}
	x20 := make([]float64, 20)
	for i := range x20 {
		x20[i] = float64(i * 10)
	}
	got := Percentile(x20, 95)
	assert.Equal(t, 180.0, got, "p95 of 20 samples is the 19th, not between the 19th and 20th")
	assert.True(t, slices.Contains(x20, Percentile(x20, 99)), "a measured value")
	assert.Equal(t, 180.0, PercentileSorted(x20, 95))
	assert.True(t, math.IsNaN(PercentileSorted(nil, 50)))
	assert.True(t, math.IsNaN(PercentileSorted(x20, 101)))
}
