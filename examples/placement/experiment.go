package main

import (
	"context"
	"fmt"
	"iter"
	"math"
	"slices"
	"time"

	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/placement/history"
)

// TraceStart is the first timestamp of the Bitbrains Rnd trace of July
// 2013: 2013-06-30 22:03:24 UTC (00:03 CEST on Monday 1 July).
var TraceStart = time.Unix(1372629804, 0).UTC()

// An Experiment sizes VMs from one window of a trace (the history), places
// them, and replays the window after it on the hosts they were placed on.
// Zero fields mean the defaults of the issue: a week of history from
// TraceStart, 5-minute buckets, 100 hosts of 32 cores × 2926 MHz and
// 256 GiB.
type Experiment struct {
	Start  time.Time     // start of the history window
	Window time.Duration // length of the history window and of the replay window that follows it
	Bucket time.Duration // length of a bucket of the series

	HostCores     int
	CoreMHz       float64 // clock of one host core
	HostMemoryMiB float64
	Hosts         int // hosts available; "h001", "h002", ...
}

// Defaults of an Experiment.
const (
	DefaultWindow        = 7 * 24 * time.Hour
	DefaultBucket        = 5 * time.Minute
	DefaultHostCores     = 32
	DefaultCoreMHz       = 2926
	DefaultHostMemoryMiB = 256 << 10
	DefaultHosts         = 100
)

func (e Experiment) withDefaults() Experiment {
	if e.Start.IsZero() {
		e.Start = TraceStart
	}
	if e.Window <= 0 {
		e.Window = DefaultWindow
	}
	if e.Bucket <= 0 {
		e.Bucket = DefaultBucket
	}
	if e.HostCores <= 0 {
		e.HostCores = DefaultHostCores
	}
	if e.CoreMHz <= 0 {
		e.CoreMHz = DefaultCoreMHz
	}
	if e.HostMemoryMiB <= 0 {
		e.HostMemoryMiB = DefaultHostMemoryMiB
	}
	if e.Hosts <= 0 {
		e.Hosts = DefaultHosts
	}
	return e
}

// HostCPU is a host's CPU capacity in MHz.
func (e Experiment) HostCPU() float64 { return float64(e.HostCores) * e.CoreMHz }

// Buckets is the number of buckets in a window.
func (e Experiment) Buckets() int { return int(e.Window / e.Bucket) }

// A Dataset is a trace made ready for the experiment: the VMs with their
// history-window profiles and their use in the replay window.
type Dataset struct {
	Exp Experiment
	// VMs are the VMs with a sample in the history window, in trace ID
	// order. CPU is the history series of CPU usage (MHz), with mean, 95th
	// percentile and peak over the buckets from the VM's first sample on;
	// memory is the memory provisioned at its last sample of the window.
	VMs []*placement.VM
	// Replay holds each VM's CPU usage (MHz) per bucket of the replay
	// window, by VM ID.
	Replay map[string][]float64
	// Skipped lists the VMs without a sample in the history window.
	Skipped []string
	Traces  int // traces read
}

