package consolidate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmmkit/vmmkit/placement/history"
)

// RankOptions tunes Rank. The zero value (or a nil *RankOptions) means the
// defaults given with each field. A limit of +Inf turns its check off; a
// negative or NaN value is an error.
type RankOptions struct {
	// CPUP50Limit and CPUP95Limit reject a machine whose CPU median or
	// 95th percentile, in percent of its capacity, is above them: it is
	// busy for much of the time, not a machine to squeeze onto a shared
	// host. Defaults 30 and 60.
	CPUP50Limit float64
	CPUP95Limit float64

	// DiskIOPSLimit, DiskMBpsLimit and NetworkLimit reject a machine whose
	// median (sustained) disk operations per second, disk MB/s or network
	// Mb/s is above them. Defaults 500 IOPS, 50 MB/s and 100 Mb/s. A
	// resource the series does not measure is not checked.
	DiskIOPSLimit float64
	DiskMBpsLimit float64
	NetworkLimit  float64

	// Host is the host the machines would be consolidated onto. When its
	// CPU (MHz) or Memory (MiB) is set, a machine whose 95th-percentile
	// CPU use in MHz or whose memory takes more than MaxHostShare of it is
	// rejected as too large. Zero fields are not checked.
	Host RankHost
	// MaxHostShare is the share of Host (0–1] one machine may take.
	// Default 0.5: a consolidated machine leaves room for another.
	MaxHostShare float64

	// MinSamples is the fewest non-NaN CPU samples a machine needs to be
	// ranked as a candidate. Default: a day of samples at the series'
	// Interval (288 when the interval is unknown).
	MinSamples int
}

// A RankHost is the size of a target host.
type RankHost struct {
	CPU    float64 // capacity in MHz
	Memory float64 // MiB
}

// Defaults of RankOptions.
const (
	DefaultCPUP50Limit   = 30
	DefaultCPUP95Limit   = 60
	DefaultDiskIOPSLimit = 500
	DefaultDiskMBpsLimit = 50
	DefaultNetworkLimit  = 100
	DefaultMaxHostShare  = 0.5
	defaultRankSamples   = 288 // a day of 5-minute samples
)

// A Candidate is one machine as Rank judges it.
type Candidate struct {
	// Machine points into the slice given to Rank.
	Machine *Machine
	// Score is 0–1, higher for a better consolidation candidate; see
	// Rank for the formula. It is computed for every machine, also for
	// those that should not be consolidated (0 when there is no CPU
	// sample at all).
	Score float64
	// Consolidate says whether the machine is a candidate at all; when it
	// is false, the first Reasons say why.
	Consolidate bool
	// Reasons explain the verdict to a person: the reasons not to
	// consolidate (if any) first, then a summary of the CPU use and of
	// the I/O.
	Reasons []string
	Stats   CandidateStats
}

// CandidateStats summarises each resource of a machine's history, over
// its non-NaN samples, in the units of history.Series: CPU in percent of
// capacity, memory in MiB used, disk in IOPS and MB/s, network in Mb/s.
type CandidateStats struct {
	CPU, Memory, DiskIOPS, DiskMBps, Network ResourceStats
}

// ResourceStats summarises one resource's samples. Percentiles are
// history.Percentile's: by the nearest rank, so each is a measured sample.
// All fields are zero when there is no sample.
type ResourceStats struct {
	Samples int // non-NaN samples
	Mean    float64
	P50     float64
	P95     float64
	P99     float64
	Peak    float64
	// PeakToMean is Peak/Mean; 1 when every sample is zero.
	PeakToMean float64
	Stddev     float64 // population standard deviation
}

// Weights of the score; see Rank.
const (
	rankWeightMean  = 0.1
	rankWeightP95   = 0.2
	rankWeightP99   = 0.3
	rankWeightPeak  = 0.4
	rankWeightBurst = 0.25
	rankWeightIO    = 0.3
	rankWeightSize  = 0.2
)

