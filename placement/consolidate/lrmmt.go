package consolidate

import (
	"cmp"
	"context"
	"math"
	"slices"
)

// LRMMT is the dynamic consolidation policy LR-MMT of Beloglazov & Buyya
// (CCPE 24(13), 2012) as CloudSim 3.0.3 implements it, the reference the
// published PlanetLab results come from, as a baseline for other policies
// in Simulate's model. On the ten PlanetLab days it draws the published
// energy (168 kWh a day against 165) but migrates and overloads more
// (80 k migrations and 9.3 % SLATAH against 28.8 k and 6.2 %): CloudSim
// also keeps a VM off a host whose single core is slower than the VM's
// demand, interpolates demand between samples, and counts a host at 0 %
// as off.
//
// After each sample: a host is overloaded when the local regression of its
// last 10 utilisation values (the utilisation its current VMs had),
// extrapolated past the longest migration of its VMs and multiplied by
// Safety, reaches 1 (with fewer than 10 values: when its utilisation is
// above 0.7); the VMs with the least memory leave it (Minimum Migration
// Time) until it is not; they go, largest demand first, to the host whose
// power rises least and which is not overloaded after (power-aware best
// fit decreasing); then, from the least loaded host up, every host whose
// VMs can all go to other active hosts that way is emptied and off.
type LRMMT struct {
	// Safety is the regression's safety parameter; zero means 1.2.
	Safety float64

	sec float64 // interval, seconds
}

// lrHistory is how many samples the regression reads, and the VMs keep
// (CloudSim's PowerVm.HISTORY_LENGTH is 30; the regression reads 10).
const lrHistory = 10

// lrState is LRMMT's view of one decision round.
type lrState struct {
	s      *SimState
	p      *LRMMT
	alloc  []float64            // per host: demand of the VMs on it now (MIPS)
	vms    [][]int              // per host: VMs on it now
	hist   [][lrHistory]float64 // per host: its VMs' last demands (MIPS), oldest first
	mig    []float64            // per host: its VMs' longest migration, seconds
	n      int                  // history length, up to lrHistory
	moves  []Migration
	safety float64
}

