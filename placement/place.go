package placement

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Strategy is how Place picks among the hosts a VM fits on.
type Strategy int

// Strategies.
const (
	// BestFit picks, under Consolidate, the host the VM leaves with the
	// least normalized room (L2 over the resources), among hosts already in
	// use first; under LoadBalance the host it leaves with the most.
	BestFit Strategy = iota
	// FirstFit picks the first host in ID order the VM fits on: the
	// classic first-fit-decreasing baseline.
	FirstFit
)

// PlaceOptions tune Place. The zero value means best fit, time series used
// when the VMs have them.
type PlaceOptions struct {
	Strategy Strategy
	// IgnoreSeries packs by the sizing figure (Config.Sizing) even when
	// the VMs' histories have time series.
	IgnoreSeries bool
	// NoImprove keeps the greedy pass's plan: best fit in series mode
	// then neither searches for hosts to empty nor spreads CPU over the
	// hosts used. For small batches placed often onto hosts in use, such
	// as the VMs one round of dynamic consolidation moves, where the
	// extra passes cost more than they find.
	NoImprove bool
}

// An Assignment puts a VM on a host.
type Assignment struct {
	VM   *VM
	Host *Host
}

// An Unplaced VM fits on no host; Err says why (it matches ErrRejected).
type Unplaced struct {
	VM  *VM
	Err error
}

// A Plan is the outcome of Place.
type Plan struct {
	Assignments []Assignment // in the order the VMs were placed
	Unplaced    []Unplaced   // in the order of the VMs given
	// HostsUsed counts the hosts that run at least one VM after the plan
	// (including VMs they ran before).
	HostsUsed int
}

// placeHost is a host's state while a batch is placed.
type placeHost struct {
	h      *Host
	view   Host      // h with Used and VMs as placed so far, for filters
	usable Vector    // capacity less reserve
	series []float64 // CPU use over time (series mode)
	open   bool      // runs a VM
	ok     bool      // ready and valid
}

// Place assigns vms to hosts at once: vector bin packing, largest VMs first
// (by their dominant resource, normalized to the largest host), each on the
// host chosen by the Strategy under the host group's goal, respecting every
// filter Rate respects. When the VMs' histories carry time series (and the
// options allow), a host's CPU is checked bucket by bucket against the sum of
// its VMs' series, so that VMs whose peaks do not coincide share a host
// (correlation-aware packing). When every host consolidates and the VMs
// have series, Place then looks for a plan on no more hosts that spreads CPU
// evenly over them (memory still packed tight), so that hosts keep headroom
// for peaks the history did not show. The plan is deterministic: the same
// input gives the same plan whatever the order of hosts.
//
// Place chooses hosts by fit under each group's goal, not by the Config's
// scorers, which serve Rate. In series mode a host's Used, as the filters see
// it, grows by each VM's sizing figure, so custom filters may see more CPU
// in use than the series allow for. A VM whose group is not set may go to a
// host of any group; when groups have different goals, each host is judged
// by its own group's goal.
func (p *Placer) Place(ctx context.Context, vms []*VM, hosts []*Host, opts *PlaceOptions) (*Plan, error) {
	if !p.ready {
		return nil, errNotNew
	}
	var o PlaceOptions
	if opts != nil {
		o = *opts
	}
	if o.Strategy != BestFit && o.Strategy != FirstFit {
		return nil, fmt.Errorf("placement: unknown strategy %d", int(o.Strategy))
	}
	if len(hosts) == 0 {
		return nil, ErrNoHosts
	}
	if err := checkHosts(hosts); err != nil {
		return nil, err
	}
	seen := make(map[string]struct{}, len(vms))
	for _, vm := range vms {
		if err := checkVM(vm); err != nil {
			return nil, err
		}
		if _, dup := seen[vm.ID]; dup {
			return nil, fmt.Errorf("placement: duplicate VM ID %q", vm.ID)
		}
		seen[vm.ID] = struct{}{}
	}

	hs := slices.Clone(hosts)
	slices.SortFunc(hs, func(a, b *Host) int { return cmp.Compare(a.ID, b.ID) })
	seriesLen := 0
	if !o.IgnoreSeries {
		var err error
		if seriesLen, err = commonSeriesLen(vms, hs); err != nil {
			return nil, err
		}
	}
	state, norm := p.newPlaceState(hs, seriesLen)
	order := p.placementOrder(vms, hs, norm)
	custom := p.customFilters()
	assigned, unplaced, err := p.pass(ctx, order, state, o, custom, nil)
	if err != nil {
		return nil, err
	}
	// With time series, best fit fills hosts to the peak the history
	// showed and leaves them no margin for the next week's; keeping the
	// host count and spreading CPU over those hosts costs no host. (Without
	// series the batch is sized by one figure with its own margin, and the
	// extra passes would cost time at fleet scale.)
	if o.Strategy == BestFit && seriesLen > 0 && !o.NoImprove && p.allConsolidate(hs) {
		// Empty what hosts local search can, then spread CPU over the
		// hosts left.
		ia, iok, err := p.improve(ctx, state, assigned, seriesLen, custom)
		if err != nil {
			return nil, err
		}
		if iok {
			assigned = ia
			state = p.replay(hs, seriesLen, assigned)
		}
		a, miss, st, ok, err := p.balanced(ctx, order, hs, seriesLen, norm, state, assigned, unplaced, o, custom)
		if err != nil {
			return nil, err
		}
		if ok {
			assigned, state = a, st
			for id := range unplaced {
				if _, still := miss[id]; !still {
					delete(unplaced, id)
				}
			}
		}
	}
	plan := &Plan{Assignments: assigned}
	for _, vm := range vms {
		if err, ok := unplaced[vm.ID]; ok {
			plan.Unplaced = append(plan.Unplaced, Unplaced{VM: vm, Err: err})
		}
	}
	for i := range state {
		if state[i].open {
			plan.HostsUsed++
		}
	}
	return plan, nil
}