// Rank orders machines by how good they are to consolidate onto shared
// hosts, best first: the candidates (Consolidate true) by Score
// descending, then the machines that should not be consolidated, also by
// Score descending; equal scores by ID.
//
// A machine is not a candidate when its CPU history has fewer than
// MinSamples non-NaN samples, when its CPU median or 95th percentile is
// above the limits, when its median disk IOPS, disk MB/s or network use is
// above the limits, or when it is too large for opts.Host.
//
// The score looks at the tail and the burstiness of CPU use, not only at
// its mean. With m, p95, p99 and pk the CPU mean, percentiles and peak as
// fractions of capacity (each capped at 1), and r = peak/mean:
//
//	tail  = 0.1·m + 0.2·p95 + 0.3·p99 + 0.4·pk
//	burst = min(1, log10(max(r, 1))/2)          // 1 when the peak is 100× the mean
//	cpu   = (1 − tail) · (1 − 0.25·burst·pk)     // a burst counts as far as it is high
//	io    = 1 − 0.3·max over disk IOPS, disk MB/s, network of min(1, p95/limit)
//	size  = 1 − 0.2·min(1, share/MaxHostShare)   // share of opts.Host; 1 without a host
//	Score = cpu · io · size
//
// So a machine idling at 3 % with spikes to 90 % scores below one steady
// at 5 %: the spikes are what would collide with its neighbours.
//
// Samples must not be negative or infinite (NaN marks a gap and is
// skipped), CPU samples not above 100 (a utilisation above the capacity is
// a data error, not a busy machine: clean or clamp the series first),
// capacities not negative, and IDs must be non-empty and distinct;
// otherwise Rank returns an error naming the machine and the sample. An empty list gives an empty
// result. Rank returns ctx.Err() when ctx is done.
func Rank(ctx context.Context, machines []Machine, opts *RankOptions) ([]Candidate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := rankDefaults(opts)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(machines))
	out := make([]Candidate, 0, len(machines))
	for i := range machines {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m := &machines[i]
		if m.ID == "" {
			return nil, fmt.Errorf("consolidate: Rank: machine %d has no ID", i)
		}
		if seen[m.ID] {
			return nil, fmt.Errorf("consolidate: Rank: two machines with ID %q", m.ID)
		}
		seen[m.ID] = true
		c, err := rankMachine(m, &o)
		if err != nil {
			return nil, fmt.Errorf("consolidate: Rank: machine %q: %w", m.ID, err)
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Candidate) int {
		if a.Consolidate != b.Consolidate {
			if a.Consolidate {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return strings.Compare(a.Machine.ID, b.Machine.ID)
	})
	return out, nil
}

// rankDefaults checks opts and fills in its defaults.
func rankDefaults(opts *RankOptions) (RankOptions, error) {
	var o RankOptions
	if opts != nil {
		o = *opts
	}
	fields := []struct {
		name string
		p    *float64
		def  float64
	}{
		{"CPUP50Limit", &o.CPUP50Limit, DefaultCPUP50Limit},
		{"CPUP95Limit", &o.CPUP95Limit, DefaultCPUP95Limit},
		{"DiskIOPSLimit", &o.DiskIOPSLimit, DefaultDiskIOPSLimit},
		{"DiskMBpsLimit", &o.DiskMBpsLimit, DefaultDiskMBpsLimit},
		{"NetworkLimit", &o.NetworkLimit, DefaultNetworkLimit},
		{"MaxHostShare", &o.MaxHostShare, DefaultMaxHostShare},
		{"Host.CPU", &o.Host.CPU, 0},
		{"Host.Memory", &o.Host.Memory, 0},
	}
	for _, f := range fields {
		if math.IsNaN(*f.p) || *f.p < 0 {
			return o, fmt.Errorf("consolidate: Rank: %s is %v", f.name, *f.p)
		}
		if *f.p == 0 {
			*f.p = f.def
		}
	}
	if math.IsInf(o.Host.CPU, 0) || math.IsInf(o.Host.Memory, 0) {
		return o, errors.New("consolidate: Rank: host size is infinite")
	}
	if o.MaxHostShare > 1 {
		return o, fmt.Errorf("consolidate: Rank: MaxHostShare %v is above 1", o.MaxHostShare)
	}
	if o.MinSamples < 0 {
		return o, fmt.Errorf("consolidate: Rank: MinSamples is %d", o.MinSamples)
	}
	return o, nil
}

// rankMachine judges one machine.
func rankMachine(m *Machine, o *RankOptions) (Candidate, error) {
	s := &m.Series
	c := Candidate{Machine: m, Consolidate: true}
	var err error
	for _, r := range []struct {
		name  string
		xs    []float64
		limit float64
		dst   *ResourceStats
	}{
		{"CPU", s.CPU, 100, &c.Stats.CPU},
		{"memory", s.Memory, math.Inf(1), &c.Stats.Memory},
		{"disk IOPS", s.DiskIOPS, math.Inf(1), &c.Stats.DiskIOPS},
		{"disk MB/s", s.DiskMBps, math.Inf(1), &c.Stats.DiskMBps},
		{"network", s.Network, math.Inf(1), &c.Stats.Network},
	} {
		if *r.dst, err = rankStats(r.xs, r.limit); err != nil {
			return c, fmt.Errorf("%s %w", r.name, err)
		}
	}
	capacity := m.CPU
	if capacity == 0 {
		capacity = s.CPUCapacity
	}
	memory := m.Memory
	if memory == 0 {
		memory = s.MemoryCapacity
	}
	if memory == 0 {
		memory = c.Stats.Memory.Peak
	}
	for _, x := range []float64{m.CPU, m.Memory, s.CPUCapacity, s.MemoryCapacity} {
		if x < 0 || math.IsNaN(x) || math.IsInf(x, 0) {
			return c, fmt.Errorf("capacity %v is not a finite non-negative number", x)
		}
	}

	reject := func(format string, args ...any) {
		c.Consolidate = false
		c.Reasons = append(c.Reasons, fmt.Sprintf(format, args...))
	}
	cpu := c.Stats.CPU

	// History.
	need := o.MinSamples
	if need == 0 {
		need = defaultRankSamples
		if s.Interval > 0 {
			need = int(max(1, (24*time.Hour+s.Interval-1)/s.Interval))
		}
	}
	switch {
	case s.CPU == nil:
		reject("not enough history: no CPU series")
	case cpu.Samples < need:
		reject("not enough history: %d CPU samples of %d, need %d", cpu.Samples, len(s.CPU), need)
	}

	// Busy CPU.
	if cpu.Samples > 0 {
		if cpu.P50 > o.CPUP50Limit {
			reject("CPU: sustained %s %% (p50), above the %s %% limit", rankNum(cpu.P50), rankNum(o.CPUP50Limit))
		}
		if cpu.P95 > o.CPUP95Limit {
			reject("CPU: p95 %s %%, above the %s %% limit", rankNum(cpu.P95), rankNum(o.CPUP95Limit))
		}
	}

	// Heavy I/O.
	io := []struct {
		what, unit string
		st         ResourceStats
		limit      float64
	}{
		{"disk", "IOPS", c.Stats.DiskIOPS, o.DiskIOPSLimit},
		{"disk", "MB/s", c.Stats.DiskMBps, o.DiskMBpsLimit},
		{"network", "Mb/s", c.Stats.Network, o.NetworkLimit},
	}
	ioLoad := 0.0
	for _, r := range io {
		if r.st.Samples == 0 {
			continue
		}
		if r.st.P50 > r.limit {
			reject("%s: sustained %s %s (p50), above the %s %s limit", r.what, rankNum(r.st.P50), r.unit, rankNum(r.limit), r.unit)
		}
		ioLoad = max(ioLoad, min(1, r.st.P95/r.limit)) // 0 when the limit is +Inf
	}

	// Size.
	share := 0.0
	if o.Host.CPU > 0 && capacity > 0 && cpu.Samples > 0 {
		mhz := cpu.P95 / 100 * capacity
		sh := mhz / o.Host.CPU
		share = max(share, sh)
		if sh > o.MaxHostShare {
			reject("too large for the host: CPU p95 %s is %s %% of its %s (limit %s %%)",
				rankMHz(mhz), rankNum(100*sh), rankMHz(o.Host.CPU), rankNum(100*o.MaxHostShare))
		}
	}
	if o.Host.Memory > 0 && memory > 0 {
		sh := memory / o.Host.Memory
		share = max(share, sh)
		if sh > o.MaxHostShare {
			reject("too large for the host: memory %s is %s %% of its %s (limit %s %%)",
				rankMiB(memory), rankNum(100*sh), rankMiB(o.Host.Memory), rankNum(100*o.MaxHostShare))
		}
	}

	// Score.
	if cpu.Samples > 0 {
		c.Score = rankScore(cpu, ioLoad, min(1, share/o.MaxHostShare))
	}

	// Summaries.
	if cpu.Samples > 0 {
		of := ""
		if capacity > 0 {
			of = " of " + rankMHz(capacity)
		}
		c.Reasons = append(c.Reasons, fmt.Sprintf("CPU p95 %s %%%s, peak %s %%, peak/mean %s",
			rankNum(cpu.P95), of, rankNum(cpu.Peak), rankNum(cpu.PeakToMean)))
	}
	var parts []string
	for _, r := range io {
		if r.st.Samples > 0 {
			parts = append(parts, fmt.Sprintf("%s p95 %s %s", r.what, rankNum(r.st.P95), r.unit))
		}
	}
	if len(parts) > 0 {
		c.Reasons = append(c.Reasons, strings.Join(parts, ", "))
	}
	return c, nil
}

// rankScore is the score of Rank's formula from the CPU statistics (in
// percent), the I/O load (0–1) and the share of the host (0–1).
func rankScore(cpu ResourceStats, ioLoad, size float64) float64 {
	f := func(pct float64) float64 { return min(1, pct/100) }
	pk := f(cpu.Peak)
	tail := rankWeightMean*f(cpu.Mean) + rankWeightP95*f(cpu.P95) + rankWeightP99*f(cpu.P99) + rankWeightPeak*pk
	burst := min(1, math.Log10(max(cpu.PeakToMean, 1))/2)
	score := (1 - tail) * (1 - rankWeightBurst*burst*pk) * (1 - rankWeightIO*ioLoad) * (1 - rankWeightSize*size)
	return min(1, max(0, score))
}

// rankStats summarises xs, skipping NaN; a negative or infinite sample,
// or one above limit (100 for CPU in percent), is an error.
func rankStats(xs []float64, limit float64) (ResourceStats, error) {
	vals := make([]float64, 0, len(xs))
	for i, x := range xs {
		switch {
		case math.IsNaN(x):
			continue
		case math.IsInf(x, 0) || x < 0:
			return ResourceStats{}, fmt.Errorf("sample %d is %v", i, x)
		case x > limit:
			return ResourceStats{}, fmt.Errorf("sample %d is %v %%, above %v %%: more than the machine's capacity", i, x, limit)
		}
		vals = append(vals, x)
	}
	n := len(vals)
	if n == 0 {
		return ResourceStats{}, nil
	}
	slices.Sort(vals)
	sum := 0.0
	for _, x := range vals {
		sum += x
	}
	mean := sum / float64(n)
	ss := 0.0
	for _, x := range vals {
		ss += (x - mean) * (x - mean)
	}
	st := ResourceStats{
		Samples: n,
		Mean:    mean,
		P50:     history.PercentileSorted(vals, 50),
		P95:     history.PercentileSorted(vals, 95),
		P99:     history.PercentileSorted(vals, 99),
		Peak:    vals[n-1],
		Stddev:  math.Sqrt(ss / float64(n)),
	}
	st.PeakToMean = 1
	if mean > 0 {
		st.PeakToMean = st.Peak / mean
	}
	return st, nil
}

// rankNum formats a number for a person: whole above 10, two significant
// digits below.
func rankNum(x float64) string {
	switch {
	case math.IsInf(x, 0) || math.IsNaN(x):
		return fmt.Sprint(x)
	case math.Abs(x) >= 10:
		return strconv.FormatFloat(math.Round(x), 'f', -1, 64)
	case x == 0:
		return "0"
	}
	s := strconv.FormatFloat(x, 'g', 2, 64)
	if strings.ContainsAny(s, "e") {
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return s
}

// rankMHz formats a CPU capacity given in MHz.
func rankMHz(mhz float64) string {
	if mhz >= 1000 {
		return rankNum(mhz/1000) + " GHz"
	}
	return rankNum(mhz) + " MHz"
}

// rankMiB formats a memory size given in MiB.
func rankMiB(mib float64) string {
	if mib >= 1024 {
		return rankNum(mib/1024) + " GiB"
	}
	return rankNum(mib) + " MiB"
}
