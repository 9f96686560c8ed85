package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/placement/history"
)

const (
	bitbrainsDir = "testdata/bitbrains"
	perfmonLog   = "testdata/perfmon.csv"
)

// TestMain runs main itself when asked, so that tests can check its exit
// status.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("CONSOLIDATE_TEST_MAIN"); ok {
		os.Args = append([]string{"consolidate"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain runs the command as a process and returns its exit code and
// standard error.
func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CONSOLIDATE_TEST_MAIN="+strings.Join(args, "\x1f"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	require.NoError(t, err)
	return 0, stderr.String()
}

// runJSON runs the command with -json and decodes its output.
func runJSON(t *testing.T, args ...string) (Output, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	require.NoError(t, run(append(args, "-json"), &out, &errOut))
	var o Output
	require.NoError(t, json.Unmarshal(out.Bytes(), &o))
	return o, errOut.String()
}

// replay checks a plan from its JSON against the CPU use of the trace
// (cpu: percent of each machine's capacity on the JSON's time line, NaN
// where not measured): every machine is placed on a listed host, and no
// host's summed demand exceeds its CPU at any interval, nor its memory.
func replay(t *testing.T, o Output, cpu map[string][]float64) {
	t.Helper()
	require.NotEmpty(t, o.VMs)
	require.Empty(t, o.Unplaced)
	assert.Equal(t, 0, o.OverloadedIntervals)
	hosts := map[string]HostOut{}
	for _, h := range o.Hosts {
		hosts[h.ID] = h
	}
	assert.Len(t, hosts, o.HostsUsed)
	demand := map[string][]float64{}
	mem := map[string]float64{}
	for _, vm := range o.VMs {
		h, ok := hosts[vm.Host]
		require.True(t, ok, "machine %s on host %q, not a listed host", vm.ID, vm.Host)
		x, ok := cpu[vm.ID]
		require.True(t, ok, "machine %s is not in the trace", vm.ID)
		require.Len(t, x, o.Intervals, vm.ID)
		if demand[h.ID] == nil {
			demand[h.ID] = make([]float64, o.Intervals)
		}
		for i, pct := range x {
			if !math.IsNaN(pct) {
				demand[h.ID][i] += pct / 100 * vm.CPU
			}
		}
		mem[h.ID] += vm.Memory
	}
	for id, d := range demand {
		for i, v := range d {
			require.LessOrEqual(t, v, hosts[id].CPU*(1+1e-9), "host %s overloaded at interval %d", id, i)
			require.LessOrEqual(t, v/hosts[id].CPU, hosts[id].Peak+1e-9, "host %s: peak", id)
		}
		assert.LessOrEqual(t, mem[id], hosts[id].Memory, "host %s memory", id)
	}
}

// bitbrainsCPU reads the traces of dir on the plan's time line.
func bitbrainsCPU(t *testing.T, dir string, o Output) map[string][]float64 {
	t.Helper()
	start, err := time.Parse(time.RFC3339, o.Start)
	require.NoError(t, err)
	cpu := map[string][]float64{}
	for tr, err := range history.ReadBitbrainsDir(dir) {
		require.NoError(t, err)
		var w history.Warnings
		s, err := history.BitbrainsSeries(tr, start, time.Duration(o.IntervalSeconds*float64(time.Second)), o.Intervals, &w)
		require.NoError(t, err)
		cpu[tr.ID] = s.CPU
		for _, vm := range o.VMs {
			if vm.ID == tr.ID {
				assert.Equal(t, s.CPUCapacity, vm.CPU, "capacity of %s from the trace", vm.ID)
				assert.Equal(t, s.MemoryCapacity, vm.Memory, "memory of %s from the trace", vm.ID)
			}
		}
	}
	return cpu
}

func TestBitbrainsText(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run([]string{"-format", "bitbrains", "-trace", bitbrainsDir}, &out, &errOut))
	s := out.String()
	assert.Contains(t, s, "candidates, best first:")
	assert.Contains(t, s, "host0001 (93632 MHz, peak")
	assert.Contains(t, s, "  41 ")
	assert.Contains(t, s, "excluded: 255: the trace reports no CPU capacity")
	assert.Contains(t, s, "2 VMs on 1 hosts (lower bound 1), 0 overloaded host-intervals of 312")
	assert.Contains(t, errOut.String(), "193: 190 skipped as inconsistent; first: history: testdata/bitbrains/193.csv: line 3, column 5 (CPU usage [%])")
}