// newPlaceState returns the hosts' state before a pass, and the largest
// usable amount per resource.
func (p *Placer) newPlaceState(hs []*Host, seriesLen int) ([]placeHost, Vector) {
	state := make([]placeHost, len(hs))
	var norm Vector // the largest usable amount per resource
	for i, h := range hs {
		s := &state[i]
		s.h, s.view, s.usable = h, *h, usable(h)
		s.view.VMs = slices.Clip(h.VMs)
		s.view.Volumes = slices.Clone(h.Volumes) // debited as VMs are placed
		s.ok = validHost(h) && (h.State == Ready || !p.hasHostUp())
		s.open = len(h.VMs) > 0
		if seriesLen > 0 {
			s.series = make([]float64, seriesLen)
			for t := range s.series {
				if t < len(h.UsedSeries) {
					s.series[t] = h.UsedSeries[t][CPU]
				} else {
					s.series[t] = h.Used[CPU]
				}
			}
		}
		if s.ok {
			for r := range norm {
				norm[r] = max(norm[r], s.usable[r])
			}
		}
	}
	return state, norm
}

// pass places the VMs in order on the hosts of state. With bal set it
// places as the balanced pass does and gives no reasons for the VMs it
// cannot place (their errors are nil).
func (p *Placer) pass(ctx context.Context, order []*VM, state []placeHost, o PlaceOptions, custom []Filter, bal *balance) ([]Assignment, map[string]error, error) {
	hh := newHot(state)
	hh.rules(order, state)
	var assigned []Assignment
	unplaced := map[string]error{}
	for k, vm := range order {
		if k%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
		}
		i, err := p.choose(ctx, vm, state, hh, o, custom, bal)
		if err != nil {
			return nil, nil, err
		}
		if i < 0 {
			if bal == nil {
				why, err := p.whyNot(ctx, vm, state, hh)
				if err != nil {
					return nil, nil, err
				}
				unplaced[vm.ID] = why
			} else {
				unplaced[vm.ID] = nil
			}
			continue
		}
		s := &state[i]
		d := p.sizer.Demand(vm, s.h)
		s.view.Used = s.view.Used.Add(d)
		s.view.VMs = append(s.view.VMs, vm.ID)
		hh.placed[vm.ID] = true
		if vm.Disk > 0 {
			s.view.Volumes[volumeFor(s.view.Volumes, vm.Disk)].Free -= vm.Disk
		}
		if s.series != nil {
			addSeries(s.series, vm, d[CPU])
			hh.peak[i] = slices.Max(s.series)
		}
		s.open = true
		hh.free[i] = hh.free[i].Sub(d)
		hh.flags[i] |= hostOpen
		assigned = append(assigned, Assignment{VM: vm, Host: s.h})
	}
	return assigned, unplaced, nil
}

