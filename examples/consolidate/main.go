// Command consolidate plans the consolidation of machines, given their CPU
// history, onto as few hosts as keep every interval of the history within
// the hosts' CPU. It ranks the machines as candidates first
// (consolidate.Rank), then plans all of them (consolidate.Plan).
//
//	go run ./examples/consolidate [-trace PATH] [-format planetlab|bitbrains|perfmon]
//	    [-margin 0.1] [-interval 5m] [-host-cpu MHZ] [-host-mem MIB]
//	    [-machine-mhz MHZ] [-machine-mem MIB] [-json]
//
// -format planetlab (the default): PATH is a daily archive of the
// PlanetLab workload CloudSim ships (a .tar.gz of one file per VM), and
// the experiment is set up as CloudSim does it: one VM per file, the four
// VM types (2500, 2000, 1000 and 500 MIPS) in blocks over the file names in
// order, hosts HP ProLiant ML110 G5 (2 × 2660 MIPS, SPECpower model for the
// energy; -host-cpu changes their MIPS), memory not constrained. Without
// -trace it plans the 20-VM sample of 2011-03-03 built into the command
// (third-party data: see placement/history/testdata/planetlab/README.md for
// the source and attribution; cite Beloglazov & Buyya, CCPE
// 24(13):1397–1420, 2012).
//
// -format bitbrains: PATH is the Bitbrains GWA-T-12 Rnd trace as a folder
// of <vm>.csv files, a .tar or .tar.gz of them, or a single .csv file; each
// file is a machine named by its number. A machine's CPU capacity is the
// largest "CPU capacity provisioned" of its rows (cores × MHz per core) and
// its memory the largest "memory provisioned"; its history is the trace
// averaged over -interval (default 5 minutes, the trace's usual sampling)
// on one time line for all machines, from the earliest sample (in whole
// intervals of Unix time) to the latest; intervals without a sample are
// gaps, which Plan counts at the machine's highest demand. Rows using
// more CPU than provisioned or more memory than provisioned (the published
// trace has them) are skipped and counted: a warning per machine on
// standard error and under "warnings" in JSON. The hosts default to a
// 2-socket server of 2 × 16 cores at 2926 MHz (93,632 MHz) with 256 GiB:
// 2926 MHz is the per-core clock of most rows of the trace, and the size
// is that of examples/placement, so that the two examples compare; the
// one 511.5 GiB VM of the trace fits no such host and is reported
// unplaced. Energy uses the ML110 G5 SPECpower curve scaled to the host's
// utilisation, only as a relative figure.
//
// -format perfmon: PATH is a Windows performance log in CSV as typeperf or
// relog write it ("-f CSV"; see history.ReadPerfmon); each host of the log
// is a machine, its history the "Processor(_Total)\% Processor Time"
// counter, on the log's own interval or resampled to -interval. The log
// gives CPU in percent only, so -machine-mhz (required) is every machine's
// CPU capacity in MHz (cores × clock), and -machine-mem the memory in MiB
// each would need as a VM (default 0: memory not constrained). Impossible
// values (negative rates, CPU above 100 %) are skipped and counted as for
// bitbrains. Hosts default as for bitbrains.
//
// Machines without a usable CPU history (no capacity in the trace, no CPU
// sample) cannot be planned: they are listed as excluded, with why.
//
// It prints the machines ranked as candidates, then the plan: each used
// host with its machines and peak, then the totals. With -json it prints
// one JSON object instead (see Output): "hosts" (the used hosts: id, cpu
// capacity, memory, peak), "vms" (every machine: id, the trace's file name
// or machine ID; cpu capacity; memory; host, "" when unplaced),
// "hosts_used", and the grid of the history ("start", "interval_seconds",
// "intervals") so that another program can replay the plan against the
// trace, with the totals, the ranking, the excluded machines and the
// warnings. Errors, including malformed input (with its file and line), go
// to standard error and exit with status 1.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/placement/consolidate"
	"github.com/vmmkit/vmmkit/placement/history"
)

//go:embed planetlab-sample.tar.gz
var sample []byte

// The CloudSim PlanetLab setup.
const hostMIPS = 5320 // HP ProLiant ML110 G5

var vmMIPS = [4]float64{2500, 2000, 1000, 500}

