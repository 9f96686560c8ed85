package placement

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
)

// The search that repair runs once the victim's VMs are spread: the host
// count is fixed and the summed CPU overload over time is minimised by
// moves and swaps of VMs out of an overloaded host (drawn in proportion to
// its overload), tabu on the way back, until it reaches zero. Where no
// move out of the host lowers the overload, the overload of that host at
// those intervals weighs more from then on (constraint weighting, as in
// guided local search), so that the search leaves the local minimum by
// pushing its VMs where the overload weighs less. Move evaluation is
// sparse: each host keeps its intervals sorted by use, highest first, and
// a VM is checked only on the intervals where its peak could make the host
// overflow; the overflow a VM would cause is listed once per host, so that
// a swap partner is checked on those intervals first.

// searchIters and searchStall bound one search: iterations in all, and
// iterations without a new best total.
const (
	searchIters  = 4000
	searchStall  = 600
	searchTenure = 7  // the least tabu tenure; a random part as much again
	swapBins     = 8  // the bins a VM is tried in swaps with
	weightStep   = 10 // what a weight grows by; it starts at 1
)

// excess is an interval where a host would overflow, and by how much.
type excess struct {
	t    int32
	y, w float64
}

// swapCand is a bin to try swaps with, and the change of the total
// overload the move there would make.
type swapCand struct {
	b int
	d float64
}

// addCand keeps c among the swapBins candidates of least d.
func (st *searchState) addCand(c swapCand) {
	n := len(st.cand)
	if n == swapBins {
		if !(c.d < st.cand[n-1].d) {
			return
		}
		n--
		st.cand = st.cand[:n]
	}
	i := n
	for i > 0 && c.d < st.cand[i-1].d {
		i--
	}
	st.cand = slices.Insert(st.cand, i, c)
}

// searchState is what search keeps between iterations.
type searchState struct {
	ov   []float64     // CPU overload per bin, weighted
	raw  []float64     // CPU overload per bin
	w    [][]float64   // per bin, the weight of its overload per interval
	ones []float64     // the weights of a bin that has none of its own
	ord  [][]int32     // per bin, the intervals by CPU use, highest first
	tabu [][]tabuEntry // per item, the bins it may not go to for now
	rng  *rand.Rand
	exc  []excess
	cand []swapCand
	iter int
}

// tabuEntry forbids a bin to an item until an iteration.
type tabuEntry struct {
	bin   int32
	until int32
}

// isTabu reports whether item k may not go to bin b now.
func (st *searchState) isTabu(k, b int) bool {
	for _, e := range st.tabu[k] {
		if int(e.bin) == b && int(e.until) > st.iter {
			return true
		}
	}
	return false
}

// forbid makes bin b tabu for item k for a while.
func (st *searchState) forbid(k, b int) {
	l := slices.DeleteFunc(st.tabu[k], func(e tabuEntry) bool { return int(e.until) <= st.iter || int(e.bin) == b })
	st.tabu[k] = append(l, tabuEntry{int32(b), int32(st.iter + searchTenure + st.rng.IntN(searchTenure+1))})
}

// update recomputes what st keeps of bin b.
func (st *searchState) update(im *improver, b int) {
	bb := &im.bins[b]
	st.raw[b], st.ov[b] = 0, 0
	for t, x := range bb.load {
		if x > bb.cap {
			st.raw[b] += x - bb.cap
			st.ov[b] += st.w[b][t] * (x - bb.cap)
		}
	}
	o := st.ord[b]
	if o == nil {
		o = make([]int32, len(bb.load))
		for t := range o {
			o[t] = int32(t)
		}
		st.ord[b] = o
	}
	load := bb.load
	slices.SortFunc(o, func(x, y int32) int {
		if load[x] != load[y] {
			if load[x] > load[y] {
				return -1
			}
			return 1
		}
		return int(x - y)
	})
	im.work -= 8 * len(o)
}

// search minimises the summed overload of the bins other than skip by
// moves and swaps out of overloaded bins, tabu search with aspiration on
// the weighted overload; it reports whether the overload reached zero. It stops when the work
// budget runs out, after searchIters iterations or searchStall without a
// new best.
func (im *improver) search(ctx context.Context, skip int) (bool, error) {
	nb := len(im.bins)
	st := &searchState{ov: make([]float64, nb), raw: make([]float64, nb), w: make([][]float64, nb), ones: make([]float64, im.n), ord: make([][]int32, nb), tabu: make([][]tabuEntry, len(im.items)), rng: rand.New(rand.NewPCG(uint64(nb), uint64(len(im.items))))}
	for t := range st.ones {
		st.ones[t] = 1
	}
	for b := range im.bins {
		st.w[b] = st.ones
		if b != skip {
			st.update(im, b)
		}
	}
	total := func(ov []float64) float64 {
		s := 0.0
		for _, o := range ov {
			s += o
		}
		return s
	}
	best, bestIter := total(st.raw), 0
	bestW := total(st.ov)
	for st.iter = 0; st.iter < searchIters; st.iter++ {
		if st.iter%16 == 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
		}
		tot, totW := total(st.raw), total(st.ov)
		bestW = min(bestW, totW)
		if tot <= 0 {
			return true, nil
		}
		if tot < best*(1-1e-9) {
			best, bestIter = tot, st.iter
		} else if st.iter-bestIter > searchStall {
			return false, nil
		}
		if im.work <= 0 {
			return false, nil
		}
		m := im.bestMove(st, skip, totW, bestW)
		if m.k < 0 {
			return false, nil
		}
		if m.d >= 0 {
			// A local minimum: the overload of the bin weighs more.
			a := m.from
			if &st.w[a][0] == &st.ones[0] {
				st.w[a] = slices.Clone(st.ones)
			}
			for t, x := range im.bins[a].load {
				if x > im.bins[a].cap {
					st.w[a][t] += weightStep
				}
			}
			st.update(im, a)
			bestW = total(st.ov)
			continue
		}
		im.take(m.k)
		if m.j >= 0 {
			im.take(m.j)
			im.put(m.j, m.from)
			st.forbid(m.j, m.to)
		}
		im.put(m.k, m.to)
		st.forbid(m.k, m.from)
		st.update(im, m.from)
		st.update(im, m.to)
	}
	return total(st.raw) <= 0, nil
}

