package history

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const perfmonDir = "testdata/perfmon"

func readPerfmonFile(t *testing.T, name string, memoryMiB map[string]float64) []Series {
	t.Helper()
	f, err := os.Open(filepath.Join(perfmonDir, name))
	require.NoError(t, err)
	defer f.Close()
	ss, err := ReadPerfmonMemory(f, memoryMiB)
	require.NoError(t, err)
	return ss
}

func TestReadPerfmonOneHost(t *testing.T) {
	ss := readPerfmonFile(t, "one-host.csv", nil)
	require.Len(t, ss, 1)
	s := ss[0]
	assert.Equal(t, "WEB01", s.ID)
	assert.Equal(t, time.Date(2026, 3, 1, 18, 0, 0, 0, time.UTC), s.Start) // 10:00 PST, bias 480
	assert.Equal(t, 15*time.Second, s.Interval)                            // jitter of ±3 ms
	assertFloatsNaN(t, []float64{12.5, 25, 50, 100}, s.CPU)
	assertFloatsNaN(t, []float64{nan, 120, 80.5, 0}, s.DiskIOPS)
	assertFloatsNaN(t, []float64{nan, 4, 1.5, 0}, s.DiskMBps)
	// (1,250,000 + 250,000) B/s · 8 = 12 Mb/s; 125,000 B/s = 1 Mb/s.
	assertFloatsNaN(t, []float64{nan, 12, 1, 0}, s.Network)
	assert.Nil(t, s.Memory, "available memory is not used memory")
	assert.Zero(t, s.MemoryCapacity)
	assert.Equal(t, 4, s.Len())
}

func TestReadPerfmonMemory(t *testing.T) {
	ss := readPerfmonFile(t, "one-host.csv", map[string]float64{"web01": 4096, "other": 1})
	require.Len(t, ss, 1)
	assert.Equal(t, 4096.0, ss[0].MemoryCapacity)
	assertFloatsNaN(t, []float64{2048, 2096, 3072, 2560}, ss[0].Memory)

	_, err := ReadPerfmonMemory(strings.NewReader(readTestFile(t, perfmonDir, "one-host.csv")), map[string]float64{"WEB01": 2047})
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 2, pe.Line)
	assert.Contains(t, err.Error(), "column 4")
	assert.Contains(t, err.Error(), "2048 MiB available")
}

func TestReadPerfmonTwoHosts(t *testing.T) {
	ss := readPerfmonFile(t, "two-hosts.csv", nil)
	require.Len(t, ss, 2)
	db, app := ss[0], ss[1]
	start := time.Date(2025, 12, 31, 22, 59, 0, 0, time.UTC) // 23:59 at bias -60
	for _, s := range ss {
		assert.Equal(t, start, s.Start)
		assert.Equal(t, 30*time.Second, s.Interval)
	}
	assert.Equal(t, "DB01", db.ID, "first spelling; db01 is the same host")
	assertFloatsNaN(t, []float64{5, 7.25, 9.5}, db.CPU)
	assertFloatsNaN(t, []float64{10, 20, 30}, db.DiskIOPS)
	assert.Nil(t, db.Memory)
	assert.Nil(t, db.Network)
	assert.Nil(t, db.DiskMBps)

	assert.Equal(t, "APP02", app.ID)
	assertFloatsNaN(t, []float64{70, nan, 80}, app.CPU)
	assertFloatsNaN(t, []float64{8, 16, 24}, app.Network, "the _Total instance alone")

	ss = readPerfmonFile(t, "two-hosts.csv", map[string]float64{"DB01": 8192})
	assertFloatsNaN(t, []float64{4096, 4192, nan}, ss[0].Memory)
	assert.Nil(t, ss[1].Memory)
}