// commonSeriesLen returns the length of the VMs' time series, or 0 when no
// VM has one. VMs without a series count with a flat demand. Series of
// different lengths, or hosts' use series of another length, are errors: a
// sum over time needs one time line.
func commonSeriesLen(vms []*VM, hs []*Host) (int, error) {
	n, first := 0, ""
	for _, vm := range vms {
		if vm.History == nil || len(vm.History.Series) == 0 {
			continue
		}
		l := len(vm.History.Series)
		if n != 0 && l != n {
			return 0, fmt.Errorf("placement: VM %s has %d samples of history, VM %s has %d: series must share one time line", vm.ID, l, first, n)
		}
		n, first = l, vm.ID
	}
	if n == 0 {
		return 0, nil
	}
	for _, h := range hs {
		if len(h.UsedSeries) != 0 && len(h.UsedSeries) != n {
			return 0, fmt.Errorf("placement: host %s has %d samples of use, the VMs %d: series must share one time line", h.ID, len(h.UsedSeries), n)
		}
	}
	return n, nil
}

func addSeries(series []float64, vm *VM, flat float64) {
	if vm.History != nil && len(vm.History.Series) == len(series) {
		for t, v := range vm.History.Series {
			series[t] += v[CPU]
		}
		return
	}
	for t := range series {
		series[t] += flat
	}
}

// placementOrder sorts the VMs largest first by their dominant normalized
// demand, ties by ID.
func (p *Placer) placementOrder(vms []*VM, hs []*Host, norm Vector) []*VM {
	type keyed struct {
		vm  *VM
		key float64
	}
	ks := make([]keyed, len(vms))
	ref := hs[0]
	for i, vm := range vms {
		d := p.sizer.Demand(vm, ref)
		if vm.History != nil && len(vm.History.Series) > 0 {
			d[CPU] = max(d[CPU], vm.History.Peak[CPU])
		}
		k := 0.0
		for r := range d {
			if norm[r] > 0 {
				k = max(k, d[r]/norm[r])
			}
		}
		ks[i] = keyed{vm, k}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		if c := cmp.Compare(b.key, a.key); c != 0 {
			return c
		}
		return cmp.Compare(a.vm.ID, b.vm.ID)
	})
	out := make([]*VM, len(ks))
	for i, k := range ks {
		out[i] = k.vm
	}
	return groupAffine(out)
}

// groupAffine keeps VMs that must share a host next to each other in the
// order, at the place of the largest of them, so that the first one placed
// chooses a host the others can join.
func groupAffine(order []*VM) []*VM {
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		p, ok := parent[x]
		if !ok || p == x {
			return x
		}
		r := find(p)
		parent[x] = r
		return r
	}
	inBatch := make(map[string]bool, len(order))
	for _, vm := range order {
		inBatch[vm.ID] = true
	}
	linked := false
	for _, vm := range order {
		for _, id := range vm.Affinity {
			if inBatch[id] && id != vm.ID {
				a, b := find(vm.ID), find(id)
				if a != b {
					parent[a] = b
				}
				linked = true
			}
		}
	}
	if !linked {
		return order
	}
	members := map[string][]*VM{}
	for _, vm := range order {
		r := find(vm.ID)
		members[r] = append(members[r], vm)
	}
	out := make([]*VM, 0, len(order))
	for _, vm := range order {
		r := find(vm.ID)
		if m, ok := members[r]; ok {
			out = append(out, m...)
			delete(members, r)
		}
	}
	return out
}

// customFilters returns the configured filters that Place must call for
// every candidate: all but the built-ins it applies itself (resources,
// state) or only for VMs that ask (group, features, affinity).
func (p *Placer) customFilters() []Filter {
	var out []Filter
	for _, f := range p.filters {
		switch f := f.(type) {
		case *FitsResources:
			if f.Sizer != p.sizer { // Place's own check sizes by the Placer's Sizer
				out = append(out, f)
			}
		case HostUp, InGroup, HasFeatures, Affinity:
		default:
			out = append(out, f)
		}
	}
	return out
}

// hasHostUp reports whether the filters include HostUp; without it, Place
// uses hosts in any state, as Rate does.
func (p *Placer) hasHostUp() bool {
	return slices.ContainsFunc(p.filters, func(f Filter) bool { _, ok := f.(HostUp); return ok })
}

