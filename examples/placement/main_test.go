package main

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
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

// sample is the shipped sample, from this package's folder.
var sample = filepath.Join("..", "..", sampleDir)

func sampleIDs(t testing.TB) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(sample, "*.csv"))
	require.NoError(t, err)
	var ids []string
	for _, f := range m {
		ids = append(ids, strings.TrimSuffix(filepath.Base(f), ".csv"))
	}
	history.SortIDs(ids)
	return ids
}

func loadSample(t testing.TB, e Experiment) *Dataset {
	t.Helper()
	d, err := load(sample, e)
	require.NoError(t, err)
	return d
}

// TestDefaultRun runs the command as `go run ./examples/placement` does
// from the repository root: on the shipped sample.
func TestDefaultRun(t *testing.T) {
	t.Chdir(filepath.Join("..", ".."))
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), &out, options{hosts: DefaultHosts}))
	s := out.String()
	t.Log("\n" + s)
	for _, want := range []string{
		"Bitbrains traces: 5 VMs from " + sampleDir,
		"in 288 buckets of 5m0s",
		"93632 MHz, 256 GiB; 100 available",
		"skipped, no sample in the history window: 264",
		"lower bound: 1 hosts",
		"best-fit, history series",
		"first-fit-decreasing p95",
		"unplaced 27: Place: no host can take it",
		"star ratings",
		"27 on h001: FitsResources: memory: needs 511.5 GiB",
	} {
		assert.Contains(t, s, want)
	}
}

func TestRunNeedsData(t *testing.T) {
	t.Chdir(t.TempDir())
	err := run(t.Context(), &bytes.Buffer{}, options{hosts: 1})
	assert.ErrorContains(t, err, "no -bitbrains folder given")
	err = run(t.Context(), &bytes.Buffer{}, options{path: ".", hosts: 1})
	assert.ErrorContains(t, err, "no *.csv traces")
	err = run(t.Context(), &bytes.Buffer{}, options{path: "missing", hosts: 1})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func runJSON(t *testing.T, o options) (*Output, map[string]any) {
	t.Helper()
	o.json = true
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), &out, o))
	dec := json.NewDecoder(bytes.NewReader(out.Bytes()))
	var raw map[string]any
	require.NoError(t, dec.Decode(&raw), out.String())
	assert.False(t, dec.More(), "exactly one JSON object")
	var typed Output
	require.NoError(t, json.Unmarshal(out.Bytes(), &typed))
	return &typed, raw
}

// TestJSON checks that the -json output has the promised fields and holds
// together: every trace once, as placed or not, hosts used as counted.
func TestJSON(t *testing.T) {
	out, raw := runJSON(t, options{path: sample, days: 1, hosts: DefaultHosts})
	for _, k := range []string{"host", "hosts_used", "vms", "unplaced", "baseline", "overload_pct", "lower_bound"} {
		assert.Contains(t, raw, k)
	}
	host := raw["host"].(map[string]any)
	assert.Equal(t, 93632.0, host["cpu_mhz"])
	assert.Equal(t, 262144.0, host["memory_mib"])
	assert.Equal(t, "first-fit-decreasing p95", raw["baseline"].(map[string]any)["strategy"])

	checkOutput(t, out, sampleIDs(t))
	assert.Equal(t, 1, out.HostsUsed)
	assert.Equal(t, []OutputVM{{"41", "h001"}, {"193", "h001"}, {"255", "h001"}}, out.VMs)
	require.Len(t, out.Unplaced, 2)
	assert.Equal(t, "27", out.Unplaced[0].ID)
	assert.Contains(t, out.Unplaced[0].Reason, "memory: needs 511.5 GiB")
	assert.Equal(t, OutputMiss{"264", noHistory}, out.Unplaced[1])
	assert.Equal(t, 1, out.LowerBound)
	assert.Equal(t, 288, out.Buckets)
	assert.True(t, TraceStart.Equal(out.History.Start))
}