// The default host of the bitbrains and perfmon formats: a 2-socket server
// of 2 × 16 cores at 2926 MHz with 256 GiB (see the command's doc).
const (
	defaultHostCPU = 32 * 2926
	defaultHostMem = 256 << 10
	// unlimitedMem is the host memory of the PlanetLab setup, which
	// does not constrain memory.
	unlimitedMem = 1 << 30
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "consolidate:", err)
		os.Exit(1)
	}
}

// Output is the plan as -json prints it.
type Output struct {
	// Format is the trace format read.
	Format string `json:"format"`
	// Hosts are the used hosts.
	Hosts []HostOut `json:"hosts"`
	// VMs are the planned machines, each with its host.
	VMs       []VMOut `json:"vms"`
	HostsUsed int     `json:"hosts_used"`
	// Start, IntervalSeconds and Intervals give the time line of the
	// histories the plan was made on: interval i covers [Start +
	// i·IntervalSeconds, Start + (i+1)·IntervalSeconds). Start is RFC 3339,
	// "" when the trace has no dates (a PlanetLab archive not named by its
	// day).
	Start               string  `json:"start"`
	IntervalSeconds     float64 `json:"interval_seconds"`
	Intervals           int     `json:"intervals"`
	LowerBound          int     `json:"lower_bound"`
	EnergyKWh           float64 `json:"energy_kwh"`
	OverloadedIntervals int     `json:"overloaded_intervals"`
	// Unplaced lists the machines no host could take, "id: reason".
	Unplaced []string `json:"unplaced,omitempty"`
	// Excluded lists the machines that could not be planned at all.
	Excluded []ExcludedOut `json:"excluded,omitempty"`
	// Warnings lists, per machine, the input skipped as inconsistent.
	Warnings []WarningOut `json:"warnings,omitempty"`
	// Ranked lists every planned machine as a consolidation candidate,
	// best first (consolidate.Rank); the plan places all of them, as the
	// reference setup does.
	Ranked []RankOut `json:"ranked"`
}

// HostOut is a used host.
type HostOut struct {
	ID     string  `json:"id"`
	CPU    float64 `json:"cpu"`    // capacity, MHz (MIPS for planetlab)
	Memory float64 `json:"memory"` // MiB
	Peak   float64 `json:"peak"`   // highest summed demand, fraction of cpu
}

// VMOut is a machine and its host ("" when unplaced).
type VMOut struct {
	ID     string  `json:"id"`     // trace file name or machine ID
	CPU    float64 `json:"cpu"`    // capacity, MHz (MIPS for planetlab)
	Memory float64 `json:"memory"` // MiB the VM needs; 0 when not constrained
	Host   string  `json:"host"`
}

// ExcludedOut is a machine left out of the plan, and why.
type ExcludedOut struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// WarningOut is the input skipped for one machine: how many rows or
// values, and the reasons of the first (with file, line and column).
type WarningOut struct {
	ID      string   `json:"id"`
	Skipped int      `json:"skipped"`
	First   []string `json:"first"`
}

// RankOut is one machine's rank.
type RankOut struct {
	ID          string   `json:"id"`
	Score       float64  `json:"score"`
	Consolidate bool     `json:"consolidate"`
	Reasons     []string `json:"reasons"`
}

// options are the command's flags.
type options struct {
	trace, format         string
	margin                float64
	interval              time.Duration
	hostCPU, hostMem      float64
	machineMHz, machineMB float64
	json                  bool
}