// constrained reports whether vm asks for what only the built-in
// non-resource filters check.
func constrained(vm *VM) bool {
	return vm.Group != "" || len(vm.Features) > 0 || vm.Format != "" || len(vm.Affinity) > 0 || len(vm.AntiAffinity) > 0
}

// hot is the part of every host's state the scan for a VM reads, kept
// apart and small so that a scan over thousands of hosts stays in cache.
type hot struct {
	free  []Vector  // usable less used, per host
	inv   []Vector  // 1/usable per resource (0 where the host has none)
	core  []float64 // MHz per core
	flags []uint8   // hostOK, hostOpen
	// blocked has bit r set where the host reports resource r but
	// reserves all of it.
	blocked []uint8
	series  [][]float64
	peak    []float64 // the highest value of each host's series

	// Affinity rules seen from both sides: antiOf[id] lists the VMs that
	// must not share a host with VM id (from their rules or its own);
	// placed holds the VMs already on a host, whose affinity partners must
	// join them.
	antiOf map[string][]string
	affOf  map[string][]string
	placed map[string]bool
}

// rules fills antiOf and placed for a pass over vms.
func (hh *hot) rules(vms []*VM, state []placeHost) {
	hh.antiOf = map[string][]string{}
	hh.affOf = map[string][]string{}
	for _, vm := range vms {
		for _, id := range vm.Affinity {
			hh.affOf[id] = append(hh.affOf[id], vm.ID)
			hh.affOf[vm.ID] = append(hh.affOf[vm.ID], id)
		}
		for _, id := range vm.AntiAffinity {
			hh.antiOf[id] = append(hh.antiOf[id], vm.ID)
			hh.antiOf[vm.ID] = append(hh.antiOf[vm.ID], id)
		}
	}
	hh.placed = map[string]bool{}
	for i := range state {
		for _, id := range state[i].h.VMs {
			hh.placed[id] = true
		}
	}
}

// ruled returns vm as the Affinity filter must see it in this pass: only
// the partners already placed count (the others will join it), and the
// anti-affinity rules other VMs have against it are its own too.
func (hh *hot) ruled(vm *VM) *VM {
	anti, aff := hh.antiOf[vm.ID], hh.affOf[vm.ID]
	if len(vm.Affinity) == 0 && len(anti) == 0 && len(aff) == 0 {
		return vm
	}
	c := *vm
	c.Affinity = nil
	for _, id := range aff { // its own rules and the rules naming it
		if hh.placed[id] && !slices.Contains(c.Affinity, id) {
			c.Affinity = append(c.Affinity, id)
		}
	}
	if len(anti) > 0 {
		c.AntiAffinity = append(slices.Clip(vm.AntiAffinity), anti...)
	}
	return &c
}

const (
	hostOK = 1 << iota
	hostOpen
)

func newHot(state []placeHost) *hot {
	n := len(state)
	h := &hot{free: make([]Vector, n), inv: make([]Vector, n), core: make([]float64, n), flags: make([]uint8, n), blocked: make([]uint8, n), series: make([][]float64, n)}
	for i := range state {
		s := &state[i]
		h.free[i] = s.usable.Sub(s.h.Used)
		for r := range s.usable {
			switch {
			case s.usable[r] > 0:
				h.inv[i][r] = 1 / s.usable[r]
			case s.h.Capacity[r] > 0:
				h.blocked[i] |= 1 << r
			}
		}
		h.core[i] = coreMHz(s.h)
		if s.ok {
			h.flags[i] |= hostOK
		}
		if s.open {
			h.flags[i] |= hostOpen
		}
		h.series[i] = s.series
	}
	h.peak = make([]float64, n)
	for i, s := range h.series {
		for _, x := range s {
			h.peak[i] = max(h.peak[i], x)
		}
	}
	return h
}