// checkOutput checks what holds for any run.
func checkOutput(t *testing.T, out *Output, ids []string) {
	t.Helper()
	var seen []string
	hosts := map[string]bool{}
	for _, v := range out.VMs {
		seen = append(seen, v.ID)
		hosts[v.Host] = true
	}
	for _, u := range out.Unplaced {
		seen = append(seen, u.ID)
		assert.NotEmpty(t, u.Reason)
	}
	history.SortIDs(seen)
	assert.Equal(t, ids, seen, "every trace once, placed or not")
	assert.Len(t, hosts, out.HostsUsed)
	assert.LessOrEqual(t, out.LowerBound, out.HostsUsed)
	assert.LessOrEqual(t, out.LowerBound, out.Baseline.HostsUsed)
	assert.Equal(t, max(out.LowerBoundBy.Memory, out.LowerBoundBy.CPUP95, out.LowerBoundBy.CPUPeak), out.LowerBound)
	for _, x := range []float64{out.OverloadPct, out.Baseline.OverloadPct} {
		assert.True(t, x >= 0 && x <= 100, "overload %v", x)
	}
	require.Len(t, out.Others, 1)
	assert.Equal(t, "best-fit p95", out.Others[0].Strategy)
	assert.Equal(t, out.History.End, out.Replay.Start)
}

// TestTarGz reads the sample from a .tar.gz and gets the same answer.
func TestTarGz(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, id := range slices.Backward(sampleIDs(t)) { // archive order need not be ID order
		b, err := os.ReadFile(filepath.Join(sample, id+".csv"))
		require.NoError(t, err)
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "rnd-2013-7-14d/" + id + ".csv", Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}))
		_, err = tw.Write(b)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	tgz := filepath.Join(t.TempDir(), "sample.tar.gz")
	require.NoError(t, os.WriteFile(tgz, buf.Bytes(), 0o644))

	fromDir, _ := runJSON(t, options{path: sample, days: 1, hosts: DefaultHosts})
	fromTar, _ := runJSON(t, options{path: tgz, days: 1, hosts: DefaultHosts})
	for _, o := range []*Output{fromDir, fromTar} {
		o.Seconds, o.Baseline.Seconds = 0, 0
		for i := range o.Others {
			o.Others[i].Seconds = 0
		}
	}
	assert.Equal(t, fromDir, fromTar)
}

func TestPrepare(t *testing.T) {
	d := loadSample(t, Experiment{Window: 24 * time.Hour})
	assert.Equal(t, 5, d.Traces)
	assert.Equal(t, []string{"264"}, d.Skipped)
	var ids []string
	for _, vm := range d.VMs {
		ids = append(ids, vm.ID)
		require.Len(t, vm.History.Series, 288, vm.ID)
		require.Len(t, d.Replay[vm.ID], 288, vm.ID)
		h := vm.History
		assert.LessOrEqual(t, h.Mean[placement.CPU], h.Peak[placement.CPU], vm.ID)
		assert.LessOrEqual(t, h.P95[placement.CPU], h.Peak[placement.CPU], vm.ID)
		assert.Equal(t, h.Peak[placement.CPU], slices.MaxFunc(h.Series, func(a, b placement.Vector) int {
			return cmp.Compare(a[placement.CPU], b[placement.CPU])
		})[placement.CPU], vm.ID)
	}
	assert.Equal(t, []string{"27", "41", "193", "255"}, ids)
	vm := d.VMs[1]
	assert.Equal(t, 8, vm.VCPU)
	assert.Equal(t, 20480.0, vm.Memory) // 2.097152E7 KB
	// 255 reports no cores and no memory for its first 1.5 days: that is
	// what it has at the end of a 1-day history.
	assert.Equal(t, 0, d.VMs[3].VCPU)
	assert.Equal(t, 0.0, d.VMs[3].Memory)
	// With two days it has them.
	d2 := loadSample(t, Experiment{Window: 48 * time.Hour})
	assert.Empty(t, d2.Skipped)
	i := slices.IndexFunc(d2.VMs, func(vm *placement.VM) bool { return vm.ID == "255" })
	assert.Equal(t, 4096.0, d2.VMs[i].Memory)

	// Duplicate IDs and a window shorter than a bucket are refused.
	dup := func(yield func(history.Trace, error) bool) {
		if yield(history.Trace{ID: "1"}, nil) {
			yield(history.Trace{ID: "1"}, nil)
		}
	}
	_, err := Prepare(dup, Experiment{})
	assert.ErrorContains(t, err, `two traces with ID "1"`)
	_, err = Prepare(dup, Experiment{Window: time.Minute})
	assert.ErrorContains(t, err, "shorter than a bucket")
}