func TestReadPerfmonGaps(t *testing.T) {
	ss := readPerfmonFile(t, "gaps.csv", nil)
	require.Len(t, ss, 1)
	s := ss[0]
	assert.Equal(t, time.Date(2026, 6, 15, 8, 0, 0, 0, time.UTC), s.Start)
	assert.Equal(t, time.Minute, s.Interval)
	assertFloatsNaN(t, []float64{10, 20, 30, nan, nan, 60, 70, nan, nan, nan, 100}, s.CPU)
	assertFloatsNaN(t, []float64{1, 2, nan, nan, nan, 5, 6, nan, nan, 9, 10}, s.DiskMBps)
}

const pdhHeader = `"(PDH-CSV 4.0) (Coordinated Universal Time)(0)","\\H\Processor(_Total)\% Processor Time","\\H\Memory\Pages/sec"` + "\n"

func pdhRow(clock, cpu, pages string) string {
	return `"03/01/2026 ` + clock + `","` + cpu + `","` + pages + `"` + "\n"
}

func TestReadPerfmonErrors(t *testing.T) {
	ok1, ok2 := pdhRow("10:00:00.000", "1", "2"), pdhRow("10:00:10.000", "1", "2")
	for _, tc := range []struct {
		name, in string
		line     int
		msg      string
	}{
		{"empty", "", 1, "empty file"},
		{"not pdh", "time,cpu\n1,2\n", 1, "PDH-CSV 4.0"},
		{"tsv", `"(PDH-TSV 4.0) (UTC)(0)","\\H\Processor(_Total)\% Processor Time"` + "\n", 1, "PDH-CSV 4.0"},
		{"no zone", `"(PDH-CSV 4.0)","\\H\Processor(_Total)\% Processor Time"` + "\n", 1, "bias minutes"},
		{"bad bias", `"(PDH-CSV 4.0) (UTC)(x)","\\H\Processor(_Total)\% Processor Time"` + "\n", 1, "bias"},
		{"bad path", `"(PDH-CSV 4.0) (UTC)(0)","Processor(_Total)\% Processor Time"` + "\n", 1, "counter path"},
		{"unclosed instance", `"(PDH-CSV 4.0) (UTC)(0)","\\H\Processor(_Total\% Processor Time"` + "\n", 1, `")"`},
		{"duplicate", `"(PDH-CSV 4.0) (UTC)(0)","\\H\Processor(_Total)\% Processor Time","\\h\processor(_total)\% processor time"` + "\n", 1, "column 3"},
		{"nothing used", `"(PDH-CSV 4.0) (UTC)(0)","\\H\Memory\Available MBytes"` + "\n" + `"03/01/2026 10:00:00","1"` + "\n", 1, "no host"},
		{"short row", pdhHeader + ok1 + `"03/01/2026 10:00:10.000","1"` + "\n", 3, "2 fields, want 3"},
		{"long row", pdhHeader + ok1 + `"03/01/2026 10:00:10.000","1","2","3"` + "\n", 3, "4 fields, want 3"},
		{"not a number", pdhHeader + ok1 + pdhRow("10:00:10.000", "1", "two"), 3, `column 3 (\\H\Memory\Pages/sec): "two" is not a number`},
		{"decimal comma", pdhHeader + pdhRow("10:00:00.000", "1,5", "2"), 2, `column 2`},
		{"nan", pdhHeader + pdhRow("10:00:00.000", "NaN", "2"), 2, "not a finite number"},
		{"negative", pdhHeader + pdhRow("10:00:00.000", "1", "-2"), 2, "negative value -2"},
		{"cpu over 100", pdhHeader + ok1 + pdhRow("10:00:10.000", "100.5", "2"), 3, "above 100"},
		{"bad time", pdhHeader + `"2026-03-01 10:00:00","1","2"` + "\n", 2, "column 1 (time)"},
		{"backwards", pdhHeader + ok2 + ok1, 3, "not after the previous"},
		{"same time", pdhHeader + ok1 + ok1, 3, "not after the previous"},
		{"one row", pdhHeader + ok1, 1, "at least two"},
		{"header only", pdhHeader, 1, "at least two"},
		{"mixed spacing", pdhHeader + ok1 + ok2 + pdhRow("10:00:25.000", "1", "2") + pdhRow("10:00:35.000", "1", "2"), 4, "not a multiple"},
		{"bad quote", pdhHeader + ok1 + `"03/01/2026 10:00:10.000","1,"2"` + "\n", 3, "quote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss, err := ReadPerfmon(strings.NewReader(tc.in))
			assert.Nil(t, ss)
			var pe *ParseError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.line, pe.Line)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestReadPerfmonNetworkNaN(t *testing.T) {
	in := `"(PDH-CSV 4.0) (UTC)(0)","\\H\Network Interface(a)\Bytes Total/sec","\\H\Network Interface(b)\Bytes Total/sec"` + "\n" +
		`"03/01/2026 10:00:00","125000",""` + "\n" +
		`"03/01/2026 10:00:01","125000","125000"` + "\n"
	ss, err := ReadPerfmon(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, ss, 1)
	assertFloatsNaN(t, []float64{nan, 2}, ss[0].Network, "a sum with a missing interface is missing")
	assert.Equal(t, time.Second, ss[0].Interval)
}

func TestSplitCounterPath(t *testing.T) {
	h, o, i, c, err := splitCounterPath(`\\WEB01\Network Interface(Intel(R) Ethernet)\Bytes Total/sec`)
	require.NoError(t, err)
	assert.Equal(t, []string{"WEB01", "Network Interface", "Intel(R) Ethernet", "Bytes Total/sec"}, []string{h, o, i, c})
	h, o, i, c, err = splitCounterPath(`\\WEB01\Memory\Available MBytes`)
	require.NoError(t, err)
	assert.Equal(t, []string{"WEB01", "Memory", "", "Available MBytes"}, []string{h, o, i, c})
	for _, bad := range []string{``, `\\`, `\\H`, `\\H\Memory`, `\\H\Memory\`, `\\\Memory\X`, `H\Memory\X`} {
		_, _, _, _, err := splitCounterPath(bad)
		assert.Error(t, err, bad)
	}
}

func FuzzReadPerfmon(f *testing.F) {
	for _, name := range []string{"one-host.csv", "two-hosts.csv", "gaps.csv"} {
		b, err := os.ReadFile(filepath.Join(perfmonDir, name))
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte(pdhHeader + pdhRow("10:00:00.000", "1", "2") + pdhRow("10:00:10.000", " ", "")))
	f.Add([]byte(pdhHeader + pdhRow("10:00:00.000", "-1", "2") + pdhRow("10:00:10.000", "101", "-5") + pdhRow("10:00:20.000", "3", "4")))
	defer func(n int) { maxSlots = n }(maxSlots)
	maxSlots = 1 << 16
	f.Fuzz(func(t *testing.T, b []byte) {
		// With warnings: impossible values skipped and counted.
		var w Warnings
		ws, werr := ReadPerfmonWarnings(strings.NewReader(string(b)), map[string]float64{"H": 1000}, &w)
		if werr == nil {
			checkSeries(t, ws)
		} else if ws != nil {
			t.Fatalf("series with error %v", werr)
		}
		if len(w.First) > min(w.Count, MaxWarnings) {
			t.Fatalf("warnings %+v", w)
		}
		ss, err := ReadPerfmonMemory(strings.NewReader(string(b)), map[string]float64{"H": 1000})
		if err == nil && (werr != nil || w.Count > 0) {
			t.Fatalf("strict read accepts what the lenient one refuses or skips: %v, %+v", werr, w)
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if ss != nil {
				t.Fatalf("series with error %v", err)
			}
			return
		}
		checkSeries(t, ss)
	})
}

// checkSeries checks what every reader promises of its series.
func checkSeries(t *testing.T, ss []Series) {
	t.Helper()
	for _, s := range ss {
		n := s.Len()
		if n < 2 || s.Interval <= 0 || s.Start.Location() != time.UTC {
			t.Fatalf("series %q: %d samples, interval %v, start %v", s.ID, n, s.Interval, s.Start)
		}
		for k, x := range [][]float64{s.CPU, s.Memory, s.DiskIOPS, s.DiskMBps, s.Network} {
			if x == nil {
				continue
			}
			if len(x) != n {
				t.Fatalf("series %q: resource %d has %d samples, want %d", s.ID, k, len(x), n)
			}
			for _, v := range x {
				if math.IsInf(v, 0) || v < 0 || k == 0 && v > 100 {
					t.Fatalf("series %q: resource %d has sample %v", s.ID, k, v)
				}
			}
		}
	}
}

// As ReadCSV: a log with a ten-year hole is refused, not allocated.
func TestReadPerfmonHugeGapBounded(t *testing.T) {
	in := pdhHeader + pdhRow("10:00:00.000", "1", "2") + pdhRow("10:00:01.000", "1", "2") +
		`"03/01/2036 10:00:00.000","1","2"` + "\n"
	var ss []Series
	var err error
	n := allocated(func() { ss, err = ReadPerfmon(strings.NewReader(in)) })
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 4, pe.Line)
	assert.ErrorContains(t, err, "MaxSeriesSamples")
	assert.Nil(t, ss)
	assert.Less(t, n, uint64(1<<20))
}

// Regression: a negative rate (a counter that wrapped or reset) or
// another impossible value failed the whole log, with no way to keep the
// rest. ReadPerfmon still refuses them; ReadPerfmonWarnings leaves them
// out (NaN), counts them and says where, used counters and ignored alike.
// Values that are not numbers stay errors.
func TestReadPerfmonWarnings(t *testing.T) {
	head := `"(PDH-CSV 4.0) (UTC)(0)","\\H\Processor(_Total)\% Processor Time","\\H\Memory\Available MBytes","\\H\PhysicalDisk(_Total)\Disk Bytes/sec","\\H\Network Interface(eth0)\Bytes Total/sec","\\H\Memory\Pages/sec"` + "\n"
	in := head +
		`"03/01/2026 10:00:00","10","500","1000000","125000","1"` + "\n" +
		`"03/01/2026 10:00:10","20","-1","-2000000","125000","1"` + "\n" + // line 3
		`"03/01/2026 10:00:20","100.5","1500","1000000","-125000","-3"` + "\n" + // line 4
		`"03/01/2026 10:00:30","30","400","1000000","125000","1"` + "\n"
	mem := map[string]float64{"H": 1000}

	_, err := ReadPerfmonMemory(strings.NewReader(in), mem)
	require.ErrorContains(t, err, `line 3: column 3 (\\H\Memory\Available MBytes): negative value -1`)

	var w Warnings
	ss, err := ReadPerfmonWarnings(strings.NewReader(in), mem, &w)
	require.NoError(t, err)
	require.Len(t, ss, 1)
	s := ss[0]
	assertFloatsNaN(t, []float64{10, 20, nan, 30}, s.CPU)
	assertFloatsNaN(t, []float64{500, nan, nan, 600}, s.Memory) // 1000 − available
	assertFloatsNaN(t, []float64{1, nan, 1, 1}, s.DiskMBps)
	assertFloatsNaN(t, []float64{1, 1, nan, 1}, s.Network)
	assert.Equal(t, 6, w.Count)
	var where []string
	for _, e := range w.First {
		var pe *ParseError
		require.ErrorAs(t, e, &pe)
		where = append(where, strings.SplitN(e.Error(), " (", 2)[0])
	}
	assert.Equal(t, []string{
		"history: line 3: column 3", "history: line 3: column 4",
		"history: line 4: column 2", "history: line 4: column 3", "history: line 4: column 5", "history: line 4: column 6",
	}, where)

	// Not a number is an error whatever w.
	bad := head + `"03/01/2026 10:00:00","10","x","1","1","1"` + "\n" + `"03/01/2026 10:00:10","10","1","1","1","1"` + "\n"
	_, err = ReadPerfmonWarnings(strings.NewReader(bad), mem, &Warnings{})
	require.ErrorContains(t, err, `line 2: column 3 (\\H\Memory\Available MBytes): "x" is not a number`)
}
