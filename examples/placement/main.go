// Placement sizes VMs from a week of measured use, packs them onto as few
// hosts as it can, and checks the packing against the week after.
//
// It reads the Bitbrains "Rnd" traces (GWA-T-12, Grid Workloads Archive,
// TU Delft; S. Shen, V. van Beek, A. Iosup, "Statistical Characterization
// of Business-Critical Workloads Hosted in Cloud Datacenters", CCGrid
// 2015): one CSV file per VM. Each VM's CPU use in the first week becomes
// a 5-minute series (placement.Profile), its memory is what it had
// provisioned at the end of that week. The VMs are placed on hosts of 32
// cores × 2926 MHz and 256 GiB with goal Consolidate three ways: Place
// with the series (VMs whose peaks do not coincide share a host), the
// classic first-fit-decreasing on the 95th percentile (the baseline), and
// best fit on the 95th percentile. The second week is then replayed on
// each plan: overload is the share of host-time, in 5-minute buckets, when
// the VMs on a host used more CPU than it has.
//
//	go run ./examples/placement                        # the small sample shipped in placement/history/testdata
//	go run ./examples/placement -bitbrains DIR [-json] # DIR: the CSV files, or the .tar.gz
//
// -days sets the history window (and the replay window after it): 7 days,
// or 1 day for the shipped sample, which covers two. -hosts sets how many
// hosts are available (100).
//
// With -json it prints one JSON object: the host size, the plan of Place
// with the series (hosts used, each VM's host, the VMs left out and why),
// its overload, the baseline's hosts and overload, and the lower bound on
// the hosts any placement needs.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"log"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/placement/history"
)

// sampleDir is the sample shipped with the sources, relative to the
// repository root; sampleDays is the history window that suits it.
const (
	sampleDir  = "placement/history/testdata/bitbrains"
	sampleDays = 1
)

func main() {
	log.SetFlags(0)
	var o options
	flag.StringVar(&o.path, "bitbrains", "", "folder of Bitbrains CSV files (or a .tar.gz of them); default: the sample in "+sampleDir)
	flag.BoolVar(&o.json, "json", false, "print one JSON object")
	flag.Float64Var(&o.days, "days", 0, "days of history (and of replay after it); default 7, or 1 for the shipped sample")
	flag.IntVar(&o.hosts, "hosts", DefaultHosts, "hosts available")
	flag.Parse()
	if flag.NArg() > 0 {
		log.Fatalf("unexpected arguments %q", flag.Args())
	}
	if err := run(context.Background(), os.Stdout, o); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	path  string
	json  bool
	days  float64
	hosts int
}

func run(ctx context.Context, w io.Writer, o options) error {
	days := o.days
	if o.path == "" {
		o.path = sampleDir
		if _, err := os.Stat(o.path); err != nil {
			return fmt.Errorf("no -bitbrains folder given and the sample %s is not here (run from the repository root): %w", sampleDir, err)
		}
		if days == 0 {
			days = sampleDays
		}
	}
	if days < 0 {
		return fmt.Errorf("-days %v", days)
	}
	e := Experiment{Window: time.Duration(days * float64(24*time.Hour)), Hosts: o.hosts}
	t0 := time.Now()
	d, err := load(o.path, e)
	if err != nil {
		return err
	}
	readTime := time.Since(t0)
	r, err := d.RunAll(ctx)
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r.JSON())
	}
	return r.print(ctx, w, o.path, readTime)
}

// openTraces opens a folder of CSV files or a tar archive of them (the
// .tar.gz as published); close releases it once the traces are read.
func openTraces(path string) (traces iter.Seq2[history.Trace, error], close func() error, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		return history.ReadBitbrainsDir(path), func() error { return nil }, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	return history.ReadBitbrainsTar(f), f.Close, nil
}

