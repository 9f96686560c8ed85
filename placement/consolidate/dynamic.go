package consolidate

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/vmmkit/vmmkit/placement"
)

// Dynamic is vmmkit's dynamic consolidation policy: it keeps every host
// safe against the next interval by replaying, from the VMs' current
// demand, the joint changes they made in the recent past, and places VMs
// with a placement.Placer in series mode over those scenarios.
//
// After each sample, each VM's scenarios are its current demand and its
// current demand plus each of its last Window one-interval changes (×
// Safety, within 0 and its capacity). Because scenario k of every VM is the
// change all of them made in the same past interval, a host's scenario sums
// keep the correlation between its VMs: VMs that rose together count
// together, VMs that moved apart offset each other. Then:
//
//   - a host whose scenario sums exceed its CPU × Fill is relieved: the VMs
//     that lower its worst scenario most go, fewest moves first, to hosts
//     where the scenario sums stay within CPU × Fill (best fit by the least
//     rise of the host's worst scenario; a host that is off, the most
//     energy-efficient first, only when no running host can take them);
//   - then hosts are emptied, least loaded first, when all their VMs fit on
//     other running hosts within CPU × Drain (below Fill, so that a host
//     filled by emptying another is not relieved at once), and turned off.
//
// Until a VM has MinHistory changes, its scenarios also include the rise
// to Prior of its capacity, so that the first intervals, with little
// history, are not packed blind. Before the first sample every VM is placed
// at its full capacity, as CloudSim creates them.
type Dynamic struct {
	// Window is how many past changes form the scenarios; 0 means 288
	// (a day of 5-minute samples). Longer windows see rarer jumps and
	// keep more headroom.
	Window int
	// Safety multiplies the changes; 0 means 1.
	Safety float64
	// Fill is the fraction of a host's CPU the scenarios may reach; 0
	// means 1.
	Fill float64
	// Drain is the fraction of a host's CPU the scenarios may reach on a
	// host that takes the VMs of a host being emptied; 0 means Fill −
	// 0.15. It is the main knob between energy and SLA: on the PlanetLab
	// days, 0.9 saves about 3 % of the energy and raises SLATAH from about
	// 0.7 % to 1.1 % (BENCHMARKS.md).
	Drain float64
	// MinHistory is how many changes a VM needs before the prior is
	// dropped; 0 means 6. Prior is the fraction of a VM's capacity it may
	// rise to meanwhile; 0 means 0.5.
	MinHistory int
	Prior      float64
	// MaxDrainFailures stops the emptying after so many hosts in a row
	// could not be emptied; 0 means every host is tried.
	MaxDrainFailures int
	// Placer places the VMs that move; nil means a consolidating Placer.
	Placer *placement.Placer

	// oracle, when set, replaces the scenarios with the demand the VM will
	// have in the next interval: the benchmark's bound of what perfect
	// prediction would give, never a policy.
	oracle func(v, t int) float64
}

// dynRound is one decision of Dynamic.
type dynRound struct {
	s      *SimState
	d      *Dynamic
	k      int         // scenarios per VM
	sc     [][]float64 // per VM: its scenarios (nil until needed)
	sum    [][]float64 // per host: the scenario sums of its VMs now
	vms    [][]int     // per host: its VMs now
	moves  map[int]int // VM -> host, this round
	placer *placement.Placer
}

func (d *Dynamic) params() (window int, safety, fill, drain float64, minHist int, prior float64) {
	window, safety, fill, drain = d.Window, d.Safety, d.Fill, d.Drain
	minHist, prior = d.MinHistory, d.Prior
	if window == 0 {
		window = 288
	}
	if safety == 0 {
		safety = 1
	}
	if fill == 0 {
		fill = 1
	}
	if drain == 0 {
		drain = fill - 0.15
	}
	if minHist == 0 {
		minHist = 6
	}
	if prior == 0 {
		prior = 0.5
	}
	return
}