// Prepare builds the dataset of an experiment from per-VM traces, keeping
// only what the experiment needs of each trace. The first error of traces
// ends it.
func Prepare(traces iter.Seq2[history.Trace, error], e Experiment) (*Dataset, error) {
	e = e.withDefaults()
	n := e.Buckets()
	if n <= 0 {
		return nil, fmt.Errorf("window %v is shorter than a bucket (%v)", e.Window, e.Bucket)
	}
	d := &Dataset{Exp: e, Replay: map[string][]float64{}}
	end := e.Start.Add(e.Window)
	cpu := func(s history.Sample) float64 { return s.CPUUsageMHz }
	seen := map[string]bool{}
	for t, err := range traces {
		if err != nil {
			return nil, err
		}
		d.Traces++
		if seen[t.ID] {
			return nil, fmt.Errorf("two traces with ID %q", t.ID)
		}
		seen[t.ID] = true
		// The last sample of the window, and whether one precedes it.
		last, first, before := -1, time.Time{}, false
		for i, s := range t.Samples {
			if s.Time.Before(e.Start) {
				before = true
				continue
			}
			if !s.Time.Before(end) {
				continue
			}
			if last < 0 || !s.Time.Before(t.Samples[last].Time) {
				last = i
			}
			if first.IsZero() || s.Time.Before(first) {
				first = s.Time
			}
		}
		if last < 0 {
			d.Skipped = append(d.Skipped, t.ID)
			continue
		}
		series := history.Buckets(t.Samples, e.Start, e.Bucket, n, cpu)
		observed := series
		if !before {
			observed = series[first.Sub(e.Start)/e.Bucket:]
		}
		mean, p95, peak := stats(observed)
		ls := t.Samples[last]
		vm := &placement.VM{
			ID:     t.ID,
			VCPU:   ls.CPUCores,
			Memory: ls.MemoryProvisionedKB / 1024,
			History: &placement.Profile{
				Mean:   placement.Vector{placement.CPU: mean},
				P95:    placement.Vector{placement.CPU: p95},
				Peak:   placement.Vector{placement.CPU: peak},
				Series: make([]placement.Vector, n),
			},
		}
		for i, x := range series {
			vm.History.Series[i][placement.CPU] = x
		}
		d.VMs = append(d.VMs, vm)
		d.Replay[t.ID] = history.Buckets(t.Samples, end, e.Bucket, n, cpu)
	}
	slices.SortFunc(d.VMs, func(a, b *placement.VM) int { return history.CompareIDs(a.ID, b.ID) })
	history.SortIDs(d.Skipped)
	return d, nil
}

// stats returns the mean, the 95th percentile (nearest rank) and the
// maximum of xs.
func stats(xs []float64) (mean, p95, peak float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	rank := int(math.Ceil(0.95*float64(len(s)))) - 1
	return sum / float64(len(s)), s[max(rank, 0)], s[len(s)-1]
}

// NewHosts returns the experiment's empty hosts, "h001" to "h100" by
// default.
func (e Experiment) NewHosts() []*placement.Host {
	e = e.withDefaults()
	width := max(3, len(fmt.Sprint(e.Hosts)))
	hs := make([]*placement.Host, e.Hosts)
	for i := range hs {
		hs[i] = &placement.Host{
			ID:       fmt.Sprintf("h%0*d", width, i+1),
			Cores:    e.HostCores,
			Capacity: placement.Vector{placement.CPU: e.HostCPU(), placement.Memory: e.HostMemoryMiB},
		}
	}
	return hs
}

// A Strategy is one way of placing the VMs.
type Strategy struct {
	Name string
	Opts placement.PlaceOptions
}

// Strategies compared: Place with the history series (correlation-aware
// best fit), the classic first-fit-decreasing on the 95th percentile (the
// baseline), and best fit on the 95th percentile.
var (
	SeriesBestFit = Strategy{"best-fit, history series", placement.PlaceOptions{Strategy: placement.BestFit}}
	FFDP95        = Strategy{"first-fit-decreasing p95", placement.PlaceOptions{Strategy: placement.FirstFit, IgnoreSeries: true}}
	BestFitP95    = Strategy{"best-fit p95", placement.PlaceOptions{Strategy: placement.BestFit, IgnoreSeries: true}}
	Strategies    = []Strategy{SeriesBestFit, FFDP95, BestFitP95}
)

// An Outcome is a strategy's plan and how it fared in the replay window.
type Outcome struct {
	Strategy  Strategy
	Plan      *placement.Plan
	Hosts     []*placement.Host // the hosts the plan refers to
	HostsUsed int
	// OverloadBuckets counts the (host, bucket) pairs of the replay window
	// where the placed VMs' CPU use summed above the host's capacity;
	// OverloadPct is it as a percentage of HostsUsed × buckets.
	OverloadBuckets int
	OverloadPct     float64
	// WorstHostPct is the highest share of buckets one host spent
	// overloaded, in %.
	WorstHostPct float64
	Elapsed      time.Duration // Place's run time
}

// NewPlacer returns the placer of the experiment: the defaults with goal
// Consolidate.
func NewPlacer() (*placement.Placer, error) {
	return placement.New(placement.Config{Goal: placement.Consolidate})
}

