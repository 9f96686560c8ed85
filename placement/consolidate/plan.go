package consolidate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/placement/history"
)

// A PowerModel gives a host's power draw at a CPU utilisation.
type PowerModel interface {
	// Watts returns the draw at util, the fraction of the host's CPU in
	// use (0 to 1; values outside are clamped).
	Watts(util float64) float64
}

// Linear is a power model linear in CPU utilisation: Idle watts at 0 %,
// Max at 100 %.
type Linear struct {
	Idle, Max float64
}

// Watts implements PowerModel.
func (l Linear) Watts(util float64) float64 {
	u := clamp01(util)
	return l.Idle + (l.Max-l.Idle)*u
}

// Table is a power model given in watts at 0, 10, …, 100 % CPU
// utilisation, as SPECpower_ssj2008 reports servers, linearly interpolated
// in between. (An array type rather than a struct with a Watts field: the
// field would clash with the method.)
type Table [11]float64

// Watts implements PowerModel.
func (t Table) Watts(util float64) float64 {
	u := clamp01(util) * 10
	i := int(u)
	if i >= 10 {
		return t[10]
	}
	f := u - float64(i)
	return t[i] + (t[i+1]-t[i])*f
}

func clamp01(x float64) float64 {
	if math.IsNaN(x) || x < 0 {
		return 0
	}
	return min(x, 1)
}

// The hosts of the CloudSim PlanetLab experiments. The Table values are the
// SPECpower tables CloudSim uses (PowerModelSpecPowerHpProLiantMl110G4Xeon3040
// and PowerModelSpecPowerHpProLiantMl110G5Xeon3075); the Linear values are
// straight lines between their idle and full-load figures, which
// overestimate the draw at middle loads by up to 4 W (G4) and 3.5 W (G5).
var (
	// HP ProLiant ML110 G4 (Xeon 3040, 2 × 1860 MHz): 86 W idle, 117 W full.
	ML110G4 = Linear{Idle: 86, Max: 117}
	// HP ProLiant ML110 G5 (Xeon 3075, 2 × 2660 MHz): 93.7 W idle, 135 W full.
	ML110G5 = Linear{Idle: 93.7, Max: 135}

	ML110G4Spec = Table{86, 89.4, 92.6, 96, 99.5, 102, 106, 108, 112, 114, 117}
	ML110G5Spec = Table{93.7, 97, 101, 105, 110, 116, 121, 125, 129, 133, 135}
)

// PlanOptions tune Plan. The zero value (or nil) means no margin, no
// energy figure and a consolidating Placer.
type PlanOptions struct {
	// Margin is the fraction of every host's CPU kept free at every
	// interval of the history (0.1 = 10 %), from 0 up to but not
	// including 1. It becomes the hosts' Reserve[CPU] (or stays the
	// host's own reserve, when that is larger).
	Margin float64
	// Power, when set, gives EnergyKWh.
	Power PowerModel
	// Placer packs the VMs; nil means placement.New(placement.Config{Goal:
	// placement.Consolidate}).
	Placer *placement.Placer
	// Strategy is the placement strategy (best fit by default).
	Strategy placement.Strategy
}

// Unplaced is a machine no host can take, and why.
type Unplaced struct {
	ID  string
	Err error // matches placement.ErrRejected
}

// HostUse is one used host of a plan, as the replay of the histories sees
// it.
type HostUse struct {
	ID       string
	Machines []string // the machines it runs, by ID
	// Peak is the highest summed CPU demand over the history, as a
	// fraction of the host's CPU capacity.
	Peak float64
	// Overloaded counts the intervals in which the summed demand exceeds
	// the host's CPU capacity.
	Overloaded int
	EnergyKWh  float64
}

// Result is what Plan proposes and what replaying the histories on it
// shows.
type Result struct {
	// Assignments maps machine ID to host ID.
	Assignments map[string]string
	// HostsUsed counts the hosts that run at least one machine (or ran VMs
	// before).
	HostsUsed int
	// Hosts lists the used hosts by ID, with their peak, overload and
	// energy.
	Hosts []HostUse
	// OverloadedIntervals counts, over all hosts, the intervals in which a
	// host's summed demand exceeds its CPU capacity (host-intervals).
	OverloadedIntervals int
	// Intervals is the length of the history.
	Intervals int
	// EnergyKWh is the energy of the used hosts over the history: for each
	// host and interval, the power model's draw at the host's
	// utilisation (capped at 1) times the interval. Zero without a power
	// model or an interval.
	EnergyKWh float64
	// LowerBound is the fewest hosts any plan needs without overload: the
	// fewest of the given hosts (most room first) whose room covers the
	// highest total demand over time, a host's room being its CPU less its
	// reserve or the Margin and less the least it uses itself.
	LowerBound int
	// Unplaced lists the machines no host can take, in the order given.
	Unplaced []Unplaced
	// Plan is the placement plan.
	Plan *placement.Plan
}