// Decide implements Policy.
func (d *Dynamic) Decide(ctx context.Context, s *SimState) ([]Migration, error) {
	window, safety, fill, drain, minHist, prior := d.params()
	if window < 1 || !(safety > 0) || !(fill > 0 && fill <= 1) || !(drain > 0 && drain <= fill) || minHist < 0 || !(prior >= 0 && prior <= 1) {
		return nil, fmt.Errorf("consolidate: Dynamic: parameters out of range: window %d, safety %v, fill %v, drain %v, min history %d, prior %v", window, safety, fill, drain, minHist, prior)
	}
	p := d.Placer
	if p == nil {
		var err error
		if p, err = placement.New(placement.Config{Goal: placement.Consolidate}); err != nil {
			return nil, err
		}
	}
	t := s.Step()
	if t < 0 {
		return d.initial(ctx, s)
	}
	changes := min(t, window)
	r := &dynRound{s: s, d: d, placer: p, moves: map[int]int{}}
	r.k = 1 + changes
	usePrior := changes < minHist
	if usePrior {
		r.k++
	}
	if d.oracle != nil {
		r.k, changes, usePrior = 1, 0, false
	}
	r.sc = make([][]float64, s.NumVMs())
	for v := range r.sc {
		dem := s.Demand(v)
		c := s.VMCPU(v)
		level := dem[t]
		if d.oracle != nil {
			level = d.oracle(v, t+1)
		}
		x := make([]float64, r.k)
		x[0] = level
		for j := 1; j <= changes; j++ {
			x[j] = min(max(level+safety*(dem[t-j+1]-dem[t-j]), 0), c)
		}
		if usePrior {
			x[r.k-1] = max(level, prior*c)
		}
		r.sc[v] = x
	}
	r.sum = make([][]float64, s.NumHosts())
	r.vms = make([][]int, s.NumHosts())
	for h := range s.NumHosts() {
		r.vms[h] = slices.Clone(s.VMsOn(h))
		if len(r.vms[h]) == 0 {
			continue
		}
		r.sum[h] = make([]float64, r.k)
		for _, v := range r.vms[h] {
			for j, x := range r.sc[v] {
				r.sum[h][j] += x
			}
		}
	}

	// Relieve the hosts at risk.
	noGive := map[int]bool{}
	var leaving []int
	from := map[int]int{}
	for h := range s.NumHosts() {
		if r.sum[h] == nil || slices.Max(r.sum[h]) <= s.Host(h).CPU*fill {
			continue
		}
		noGive[h] = true
		for len(r.vms[h]) > 1 && slices.Max(r.sum[h]) > s.Host(h).CPU*fill {
			v := r.relief(h, fill)
			r.take(v, h)
			leaving = append(leaving, v)
			from[v] = h
		}
	}
	if len(leaving) > 0 {
		placed, err := r.place(ctx, leaving, fill, noGive, true)
		if err != nil {
			return nil, err
		}
		for _, v := range leaving {
			h, ok := placed[v]
			if !ok {
				h = from[v] // nowhere to go: it stays
			}
			r.put(v, h)
			noGive[h] = true
		}
	}

	// Empty the least loaded hosts.
	type cand struct {
		h    int
		load float64
	}
	var cs []cand
	for h := range s.NumHosts() {
		if len(r.vms[h]) > 0 && !noGive[h] {
			cs = append(cs, cand{h, r.sum[h][0] / s.Host(h).CPU})
		}
	}
	slices.SortFunc(cs, func(a, b cand) int { return cmp.Or(cmp.Compare(a.load, b.load), cmp.Compare(a.h, b.h)) })
	noTake := map[int]bool{}
	fails := 0
	for _, c := range cs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if noGive[c.h] {
			continue
		}
		noTake[c.h] = true
		if !r.roomFor(c.h, drain, noTake) {
			delete(noTake, c.h)
			if fails++; d.MaxDrainFailures > 0 && fails >= d.MaxDrainFailures {
				break
			}
			continue
		}
		vs := slices.Clone(r.vms[c.h])
		placed, err := r.place(ctx, vs, drain, noTake, false)
		if err != nil {
			return nil, err
		}
		if len(placed) < len(vs) {
			delete(noTake, c.h)
			if fails++; d.MaxDrainFailures > 0 && fails >= d.MaxDrainFailures {
				break
			}
			continue
		}
		fails = 0
		for _, v := range vs {
			r.take(v, c.h)
			r.put(v, placed[v])
			noGive[placed[v]] = true
		}
	}

	out := make([]Migration, 0, len(r.moves))
	for v, h := range r.moves {
		if h != s.HostOf(v) {
			out = append(out, Migration{VM: v, To: h})
		}
	}
	slices.SortFunc(out, func(a, b Migration) int { return cmp.Compare(a.VM, b.VM) })
	return out, nil
}