// Decide implements Policy.
func (p *LRMMT) Decide(ctx context.Context, s *SimState) ([]Migration, error) {
	safety := p.Safety
	if safety == 0 {
		safety = 1.2
	}
	p.sec = s.Interval().Seconds()
	ls := &lrState{s: s, p: p, safety: safety, alloc: make([]float64, s.NumHosts()), vms: make([][]int, s.NumHosts()),
		hist: make([][lrHistory]float64, s.NumHosts()), mig: make([]float64, s.NumHosts()), n: min(s.Step()+1, lrHistory)}
	for h := range s.NumHosts() {
		ls.vms[h] = slices.Clone(s.VMsOn(h))
		ls.alloc[h] = s.Load(h)
		for _, v := range ls.vms[h] {
			ls.addHist(h, v, 1)
		}
	}
	if s.Step() < 0 {
		// CloudSim creates the VMs at their full MIPS, by PABFD.
		order := make([]int, s.NumVMs())
		for v := range order {
			order[v] = v
		}
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(s.VMCPU(b), s.VMCPU(a)) })
		for _, v := range order {
			h := ls.find(v, s.VMCPU(v), nil)
			if h < 0 {
				return nil, &PolicyError{Step: -1, Msg: "LR-MMT: VM " + s.VMID(v) + " fits on no host"}
			}
			ls.put(v, h, s.VMCPU(v))
		}
		return ls.moves, nil
	}
	t := s.Step()
	cur := func(v int) float64 { return s.Demand(v)[t] }

	// Overloaded hosts and the VMs that leave them.
	excluded := map[int]bool{}
	var leaving []int
	for h := range s.NumHosts() {
		if len(ls.vms[h]) == 0 || !ls.overloaded(h, -1) {
			continue
		}
		excluded[h] = true
		for len(ls.vms[h]) > 0 {
			v := slices.MinFunc(ls.vms[h], func(a, b int) int { return cmp.Compare(s.VMMemory(a), s.VMMemory(b)) })
			ls.take(v, h, cur(v))
			leaving = append(leaving, v)
			if !ls.overloaded(h, -1) {
				break
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(leaving, func(a, b int) int { return cmp.Compare(cur(b), cur(a)) })
	for _, v := range leaving {
		h := ls.find(v, cur(v), excluded)
		if h < 0 {
			// Nowhere to go: it stays (CloudSim leaves it unmigrated).
			h = s.HostOf(v)
		}
		ls.put(v, h, cur(v))
	}

	// Underloaded hosts, least loaded first. Hosts off (no VMs) and
	// overloaded ones neither give nor take; hosts that take VMs this
	// round are not emptied.
	noTake := maps(excluded)
	noGive := maps(excluded)
	for h := range s.NumHosts() {
		if ls.alloc[h] == 0 {
			noTake[h], noGive[h] = true, true
		}
	}
	for _, m := range ls.moves {
		noGive[m.To] = true
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		u := -1
		for h := range s.NumHosts() {
			if noGive[h] || ls.alloc[h] <= 0 {
				continue
			}
			if u < 0 || ls.alloc[h]/s.Host(h).CPU < ls.alloc[u]/s.Host(u).CPU {
				u = h
			}
		}
		if u < 0 {
			break
		}
		noGive[u], noTake[u] = true, true
		vs := slices.Clone(ls.vms[u])
		slices.SortStableFunc(vs, func(a, b int) int { return cmp.Compare(cur(b), cur(a)) })
		mark := len(ls.moves)
		ok := true
		for _, v := range vs {
			h := ls.find(v, cur(v), noTake)
			if h < 0 {
				ok = false
				break
			}
			ls.take(v, u, cur(v))
			ls.put(v, h, cur(v))
		}
		if !ok {
			// Undo this host's moves.
			for i := len(ls.moves) - 1; i >= mark; i-- {
				m := ls.moves[i]
				ls.take(m.VM, m.To, cur(m.VM))
				ls.vms[u] = append(ls.vms[u], m.VM)
				ls.alloc[u] += cur(m.VM)
				ls.addHist(u, m.VM, 1)
			}
			ls.moves = ls.moves[:mark]
			continue
		}
		for _, m := range ls.moves[mark:] {
			noGive[m.To] = true
		}
	}
	// A VM that went away and back is not a migration.
	out := ls.moves[:0]
	final := map[int]int{}
	for _, m := range ls.moves {
		final[m.VM] = m.To
	}
	done := map[int]bool{}
	for _, m := range ls.moves {
		if done[m.VM] || final[m.VM] == s.HostOf(m.VM) {
			continue
		}
		done[m.VM] = true
		out = append(out, Migration{VM: m.VM, To: final[m.VM]})
	}
	return out, nil
}

func maps(m map[int]bool) map[int]bool {
	c := make(map[int]bool, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// addHist adds (sign 1) or removes (-1) VM v's history on host h.
func (ls *lrState) addHist(h, v int, sign float64) {
	t := ls.s.Step()
	if t < 0 {
		return
	}
	d := ls.s.Demand(v)
	for i := range ls.n {
		ls.hist[h][i] += sign * d[t-ls.n+1+i]
	}
	if sign > 0 {
		ls.mig[h] = max(ls.mig[h], ls.s.MigrationTime(v).Seconds())
		return
	}
	ls.mig[h] = 0
	for _, w := range ls.vms[h] {
		ls.mig[h] = max(ls.mig[h], ls.s.MigrationTime(w).Seconds())
	}
}

func (ls *lrState) take(v, h int, d float64) {
	i := slices.Index(ls.vms[h], v)
	if i >= 0 {
		ls.vms[h] = slices.Delete(ls.vms[h], i, i+1)
		ls.alloc[h] -= d
		ls.addHist(h, v, -1)
		if len(ls.vms[h]) == 0 {
			ls.alloc[h] = 0
			ls.hist[h] = [lrHistory]float64{}
		}
	}
}

func (ls *lrState) put(v, h int, d float64) {
	ls.vms[h] = append(ls.vms[h], v)
	ls.alloc[h] += d
	ls.addHist(h, v, 1)
	// A VM put back where it was still gets a move here; Decide drops
	// it at the end.
	ls.moves = append(ls.moves, Migration{VM: v, To: h})
}

// find returns the host for VM v (demand d) whose power rises least, not
// overloaded after, or -1.
func (ls *lrState) find(v int, d float64, excluded map[int]bool) int {
	s := ls.s
	best, bestDiff := -1, math.Inf(1)
	for h := range s.NumHosts() {
		if excluded[h] {
			continue
		}
		host := s.Host(h)
		if ls.alloc[h]+d > host.CPU {
			continue
		}
		if host.Memory > 0 {
			mem := s.VMMemory(v)
			for _, w := range ls.vms[h] {
				mem += s.VMMemory(w)
			}
			if mem > host.Memory {
				continue
			}
		}
		if ls.alloc[h] != 0 && ls.overloaded(h, v) {
			continue
		}
		if host.Power == nil {
			if best < 0 {
				best, bestDiff = h, 0
			}
			continue
		}
		diff := host.Power.Watts((ls.alloc[h]+d)/host.CPU) - host.Power.Watts(ls.alloc[h]/host.CPU)
		if diff < bestDiff {
			best, bestDiff = h, diff
		}
	}
	return best
}

// overloaded applies the local regression to host h with its VMs now (and
// VM extra, when not -1).
func (ls *lrState) overloaded(h, extra int) bool {
	s := ls.s
	host := s.Host(h)
	t := s.Step()
	if t < 0 {
		return false
	}
	n := ls.n
	if n < lrHistory {
		// CloudSim's fallback: a static threshold on the current demand.
		u := ls.alloc[h]
		if extra >= 0 {
			u += s.Demand(extra)[t]
		}
		return u/host.CPU > 0.7
	}
	y := ls.hist[h]
	maxMig := ls.mig[h]
	if extra >= 0 {
		d := s.Demand(extra)
		for i := range n {
			y[i] += d[t-n+1+i]
		}
		maxMig = max(maxMig, s.MigrationTime(extra).Seconds())
	}
	// Least squares on x = 1..n, extrapolated to n + the intervals the
	// longest migration takes.
	var sx, sy, sxx, sxy float64
	for i := range n {
		x := float64(i + 1)
		yi := y[i] / host.CPU
		sx += x
		sy += yi
		sxx += x * x
		sxy += x * yi
	}
	fn := float64(n)
	slope := (fn*sxy - sx*sy) / (fn*sxx - sx*sx)
	icept := (sy - slope*sx) / fn
	pred := icept + slope*(fn+math.Ceil(maxMig/ls.p.sec))
	return pred*ls.safety >= 1
}
