package history

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const genericDir = "testdata/generic"

func TestReadCSVFile(t *testing.T) {
	ss, err := ReadCSV(strings.NewReader(readTestFile(t, genericDir, "machines.csv")))
	require.NoError(t, err)
	require.Len(t, ss, 2)
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

	a := ss[0]
	assert.Equal(t, "vm-a", a.ID)
	assert.Equal(t, start, a.Start)
	assert.Equal(t, 5*time.Minute, a.Interval)
	assertFloatsNaN(t, []float64{50, 60, 70}, a.CPU)
	assertFloatsNaN(t, []float64{1024, 1100, 1200}, a.Memory)
	assertFloatsNaN(t, []float64{nan, 3, 4}, a.Network)
	assert.Nil(t, a.DiskIOPS, "no disk_iops column")
	assert.Nil(t, a.DiskMBps)

	b := ss[1]
	assert.Equal(t, "vm-b", b.ID)
	assert.Equal(t, start, b.Start)
	assert.Equal(t, 5*time.Minute, b.Interval)
	assertFloatsNaN(t, []float64{10, 20, nan, 40}, b.CPU, "10:10 is a gap")
	assertFloatsNaN(t, []float64{512, 640, nan, nan}, b.Memory)
	assertFloatsNaN(t, []float64{1.5, 2.5, nan, 0}, b.Network)
}

func TestReadCSVColumns(t *testing.T) {
	in := "\ufeffdisk_mbps , id,disk_iops,time,network_mbps,memory_mib,cpu_percent\r\n" +
		"1.5,10,100,60,8,256,25\r\n" +
		`"2",10,,0,"",128,` + "\r\n\r\n" +
		"3,2,5,1800,1,64,100\r\n" +
		"4,2,6,0,2,32,0\r\n"
	ss, err := ReadCSV(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, ss, 2)
	assert.Equal(t, "2", ss[0].ID, "numeric IDs by value")
	assert.Equal(t, "10", ss[1].ID)
	assert.Equal(t, time.Unix(0, 0).UTC(), ss[0].Start)
	assert.Equal(t, 30*time.Minute, ss[0].Interval)
	assert.Equal(t, time.Minute, ss[1].Interval)
	assertFloatsNaN(t, []float64{0, 100}, ss[0].CPU)
	assertFloatsNaN(t, []float64{32, 64}, ss[0].Memory)
	assertFloatsNaN(t, []float64{6, 5}, ss[0].DiskIOPS)
	assertFloatsNaN(t, []float64{4, 3}, ss[0].DiskMBps)
	assertFloatsNaN(t, []float64{2, 1}, ss[0].Network)
	assertFloatsNaN(t, []float64{nan, 25}, ss[1].CPU)
	assertFloatsNaN(t, []float64{nan, 100}, ss[1].DiskIOPS)
	assertFloatsNaN(t, []float64{2, 1.5}, ss[1].DiskMBps)
	assertFloatsNaN(t, []float64{nan, 8}, ss[1].Network)
	assertFloatsNaN(t, []float64{128, 256}, ss[1].Memory)
}

func TestReadCSVOnlyRequired(t *testing.T) {
	ss, err := ReadCSV(strings.NewReader("id,time\nx,0\nx,300\n"))
	require.NoError(t, err)
	require.Len(t, ss, 1)
	assert.Equal(t, 0, ss[0].Len(), "no resource measured")
	assert.Equal(t, 5*time.Minute, ss[0].Interval)

	ss, err = ReadCSV(strings.NewReader("time,id\n"))
	require.NoError(t, err)
	assert.Empty(t, ss)
}

