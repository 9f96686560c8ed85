package history

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bbRow is a Bitbrains row at seconds after 1372629600 (22:00:00 UTC).
func bbRow(sec int, capMHz, useMHz, pct, memKB, memUsedKB float64) string {
	return formatRow(Sample{Time: time.Unix(1372629600+int64(sec), 0).UTC(), CPUCores: 1,
		CPUCapacityMHz: capMHz, CPUUsageMHz: useMHz, CPUUsagePercent: pct,
		MemoryProvisionedKB: memKB, MemoryUsageKB: memUsedKB, DiskReadKBps: 100, DiskWriteKBps: 25, NetRxKBps: 10, NetTxKBps: 15})
}

var bbStart = time.Unix(1372629600, 0).UTC()

func traceOf(t *testing.T, path, text string) Trace {
	t.Helper()
	s, err := readAll(t, strings.NewReader(text))
	require.NoError(t, err)
	return Trace{ID: "7", Path: path, Samples: s}
}

func TestSampleCheck(t *testing.T) {
	ok := Sample{Line: 3, CPUCapacityMHz: 2000, CPUUsageMHz: 2000, CPUUsagePercent: 100, MemoryProvisionedKB: 10, MemoryUsageKB: 10}
	assert.NoError(t, ok.Check())
	for _, tc := range []struct {
		edit func(*Sample)
		col  int
		msg  string
	}{
		{func(s *Sample) { s.CPUUsagePercent = 103.5 }, 5, "CPU usage 103.5 % is above 100 %"},
		{func(s *Sample) { s.CPUUsageMHz = 2000.5 }, 4, "CPU usage 2000.5 MHz is above the 2000 MHz provisioned"},
		{func(s *Sample) { s.CPUCapacityMHz = 0 }, 4, "above the 0 MHz provisioned"},
		{func(s *Sample) { s.MemoryUsageKB = 11 }, 7, "memory usage 11 KB is above the 10 KB provisioned"},
	} {
		s := ok
		tc.edit(&s)
		err := s.Check()
		var pe *ParseError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, 3, pe.Line)
		assert.Equal(t, tc.col, pe.Column)
		assert.ErrorContains(t, err, tc.msg)
	}
}

func TestBitbrainsSeries(t *testing.T) {
	in := header +
		bbRow(-300, 2000, 2000, 100, 2048, 1024) + // before start: left out
		bbRow(0, 2000, 500, 25, 2048, 1024) +
		bbRow(100, 4000, 1500, 37.5, 4096, 2048) + // same bucket, VM resized
		// bucket 1 empty
		bbRow(650, 0, 0, 0, 0, 0) + // no capacity reported: CPU and memory missing
		bbRow(950, 4000, 4000, 100, 4096, 4096)
	tr := traceOf(t, "x/7.csv", in)
	s, err := BitbrainsSeries(tr, bbStart, 5*time.Minute, 0, nil)
	require.NoError(t, err)
	assert.Equal(t, "7", s.ID)
	assert.Equal(t, bbStart, s.Start)
	assert.Equal(t, 5*time.Minute, s.Interval)
	assert.Equal(t, 4000.0, s.CPUCapacity)
	assert.Equal(t, 4.0, s.MemoryCapacity)
	assertFloatsNaN(t, []float64{25, nan, nan, 100}, s.CPU) // (500+1500)/2 = 1000 MHz of 4000
	assertFloatsNaN(t, []float64{1.5, nan, nan, 4}, s.Memory)
	assertFloatsNaN(t, []float64{0.128, nan, 0.128, 0.128}, s.DiskMBps)   // 125 KB/s
	assertFloatsNaN(t, []float64{0.2048, nan, 0.2048, 0.2048}, s.Network) // 25 KB/s
	assert.Nil(t, s.DiskIOPS)

	// A fixed length cuts or pads.
	s, err = BitbrainsSeries(tr, bbStart, 5*time.Minute, 6, nil)
	require.NoError(t, err)
	assertFloatsNaN(t, []float64{25, nan, nan, 100, nan, nan}, s.CPU)
	s, err = BitbrainsSeries(tr, bbStart, 10*time.Minute, 1, nil)
	require.NoError(t, err)
	assertFloatsNaN(t, []float64{25}, s.CPU)

	// Nothing from start on.
	s, err = BitbrainsSeries(tr, bbStart.Add(time.Hour), 5*time.Minute, 0, nil)
	require.NoError(t, err)
	assert.Equal(t, 0, s.Len())
}