func TestBitbrainsJSON(t *testing.T) {
	o, _ := runJSON(t, "-format", "bitbrains", "-trace", bitbrainsDir)
	assert.Equal(t, "bitbrains", o.Format)
	assert.Equal(t, "2013-06-30T22:00:00Z", o.Start)
	assert.Equal(t, 300.0, o.IntervalSeconds)
	assert.Equal(t, 312, o.Intervals)
	require.Len(t, o.VMs, 2)
	assert.Equal(t, []ExcludedOut{{ID: "255", Reason: "the trace reports no CPU capacity"}}, o.Excluded)
	require.Len(t, o.Warnings, 2)
	assert.Equal(t, WarningOut{ID: "41", Skipped: 53}, WarningOut{ID: o.Warnings[0].ID, Skipped: o.Warnings[0].Skipped})
	assert.Contains(t, o.Warnings[1].First[0], "193.csv: line 3")
	assert.Equal(t, 93632.0, o.Hosts[0].CPU)
	assert.Equal(t, 262144.0, o.Hosts[0].Memory)
	replay(t, o, bitbrainsCPU(t, bitbrainsDir, o))

	// The same from an archive (with a macOS AppleDouble file) and with
	// smaller hosts and a margin.
	archive := filepath.Join(t.TempDir(), "rnd.tar.gz")
	f, err := os.Create(archive)
	require.NoError(t, err)
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	entries, err := os.ReadDir(bitbrainsDir)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(bitbrainsDir, e.Name()))
		require.NoError(t, err)
		for _, name := range []string{"rnd/" + e.Name(), "rnd/._" + e.Name()} {
			require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}))
			_, err = tw.Write(b)
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	require.NoError(t, f.Close())
	small, _ := runJSON(t, "-format", "bitbrains", "-trace", archive, "-host-cpu", "30000", "-host-mem", "40960", "-margin", "0.2")
	assert.Equal(t, 2, small.HostsUsed)
	for _, h := range small.Hosts {
		assert.Equal(t, 30000.0, h.CPU)
		assert.LessOrEqual(t, h.Peak, 0.8+1e-9)
	}
	replay(t, small, bitbrainsCPU(t, bitbrainsDir, small))

	// One file.
	one, _ := runJSON(t, "-format", "bitbrains", "-trace", filepath.Join(bitbrainsDir, "41.csv"), "-interval", "10m")
	require.Len(t, one.VMs, 1)
	assert.Equal(t, "41", one.VMs[0].ID)
	assert.Equal(t, 600.0, one.IntervalSeconds)
	replay(t, one, bitbrainsCPU(t, bitbrainsDir, one))
}

// perfmonCPU reads the log's CPU on the plan's time line.
func perfmonCPU(t *testing.T, o Output) map[string][]float64 {
	t.Helper()
	f, err := os.Open(perfmonLog)
	require.NoError(t, err)
	defer f.Close()
	ss, err := history.ReadPerfmonWarnings(f, nil, &history.Warnings{})
	require.NoError(t, err)
	cpu := map[string][]float64{}
	for _, s := range ss {
		if iv := time.Duration(o.IntervalSeconds * float64(time.Second)); iv != s.Interval {
			s, err = history.Resample(s, iv)
			require.NoError(t, err)
		}
		assert.Equal(t, o.Start, s.Start.Format(time.RFC3339))
		cpu[s.ID] = s.CPU
	}
	return cpu
}

func TestPerfmonText(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run([]string{"-format", "perfmon", "-trace", perfmonLog, "-machine-mhz", "10400"}, &out, &errOut))
	s := out.String()
	for _, id := range []string{"WEB01", "DB01", "APP02"} {
		assert.Contains(t, s, "  "+id+" ")
	}
	assert.Contains(t, s, "3 VMs on 1 hosts (lower bound 1), 0 overloaded host-intervals of 312")
	assert.Contains(t, errOut.String(), `perfmon.csv: 1 skipped as inconsistent; first: history: testdata/perfmon.csv: line 142: column 12 (\\APP02\Network Interface(Intel[R] Ethernet)\Bytes Total/sec): negative value -1234.5`)
}