// loaded is what a format reader gives the planner.
type loaded struct {
	machines []consolidate.Machine
	unit     string // of CPU capacity: "MHz" or "MIPS"
	hostCPU  float64
	hostMem  float64
	excluded []ExcludedOut
	warnings []WarningOut
	// rankHost tells Rank the host size (not in the PlanetLab reference
	// setup, whose ranking stays as CloudSim's VMs are: all fit).
	rankHost bool
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consolidate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.trace, "trace", "", "trace: planetlab .tar.gz (default: the built-in sample); bitbrains folder, .tar(.gz) or .csv; perfmon CSV log")
	fs.StringVar(&o.format, "format", "planetlab", "trace format: planetlab, bitbrains or perfmon")
	fs.Float64Var(&o.margin, "margin", 0, "fraction of each host's CPU kept free at every interval")
	fs.DurationVar(&o.interval, "interval", 0, "interval of the histories: bitbrains default 5m; perfmon default the log's own")
	fs.Float64Var(&o.hostCPU, "host-cpu", 0, "host CPU capacity, MHz (default 93632, 2 × 16 cores × 2926 MHz; planetlab 5320 MIPS)")
	fs.Float64Var(&o.hostMem, "host-mem", 0, "host memory, MiB (default 262144 = 256 GiB; planetlab not constrained)")
	fs.Float64Var(&o.machineMHz, "machine-mhz", 0, "perfmon: CPU capacity of each machine of the log, MHz (required)")
	fs.Float64Var(&o.machineMB, "machine-mem", 0, "perfmon: memory each machine needs as a VM, MiB (default 0: not constrained)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"-host-cpu", o.hostCPU}, {"-host-mem", o.hostMem}, {"-machine-mhz", o.machineMHz}, {"-machine-mem", o.machineMB}} {
		if !(f.v >= 0) || math.IsInf(f.v, 0) {
			return fmt.Errorf("%s %v: want a finite number, not negative", f.name, f.v)
		}
	}
	if o.interval < 0 {
		return fmt.Errorf("-interval %v is negative", o.interval)
	}
	var (
		l   *loaded
		err error
	)
	switch o.format {
	case "planetlab":
		l, err = loadPlanetLab(&o)
	case "bitbrains":
		l, err = loadBitbrains(&o)
	case "perfmon":
		l, err = loadPerfmon(&o)
	default:
		return fmt.Errorf("unknown format %q: want planetlab, bitbrains or perfmon", o.format)
	}
	if err != nil {
		return err
	}
	for _, w := range l.warnings {
		fmt.Fprintf(stderr, "consolidate: warning: %s: %d skipped as inconsistent; first: %s\n", w.ID, w.Skipped, w.First[0])
	}
	for _, e := range l.excluded {
		fmt.Fprintf(stderr, "consolidate: warning: machine %s left out: %s\n", e.ID, e.Reason)
	}
	if len(l.machines) == 0 {
		return fmt.Errorf("%s: no machine to plan", cmpOr(o.trace, "the sample"))
	}
	return plan(&o, l, stdout)
}