// choose returns the index of the host vm goes to, or -1.
func (p *Placer) choose(ctx context.Context, vm *VM, state []placeHost, hh *hot, o PlaceOptions, custom []Filter, bal *balance) (int, error) {
	vm = hh.ruled(vm)
	cons := constrained(vm)
	slow := cons || len(custom) > 0 || vm.Disk > 0
	oneGoal, goal := len(p.goals.byGroup) == 0, p.goals.def
	best, bestOpen := -1, false
	bestRoom := 0.0
	bestTier := 0
	var d Vector
	lastCore := -1.0
	for i := range state {
		if hh.flags[i]&hostOK == 0 {
			continue
		}
		if c := hh.core[i]; c != lastCore { // demand depends on the host only through its core clock
			d, lastCore = p.sizer.Demand(vm, state[i].h), c
		}
		f, fits := fitsHot(hh, i, vm, &d)
		if !fits {
			continue
		}
		if slow {
			ok, err := p.checkRest(ctx, vm, &state[i], cons, custom)
			if err != nil {
				return 0, err
			}
			if !ok {
				continue
			}
		}
		if o.Strategy == FirstFit {
			return i, nil
		}
		if bal != nil {
			// Every host of the set counts as open: the CPU is spread
			// over them, the other resources packed tight.
			tier, key := 0, f.other
			if f.cpu > bal.soft {
				tier, key = 1, f.cpu
			}
			if best < 0 || tier < bestTier || (tier == bestTier && key < bestRoom) {
				best, bestTier, bestRoom = i, tier, key
			}
			continue
		}
		room := f.room
		if hh.series[i] != nil {
			// With series, best fit is the host whose CPU peak the VM
			// raises least (it fills the host's valleys), then the least
			// room: on the PlanetLab days this saves 0.7 hosts a day over
			// the L2 room alone.
			room = f.cpu - hh.peak[i]*hh.inv[i][CPU] + 1e-6*f.room
		}
		if p.fitDot {
			// Tetris-style alignment: the larger the dot product of the
			// demand and the free amounts, the better; as a "room" to
			// minimize, its negative.
			room = -dot(&hh.free[i], &hh.inv[i], &d)
		}
		open := hh.flags[i]&hostOpen != 0
		if best < 0 {
			best, bestOpen, bestRoom = i, open, room
			continue
		}
		g := goal
		if !oneGoal {
			g = p.goals.of(state[i].h.Group)
		}
		if g == Consolidate {
			// Hosts in use first, then the least room left.
			if (open && !bestOpen) || (open == bestOpen && room < bestRoom) {
				best, bestOpen, bestRoom = i, open, room
			}
		} else if room > bestRoom {
			best, bestOpen, bestRoom = i, open, room
		}
	}
	return best, nil
}

// checkRest runs what the resource check leaves: volumes, the built-in
// filters the VM asks for, and the custom filters.
func (p *Placer) checkRest(ctx context.Context, vm *VM, s *placeHost, cons bool, custom []Filter) (bool, error) {
	if vm.Disk > 0 && volumeFor(s.view.Volumes, vm.Disk) < 0 {
		return false, nil
	}
	if cons {
		rej, err := p.filterBuiltins(ctx, vm, &s.view)
		if err != nil || rej {
			return false, err
		}
	}
	for _, f := range custom {
		e := runFilter(ctx, f, vm, &s.view)
		if e == nil {
			continue
		}
		if errors.Is(e, ErrRejected) {
			return false, nil
		}
		return false, &PluginError{Plugin: f.Name(), Host: s.h.ID, Err: e}
	}
	return true, nil
}

// A fit is what a host would have left once it runs a VM.
type fit struct {
	room  float64 // squared normalized room, L2 over the resources
	other float64 // the same over the resources other than CPU
	cpu   float64 // CPU use (the peak of the series) over usable CPU
}

// fitsHot checks demand d against host i and returns what the host would
// have left.
func fitsHot(hh *hot, i int, vm *VM, d *Vector) (fit, bool) {
	free, inv := &hh.free[i], &hh.inv[i]
	// Memory first: it turns most full hosts down with one comparison.
	if inv[Memory] == 0 || !(free[Memory]-d[Memory] >= 0) {
		return fit{}, false
	}
	var f fit
	for r := CPU; r < NumResources; r++ {
		if inv[r] == 0 {
			if d[r] > 0 && (r == CPU || hh.blocked[i]&(1<<r) != 0) {
				return fit{}, false // none to give, or all of it reserved
			}
			continue
		}
		left := free[r] - d[r]
		if r == CPU {
			if ser := hh.series[i]; ser != nil {
				u := 1 / inv[r]
				left = u - seriesPeak(ser, vm, d[CPU], u)
			}
		}
		if !(left >= 0) {
			return fit{}, false
		}
		x := left * inv[r]
		f.room += x * x
		if r == CPU {
			f.cpu = 1 - x
		} else {
			f.other += x * x
		}
	}
	return f, true
}