func TestPerfmonJSON(t *testing.T) {
	o, _ := runJSON(t, "-format", "perfmon", "-trace", perfmonLog, "-machine-mhz", "10400", "-machine-mem", "8192")
	assert.Equal(t, "perfmon", o.Format)
	assert.Equal(t, "2026-03-01T08:00:00Z", o.Start, "Pacific time, bias 480")
	assert.Equal(t, 300.0, o.IntervalSeconds)
	assert.Equal(t, 312, o.Intervals)
	require.Len(t, o.VMs, 3)
	for _, vm := range o.VMs {
		assert.Equal(t, 10400.0, vm.CPU)
		assert.Equal(t, 8192.0, vm.Memory)
	}
	require.Len(t, o.Warnings, 1)
	assert.Equal(t, 1, o.Warnings[0].Skipped)
	replay(t, o, perfmonCPU(t, o))

	// Large machines on small hosts, resampled to 15 minutes: more hosts,
	// still no overload.
	big, _ := runJSON(t, "-format", "perfmon", "-trace", perfmonLog, "-machine-mhz", "40000", "-host-cpu", "20000", "-interval", "15m")
	assert.Equal(t, 104, big.Intervals)
	assert.Greater(t, big.HostsUsed, 1)
	replay(t, big, perfmonCPU(t, big))
}

// Malformed input is an error naming the file and the line, and the
// command exits with status 1.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	rnd := filepath.Join(dir, "rnd")
	require.NoError(t, os.Mkdir(rnd, 0o755))
	b, err := os.ReadFile(filepath.Join(bitbrainsDir, "41.csv"))
	require.NoError(t, err)
	lines := strings.SplitAfter(string(b), "\n")
	f := strings.Split(lines[2], ";")
	f[3] = "\tx"
	lines[2] = strings.Join(f, ";") // line 3, column 4
	bad := filepath.Join(rnd, "9.csv")
	require.NoError(t, os.WriteFile(bad, []byte(strings.Join(lines[:5], "")), 0o644))
	badLog := filepath.Join(dir, "log.csv")
	p, err := os.ReadFile(perfmonLog)
	require.NoError(t, err)
	plines := strings.SplitAfter(string(p), "\r\n")
	plines[3] = strings.Replace(plines[3], `","`, `","12,5`, 1)
	require.NoError(t, os.WriteFile(badLog, []byte(strings.Join(plines[:10], "")), 0o644))
	badTar := filepath.Join(dir, "bad.tar.gz")
	require.NoError(t, os.WriteFile(badTar, []byte("\x1f\x8bnot gzip"), 0o644))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-format", "bitbrains", "-trace", rnd}, bad + ": line 3, column 4 (CPU usage [MHZ])"},
		{[]string{"-format", "bitbrains", "-trace", bad}, bad + ": line 3, column 4"},
		{[]string{"-format", "bitbrains", "-trace", badTar}, badTar + ": gzip"},
		{[]string{"-format", "bitbrains", "-trace", empty}, "no Bitbrains trace"},
		{[]string{"-format", "perfmon", "-trace", badLog, "-machine-mhz", "1000"}, badLog + ": history: line 4: column 2"},
		{[]string{"-format", "perfmon", "-trace", bad, "-machine-mhz", "1000"}, bad + ": history: line 1"},
		{[]string{"-format", "planetlab", "-trace", bad}, bad + ":"},
		{[]string{"-format", "xml", "-trace", bad}, `unknown format "xml"`},
		{[]string{"-format", "bitbrains", "-trace", filepath.Join(dir, "missing")}, "no such file"},
	} {
		var out, errOut bytes.Buffer
		err := run(tc.args, &out, &errOut)
		require.Error(t, err, strings.Join(tc.args, " "))
		assert.Contains(t, err.Error(), tc.msg)
		assert.Empty(t, out.String())
	}

	code, stderr := runMain(t, "-format", "bitbrains", "-trace", rnd)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "consolidate: history: "+bad+": line 3, column 4")
	code, stderr = runMain(t, "-format", "nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, `unknown format "nope"`)
	code, _ = runMain(t, "-format", "perfmon", "-trace", perfmonLog, "-machine-mhz", "1000", "-json")
	assert.Equal(t, 0, code)
}

