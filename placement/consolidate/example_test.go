package consolidate_test

import (
	"context"
	"fmt"
	"time"

	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/placement/consolidate"
	"github.com/vmmkit/vmmkit/placement/history"
)

// Three machines measured every hour for four hours: the web and batch
// servers peak at different times and share a host; the database is busy
// throughout and gets its own.
func ExamplePlan() {
	machine := func(id string, mhz float64, pct ...float64) consolidate.Machine {
		return consolidate.Machine{ID: id, CPU: mhz, Memory: 4096,
			Series: history.Series{ID: id, Interval: time.Hour, CPU: pct}}
	}
	machines := []consolidate.Machine{
		machine("web", 4000, 80, 70, 20, 10),
		machine("batch", 4000, 10, 20, 80, 90),
		machine("db", 4000, 60, 60, 60, 60),
	}
	var hosts []*placement.Host
	for _, id := range []string{"h1", "h2", "h3"} {
		hosts = append(hosts, &placement.Host{ID: id, Cores: 2,
			Capacity: placement.Vector{placement.CPU: 5320, placement.Memory: 16384}})
	}
	res, err := consolidate.Plan(context.Background(), machines, hosts,
		&consolidate.PlanOptions{Margin: 0.1, Power: consolidate.ML110G5Spec})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, h := range res.Hosts {
		fmt.Printf("%s: %v, peak %.0f %%\n", h.ID, h.Machines, 100*h.Peak)
	}
	fmt.Printf("%d hosts (at least %d), %d overloaded intervals, %.2f kWh\n",
		res.HostsUsed, res.LowerBound, res.OverloadedIntervals, res.EnergyKWh)
	// Output:
	// h1: [batch web], peak 75 %
	// h2: [db], peak 45 %
	// 2 hosts (at least 2), 0 overloaded intervals, 0.95 kWh
}

// Rank the machines first, then plan only the ones worth consolidating.
func Example_rankThenPlan() {
	hourly := func(id string, pct ...float64) consolidate.Machine {
		var cpu []float64
		for range 6 { // a day in 4-hour samples, the same pattern each time
			cpu = append(cpu, pct...)
		}
		return consolidate.Machine{ID: id, CPU: 4000, Memory: 4096,
			Series: history.Series{ID: id, Interval: 4 * time.Hour, CPU: cpu}}
	}
	machines := []consolidate.Machine{
		hourly("file", 5, 6, 5, 4),   // idle and steady
		hourly("web", 10, 40, 15, 8), // light, with a daily peak
		hourly("erp", 75, 80, 70, 85),
	}
	ranked, err := consolidate.Rank(context.Background(), machines, &consolidate.RankOptions{MinSamples: 12})
	if err != nil {
		fmt.Println(err)
		return
	}
	var chosen []consolidate.Machine
	for _, c := range ranked {
		fmt.Printf("%s: consolidate %v, score %.2f\n", c.Machine.ID, c.Consolidate, c.Score)
		if c.Consolidate {
			chosen = append(chosen, *c.Machine)
		}
	}
	hosts := []*placement.Host{{ID: "h1", Cores: 2, Capacity: placement.Vector{placement.CPU: 5320, placement.Memory: 16384}}}
	res, err := consolidate.Plan(context.Background(), chosen, hosts, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d host for %d machines, %d overloaded intervals\n", res.HostsUsed, len(chosen), res.OverloadedIntervals)
	// Output:
	// file: consolidate true, score 0.94
	// web: consolidate true, score 0.61
	// erp: consolidate false, score 0.16
	// 1 host for 2 machines, 0 overloaded intervals
}
