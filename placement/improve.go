package placement

import (
	"context"
	"slices"
)

// The improvement phase of Place in series mode: after greedy packing, it
// tries again and again to empty one more host, by moving the host's VMs
// where they overload the others least, then moving and swapping VMs out of
// overloaded hosts (tabu search on the summed CPU overload over time, in
// improve_search.go) until no host is overloaded. A host is given up when
// the search stalls; the plan keeps every host it emptied. The search is
// deterministic and bounded (improveBudget, improveVictims, searchIters).

// impItem is a VM of the batch the improvement may move.
type impItem struct {
	vm    *VM
	ser   []float64 // CPU demand over time
	other Vector    // demand in the other resources (CPU zero)
	w     float64   // weight: what the pool tries to decrease
	pk    float64   // the highest value of ser
	bin   int       // the bin it is on, -1 in the pool
}

// impBin is a host of the plan.
type impBin struct {
	host  int       // index in the state
	load  []float64 // CPU use over time
	cap   float64   // usable CPU
	free  Vector    // room in the other resources
	inv   Vector
	block uint8
	items []int
	fixed bool // it ran VMs before the batch, or runs VMs that stay
}

type improver struct {
	items []impItem
	bins  []impBin
	n     int // series length
	work  int // fit checks left
}

// improveBudget bounds the improvement's work, in series samples read per
// sample of the batch's series (VMs × series length), and
// improveBudgetMax in all.
const (
	improveBudget    = 10_000
	improveBudgetMax = 20_000_000_000
)

// improve returns assigned with fewer hosts in use, when it finds how, and
// ok. It leaves plans with constraints, volumes, custom filters or hosts of
// different core clocks alone (ok false).
func (p *Placer) improve(ctx context.Context, state []placeHost, assigned []Assignment, seriesLen int, custom []Filter) ([]Assignment, bool, error) {
	if len(custom) > 0 || seriesLen == 0 || len(assigned) == 0 {
		return nil, false, nil
	}
	im, ok := p.newImprover(state, assigned, seriesLen)
	if !ok {
		return nil, false, nil
	}
	return im.run(ctx, state, assigned)
}

// newImprover returns the improver of a plan in series mode, and whether
// the improvement may change it (no constraints, volumes or hosts of
// different core clocks).
func (p *Placer) newImprover(state []placeHost, assigned []Assignment, seriesLen int) (*improver, bool) {
	index := make(map[*Host]int, len(state))
	for i := range state {
		index[state[i].h] = i
	}
	im := &improver{n: seriesLen, work: int(min(float64(improveBudget)*float64(len(assigned))*float64(seriesLen), improveBudgetMax))}
	binOf := map[int]int{}
	core := -1.0
	for i := range state {
		s := &state[i]
		if !s.open || !s.ok {
			continue
		}
		c := coreMHz(s.h)
		if core >= 0 && c != core {
			return nil, false
		}
		core = c
		b := impBin{host: i, cap: s.usable[CPU], fixed: len(s.h.VMs) > 0}
		b.free = s.usable.Sub(s.h.Used)
		for r := range s.usable {
			switch {
			case s.usable[r] > 0:
				b.inv[r] = 1 / s.usable[r]
			case s.h.Capacity[r] > 0:
				b.block |= 1 << r
			}
		}
		b.load = make([]float64, seriesLen)
		for t := range b.load {
			if t < len(s.h.UsedSeries) {
				b.load[t] = s.h.UsedSeries[t][CPU]
			} else {
				b.load[t] = s.h.Used[CPU]
			}
		}
		binOf[i] = len(im.bins)
		im.bins = append(im.bins, b)
	}
	for _, a := range assigned {
		vm := a.VM
		if constrained(vm) || vm.Disk > 0 {
			return nil, false
		}
		bi, ok := binOf[index[a.Host]]
		if !ok {
			return nil, false
		}
		b := &im.bins[bi]
		d := p.sizer.Demand(vm, a.Host)
		it := impItem{vm: vm, ser: make([]float64, seriesLen), bin: bi}
		addSeries(it.ser, vm, d[CPU])
		it.other = d
		it.other[CPU] = 0
		for _, x := range it.ser {
			it.w += x * b.inv[CPU]
		}
		it.w /= float64(seriesLen)
		it.pk = slices.Max(it.ser)
		it.w += it.pk * b.inv[CPU]
		b.items = append(b.items, len(im.items))
		b.free = b.free.Sub(it.other)
		for t, x := range it.ser {
			b.load[t] += x
		}
		im.items = append(im.items, it)
	}
	return im, true
}

// run empties hosts while it can and returns the plan it leads to, and
// whether it emptied any.
func (im *improver) run(ctx context.Context, state []placeHost, assigned []Assignment) ([]Assignment, bool, error) {
	emptied := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		ok, err := im.emptyOne(ctx)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			break
		}
		emptied++
	}
	if emptied == 0 {
		return nil, false, nil
	}
	out := make([]Assignment, len(assigned))
	for k, a := range assigned {
		out[k] = Assignment{VM: a.VM, Host: state[im.bins[im.items[k].bin].host].h}
	}
	return out, true, nil
}

// snapshot is what emptyOne restores when it gives a host up.
type impSnap struct {
	bins  []impBin
	where []int
}

func (im *improver) save() impSnap {
	s := impSnap{bins: slices.Clone(im.bins), where: make([]int, len(im.items))}
	for i := range s.bins {
		s.bins[i].load = slices.Clone(s.bins[i].load)
		s.bins[i].items = slices.Clone(s.bins[i].items)
	}
	for i := range im.items {
		s.where[i] = im.items[i].bin
	}
	return s
}