func TestSampleText(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run(nil, &out, &errOut))
	s := out.String()
	assert.Contains(t, s, "20 VMs on 2 hosts (lower bound 2), 0 overloaded host-intervals of 288")
	assert.Contains(t, s, "host0001 (5320 MIPS")
	assert.Contains(t, s, "146-179_surfsnel_dsl_internl_net_colostate_557")
}

func TestSampleJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run([]string{"-json"}, &out, &errOut))
	var o Output
	require.NoError(t, json.Unmarshal(out.Bytes(), &o))
	assert.Equal(t, 2, o.HostsUsed)
	assert.Len(t, o.Hosts, 2)
	assert.Equal(t, 5320.0, o.Hosts[0].CPU)
	require.Len(t, o.VMs, 20)
	assert.Equal(t, 2500.0, o.VMs[0].CPU)
	assert.Equal(t, 500.0, o.VMs[19].CPU)
	ids := map[string]bool{o.Hosts[0].ID: true, o.Hosts[1].ID: true}
	for _, vm := range o.VMs {
		assert.True(t, ids[vm.Host], vm.ID)
	}
	assert.Equal(t, 0, o.OverloadedIntervals)
	assert.Greater(t, o.EnergyKWh, 0.0)
	require.Len(t, o.Ranked, 20, "every machine is ranked")
	for i := 1; i < len(o.Ranked); i++ {
		a, b := o.Ranked[i-1], o.Ranked[i]
		assert.True(t, a.Consolidate && !b.Consolidate || a.Consolidate == b.Consolidate && a.Score >= b.Score, "rank order at %d", i)
	}
	assert.NotEmpty(t, o.Ranked[0].Reasons)
	// The keys the brief names.
	var raw map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &raw))
	for _, k := range []string{"hosts", "vms", "hosts_used", "energy_kwh", "overloaded_intervals"} {
		assert.Contains(t, raw, k)
	}
}

func TestTraceFileAndMargin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "day.tar.gz")
	require.NoError(t, os.WriteFile(path, sample, 0o644))
	var out, errOut bytes.Buffer
	require.NoError(t, run([]string{"-trace", path, "-format", "planetlab", "-margin", "0.5", "-json"}, &out, &errOut))
	var o Output
	require.NoError(t, json.Unmarshal(out.Bytes(), &o))
	assert.Greater(t, o.HostsUsed, 2)
	for _, h := range o.Hosts {
		assert.LessOrEqual(t, h.Peak, 0.5+1e-9)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-format", "bitbrains"}, "-format bitbrains needs -trace"},
		{[]string{"-format", "perfmon", "-machine-mhz", "1000"}, "-format perfmon needs -trace"},
		{[]string{"-format", "perfmon", "-trace", perfmonLog}, "needs -machine-mhz"},
		{[]string{"-format", "csv"}, `unknown format "csv": want planetlab, bitbrains or perfmon`},
		{[]string{"-format", "bitbrains", "-trace", "/nonexistent/rnd"}, "no such file"},
		{[]string{"-format", "perfmon", "-machine-mhz", "1000", "-trace", "/nonexistent/x.csv"}, "no such file"},
		{[]string{"-format", "bitbrains", "-trace", bitbrainsDir, "-machine-mhz", "5"}, "for -format perfmon"},
		{[]string{"-format", "perfmon", "-trace", perfmonLog, "-machine-mhz", "-5"}, "-machine-mhz -5"},
		{[]string{"-format", "perfmon", "-trace", perfmonLog, "-machine-mhz", "1000", "-interval", "1ns"}, "MaxSeriesSamples"},
		{[]string{"-interval", "1m"}, "PlanetLab traces are at 5m0s"},
		{[]string{"-trace", "/nonexistent/x.tar.gz"}, "no such file"},
		{[]string{"-margin", "1"}, "margin"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-bogus"}, "flag provided but not defined"},
	} {
		var out, errOut bytes.Buffer
		err := run(tc.args, &out, &errOut)
		require.Error(t, err, strings.Join(tc.args, " "))
		assert.Contains(t, err.Error(), tc.msg)
	}
	// An archive with a bad file names it.
	path := filepath.Join(t.TempDir(), "bad.tar")
	require.NoError(t, os.WriteFile(path, []byte(strings.Repeat("x", 2048)), 0o644))
	var out, errOut bytes.Buffer
	assert.Error(t, run([]string{"-trace", path}, &out, &errOut))
}