// ErrNoSeries reports a machine without a CPU history.
var ErrNoSeries = errors.New("consolidate: machine has no CPU series")

// Plan proposes which host each machine should run on as a VM so that few
// hosts are used and none is overloaded over the machines' history.
//
// A machine's demand at interval t is Series.CPU[t]/100 × its CPU capacity
// (Machine.CPU, else Series.CPUCapacity); a missing sample (NaN) counts as
// the machine's highest known demand. Each machine becomes a placement.VM
// with that demand as its History.Series (P95, Peak and Mean from it) and
// Machine.Memory as memory; opts.Margin is kept free on every host as its
// Reserve[CPU]. All machines must share one time line (the same number of
// samples); the hosts are not modified.
//
// The plan is then replayed: for each used host, the summed demand of its
// machines (and of what it ran before: UsedSeries, else Used) at each
// interval gives its peak, its overloaded intervals and its energy.
func Plan(ctx context.Context, machines []Machine, hosts []*placement.Host, opts *PlanOptions) (*Result, error) {
	var o PlanOptions
	if opts != nil {
		o = *opts
	}
	if !(o.Margin >= 0 && o.Margin < 1) {
		return nil, fmt.Errorf("consolidate: margin %v is not in [0, 1)", o.Margin)
	}
	if len(hosts) == 0 {
		return nil, placement.ErrNoHosts
	}
	p := o.Placer
	if p == nil {
		var err error
		if p, err = placement.New(placement.Config{Goal: placement.Consolidate}); err != nil {
			return nil, err
		}
	}
	vms, demand, interval, err := machineVMs(machines)
	if err != nil {
		return nil, err
	}
	hs := make([]*placement.Host, len(hosts))
	for i, h := range hosts {
		if h == nil {
			return nil, fmt.Errorf("consolidate: host %d is nil", i)
		}
		c := *h
		c.Reserve[placement.CPU] = max(c.Reserve[placement.CPU], o.Margin)
		hs[i] = &c
	}
	plan, err := p.Place(ctx, vms, hs, &placement.PlaceOptions{Strategy: o.Strategy})
	if err != nil {
		return nil, err
	}
	res := &Result{Assignments: make(map[string]string, len(plan.Assignments)), HostsUsed: plan.HostsUsed, Plan: plan}
	n := 0
	if len(demand) > 0 {
		n = len(demand[0])
	}
	res.Intervals = n
	res.LowerBound = lowerBound(demand, hs, n)
	for _, u := range plan.Unplaced {
		res.Unplaced = append(res.Unplaced, Unplaced{ID: u.VM.ID, Err: u.Err})
	}
	index := make(map[string]int, len(machines))
	for i, m := range machines {
		index[m.ID] = i
	}
	byHost := map[*placement.Host][]int{}
	for _, a := range plan.Assignments {
		res.Assignments[a.VM.ID] = a.Host.ID
		byHost[a.Host] = append(byHost[a.Host], index[a.VM.ID])
	}
	hrs := interval.Hours()
	for i, h := range hs {
		ms := byHost[h]
		if len(ms) == 0 && len(h.VMs) == 0 {
			continue
		}
		u := HostUse{ID: h.ID}
		for _, k := range ms {
			u.Machines = append(u.Machines, machines[k].ID)
		}
		slices.Sort(u.Machines)
		capa := hosts[i].Capacity[placement.CPU]
		for t := range n {
			if t%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
			}
			sum := h.Used[placement.CPU]
			if t < len(h.UsedSeries) {
				sum = h.UsedSeries[t][placement.CPU]
			}
			for _, k := range ms {
				sum += demand[k][t]
			}
			util := sum / capa
			if capa == 0 {
				// A host without CPU that runs VMs: overloaded by
				// any demand, never a NaN.
				util = 0
				if sum > 0 {
					util = math.Inf(1)
				}
			}
			u.Peak = max(u.Peak, util)
			// Place checks the same sums in another order: a rounding
			// error is not an overload.
			if sum > capa*(1+1e-9) {
				u.Overloaded++
			}
			if o.Power != nil && hrs > 0 {
				u.EnergyKWh += o.Power.Watts(util) * hrs / 1000
			}
		}
		res.OverloadedIntervals += u.Overloaded
		res.EnergyKWh += u.EnergyKWh
		res.Hosts = append(res.Hosts, u)
	}
	slices.SortFunc(res.Hosts, func(a, b HostUse) int { return cmp.Compare(a.ID, b.ID) })
	return res, nil
}

