// Command consolidate plans the consolidation of machines, given their CPU
// history, onto as few hosts as keep every interval of the history within
// the hosts' CPU.
//
//	go run ./examples/consolidate [-trace PATH] [-format planetlab] [-margin 0.1] [-json]
//
// With -format planetlab (the only format read today; bitbrains and
// perfmon are planned), PATH is a daily archive of the PlanetLab workload
// CloudSim ships (a .tar.gz of one file per VM), and the experiment is set
// up as CloudSim does it: one VM per file, the four VM types (2500, 2000,
// 1000 and 500 MIPS) in blocks over the file names in order, hosts HP
// ProLiant ML110 G5 (2 × 2660 MIPS, SPECpower model for the energy).
// Without -trace it plans the 20-VM sample of 2011-03-03 built into the
// command (third-party data: see placement/history/testdata/planetlab/README.md
// for the source and attribution; cite Beloglazov & Buyya, CCPE
// 24(13):1397–1420, 2012).
//
// It prints the plan: each used host with its machines and peak, then the
// totals, after the machines ranked as candidates; with -json, one JSON
// object instead.
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
	"os"
	"strings"

	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/placement/consolidate"
	"github.com/vmmkit/vmmkit/placement/history"
)

//go:embed planetlab-sample.tar.gz
var sample []byte

// The CloudSim PlanetLab setup.
const hostMIPS = 5320 // HP ProLiant ML110 G5

var vmMIPS = [4]float64{2500, 2000, 1000, 500}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "consolidate:", err)
		os.Exit(1)
	}
}

// Output is the plan as -json prints it.
type Output struct {
	Hosts               []HostOut `json:"hosts"`
	VMs                 []VMOut   `json:"vms"`
	HostsUsed           int       `json:"hosts_used"`
	LowerBound          int       `json:"lower_bound"`
	EnergyKWh           float64   `json:"energy_kwh"`
	OverloadedIntervals int       `json:"overloaded_intervals"`
	Intervals           int       `json:"intervals"`
	Unplaced            []string  `json:"unplaced,omitempty"`
	// Ranked lists every machine as a consolidation candidate, best first
	// (consolidate.Rank); the plan places all of them, as the reference
	// setup does.
	Ranked []RankOut `json:"ranked"`
}

// HostOut is a used host.
type HostOut struct {
	ID   string  `json:"id"`
	CPU  float64 `json:"cpu"`  // capacity, MIPS
	Peak float64 `json:"peak"` // highest summed demand, fraction of cpu
}

// VMOut is a machine and its host ("" when unplaced).
type VMOut struct {
	ID   string  `json:"id"`
	CPU  float64 `json:"cpu"` // capacity, MIPS
	Host string  `json:"host"`
}

// RankOut is one machine's rank.
type RankOut struct {
	ID          string   `json:"id"`
	Score       float64  `json:"score"`
	Consolidate bool     `json:"consolidate"`
	Reasons     []string `json:"reasons"`
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consolidate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	trace := fs.String("trace", "", "trace archive (default: the built-in PlanetLab sample)")
	format := fs.String("format", "planetlab", "trace format: planetlab")
	margin := fs.Float64("margin", 0, "fraction of each host's CPU kept free at every interval")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch *format {
	case "planetlab":
	case "bitbrains", "perfmon":
		return fmt.Errorf("format %q is not supported yet: only planetlab is", *format)
	default:
		return fmt.Errorf("unknown format %q: only planetlab is supported", *format)
	}
	var r io.Reader = bytes.NewReader(sample)
	if *trace != "" {
		f, err := os.Open(*trace)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	var series []history.Series
	for s, err := range history.ReadPlanetLabTar(r) {
		if err != nil {
			return err
		}
		series = append(series, s)
	}
	if len(series) == 0 {
		return errors.New("no traces in " + cmpOr(*trace, "the sample"))
	}
	block := (len(series) + 3) / 4
	machines := make([]consolidate.Machine, len(series))
	for i, s := range series {
		machines[i] = consolidate.Machine{ID: s.ID, CPU: vmMIPS[i/block], Series: s}
	}
	hosts := make([]*placement.Host, len(machines)) // one per VM always suffices
	for i := range hosts {
		hosts[i] = &placement.Host{ID: fmt.Sprintf("host%04d", i+1), Cores: 2,
			Capacity: placement.Vector{placement.CPU: hostMIPS, placement.Memory: 1 << 30}}
	}
	ranked, err := consolidate.Rank(context.Background(), machines, nil)
	if err != nil {
		return err
	}
	res, err := consolidate.Plan(context.Background(), machines, hosts, &consolidate.PlanOptions{Margin: *margin, Power: consolidate.ML110G5Spec})
	if err != nil {
		return err
	}
	out := Output{HostsUsed: res.HostsUsed, LowerBound: res.LowerBound, EnergyKWh: res.EnergyKWh,
		OverloadedIntervals: res.OverloadedIntervals, Intervals: res.Intervals}
	for _, h := range res.Hosts {
		out.Hosts = append(out.Hosts, HostOut{ID: h.ID, CPU: hostMIPS, Peak: h.Peak})
	}
	for _, m := range machines {
		out.VMs = append(out.VMs, VMOut{ID: m.ID, CPU: m.CPU, Host: res.Assignments[m.ID]})
	}
	for _, u := range res.Unplaced {
		out.Unplaced = append(out.Unplaced, u.ID+": "+u.Err.Error())
	}
	for _, c := range ranked {
		out.Ranked = append(out.Ranked, RankOut{ID: c.Machine.ID, Score: c.Score, Consolidate: c.Consolidate, Reasons: c.Reasons})
	}
	if *asJSON {
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
		fmt.Fprintf(stdout, "%s (%d MIPS, peak %.1f %%):\n", h.ID, hostMIPS, 100*h.Peak)
		for _, id := range h.Machines {
			fmt.Fprintf(stdout, "  %-50s %5.0f MIPS\n", id, cpu[id])
		}
	}
	for _, u := range out.Unplaced {
		fmt.Fprintf(stdout, "unplaced: %s\n", u)
	}
	fmt.Fprintf(stdout, "%d VMs on %d hosts (lower bound %d), %d overloaded host-intervals of %d, %.2f kWh\n",
		len(machines), res.HostsUsed, res.LowerBound, res.OverloadedIntervals, res.Intervals, res.EnergyKWh)
	return nil
}

func cmpOr(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return a
	}
	return b
}