func (im *improver) restore(s impSnap) {
	im.bins = s.bins
	for i := range im.items {
		im.items[i].bin = s.where[i]
	}
}

// emptyOne empties one bin, lightest first, and removes it; it reports
// whether it did.
func (im *improver) emptyOne(ctx context.Context) (bool, error) {
	var order []int
	weight := make([]float64, len(im.bins))
	for b := range im.bins {
		if im.bins[b].fixed || len(im.bins[b].items) == 0 {
			continue
		}
		for _, k := range im.bins[b].items {
			weight[b] += im.items[k].w
		}
		order = append(order, b)
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if weight[a] != weight[b] {
			if weight[a] < weight[b] {
				return -1
			}
			return 1
		}
		return a - b
	})
	for vi, victim := range order {
		if vi >= improveVictims {
			return false, nil
		}
		if im.work <= 0 {
			return false, nil
		}
		snap := im.save()
		pool := slices.Clone(im.bins[victim].items)
		for _, k := range pool {
			im.take(k)
		}
		ok, err := im.repair(ctx, victim, pool)
		if err != nil {
			return false, err
		}
		if ok {
			// Drop the bin: move the last into its place.
			last := len(im.bins) - 1
			if victim != last {
				im.bins[victim] = im.bins[last]
				for _, k := range im.bins[victim].items {
					im.items[k].bin = victim
				}
			}
			im.bins = im.bins[:last]
			return true, nil
		}
		im.restore(snap)
	}
	return false, nil
}

func (im *improver) take(k int) {
	it := &im.items[k]
	b := &im.bins[it.bin]
	b.items = slices.DeleteFunc(b.items, func(x int) bool { return x == k })
	b.free = b.free.Add(it.other)
	for t, x := range it.ser {
		b.load[t] -= x
	}
	it.bin = -1
}

func (im *improver) put(k, bi int) {
	it := &im.items[k]
	b := &im.bins[bi]
	b.items = append(b.items, k)
	b.free = b.free.Sub(it.other)
	for t, x := range it.ser {
		b.load[t] += x
	}
	it.bin = bi
}

// allowed reports whether item k may go on bin b as far as the resources
// other than CPU go, once the items of out leave it.
func (im *improver) allowed(k int, b *impBin, out ...int) bool {
	d := &im.items[k].other
	if b.inv[Memory] == 0 {
		return false
	}
	if b.inv[CPU] == 0 {
		return false
	}
	for r := Memory; r < NumResources; r++ {
		if b.inv[r] == 0 {
			if d[r] > 0 && b.block&(1<<r) != 0 {
				return false
			}
			continue
		}
		left := b.free[r] - d[r]
		for _, o := range out {
			left += im.items[o].other[r]
		}
		if !(left >= 0) {
			return false
		}
	}
	return true
}

// replay returns the hosts' state once the assignments are made.
func (p *Placer) replay(hs []*Host, seriesLen int, assigned []Assignment) []placeHost {
	state, _ := p.newPlaceState(hs, seriesLen)
	index := make(map[*Host]int, len(hs))
	for i, h := range hs {
		index[h] = i
	}
	for _, a := range assigned {
		s := &state[index[a.Host]]
		d := p.sizer.Demand(a.VM, s.h)
		s.view.Used = s.view.Used.Add(d)
		s.view.VMs = append(s.view.VMs, a.VM.ID)
		if a.VM.Disk > 0 {
			s.view.Volumes[volumeFor(s.view.Volumes, a.VM.Disk)].Free -= a.VM.Disk
		}
		if s.series != nil {
			addSeries(s.series, a.VM, d[CPU])
		}
		s.open = true
	}
	return state
}

// over returns the CPU overload of load plus add less sub (either may be
// nil) over cap.
func over(load, add, sub []float64, cap float64) float64 {
	o := 0.0
	switch {
	case add != nil && sub != nil:
		for t, x := range load {
			if y := x + add[t] - sub[t]; y > cap {
				o += y - cap
			}
		}
	case add != nil:
		for t, x := range load {
			if y := x + add[t]; y > cap {
				o += y - cap
			}
		}
	case sub != nil:
		for t, x := range load {
			if y := x - sub[t]; y > cap {
				o += y - cap
			}
		}
	default:
		for _, x := range load {
			if x > cap {
				o += x - cap
			}
		}
	}
	return o
}

// repair puts the pool's items on the bins other than skip where they
// overload least, then searches for moves and swaps that bring the
// overload to zero (search); it reports whether no bin is overloaded at
// the end.
func (im *improver) repair(ctx context.Context, skip int, pool []int) (bool, error) {
	slices.SortStableFunc(pool, func(a, b int) int {
		wa, wb := im.items[a].w, im.items[b].w
		if wa != wb {
			if wa > wb {
				return -1
			}
			return 1
		}
		return a - b
	})
	ov := make([]float64, len(im.bins))
	for bi := range im.bins {
		ov[bi] = over(im.bins[bi].load, nil, nil, im.bins[bi].cap)
	}
	for _, k := range pool {
		it := &im.items[k]
		best, bestD := -1, 0.0
		for bi := range im.bins {
			b := &im.bins[bi]
			if bi == skip || !im.allowed(k, b) {
				continue
			}
			d := over(b.load, it.ser, nil, b.cap) - ov[bi]
			if best < 0 || d < bestD {
				best, bestD = bi, d
			}
		}
		if best < 0 {
			return false, nil
		}
		im.put(k, best)
		ov[best] += bestD
	}
	return im.search(ctx, skip)
}

// improveVictims is how many hosts, lightest first, emptyOne tries to
// empty before it gives up.
const improveVictims = 3
