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