// plan ranks and plans the machines and prints the result.
func plan(o *options, l *loaded, stdout io.Writer) error {
	machines := l.machines
	hosts := make([]*placement.Host, len(machines)) // one per VM suffices for any VM that fits
	for i := range hosts {
		hosts[i] = &placement.Host{ID: fmt.Sprintf("host%04d", i+1), Cores: 2,
			Capacity: placement.Vector{placement.CPU: l.hostCPU, placement.Memory: l.hostMem}}
	}
	var ro *consolidate.RankOptions
	if l.rankHost {
		ro = &consolidate.RankOptions{Host: consolidate.RankHost{CPU: l.hostCPU, Memory: l.hostMem}}
	}
	ranked, err := consolidate.Rank(context.Background(), machines, ro)
	if err != nil {
		return err
	}
	res, err := consolidate.Plan(context.Background(), machines, hosts, &consolidate.PlanOptions{Margin: o.margin, Power: consolidate.ML110G5Spec})
	if err != nil {
		return err
	}
	s0 := machines[0].Series
	out := Output{Format: o.format, HostsUsed: res.HostsUsed, LowerBound: res.LowerBound, EnergyKWh: res.EnergyKWh,
		OverloadedIntervals: res.OverloadedIntervals, Intervals: res.Intervals,
		IntervalSeconds: s0.Interval.Seconds(), Excluded: l.excluded, Warnings: l.warnings}
	if !s0.Start.IsZero() {
		out.Start = s0.Start.Format(time.RFC3339)
	}
	for _, h := range res.Hosts {
		out.Hosts = append(out.Hosts, HostOut{ID: h.ID, CPU: l.hostCPU, Memory: l.hostMem, Peak: h.Peak})
	}
	for _, m := range machines {
		out.VMs = append(out.VMs, VMOut{ID: m.ID, CPU: m.CPU, Memory: m.Memory, Host: res.Assignments[m.ID]})
	}
	for _, u := range res.Unplaced {
		out.Unplaced = append(out.Unplaced, u.ID+": "+u.Err.Error())
	}
	for _, c := range ranked {
		out.Ranked = append(out.Ranked, RankOut{ID: c.Machine.ID, Score: c.Score, Consolidate: c.Consolidate, Reasons: c.Reasons})
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintln(stdout, "candidates, best first:")
	for i, c := range out.Ranked {
		if i == 5 && len(out.Ranked) > 8 {
			fmt.Fprintf(stdout, "  ... %d more\n", len(out.Ranked)-6)
			c = out.Ranked[len(out.Ranked)-1]
		} else if i > 5 && len(out.Ranked) > 8 {
			continue
		}
		verdict := "consolidate"
		if !c.Consolidate {
			verdict = "keep physical"
		}
		fmt.Fprintf(stdout, "  %-50s %.2f %-13s %s\n", c.ID, c.Score, verdict, strings.Join(c.Reasons, "; "))
	}
	fmt.Fprintln(stdout, "plan:")
	cpu := map[string]float64{}
	for _, m := range machines {
		cpu[m.ID] = m.CPU
	}
	for _, h := range res.Hosts {
		fmt.Fprintf(stdout, "%s (%.0f %s, peak %.1f %%):\n", h.ID, l.hostCPU, l.unit, 100*h.Peak)
		for _, id := range h.Machines {
			fmt.Fprintf(stdout, "  %-50s %5.0f %s\n", id, cpu[id], l.unit)
		}
	}
	for _, u := range out.Unplaced {
		fmt.Fprintf(stdout, "unplaced: %s\n", u)
	}
	for _, e := range out.Excluded {
		fmt.Fprintf(stdout, "excluded: %s: %s\n", e.ID, e.Reason)
	}
	fmt.Fprintf(stdout, "%d VMs on %d hosts (lower bound %d), %d overloaded host-intervals of %d, %.2f kWh\n",
		len(machines), res.HostsUsed, res.LowerBound, res.OverloadedIntervals, res.Intervals, res.EnergyKWh)
	return nil
}

// loadPlanetLab reads a PlanetLab archive, set up as CloudSim does.
func loadPlanetLab(o *options) (*loaded, error) {
	if o.interval != 0 && o.interval != history.PlanetLabInterval {
		return nil, fmt.Errorf("-interval %v: PlanetLab traces are at %v", o.interval, history.PlanetLabInterval)
	}
	if o.machineMHz != 0 || o.machineMB != 0 {
		return nil, errors.New("-machine-mhz and -machine-mem are for -format perfmon")
	}
	var r io.Reader = bytes.NewReader(sample)
	if o.trace != "" {
		f, err := os.Open(o.trace)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var series []history.Series
	for s, err := range history.ReadPlanetLabTar(r) {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmpOr(o.trace, "the sample"), err)
		}
		series = append(series, s)
	}
	if len(series) == 0 {
		return nil, errors.New("no traces in " + cmpOr(o.trace, "the sample"))
	}
	l := &loaded{unit: "MIPS", hostCPU: cmpOrF(o.hostCPU, hostMIPS), hostMem: cmpOrF(o.hostMem, unlimitedMem)}
	block := (len(series) + 3) / 4
	for i, s := range series {
		l.machines = append(l.machines, consolidate.Machine{ID: s.ID, CPU: vmMIPS[i/block], Series: s})
	}
	return l, nil
}