// impMove moves item k from bin from to bin to, and item j (-1: none) the
// other way; d is the change of the total weighted overload.
type impMove struct {
	k, from, to, j int
	d              float64
}

// bestMove returns the best move or swap out of an overloaded bin, drawn
// in proportion to its weighted overload, that is not tabu, or is but
// leads below best (the weighted total is tot now); k is -1
// when there is none. It reads a bin's intervals highest use first and
// stops where no VM can make the bin overflow.
func (im *improver) bestMove(st *searchState, skip int, tot, best float64) impMove {
	bm := impMove{k: -1}
	aspire := best - tot // a tabu move must change the total by less than this
	// One overloaded bin, drawn with a chance in proportion to its
	// overload.
	src := -1
	r := st.rng.Float64() * tot
	for a := range im.bins {
		if a == skip || st.ov[a] <= 0 {
			continue
		}
		src = a
		if r -= st.ov[a]; r < 0 {
			break
		}
	}
	for a := range im.bins {
		if a != src {
			continue
		}
		ba := &im.bins[a]
		orda, wa := st.ord[a], st.w[a]
		for _, k := range ba.items {
			it := &im.items[k]
			// a's overload without k.
			oa, read := 0.0, 0
			for _, t := range orda {
				x := ba.load[t]
				if x <= ba.cap {
					break
				}
				read++
				if y := x - it.ser[t] - ba.cap; y > 0 {
					oa += wa[t] * y
				}
			}
			im.work -= read
			da := oa - st.ov[a]
			// Moves to every bin; swaps with the bins k overflows least.
			st.cand = st.cand[:0]
			for b := range im.bins {
				if b == a || b == skip {
					continue
				}
				bb := &im.bins[b]
				wb := st.w[b]
				// Read while the move or a swap may come out best.
				lim := math.Inf(1)
				if bm.k >= 0 && len(st.cand) == swapBins {
					lim = max(bm.d, st.cand[swapBins-1].d) - da + st.ov[b]
				}
				ob, read := 0.0, 0
				for _, t := range st.ord[b] {
					x := bb.load[t]
					if x+it.pk <= bb.cap || ob > lim {
						break
					}
					read++
					if y := x + it.ser[t] - bb.cap; y > 0 {
						ob += wb[t] * y
					}
				}
				im.work -= read + 1
				d := da + ob - st.ov[b]
				if (bm.k < 0 || d < bm.d) && (!st.isTabu(k, b) || d < aspire) && im.allowed(k, bb) {
					bm = impMove{k, a, b, -1, d}
				}
				if ob > 0 { // else no swap does better than the move
					st.addCand(swapCand{b, d})
				}
			}
			for _, c := range st.cand {
				b := c.b
				bb := &im.bins[b]
				wb := st.w[b]
				tk := st.isTabu(k, b)
				// The intervals where b would overflow with k.
				st.exc = st.exc[:0]
				read := 0
				for _, t := range st.ord[b] {
					x := bb.load[t]
					if x+it.pk <= bb.cap {
						break
					}
					read++
					if y := x + it.ser[t] - bb.cap; y > 0 {
						st.exc = append(st.exc, excess{t, y, wb[t]})
					}
				}
				im.work -= read
				for _, j := range bb.items {
					jt := &im.items[j]
					tj := st.isTabu(j, a)
					// b's overload with k in and j out, as long as it
					// may lead to a better move (a's overload is at least
					// oa).
					limB := math.Inf(1)
					if bm.k >= 0 {
						limB = bm.d + st.ov[a] + st.ov[b] - oa
					}
					obj, read := 0.0, 0
					for _, e := range st.exc {
						read++
						if y := e.y - jt.ser[e.t]; y > 0 {
							obj += e.w * y
							if obj >= limB {
								break
							}
						}
					}
					im.work -= read
					lo := oa + obj - st.ov[a] - st.ov[b]
					if bm.k >= 0 && lo >= bm.d {
						continue
					}
					if (tk || tj) && !(lo < aspire) {
						continue
					}
					lim := math.Inf(1)
					if bm.k >= 0 {
						lim = bm.d + st.ov[a] + st.ov[b] - obj
					}
					// a's overload with j in and k out.
					oaj := 0.0
					read = 0
					for _, t := range orda {
						x := ba.load[t]
						if x+jt.pk <= ba.cap {
							break
						}
						read++
						if y := x - it.ser[t] + jt.ser[t] - ba.cap; y > 0 {
							oaj += wa[t] * y
							if oaj > lim {
								break
							}
						}
					}
					im.work -= read
					d := oaj + obj - st.ov[a] - st.ov[b]
					if (tk || tj) && !(d < aspire) {
						continue
					}
					if (bm.k < 0 || d < bm.d) && im.allowed(k, bb, j) && im.allowed(j, ba, k) {
						bm = impMove{k, a, b, j, d}
					}
				}
			}
		}
	}
	return bm
}