// seriesPeak returns the highest sum over time of the host's CPU series and
// the VM's (or flat when it has none); it stops early, returning a value
// above limit, once the sum exceeds limit.
func seriesPeak(series []float64, vm *VM, flat, limit float64) float64 {
	peak := 0.0
	if vm.History != nil && len(vm.History.Series) == len(series) {
		for t, v := range vm.History.Series {
			x := series[t] + v[CPU]
			if !(x <= limit) {
				return x
			}
			peak = max(peak, x)
		}
		return peak
	}
	for _, x := range series {
		x += flat
		if !(x <= limit) {
			return x
		}
		peak = max(peak, x)
	}
	return peak
}

func (p *Placer) filterBuiltins(ctx context.Context, vm *VM, h *Host) (bool, error) {
	for _, f := range p.filters {
		switch f.(type) {
		case InGroup, HasFeatures, Affinity:
		default:
			continue
		}
		e := runFilter(ctx, f, vm, h)
		if e == nil {
			continue
		}
		if errors.Is(e, ErrRejected) {
			return true, nil
		}
		return false, &PluginError{Plugin: f.Name(), Host: h.ID, Err: e}
	}
	return false, nil
}

// whyNot explains why vm fits nowhere: the reasons hosts gave, counted. A
// plugin that fails while it is asked is an error, as in Rate.
func (p *Placer) whyNot(ctx context.Context, vm *VM, state []placeHost, hh *hot) (error, error) {
	vm = hh.ruled(vm)
	count := map[string]int{}
	example := map[string]string{}
	custom := p.customFilters()
	for i := range state {
		s := &state[i]
		view := s.view
		if s.series != nil {
			view.Used[CPU] = 0 // CPU is checked against the series below
		}
		rej, err := p.filter(ctx, vm, &view)
		if err != nil {
			return nil, err
		}
		var reason string
		switch {
		case rej != nil:
			reason = rej.Error()
		case !s.ok:
			reason = "HostUp: host is " + s.h.State.String()
		default:
			reason = p.placeReason(ctx, vm, s, hh, i, custom)
		}
		key, _, _ := strings.Cut(reason, ":")
		if count[key] == 0 {
			example[key] = s.h.ID + ": " + reason
		}
		count[key]++
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d host(s) by %s, e.g. %s", count[k], k, example[k])
	}
	return &Rejection{Plugin: "Place", Reason: "no host can take it: " + b.String()}, nil
}

// placeReason explains a host that passes the filters but that Place's own
// checks turn down: a resource fully reserved, the CPU series, a volume
// filled by VMs of the batch.
func (p *Placer) placeReason(ctx context.Context, vm *VM, s *placeHost, hh *hot, i int, custom []Filter) string {
	d := p.sizer.Demand(vm, s.h)
	for r := CPU; r < NumResources; r++ {
		if hh.blocked[i]&(1<<r) != 0 && d[r] > 0 {
			return "FitsResources: " + Explain(r, d[r], s.h)
		}
	}
	if s.series != nil {
		peak := seriesPeak(s.series, vm, d[CPU], math.Inf(1))
		if !(peak <= s.usable[CPU]) {
			return fmt.Sprintf("FitsResources: cpu: the sum of its VMs' use over time would peak at %s, above the %s it can give", amount(CPU, peak), amount(CPU, s.usable[CPU]))
		}
	}
	if vm.Disk > 0 && volumeFor(s.view.Volumes, vm.Disk) < 0 {
		var largest int64
		for _, v := range s.view.Volumes {
			largest = max(largest, v.Free)
		}
		return fmt.Sprintf("FitsResources: storage: needs %s on one volume, the largest free is %s after this batch", bytesString(float64(vm.Disk)), bytesString(float64(largest)))
	}
	return "FitsResources: does not fit"
}

// volumeFor returns the index of the first volume with room for n bytes,
// or -1.
func volumeFor(vs []Volume, n int64) int {
	return slices.IndexFunc(vs, func(v Volume) bool { return v.Free >= n })
}

// dot is the dot product of demand d and the free amounts, both normalized
// by the usable amounts.
func dot(free, inv, d *Vector) float64 {
	x := 0.0
	for r := range free {
		x += d[r] * inv[r] * free[r] * inv[r]
	}
	return x
}