func TestStats(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // 100 … 1
	}
	mean, p95, peak := stats(xs)
	assert.Equal(t, 50.5, mean)
	assert.Equal(t, 95.0, p95) // nearest rank: the 95th of 100
	assert.Equal(t, 100.0, peak)
	mean, p95, peak = stats([]float64{3})
	assert.Equal(t, [3]float64{3, 3, 3}, [3]float64{mean, p95, peak})
	mean, p95, peak = stats(nil)
	assert.Equal(t, [3]float64{}, [3]float64{mean, p95, peak})
	_, p95, _ = stats([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21})
	assert.Equal(t, 20.0, p95) // ⌈0.95 × 21⌉ = 20th
}

// TestSmallHosts runs the experiment on the sample with hosts small enough
// that the VMs need several, and checks the plans and the replay against
// a direct computation.
func TestSmallHosts(t *testing.T) {
	e := Experiment{Window: 24 * time.Hour, HostCores: 8, CoreMHz: 2926, HostMemoryMiB: 20 << 10, Hosts: 5}
	d := loadSample(t, e)
	r, err := d.RunAll(t.Context())
	require.NoError(t, err)
	require.Len(t, r.Outcomes, len(Strategies))
	for _, o := range r.Outcomes {
		t.Logf("%s: %d hosts, overload %.3f %%, %d unplaced", o.Strategy.Name, o.HostsUsed, o.OverloadPct, len(o.Plan.Unplaced))
		checkOutcome(t, d, o)
	}
	// 41 (20 GiB) fills a host's memory, 193 (15.6 GiB) needs another;
	// 27 fits none.
	for _, o := range r.Outcomes {
		assert.Equal(t, 2, o.HostsUsed, o.Strategy.Name)
		require.Len(t, o.Plan.Unplaced, 1, o.Strategy.Name)
		assert.Equal(t, "27", o.Plan.Unplaced[0].VM.ID)
	}
	assert.Equal(t, 2, r.Bound.Hosts)
	checkOutput(t, r.JSON(), sampleIDs(t))
}

// checkOutcome recomputes what an outcome claims.
func checkOutcome(t *testing.T, d *Dataset, o *Outcome) {
	t.Helper()
	e := d.Exp
	n := e.Buckets()
	byHost := map[string][]*placement.VM{}
	for _, a := range o.Plan.Assignments {
		byHost[a.Host.ID] = append(byHost[a.Host.ID], a.VM)
	}
	assert.Len(t, byHost, o.HostsUsed)
	assert.Equal(t, len(d.VMs), len(o.Plan.Assignments)+len(o.Plan.Unplaced))
	over := 0
	for id, vms := range byHost {
		var mem float64
		hist := make([]float64, n)
		for _, vm := range vms {
			mem += vm.Memory
			for i := range n {
				hist[i] += vm.History.Series[i][placement.CPU]
			}
		}
		assert.LessOrEqual(t, mem, e.HostMemoryMiB, id)
		if !o.Strategy.Opts.IgnoreSeries {
			assert.LessOrEqual(t, slices.Max(hist), e.HostCPU(), "%s: the history series fit", id)
		}
		// The replay from the raw samples, not from Buckets.
		for i := range n {
			lo := e.Start.Add(e.Window + time.Duration(i)*e.Bucket)
			sum := 0.0
			for _, vm := range vms {
				sum += rawBucket(t, vm.ID, lo, e.Bucket)
			}
			if sum > e.HostCPU() {
				over++
			}
		}
	}
	assert.Equal(t, over, o.OverloadBuckets)
	if o.HostsUsed > 0 {
		assert.InDelta(t, 100*float64(over)/float64(o.HostsUsed*n), o.OverloadPct, 1e-9)
	}
}

var rawCache = map[string][]history.Sample{}

// rawBucket is the mean CPU of a VM's samples in [lo, lo+width), or of the
// latest sample before lo when there is none.
func rawBucket(t *testing.T, id string, lo time.Time, width time.Duration) float64 {
	s, ok := rawCache[id]
	if !ok {
		var err error
		s, err = history.ReadBitbrainsFile(filepath.Join(sample, id+".csv"))
		require.NoError(t, err)
		rawCache[id] = s
	}
	sum, k, last := 0.0, 0, 0.0
	for _, x := range s {
		switch {
		case x.Time.Before(lo):
			last = x.CPUUsageMHz
		case x.Time.Before(lo.Add(width)):
			sum += x.CPUUsageMHz
			k++
		}
	}
	if k == 0 {
		return last
	}
	return sum / float64(k)
}