// relief returns the VM of host h to move: among the VMs whose leaving
// alone brings the host within fill, the one with the least memory (the
// shortest migration); when none does, the one that lowers the host's
// worst scenario most.
func (r *dynRound) relief(h int, fill float64) int {
	limit := r.s.Host(h).CPU * fill
	best, bestMem := -1, math.Inf(1)
	bestCut, cutV := math.Inf(1), -1
	for _, v := range r.vms[h] {
		worst := 0.0
		for j, x := range r.sum[h] {
			worst = max(worst, x-r.sc[v][j])
		}
		if worst <= limit && r.s.VMMemory(v) < bestMem {
			best, bestMem = v, r.s.VMMemory(v)
		}
		if worst < bestCut {
			bestCut, cutV = worst, v
		}
	}
	if best >= 0 {
		return best
	}
	return cutV
}

// roomFor reports whether the running hosts other than u and those
// excluded have, in every scenario, the room host u's VMs need within fill:
// a necessary condition for emptying u, cheaper than asking the Placer.
func (r *dynRound) roomFor(u int, fill float64, excluded map[int]bool) bool {
	room := make([]float64, r.k)
	for h, sum := range r.sum {
		if h == u || sum == nil || excluded[h] {
			continue
		}
		limit := r.s.Host(h).CPU * fill
		if slices.Max(sum) > limit {
			continue // it can take nothing
		}
		for j, x := range sum {
			room[j] += limit - x
		}
	}
	for j, x := range r.sum[u] {
		if x > room[j] {
			return false
		}
	}
	return true
}

func (r *dynRound) take(v, h int) {
	if i := slices.Index(r.vms[h], v); i >= 0 {
		r.vms[h] = slices.Delete(r.vms[h], i, i+1)
		for j, x := range r.sc[v] {
			r.sum[h][j] -= x
		}
		if len(r.vms[h]) == 0 {
			r.sum[h] = nil
		}
	}
}

func (r *dynRound) put(v, h int) {
	r.vms[h] = append(r.vms[h], v)
	if r.sum[h] == nil {
		r.sum[h] = make([]float64, r.k)
	}
	for j, x := range r.sc[v] {
		r.sum[h][j] += x
	}
	r.moves[v] = h
}

