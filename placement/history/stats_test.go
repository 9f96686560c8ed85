package history

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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
			got := Resample(s, tc.to)
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
	got := Resample(Series{ID: "e", Start: t0}, time.Minute)
	assert.Equal(t, 0, got.Len())
	assert.Equal(t, time.Minute, got.Interval)
	assert.Panics(t, func() { Resample(Series{Interval: time.Minute, CPU: []float64{1}}, 0) })
	assert.Panics(t, func() { Resample(Series{CPU: []float64{1}}, time.Minute) })
	assert.Panics(t, func() { Resample(Series{Interval: time.Hour, CPU: make([]float64, 100)}, time.Nanosecond) })
	in := []float64{1, 2}
	Resample(Series{Interval: time.Minute, CPU: in}, 2*time.Minute)
	assert.Equal(t, []float64{1, 2}, in, "input unchanged")
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
		{x, 50, 35},
		{x, 40, 29},     // h = 4·0.4 = 1.6: 20 + 0.6·15
		{x, 90, 46},     // h = 3.6: 40 + 0.6·10
		{x, 25, 20},     // h = 1
		{x, 12.5, 17.5}, // h = 0.5
		{[]float64{7}, 95, 7},
		{[]float64{1, 2}, 50, 1.5},
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
			assert.InDelta(t, tc.want, got, 1e-9, "Percentile(%v, %v)", tc.x, tc.p)
		}
	}
	assertFloatsNaN(t, []float64{50, nan, 15, 40, 20, 35}, x, "input unchanged")
}

func TestPeakToMean(t *testing.T) {
	for _, tc := range []struct {
		x    []float64
		want float64
	}{
		{[]float64{1, 2, 3, nan, 6}, 2}, // mean 3
		{[]float64{5, 5}, 1},
		{[]float64{0, 0, 4}, 3},
		{[]float64{0, 0}, nan},
		{[]float64{nan}, nan},
		{nil, nan},
	} {
		got := PeakToMean(tc.x)
		if math.IsNaN(tc.want) {
			assert.True(t, math.IsNaN(got), "PeakToMean(%v) = %v", tc.x, got)
		} else {
			assert.InDelta(t, tc.want, got, 1e-9, "PeakToMean(%v)", tc.x)
		}
	}
}

func TestDailyProfile(t *testing.T) {
	cpu := func(s *Series) []float64 { return s.CPU }
	// Samples at 12h, 18h, 0h, 6h, 12h, 18h, 0h, 6h.
	s := Series{Start: t0, Interval: 6 * time.Hour, CPU: []float64{1, 2, 3, 4, 5, 6, 7, 8}}
	assertFloatsNaN(t, []float64{5, 6, 3, 4}, DailyProfile(s, cpu))
	s.CPU[6] = nan
	assertFloatsNaN(t, []float64{3, 6, 3, 4}, DailyProfile(s, cpu))

	// Off the grid: 01:30 and 07:30 fall in the buckets of 00:00 and 06:00.
	s = Series{Start: time.Date(2026, 3, 1, 1, 30, 0, 0, time.UTC), Interval: 6 * time.Hour, CPU: []float64{10, 20}}
	assertFloatsNaN(t, []float64{10, 20, nan, nan}, DailyProfile(s, cpu))

	// The clock of Start's location: local midnight is bucket 0.
	s = Series{Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.FixedZone("X", 2*3600)), Interval: 12 * time.Hour, CPU: []float64{1, 2, 3}}
	assertFloatsNaN(t, []float64{2, 2}, DailyProfile(s, cpu))

	// Five-minute samples: 288 buckets.
	s = Series{Start: t0, Interval: 5 * time.Minute, CPU: []float64{9}}
	p := DailyProfile(s, cpu)
	assert.Len(t, p, 288)
	assert.Equal(t, 9.0, p[144])

	assert.Nil(t, DailyProfile(Series{Start: t0, Interval: 7 * time.Hour, CPU: []float64{1}}, cpu))
	assert.Nil(t, DailyProfile(Series{Start: t0, Interval: 0, CPU: []float64{1}}, cpu))
	assert.Nil(t, DailyProfile(Series{Start: t0, Interval: time.Hour}, cpu), "not measured")
}