// Regression: rows using more CPU than provisioned (1.7 % of the Rnd
// trace, up to 182 %) or more memory than provisioned went into the
// numbers. They are an error naming file, line and column, or, when the
// caller takes warnings, left out and counted.
func TestBitbrainsSeriesInconsistentRows(t *testing.T) {
	in := header +
		bbRow(0, 2000, 500, 25, 2048, 1024) +
		bbRow(300, 2000, 2100, 105, 2048, 1024) + // line 3
		bbRow(600, 2000, 100, 5, 2048, 4096) + // line 4
		bbRow(900, 2000, 200, 10, 2048, 1024)
	tr := traceOf(t, "rnd/7.csv", in)
	_, err := BitbrainsSeries(tr, bbStart, 5*time.Minute, 0, nil)
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "history: rnd/7.csv: line 3, column 5 (CPU usage [%]): CPU usage 105 % is above 100 %", err.Error())

	var w Warnings
	s, err := BitbrainsSeries(tr, bbStart, 5*time.Minute, 0, &w)
	require.NoError(t, err)
	assertFloatsNaN(t, []float64{25, nan, nan, 10}, s.CPU)
	assert.Equal(t, 2000.0, s.CPUCapacity)
	assert.Equal(t, 2, w.Count)
	require.Len(t, w.First, 2)
	assert.ErrorContains(t, w.First[1], "rnd/7.csv: line 4, column 7")
	assert.Equal(t, "2 skipped; first: "+w.First[0].Error(), w.String())

	// Only the first MaxWarnings are kept.
	var b strings.Builder
	b.WriteString(header)
	for i := range 25 {
		b.WriteString(bbRow(300*i, 1000, 1001, 100.1, 1, 1))
	}
	w = Warnings{}
	s, err = BitbrainsSeries(traceOf(t, "", b.String()), bbStart, 5*time.Minute, 0, &w)
	require.NoError(t, err)
	assert.Equal(t, 0, s.Len(), "no consistent row")
	assert.Equal(t, 25, w.Count)
	assert.Len(t, w.First, MaxWarnings)
	assert.Equal(t, "nothing skipped", (&Warnings{}).String())
}

func TestBitbrainsSeriesBounds(t *testing.T) {
	tr := traceOf(t, "", header+bbRow(0, 2000, 500, 25, 2048, 1024)+formatRow(Sample{Time: time.Unix(1e10, 0).UTC()}))
	for _, tc := range []struct {
		iv  time.Duration
		n   int
		msg string
	}{
		{0, 0, "interval 0s is not positive"},
		{time.Minute, -1, "-1 samples asked"},
		{time.Minute, MaxSeriesSamples + 1, "MaxSeriesSamples"},
		{time.Second, 0, "more than 4194304 (MaxSeriesSamples)"}, // the row of year 2286
	} {
		n := allocated(func() {
			_, err := BitbrainsSeries(tr, bbStart, tc.iv, tc.n, nil)
			assert.ErrorContains(t, err, tc.msg)
			assert.ErrorContains(t, err, `BitbrainsSeries "7"`)
		})
		assert.Less(t, n, uint64(1<<20))
	}
}

// The shipped sample: 193 is busy and has rows above its capacity.
func TestBitbrainsSeriesSample(t *testing.T) {
	samples, err := ReadBitbrainsFile(filepath.Join(sampleDir, "193.csv"))
	require.NoError(t, err)
	tr := Trace{ID: "193", Path: "193.csv", Samples: samples}
	_, err = BitbrainsSeries(tr, bbStart, 5*time.Minute, 0, nil)
	assert.ErrorContains(t, err, "193.csv: line 3, column 5 (CPU usage [%]): CPU usage 103.08333333333334 % is above 100 %")
	var w Warnings
	s, err := BitbrainsSeries(tr, bbStart, 5*time.Minute, 2*288, &w)
	require.NoError(t, err)
	assert.Equal(t, 357, w.Count)
	assert.InDelta(t, 10400, s.CPUCapacity, 0.01, "4 cores × 2600 MHz, the largest of the rows")
	checkSeries(t, []Series{s})
}

func TestAlign(t *testing.T) {
	a := Series{ID: "a", Start: t0.Add(10 * time.Minute), Interval: 5 * time.Minute, CPU: []float64{1, 2}, Memory: []float64{3, 4}}
	b := Series{ID: "b", Start: t0, Interval: 5 * time.Minute, CPU: []float64{5}}
	out, err := Align([]Series{a, b})
	require.NoError(t, err)
	require.Len(t, out, 2)
	for _, s := range out {
		assert.Equal(t, t0, s.Start)
		assert.Equal(t, 4, s.Len())
	}
	assertFloatsNaN(t, []float64{nan, nan, 1, 2}, out[0].CPU)
	assertFloatsNaN(t, []float64{nan, nan, 3, 4}, out[0].Memory)
	assertFloatsNaN(t, []float64{5, nan, nan, nan}, out[1].CPU)
	assert.Nil(t, out[1].Memory)
	assert.Equal(t, []float64{1, 2}, a.CPU, "input unchanged")

	out, err = Align(nil)
	require.NoError(t, err)
	assert.Empty(t, out)
	for _, tc := range []struct {
		in  []Series
		msg string
	}{
		{[]Series{{ID: "z"}}, `"z" has interval 0s`},
		{[]Series{a, {ID: "c", Start: t0, Interval: time.Minute}}, "resample first"},
		{[]Series{a, {ID: "d", Start: t0.Add(time.Minute), Interval: 5 * time.Minute}}, "not a whole number"},
		{[]Series{a, {ID: "e", Start: t0.Add(-5 * time.Minute * MaxSeriesSamples), Interval: 5 * time.Minute}}, "MaxSeriesSamples"},
	} {
		_, err := Align(tc.in)
		assert.ErrorContains(t, err, tc.msg)
	}
}