func TestReadCSVErrors(t *testing.T) {
	const h = "time,id,cpu_percent\n"
	for _, tc := range []struct {
		name, in string
		line     int
		msg      string
	}{
		{"empty", "", 1, "empty file"},
		{"unknown column", "time,id,cpu\n", 1, `column 3 (cpu): unknown column`},
		{"twice", "time,id,cpu_percent,cpu_percent\n", 1, "column 4 (cpu_percent): column named twice (also column 3)"},
		{"no id", "time,cpu_percent\n", 1, `lacks a "time" or "id"`},
		{"no time", "id,cpu_percent\n", 1, `lacks a "time" or "id"`},
		{"short row", h + "0,a,1\n60,a\n", 3, "2 fields, want 3"},
		{"empty id", h + "0, ,1\n", 2, "column 2 (id): empty id"},
		{"bad time", h + "yesterday,a,1\n", 2, `column 1 (time): "yesterday" is neither`},
		{"empty time", h + ",a,1\n", 2, "empty time"},
		{"fractional seconds", h + "1.5,a,1\n", 2, "column 1 (time)"},
		{"huge seconds", h + "99999999999999,a,1\n", 2, "years 0–9999"},
		{"not a number", h + "0,a,x\n", 2, `column 3 (cpu_percent): "x" is not a number`},
		{"negative", h + "0,a,-1\n", 2, "negative value -1"},
		{"infinite", h + "0,a,Inf\n", 2, "not a finite number"},
		{"cpu over 100", h + "0,a,100.01\n", 2, "above 100"},
		{"duplicate", h + "0,a,1\n60,b,1\n0,a,2\n", 4, `machine "a": time 1970-01-01T00:00:00Z given twice (also line 2)`},
		{"duplicate other format", h + "1772359200,a,1\n2026-03-01T11:00:00+01:00,a,2\n", 3, "given twice"},
		{"single sample", h + "0,a,1\n0,b,1\n60,b,1\n", 2, `machine "a" has a single sample`},
		{"mixed intervals", h + "0,m1,1\n60,m1,1\n90,m1,1\n150,m1,1\n", 4, `machine "m1": spacing 30s is not a multiple of the interval 1m0s`},
		{"bad quote", h + "0,\"a,1\n", 2, "quote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss, err := ReadCSV(strings.NewReader(tc.in))
			assert.Nil(t, ss)
			var pe *ParseError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.line, pe.Line)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestReadCSVTooLong(t *testing.T) {
	_, err := ReadCSV(strings.NewReader("time,id\n0,a\n1,a\n100000000,a\n"))
	assert.ErrorContains(t, err, "longer than")
}

func readTestFile(t testing.TB, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err)
	return string(b)
}

func FuzzReadCSV(f *testing.F) {
	f.Add(readTestFile(f, genericDir, "machines.csv"))
	f.Add("time,id,disk_iops,disk_mbps\n0,a,1,2\n60,a,,3\n180,a,4,5\n0,b,1,1\n30,b,2,2\n")
	f.Add("id,time\nx,2026-01-01T00:00:00Z\nx,2026-01-01T00:00:01.5+00:00\n")
	defer func(n int) { maxSlots = n }(maxSlots)
	maxSlots = 1 << 16
	f.Fuzz(func(t *testing.T, in string) {
		ss, err := ReadCSV(strings.NewReader(in))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || ss != nil {
				t.Fatalf("error %v (%T) with %d series", err, err, len(ss))
			}
			return
		}
		for i := 1; i < len(ss); i++ {
			if CompareIDs(ss[i-1].ID, ss[i].ID) >= 0 {
				t.Fatalf("IDs %q, %q out of order", ss[i-1].ID, ss[i].ID)
			}
		}
		for _, s := range ss {
			if s.Len() == 0 {
				continue // only time and id columns
			}
			checkSeries(t, []Series{s})
		}
	})
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Sparse timestamps must not make the reader allocate for the gap: two
// rows ten years apart are a series of two samples, and a third row that
// sets a one-second interval with a ten-year gap is refused (it would be
// 315 million samples) before anything is allocated for it.
func TestReadCSVHugeGapBounded(t *testing.T) {
	var ss []Series
	var err error
	n := allocated(func() {
		ss, err = ReadCSV(strings.NewReader("time,id,cpu_percent\n2016-01-01T00:00:00Z,a,1\n2026-01-01T00:00:00Z,a,2\n"))
	})
	require.NoError(t, err)
	require.Len(t, ss, 1)
	assert.Equal(t, 2, ss[0].Len())
	assert.Less(t, n, uint64(1<<20))

	n = allocated(func() {
		ss, err = ReadCSV(strings.NewReader("time,id,cpu_percent\n2016-01-01T00:00:00Z,a,1\n2016-01-01T00:00:01Z,a,1\n2026-01-01T00:00:00Z,a,2\n"))
	})
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 4, pe.Line)
	assert.ErrorContains(t, err, `machine "a": a gap of 87671h59m59s at an interval of 1s`)
	assert.ErrorContains(t, err, "longer than 4194304 samples (MaxSeriesSamples)")
	assert.Nil(t, ss)
	assert.Less(t, n, uint64(1<<20))
}