func TestLowerBound(t *testing.T) {
	e := Experiment{Window: time.Hour, HostCores: 2, CoreMHz: 1000, HostMemoryMiB: 1000, Hosts: 10}.withDefaults()
	n := e.Buckets()
	mk := func(id string, mem, p95 float64, peakAt int) *placement.VM {
		s := make([]placement.Vector, n)
		s[peakAt][placement.CPU] = p95
		return &placement.VM{ID: id, Memory: mem, History: &placement.Profile{P95: placement.Vector{placement.CPU: p95}, Series: s}}
	}
	d := &Dataset{Exp: e, VMs: []*placement.VM{
		mk("1", 600, 1500, 0), mk("2", 600, 1500, 1), mk("3", 700, 100, 0),
		mk("big", 5000, 0, 0), // fits no host: not counted
	}}
	b := d.LowerBound()
	assert.Equal(t, Bound{Hosts: 2, Memory: 2, CPUP95: 2, CPUPeak: 1, VMs: 3}, b)
}

// BenchmarkBitbrains runs the experiment of the issue on the full trace:
// a week of history, the next week replayed, Place with the series against
// first-fit-decreasing on P95 (and best fit on P95), all in the same run.
// The trace is VMM_BENCH_BITBRAINS_DIR (a folder of the CSV files or the
// .tar.gz), else the archive in shared/data next to the repository; the
// benchmark is skipped when neither is there. It reports hosts used and
// overload (% host-time) per strategy and the lower bound.
//
//	go test ./examples/placement -run '^$' -bench Bitbrains -benchtime 1x
func BenchmarkBitbrains(b *testing.B) {
	path := os.Getenv("VMM_BENCH_BITBRAINS_DIR")
	if path == "" {
		path = filepath.Join("..", "..", "..", "shared", "data", "bitbrains-rnd", "rnd-2013-7-14d.tar.gz")
		if _, err := os.Stat(path); err != nil {
			b.Skipf("no trace: set VMM_BENCH_BITBRAINS_DIR (%v)", err)
		}
	}
	t0 := time.Now()
	d, err := load(path, Experiment{})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("read and sized %d traces (%d VMs with history) in %v", d.Traces, len(d.VMs), time.Since(t0).Round(time.Millisecond))
	p, err := NewPlacer()
	if err != nil {
		b.Fatal(err)
	}
	bound := d.LowerBound()
	short := map[string]string{SeriesBestFit.Name: "series", FFDP95.Name: "ffd-p95", BestFitP95.Name: "bf-p95"}
	var last []*Outcome
	for b.Loop() {
		last = last[:0]
		for _, s := range Strategies {
			o, err := d.Run(context.Background(), p, s)
			if err != nil {
				b.Fatal(err)
			}
			last = append(last, o)
		}
	}
	b.StopTimer()
	for _, o := range last {
		b.ReportMetric(float64(o.HostsUsed), short[o.Strategy.Name]+"-hosts")
		b.ReportMetric(o.OverloadPct, short[o.Strategy.Name]+"-overload-%")
	}
	b.ReportMetric(float64(bound.Hosts), "lower-bound-hosts")
	series, ffd := last[0], last[1]
	fmt.Printf("bitbrains: lower bound %d hosts (memory %d, CPU P95 %d, series peak %d)\n", bound.Hosts, bound.Memory, bound.CPUP95, bound.CPUPeak)
	for _, o := range last {
		fmt.Printf("bitbrains: %-26s %3d hosts, overload %.3f %% host-time (worst host %.2f %%), Place %v\n",
			o.Strategy.Name, o.HostsUsed, o.OverloadPct, o.WorstHostPct, o.Elapsed.Round(time.Millisecond))
	}
	fmt.Printf("bitbrains ratio hosts series/ffd-p95: %.3f (%d/%d); overload %.3f %% vs %.3f %%; series hosts/lower bound %.3f\n",
		float64(series.HostsUsed)/float64(ffd.HostsUsed), series.HostsUsed, ffd.HostsUsed, series.OverloadPct, ffd.OverloadPct,
		float64(series.HostsUsed)/float64(bound.Hosts))
}