// place asks the Placer where the VMs go, within fill of each host's CPU,
// on the running hosts not excluded and, when wake is set, on hosts that
// are off. It returns the hosts of the VMs it placed.
func (r *dynRound) place(ctx context.Context, vs []int, fill float64, excluded map[int]bool, wake bool) (map[int]int, error) {
	s := r.s
	vms := make([]*placement.VM, len(vs))
	byID := make(map[string]int, len(vs))
	for i, v := range vs {
		series := make([]placement.Vector, r.k)
		for j, x := range r.sc[v] {
			series[j][placement.CPU] = x
		}
		prof := &placement.Profile{Series: series}
		prof.Peak[placement.CPU] = slices.Max(r.sc[v])
		prof.P95[placement.CPU] = prof.Peak[placement.CPU]
		prof.Mean[placement.CPU] = r.sc[v][0]
		id := strconv.Itoa(v)
		vms[i] = &placement.VM{ID: id, Memory: s.VMMemory(v), History: prof}
		byID[id] = v
	}
	var hosts []*placement.Host
	index := map[*placement.Host]int{}
	add := func(h int) {
		sh := s.Host(h)
		ph := &placement.Host{ID: fmt.Sprintf("%08d", h), Cores: 1}
		ph.Capacity[placement.CPU] = sh.CPU
		ph.Capacity[placement.Memory] = sh.Memory
		if sh.Memory == 0 {
			ph.Capacity[placement.Memory] = math.MaxFloat32
		}
		ph.Reserve[placement.CPU] = 1 - fill
		if r.sum[h] != nil {
			ph.UsedSeries = make([]placement.Vector, r.k)
			for j, x := range r.sum[h] {
				ph.UsedSeries[j][placement.CPU] = x
			}
			ph.Used[placement.CPU] = r.sum[h][0]
			for _, v := range r.vms[h] {
				ph.Used[placement.Memory] += s.VMMemory(v)
				ph.VMs = append(ph.VMs, strconv.Itoa(v))
			}
		}
		hosts = append(hosts, ph)
		index[ph] = h
	}
	var off []int
	for h := range s.NumHosts() {
		switch {
		case excluded[h]:
		case len(r.vms[h]) > 0:
			if slices.Max(r.sum[h]) <= s.Host(h).CPU*fill {
				add(h) // else it can take nothing
			}
		case wake:
			off = append(off, h)
		}
	}
	if wake {
		// The most efficient hosts that are off, enough for the VMs at
		// their worst.
		slices.SortStableFunc(off, func(a, b int) int { return cmp.Compare(wattsPerCPU(s.Host(a)), wattsPerCPU(s.Host(b))) })
		need := 0.0
		for _, v := range vs {
			need += slices.Max(r.sc[v])
		}
		for _, h := range off {
			if need <= 0 {
				break
			}
			add(h)
			need -= s.Host(h).CPU * fill
		}
	}
	if len(hosts) == 0 {
		return map[int]int{}, nil
	}
	plan, err := r.placer.Place(ctx, vms, hosts, &placement.PlaceOptions{NoImprove: true})
	if err != nil {
		return nil, err
	}
	out := make(map[int]int, len(plan.Assignments))
	for _, a := range plan.Assignments {
		out[byID[a.VM.ID]] = index[a.Host]
	}
	return out, nil
}

// wattsPerCPU is a host's draw at full load per unit of CPU.
func wattsPerCPU(h SimHost) float64 {
	if h.Power == nil {
		return 0
	}
	return h.Power.Watts(1) / h.CPU
}

// initial places every VM at its full capacity, first fit decreasing on
// the most efficient hosts first.
func (d *Dynamic) initial(ctx context.Context, s *SimState) ([]Migration, error) {
	order := make([]int, s.NumHosts())
	for h := range order {
		order[h] = h
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(wattsPerCPU(s.Host(a)), wattsPerCPU(s.Host(b))) })
	vs := make([]int, s.NumVMs())
	for v := range vs {
		vs[v] = v
	}
	slices.SortStableFunc(vs, func(a, b int) int { return cmp.Compare(s.VMCPU(b), s.VMCPU(a)) })
	free := make([]float64, s.NumHosts())
	mem := make([]float64, s.NumHosts())
	for h := range free {
		free[h] = s.Host(h).CPU
		mem[h] = s.Host(h).Memory
	}
	out := make([]Migration, 0, len(vs))
	for _, v := range vs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		to := -1
		for _, h := range order {
			if free[h] >= s.VMCPU(v) && (s.Host(h).Memory == 0 || mem[h] >= s.VMMemory(v)) {
				to = h
				break
			}
		}
		if to < 0 {
			return nil, &PolicyError{Step: -1, Msg: "Dynamic: VM " + s.VMID(v) + " fits on no host at its capacity"}
		}
		free[to] -= s.VMCPU(v)
		mem[to] -= s.VMMemory(v)
		out = append(out, Migration{VM: v, To: to})
	}
	return out, nil
}
