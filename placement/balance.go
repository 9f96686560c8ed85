package placement

import (
	"context"
	"math"
	"slices"
)

// balance tunes the balanced pass of Place.
type balance struct {
	// soft is the CPU use (fraction of usable, at the series' peak) up to
	// which the pass packs the other resources tight; above it, it puts
	// the VM where CPU use stays lowest.
	soft float64
}

// allConsolidate reports whether every host is under goal Consolidate.
func (p *Placer) allConsolidate(hs []*Host) bool {
	for _, h := range hs {
		if p.goals.of(h.Group) != Consolidate {
			return false
		}
	}
	return true
}

// balanced looks for a plan on as few hosts as the best-fit pass used, or
// fewer, that spreads CPU over them: VMs that fit on the hosts of a fixed
// set go, while CPU stays at or under the set's even share, to the host
// they leave with the least room in the other resources (memory packed
// tight), else to the host whose CPU (the peak of its series) stays lowest.
// The set is the hosts in use before the batch, then those the best-fit
// pass opened, in that order, then the others by ID; it starts at the
// lower bound (the fewest hosts whose capacity covers the batch's memory
// and other amounts and its CPU: the peak over time of the summed series,
// or the summed sizing figures) and grows until the pass places every VM
// the best-fit pass placed. It returns ok false when no set of at most the
// best-fit pass's hosts does.
func (p *Placer) balanced(ctx context.Context, order []*VM, hs []*Host, seriesLen int, norm Vector, bfState []placeHost, bfAssigned []Assignment, bfUnplaced map[string]error, o PlaceOptions, custom []Filter) ([]Assignment, map[string]error, []placeHost, bool, error) {
	// The candidate hosts, in order.
	index := make(map[*Host]int, len(hs))
	for i, h := range hs {
		index[h] = i
	}
	var cand []int
	in := make([]bool, len(hs))
	add := func(i int) {
		if !in[i] && bfState[i].ok {
			in[i] = true
			cand = append(cand, i)
		}
	}
	for i, h := range hs {
		if len(h.VMs) > 0 {
			add(i)
		}
	}
	for _, a := range bfAssigned {
		add(index[a.Host])
	}
	used := len(cand)
	if used == 0 {
		return nil, nil, nil, false, nil
	}
	for i := range hs {
		add(i)
	}

	// What the batch needs, counting only VMs that fit on the largest host.
	var total Vector
	var agg []float64
	if seriesLen > 0 {
		agg = make([]float64, seriesLen)
	}
	ref := hs[cand[0]]
	demand := func(vms []*VM) {
		for _, vm := range vms {
			d := p.sizer.Demand(vm, ref)
			if !fitsVector(d, norm) {
				continue
			}
			if agg != nil {
				addSeries(agg, vm, d[CPU])
				d[CPU] = 0
			}
			total = total.Add(d)
		}
	}
	demand(order)
	for _, i := range cand[:used] {
		total = total.Add(hs[i].Used)
	}
	if agg != nil {
		total[CPU] += slices.Max(agg)
	}
	for r := range total {
		if norm[r] == 0 {
			total[r] = 0 // not offered, not checked
		}
	}
	k := hostsFor(total, bfState, cand)
	k = max(k, 1, countOpen(hs))
	step := max(1, k/200)
	for k <= used {
		if err := ctx.Err(); err != nil {
			return nil, nil, nil, false, err
		}
		state, _ := p.newPlaceState(hs, seriesLen)
		inSet := make([]bool, len(state))
		for _, i := range cand[:k] {
			inSet[i] = true
		}
		var capCPU float64
		for i := range state {
			state[i].ok = state[i].ok && inSet[i]
			if state[i].ok {
				capCPU += state[i].usable[CPU]
			}
		}
		bal := &balance{soft: math.Inf(1)}
		if capCPU > 0 {
			bal.soft = total[CPU] / capCPU
		}
		assigned, unplaced, err := p.pass(ctx, order, state, o, custom, bal)
		if err != nil {
			return nil, nil, nil, false, err
		}
		var missed []*VM
		for _, vm := range order {
			if _, miss := unplaced[vm.ID]; miss {
				if _, bfMiss := bfUnplaced[vm.ID]; !bfMiss {
					missed = append(missed, vm)
				}
			}
		}
		if len(missed) == 0 {
			// Every VM the best-fit pass placed is placed; the others
			// keep its reasons.
			return assigned, unplaced, state, true, nil
		}
		if k == used {
			break
		}
		// Grow the set by what the missed VMs need, at least one host.
		var need Vector
		for _, vm := range missed {
			need = need.Add(p.sizer.Demand(vm, ref))
		}
		// and by a step that doubles, so that the passes stay few.
		extra := step
		for r := range need {
			if norm[r] > 0 {
				extra = max(extra, int(math.Ceil(need[r]/norm[r])))
			}
		}
		step *= 2
		k = min(k+extra, used)
	}
	return nil, nil, nil, false, nil
}

// fitsVector reports whether d fits in u in every resource u has.
func fitsVector(d, u Vector) bool {
	for r := range d {
		if u[r] > 0 && d[r] > u[r] {
			return false
		}
	}
	return true
}

// hostsFor returns the fewest of the candidate hosts, taken in order, whose
// usable amounts cover total in every resource (all of them if none do).
func hostsFor(total Vector, state []placeHost, cand []int) int {
	var have Vector
	for k, i := range cand {
		have = have.Add(state[i].usable)
		ok := true
		for r := range total {
			if total[r] > have[r]+1e-9*max(total[r], 1) && total[r] > 0 {
				ok = false
				break
			}
		}
		if ok {
			return k + 1
		}
	}
	return len(cand)
}

func countOpen(hs []*Host) int {
	n := 0
	for _, h := range hs {
		if len(h.VMs) > 0 {
			n++
		}
	}
	return n
}