// loadBitbrains reads a Bitbrains trace: a folder, an archive or one file.
func loadBitbrains(o *options) (*loaded, error) {
	if o.trace == "" {
		return nil, errors.New("-format bitbrains needs -trace: a folder, .tar(.gz) or .csv of the trace")
	}
	if o.machineMHz != 0 || o.machineMB != 0 {
		return nil, errors.New("-machine-mhz and -machine-mem are for -format perfmon: the Bitbrains trace gives each machine's size")
	}
	iv := o.interval
	if iv == 0 {
		iv = 5 * time.Minute
	}
	fi, err := os.Stat(o.trace)
	if err != nil {
		return nil, err
	}
	var traces []history.Trace
	switch {
	case fi.IsDir():
		for t, err := range history.ReadBitbrainsDir(o.trace) {
			if err != nil {
				return nil, err
			}
			traces = append(traces, t)
		}
	case strings.HasSuffix(strings.ToLower(o.trace), ".csv"):
		samples, err := history.ReadBitbrainsFile(o.trace)
		if err != nil {
			return nil, err
		}
		traces = append(traces, history.Trace{ID: strings.TrimSuffix(filepath.Base(o.trace), filepath.Ext(o.trace)), Path: o.trace, Samples: samples})
	default:
		f, err := os.Open(o.trace)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		for t, err := range history.ReadBitbrainsTar(f) {
			if err != nil {
				return nil, fmt.Errorf("%s: %w", o.trace, err)
			}
			traces = append(traces, t)
		}
	}
	if len(traces) == 0 {
		return nil, fmt.Errorf("%s: no Bitbrains trace (*.csv) in it", o.trace)
	}
	// One time line: from the earliest sample, in whole intervals of Unix
	// time.
	var start time.Time
	for _, t := range traces {
		for _, s := range t.Samples {
			if start.IsZero() || s.Time.Before(start) {
				start = s.Time
			}
		}
	}
	start = time.Unix(0, 0).UTC().Add(start.Sub(time.Unix(0, 0)).Truncate(iv))
	l := &loaded{unit: "MHz", hostCPU: cmpOrF(o.hostCPU, defaultHostCPU), hostMem: cmpOrF(o.hostMem, defaultHostMem), rankHost: true}
	var series []history.Series
	for _, t := range traces {
		var w history.Warnings
		s, err := history.BitbrainsSeries(t, start, iv, 0, &w)
		if err != nil {
			return nil, err
		}
		l.warn(t.ID, "", &w)
		series = append(series, s)
	}
	series, err = history.Align(series)
	if err != nil {
		return nil, err
	}
	for _, s := range series {
		l.add(s, s.CPUCapacity, s.MemoryCapacity, "the trace reports no CPU capacity")
	}
	return l, nil
}

// loadPerfmon reads a Windows performance log.
func loadPerfmon(o *options) (*loaded, error) {
	if o.trace == "" {
		return nil, errors.New("-format perfmon needs -trace: a typeperf or relog CSV log")
	}
	if o.machineMHz == 0 {
		return nil, errors.New("-format perfmon needs -machine-mhz: the log gives CPU in percent only, the capacity of its machines (cores × MHz) must be given")
	}
	f, err := os.Open(o.trace)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var w history.Warnings
	series, err := history.ReadPerfmonWarnings(f, nil, &w)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.trace, err)
	}
	l := &loaded{unit: "MHz", hostCPU: cmpOrF(o.hostCPU, defaultHostCPU), hostMem: cmpOrF(o.hostMem, defaultHostMem), rankHost: true}
	l.warn(filepath.Base(o.trace), o.trace, &w)
	for _, s := range series {
		if o.interval != 0 {
			if s, err = history.Resample(s, o.interval); err != nil {
				return nil, err
			}
		}
		l.add(s, o.machineMHz, o.machineMB, `the log has no "Processor(_Total)\% Processor Time" counter for it`)
	}
	return l, nil
}

// add adds a machine, or excludes it when it has no CPU to plan on.
func (l *loaded) add(s history.Series, cpu, mem float64, noCPU string) {
	known := false
	for _, v := range s.CPU {
		known = known || !math.IsNaN(v)
	}
	switch {
	case s.CPU == nil:
		l.excluded = append(l.excluded, ExcludedOut{ID: s.ID, Reason: "no CPU history: " + noCPU})
	case !(cpu > 0):
		l.excluded = append(l.excluded, ExcludedOut{ID: s.ID, Reason: noCPU})
	case !known:
		l.excluded = append(l.excluded, ExcludedOut{ID: s.ID, Reason: "no CPU sample in the history"})
	default:
		l.machines = append(l.machines, consolidate.Machine{ID: s.ID, CPU: cpu, Memory: mem, Series: s})
	}
}

// warn records what was skipped for id, if anything; file names the
// input in the reasons that do not.
func (l *loaded) warn(id, file string, w *history.Warnings) {
	if w.Count == 0 {
		return
	}
	out := WarningOut{ID: id, Skipped: w.Count}
	for _, e := range w.First {
		var pe *history.ParseError
		if errors.As(e, &pe) && pe.Path == "" {
			pe.Path = file
		}
		out.First = append(out.First, e.Error())
	}
	l.warnings = append(l.warnings, out)
}

func cmpOr(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return a
	}
	return b
}

func cmpOrF(a, b float64) float64 {
	if a != 0 {
		return a
	}
	return b
}