// Run places the dataset's VMs on fresh hosts with strategy s and replays
// the window after the history on the plan.
func (d *Dataset) Run(ctx context.Context, p *placement.Placer, s Strategy) (*Outcome, error) {
	hosts := d.Exp.NewHosts()
	t0 := time.Now()
	plan, err := p.Place(ctx, d.VMs, hosts, &s.Opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	o := &Outcome{Strategy: s, Plan: plan, Hosts: hosts, HostsUsed: plan.HostsUsed, Elapsed: time.Since(t0)}
	o.OverloadBuckets, o.WorstHostPct = d.replay(plan)
	if n := plan.HostsUsed * d.Exp.Buckets(); n > 0 {
		o.OverloadPct = 100 * float64(o.OverloadBuckets) / float64(n)
	}
	return o, nil
}

// replay sums, per host and bucket of the replay window, the CPU use of
// the VMs the plan put there, and counts the buckets above the host's
// capacity.
func (d *Dataset) replay(plan *placement.Plan) (over int, worstPct float64) {
	n := d.Exp.Buckets()
	load := map[*placement.Host][]float64{}
	for _, a := range plan.Assignments {
		sum := load[a.Host]
		if sum == nil {
			sum = make([]float64, n)
			load[a.Host] = sum
		}
		for t, x := range d.Replay[a.VM.ID] {
			sum[t] += x
		}
	}
	for h, sum := range load {
		k := 0
		for _, x := range sum {
			if x > h.Capacity[placement.CPU] {
				k++
			}
		}
		over += k
		worstPct = max(worstPct, 100*float64(k)/float64(n))
	}
	return over, worstPct
}

// A Bound is a lower bound on the hosts any placement needs, for the VMs
// that fit on an empty host.
type Bound struct {
	Hosts  int // the largest of the bounds below
	Memory int // ⌈Σ memory / host memory⌉
	CPUP95 int // ⌈Σ history P95 CPU / host CPU⌉
	// CPUPeak is ⌈max over buckets of Σ history CPU / host CPU⌉: the bound
	// for packing by the series.
	CPUPeak int
	VMs     int // the VMs counted
}

// LowerBound returns the two-dimensional lower bound of the dataset: the
// most of the memory and the P95 CPU bounds (and the series bound), over
// the VMs whose memory and P95 CPU fit on an empty host.
func (d *Dataset) LowerBound() Bound {
	var b Bound
	var mem, cpu float64
	agg := make([]float64, d.Exp.Buckets())
	h := d.Exp.NewHosts()[0]
	sizer := placement.Sizer{}
	for _, vm := range d.VMs {
		dem := sizer.Demand(vm, h)
		if dem[placement.Memory] > h.Capacity[placement.Memory] || dem[placement.CPU] > h.Capacity[placement.CPU] {
			continue
		}
		b.VMs++
		mem += dem[placement.Memory]
		cpu += dem[placement.CPU]
		for t, v := range vm.History.Series {
			agg[t] += v[placement.CPU]
		}
	}
	ceil := func(x float64) int { return int(math.Ceil(x - 1e-9)) }
	b.Memory = ceil(mem / h.Capacity[placement.Memory])
	b.CPUP95 = ceil(cpu / h.Capacity[placement.CPU])
	b.CPUPeak = ceil(slices.Max(agg) / h.Capacity[placement.CPU])
	b.Hosts = max(b.Memory, b.CPUP95, b.CPUPeak)
	return b
}

// A Report is the whole experiment: every strategy on one dataset.
type Report struct {
	Data     *Dataset
	Bound    Bound
	Outcomes []*Outcome // in the order of Strategies
	Elapsed  time.Duration
}

// RunAll places the dataset with every strategy in Strategies.
func (d *Dataset) RunAll(ctx context.Context) (*Report, error) {
	t0 := time.Now()
	p, err := NewPlacer()
	if err != nil {
		return nil, err
	}
	r := &Report{Data: d, Bound: d.LowerBound()}
	for _, s := range Strategies {
		o, err := d.Run(ctx, p, s)
		if err != nil {
			return nil, err
		}
		r.Outcomes = append(r.Outcomes, o)
	}
	r.Elapsed = time.Since(t0)
	return r, nil
}