// load reads the traces at path into the experiment's dataset.
func load(path string, e Experiment) (*Dataset, error) {
	traces, closeFn, err := openTraces(path)
	if err != nil {
		return nil, err
	}
	d, err := Prepare(traces, e)
	if cerr := closeFn(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if d.Traces == 0 {
		return nil, fmt.Errorf("%s: no *.csv traces", path)
	}
	return d, nil
}

// Output is the JSON the command prints with -json.
type Output struct {
	Host struct {
		CPUMHz    float64 `json:"cpu_mhz"`
		MemoryMiB float64 `json:"memory_mib"`
		Cores     int     `json:"cores"`
	} `json:"host"`
	Strategy    string       `json:"strategy"`
	Seconds     float64      `json:"seconds"` // Place's run time
	HostsUsed   int          `json:"hosts_used"`
	VMs         []OutputVM   `json:"vms"`
	Unplaced    []OutputMiss `json:"unplaced"`
	OverloadPct float64      `json:"overload_pct"`
	LowerBound  int          `json:"lower_bound"`
	// LowerBoundBy details the lower bound.
	LowerBoundBy struct {
		Memory  int `json:"memory"`
		CPUP95  int `json:"cpu_p95"`
		CPUPeak int `json:"cpu_series_peak"`
		VMs     int `json:"vms"`
	} `json:"lower_bound_by"`
	Baseline   OutputRun   `json:"baseline"`
	Others     []OutputRun `json:"others"`
	History    Window      `json:"history"`
	Replay     Window      `json:"replay"`
	Buckets    int         `json:"buckets"`
	BucketSecs float64     `json:"bucket_seconds"`
}

// OutputVM is a placed VM.
type OutputVM struct {
	ID   string `json:"id"`
	Host string `json:"host"`
}

// OutputMiss is a VM left out: not placed, or without history.
type OutputMiss struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// OutputRun sums up a strategy.
type OutputRun struct {
	Strategy     string  `json:"strategy"`
	HostsUsed    int     `json:"hosts_used"`
	OverloadPct  float64 `json:"overload_pct"`
	WorstHostPct float64 `json:"worst_host_overload_pct"`
	Unplaced     int     `json:"unplaced"`
	Seconds      float64 `json:"seconds"`
}

// Window is a time range.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// noHistory is the reason given for a VM without a sample in the history.
const noHistory = "no sample in the history window"

// JSON returns the report as the command prints it: the plan is Place's
// with the series, the first-fit-decreasing p95 run is the baseline.
func (r *Report) JSON() *Output {
	e := r.Data.Exp
	var out Output
	out.Host.CPUMHz, out.Host.MemoryMiB, out.Host.Cores = e.HostCPU(), e.HostMemoryMiB, e.HostCores
	main := r.Outcomes[0]
	out.Strategy = main.Strategy.Name
	out.Seconds = main.Elapsed.Seconds()
	out.HostsUsed = main.HostsUsed
	out.OverloadPct = main.OverloadPct
	out.VMs = []OutputVM{}
	for _, a := range main.Plan.Assignments {
		out.VMs = append(out.VMs, OutputVM{ID: a.VM.ID, Host: a.Host.ID})
	}
	slices.SortFunc(out.VMs, func(a, b OutputVM) int { return history.CompareIDs(a.ID, b.ID) })
	out.Unplaced = []OutputMiss{}
	for _, u := range main.Plan.Unplaced {
		out.Unplaced = append(out.Unplaced, OutputMiss{ID: u.VM.ID, Reason: u.Err.Error()})
	}
	for _, id := range r.Data.Skipped {
		out.Unplaced = append(out.Unplaced, OutputMiss{ID: id, Reason: noHistory})
	}
	slices.SortFunc(out.Unplaced, func(a, b OutputMiss) int { return history.CompareIDs(a.ID, b.ID) })
	b := r.Bound
	out.LowerBound = b.Hosts
	out.LowerBoundBy.Memory, out.LowerBoundBy.CPUP95, out.LowerBoundBy.CPUPeak, out.LowerBoundBy.VMs = b.Memory, b.CPUP95, b.CPUPeak, b.VMs
	for _, o := range r.Outcomes[1:] {
		run := OutputRun{
			Strategy:     o.Strategy.Name,
			HostsUsed:    o.HostsUsed,
			OverloadPct:  o.OverloadPct,
			WorstHostPct: o.WorstHostPct,
			Unplaced:     len(o.Plan.Unplaced),
			Seconds:      o.Elapsed.Seconds(),
		}
		if o.Strategy.Name == FFDP95.Name {
			out.Baseline = run
		} else {
			out.Others = append(out.Others, run)
		}
	}
	out.History = Window{e.Start, e.Start.Add(e.Window)}
	out.Replay = Window{e.Start.Add(e.Window), e.Start.Add(2 * e.Window)}
	out.Buckets, out.BucketSecs = e.Buckets(), e.Bucket.Seconds()
	return &out
}

func (r *Report) print(ctx context.Context, w io.Writer, path string, readTime time.Duration) error {
	d, e := r.Data, r.Data.Exp
	fmt.Fprintf(w, "Bitbrains traces: %d VMs from %s\n", d.Traces, path)
	fmt.Fprintf(w, "history %s – %s UTC, replay the %v after it, in %d buckets of %v\n",
		e.Start.Format("2006-01-02 15:04"), e.Start.Add(e.Window).Format("2006-01-02 15:04"), e.Window, e.Buckets(), e.Bucket)
	fmt.Fprintf(w, "hosts: %d cores × %.0f MHz = %.0f MHz, %.0f GiB; %d available; goal consolidate\n",
		e.HostCores, e.CoreMHz, e.HostCPU(), e.HostMemoryMiB/1024, e.Hosts)
	if len(d.Skipped) > 0 {
		fmt.Fprintf(w, "skipped, %s: %s\n", noHistory, strings.Join(d.Skipped, ", "))
	}
	b := r.Bound
	fmt.Fprintf(w, "lower bound: %d hosts (memory %d, CPU at P95 %d, CPU series peak %d; over %d VMs that fit a host)\n\n",
		b.Hosts, b.Memory, b.CPUP95, b.CPUPeak, b.VMs)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\thosts used\toverload (% host-time)\tworst host\tunplaced\tPlace time\t")
	for _, o := range r.Outcomes {
		fmt.Fprintf(tw, "%s\t%d\t%.3f %%\t%.2f %%\t%d\t%v\t\n", o.Strategy.Name, o.HostsUsed, o.OverloadPct, o.WorstHostPct,
			len(o.Plan.Unplaced), o.Elapsed.Round(time.Millisecond))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	main := r.Outcomes[0]
	for _, u := range main.Plan.Unplaced {
		fmt.Fprintf(w, "unplaced %s: %v\n", u.VM.ID, u.Err)
	}
	if err := r.printRatings(ctx, w, main); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nread and sized in %v; placed three ways and replayed in %v\n", readTime.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond))
	return nil
}

// printRatings shows how Rate sees a few VMs on the hosts after the plan:
// each host's use is the sum of its VMs' P95 CPU and their memory.
func (r *Report) printRatings(ctx context.Context, w io.Writer, o *Outcome) error {
	if len(r.Data.VMs) == 0 {
		return nil
	}
	p, err := NewPlacer()
	if err != nil {
		return err
	}
	hosts := make([]*placement.Host, len(o.Hosts))
	byID := map[string]*placement.Host{}
	for i, h := range o.Hosts {
		c := *h
		hosts[i] = &c
		byID[h.ID] = &c
	}
	for _, a := range o.Plan.Assignments {
		h := byID[a.Host.ID]
		h.Used = h.Used.Add(placement.Sizer{}.Demand(a.VM, h))
		h.VMs = append(h.VMs, a.VM.ID)
	}
	// A few hosts: the first used one, the three used ones with the most
	// memory free, and an empty one.
	var used []*placement.Host
	for _, h := range hosts {
		if len(h.VMs) > 0 {
			used = append(used, h)
		}
	}
	var shown []*placement.Host
	if len(used) > 0 {
		shown = append(shown, used[0])
	}
	roomy := slices.Clone(used)
	slices.SortStableFunc(roomy, func(a, b *placement.Host) int { return cmp.Compare(a.Used[placement.Memory], b.Used[placement.Memory]) })
	for _, h := range roomy {
		if len(shown) < 4 && !slices.Contains(shown, h) {
			shown = append(shown, h)
		}
	}
	if i := slices.IndexFunc(hosts, func(h *placement.Host) bool { return len(h.VMs) == 0 }); i >= 0 {
		shown = append(shown, hosts[i])
	}
	slices.SortFunc(shown, func(a, b *placement.Host) int { return strings.Compare(a.ID, b.ID) })
	fmt.Fprintf(w, "\nstar ratings (Rate) after the plan of %q; a host's use is the sum of its VMs'\n", o.Strategy.Name)
	fmt.Fprintln(w, "P95 CPU and memory, which may pass 100 % of CPU where their series fit:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "VM\tvCPU\tmemory\tCPU P95\t")
	for _, h := range shown {
		fmt.Fprintf(tw, "%s (%.0f%% cpu, %.0f%% mem)\t", h.ID, 100*h.Used[placement.CPU]/h.Capacity[placement.CPU], 100*h.Used[placement.Memory]/h.Capacity[placement.Memory])
	}
	fmt.Fprintln(tw)
	var reasons []string
	for _, vm := range sampleVMs(r.Data.VMs, r.Data.Exp.HostMemoryMiB) {
		rs, err := p.Rate(ctx, vm, shown)
		if err != nil {
			return err
		}
		slices.SortFunc(rs, func(a, b placement.Rating) int { return strings.Compare(a.Host.ID, b.Host.ID) })
		fmt.Fprintf(tw, "%s\t%d\t%.1f GiB\t%.0f MHz\t", vm.ID, vm.VCPU, vm.Memory/1024, vm.History.P95[placement.CPU])
		for _, rt := range rs {
			if rt.Err != nil {
				fmt.Fprint(tw, "rejected\t")
				var rej *placement.Rejection
				if errors.As(rt.Err, &rej) {
					reasons = append(reasons, fmt.Sprintf("  %s on %s: %v", vm.ID, rt.Host.ID, rt.Err))
				}
				continue
			}
			fmt.Fprintf(tw, "%s %.1f\t", stars(rt.Stars), rt.Stars)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(reasons) > 0 {
		fmt.Fprintln(w, "rejections:")
		for _, s := range reasons {
			fmt.Fprintln(w, s)
		}
	}
	return nil
}

// sampleVMs picks three VMs to rate: the one with the most memory that
// fits a host, the busiest by P95 CPU, and one of median memory.
func sampleVMs(vms []*placement.VM, hostMemory float64) []*placement.VM {
	byMem := slices.Clone(vms)
	slices.SortStableFunc(byMem, func(a, b *placement.VM) int { return cmp.Compare(b.Memory, a.Memory) })
	var out []*placement.VM
	add := func(vm *placement.VM) {
		if len(out) < 3 && !slices.Contains(out, vm) {
			out = append(out, vm)
		}
	}
	if i := slices.IndexFunc(byMem, func(vm *placement.VM) bool { return vm.Memory <= hostMemory }); i >= 0 {
		add(byMem[i])
	}
	add(slices.MaxFunc(vms, func(a, b *placement.VM) int {
		return cmp.Compare(a.History.P95[placement.CPU], b.History.P95[placement.CPU])
	}))
	add(byMem[len(byMem)/2])
	for _, vm := range byMem {
		add(vm)
	}
	return out
}

// stars draws a rating of 0 to 5 in half stars.
func stars(x float64) string {
	full := int(x)
	s := strings.Repeat("★", full)
	if x-float64(full) >= 0.5 {
		s += "½"
	}
	return s + strings.Repeat("☆", 5-len([]rune(s)))
}