// machineVMs turns machines into VMs with their demand series, and
// returns the demand per machine and interval and the common interval.
func machineVMs(machines []Machine) ([]*placement.VM, [][]float64, time.Duration, error) {
	vms := make([]*placement.VM, len(machines))
	demand := make([][]float64, len(machines))
	var interval time.Duration
	n, first := -1, ""
	for i, m := range machines {
		capa := m.CPU
		if capa == 0 {
			capa = m.Series.CPUCapacity
		}
		if !(capa > 0) || math.IsInf(capa, 0) {
			return nil, nil, 0, fmt.Errorf("consolidate: machine %s: CPU capacity %v must be above zero and finite", m.ID, capa)
		}
		if !(m.Memory >= 0) || math.IsInf(m.Memory, 0) {
			return nil, nil, 0, fmt.Errorf("consolidate: machine %s: memory %v must be finite and not negative", m.ID, m.Memory)
		}
		if len(m.Series.CPU) == 0 {
			return nil, nil, 0, fmt.Errorf("%w: %s", ErrNoSeries, m.ID)
		}
		if n >= 0 && len(m.Series.CPU) != n {
			return nil, nil, 0, fmt.Errorf("consolidate: machine %s has %d samples, machine %s %d: histories must share one time line", m.ID, len(m.Series.CPU), first, n)
		}
		if n < 0 {
			n, first = len(m.Series.CPU), m.ID
		}
		if interval == 0 {
			interval = m.Series.Interval
		} else if m.Series.Interval != 0 && m.Series.Interval != interval {
			return nil, nil, 0, fmt.Errorf("consolidate: machine %s is sampled every %v, machine %s every %v: histories must share one time line (resample them first)", m.ID, m.Series.Interval, first, interval)
		}
		d := make([]float64, n)
		peak, known := 0.0, false
		for t, pct := range m.Series.CPU {
			if math.IsNaN(pct) {
				continue
			}
			if pct < 0 || math.IsInf(pct, 0) {
				return nil, nil, 0, fmt.Errorf("consolidate: machine %s: sample %d is %v %%", m.ID, t, pct)
			}
			d[t] = pct / 100 * capa
			peak, known = max(peak, d[t]), true
		}
		if !known {
			return nil, nil, 0, fmt.Errorf("%w: %s has no sample that is a number", ErrNoSeries, m.ID)
		}
		series := make([]placement.Vector, n)
		sum := 0.0
		for t, pct := range m.Series.CPU {
			if math.IsNaN(pct) {
				d[t] = peak
			}
			series[t][placement.CPU] = d[t]
			sum += d[t]
		}
		sorted := slices.Clone(d)
		slices.Sort(sorted)
		prof := &placement.Profile{Series: series}
		prof.Mean[placement.CPU] = sum / float64(n)
		prof.P95[placement.CPU] = history.PercentileSorted(sorted, 95)
		prof.Peak[placement.CPU] = peak
		vms[i] = &placement.VM{ID: m.ID, Memory: m.Memory, History: prof}
		demand[i] = d
	}
	return vms, demand, interval, nil
}

// lowerBound returns the fewest hosts, most room first, whose room
// covers the highest total demand at any interval. A host's room is its CPU
// less its reserve (the Margin included) less the least it uses itself over
// the history (Used, or the lowest of UsedSeries): the most it could give
// the machines at any interval, so that the count is a true lower bound.
func lowerBound(demand [][]float64, hosts []*placement.Host, n int) int {
	need := 0.0
	for t := range n {
		s := 0.0
		for _, d := range demand {
			s += d[t]
		}
		need = max(need, s)
	}
	if need == 0 {
		return 0
	}
	rooms := make([]float64, 0, len(hosts))
	for _, h := range hosts {
		used := h.Used[placement.CPU]
		if len(h.UsedSeries) > 0 {
			used = math.Inf(1)
			for _, v := range h.UsedSeries {
				used = min(used, v[placement.CPU])
			}
		}
		room := h.Capacity[placement.CPU]*(1-h.Reserve[placement.CPU]) - used
		rooms = append(rooms, max(room, 0))
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(rooms)))
	got := 0.0
	for i, c := range rooms {
		got += c
		if got >= need*(1-1e-12) {
			return i + 1
		}
	}
	return len(rooms) + 1 // more than all the hosts: some machines cannot be placed
}
