package placement

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// RebalanceOptions tune Rebalance. A nil *RebalanceOptions and zero fields
// mean defaults.
type RebalanceOptions struct {
	// Threshold: under LoadBalance, no host should be above this fraction
	// of its usable CPU or memory (capacity less reserve) after the plan.
	// Zero means 0.8; otherwise it must be above 0 and at most 1.
	Threshold float64
	// MaxMoves caps the migrations in the plan (one round); zero means no
	// cap.
	MaxMoves int
	// MaxMovesPerHost caps the migrations into or out of any one host;
	// zero means no cap.
	MaxMovesPerHost int
}

// A Move migrates a VM from one host to another.
type Move struct {
	VM       *VM
	From, To *Host
	// Reason says why, for a person: "host h07 at 93 % CPU, above the 80 %
	// threshold; after the move h07 at 78 % CPU, h12 at 41 % CPU".
	Reason string
}

// HostLoad is a host's load as Rebalance sees it.
type HostLoad struct {
	ID string
	// CPU and Memory are the host's use as a fraction of its usable
	// capacity (capacity less reserve); 0 when it has none usable.
	CPU, Memory float64
	// VMs counts the VMs on the host: those placed on it and any other
	// its VMs field lists.
	VMs int
}

// A RebalancePlan is the outcome of Rebalance.
type RebalancePlan struct {
	// Moves are to be carried out in order: each was checked against the
	// hosts as the moves before it leave them.
	Moves []Move
	// Before and After give every host's load, in the order of the hosts
	// given, before and after the moves.
	Before, After []HostLoad
	// HostsEmptied counts the hosts the moves empty (Consolidate).
	HostsEmptied int
}

const rbDefaultThreshold = 0.8

// Rebalance plans live migrations of running VMs: a round of moves, to be
// carried out in order.
//
// placed says which VM runs on which host now; those VMs, and only they,
// may move. A host's Used is its current use INCLUDING the VMs placed on
// it (and anything else it runs): a move takes the VM's demand
// (Sizer.Demand on the source) off the source and adds its demand on the
// destination. A host's VMs field may list the placed VMs or not; IDs it
// lists that are not placed are VMs that stay where they are: they count
// for affinity and keep their host from being emptied. A placed VM is
// matched to its host by host ID. Time series (UsedSeries, History.Series)
// are not considered: Rebalance weighs Used and the sizing figure.
//
// Each host group follows its goal (Config.Goal, Config.GroupGoals), and VMs
// move only between hosts of the same group:
//
//   - LoadBalance: hosts above the threshold in CPU or memory, from the most
//     loaded down, give VMs until they are at or below it, or no move helps
//     (or a cap is reached). Each step moves the smallest VM that alone
//     brings the host to the threshold or, when none does, the VM that takes
//     the most off the overloaded resources, to the host that is left the
//     least loaded by it, provided that host stays at or below the
//     threshold. Greedy: few migrations, not guaranteed the fewest.
//   - Consolidate: hosts running VMs, from the least loaded up, are emptied
//     when every one of their VMs fits on other hosts that run VMs and are
//     not emptied (largest VM first, best fit: the host left with the least
//     room, up to its usable capacity; the threshold does not apply);
//     otherwise the host keeps all its VMs. A host that takes VMs is not
//     emptied later, so no VM moves twice. Hosts that list VMs that are
//     not placed are not emptied.
//
// LoadBalance groups are planned first, then Consolidate groups. Every move
// passes all the placer's filters against the destination as the moves
// before it leave it, and fits the destination's usable capacity at that
// point, so carrying the moves out in order never overloads a host. When
// the Affinity filter is configured, a VM also does not move away from a
// placed VM that must share its host, nor onto a host that runs a placed VM
// that must not share one with it. Hosts that are not responding give no
// VMs; hosts whose figures are not valid neither give nor take any. The
// plan is deterministic: ties go by host ID, then VM ID, whatever the order
// of the input.
//
// It fails with ErrNoHosts when given no hosts, on bad input (a nil or
// duplicate host or VM, a VM assigned to a host not in the list or listed on
// another host, bad options), with ctx's error, and with a *PluginError when
// a filter fails or panics.
func (p *Placer) Rebalance(ctx context.Context, hosts []*Host, placed []Assignment, opts *RebalanceOptions) (*RebalancePlan, error) {
	if !p.ready {
		return nil, errNotNew
	}
	var o RebalanceOptions
	if opts != nil {
		o = *opts
	}
	if o.Threshold == 0 {
		o.Threshold = rbDefaultThreshold
	}
	if !(o.Threshold > 0 && o.Threshold <= 1) {
		return nil, fmt.Errorf("placement: rebalance threshold %v is not above 0 and at most 1", o.Threshold)
	}
	if o.MaxMoves < 0 || o.MaxMovesPerHost < 0 {
		return nil, fmt.Errorf("placement: rebalance caps must not be negative (%d moves, %d per host)", o.MaxMoves, o.MaxMovesPerHost)
	}
	if len(hosts) == 0 {
		return nil, ErrNoHosts
	}
	if err := checkHosts(hosts); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := p.newRebalancer(ctx, hosts, placed, o)
	if err != nil {
		return nil, err
	}
	plan := &RebalancePlan{Before: r.loads(hosts)}
	if err := r.balance(); err != nil {
		return nil, err
	}
	if err := r.consolidate(); err != nil {
		return nil, err
	}
	plan.Moves = r.moves
	plan.HostsEmptied = r.emptied
	plan.After = r.loads(hosts)
	return plan, nil
}

// rbHost is a host's state while a rebalance is planned.
type rbHost struct {
	h      *Host
	view   Host   // h with Used and VMs as the plan so far leaves it, for filters
	usable Vector // capacity less reserve
	group  int
	ok     bool  // valid, with usable CPU and memory: may give and take VMs
	gives  bool  // ok and responding: its VMs can be migrated
	vms    []int // the placed VMs on it now, by VM ID
	others int   // entries of its VMs field that are not placed: they stay
	moves  int   // migrations into or out of it so far
	// emptied by the plan (Consolidate); kept: took VMs, so not emptied.
	emptied, kept bool
}

type rbVM struct {
	vm    *VM
	host  int
	moved bool
}

// rbCand is a destination candidate: a host and its key, lower is better.
type rbCand struct {
	i   int
	key float64
}

type rebalancer struct {
	p        *Placer
	ctx      context.Context
	t        float64
	maxMoves int
	perHost  int
	hosts    []rbHost // by host ID
	byID     map[string]int
	vms      []rbVM // by VM ID
	groups   [][]int
	goals    []Goal // per group
	names    []string
	// reverse: the Affinity filter is configured, so its rules are also
	// checked from the VMs that stay: antiOf[id] and affOf[id] list the
	// placed VMs whose AntiAffinity or Affinity names id.
	reverse       bool
	antiOf, affOf map[string][]int
	moves         []Move
	emptied       int
	cands         []rbCand // scratch
	steps         int
}

func (p *Placer) newRebalancer(ctx context.Context, hosts []*Host, placed []Assignment, o RebalanceOptions) (*rebalancer, error) {
	r := &rebalancer{p: p, ctx: ctx, t: o.Threshold, maxMoves: o.MaxMoves, perHost: o.MaxMovesPerHost}
	hs := slices.Clone(hosts)
	slices.SortFunc(hs, func(a, b *Host) int { return cmp.Compare(a.ID, b.ID) })
	r.hosts = make([]rbHost, len(hs))
	r.byID = make(map[string]int, len(hs))
	groupOf := map[string]int{}
	for i, h := range hs {
		s := &r.hosts[i]
		s.h, s.view, s.usable = h, *h, usable(h)
		s.view.VMs = slices.Clone(h.VMs)
		s.view.Volumes = slices.Clone(h.Volumes) // debited by the moves in
		s.ok = validHost(h) && s.usable[CPU] > 0 && s.usable[Memory] > 0
		s.gives = s.ok && h.State != NotResponding
		g, seen := groupOf[h.Group]
		if !seen {
			g = len(r.groups)
			groupOf[h.Group] = g
			r.groups = append(r.groups, nil)
			r.names = append(r.names, h.Group)
			r.goals = append(r.goals, p.goals.of(h.Group))
		}
		s.group = g
		r.groups[g] = append(r.groups[g], i)
		r.byID[h.ID] = i
	}

	r.vms = make([]rbVM, 0, len(placed))
	at := make(map[string]int, len(placed)) // VM ID → host
	for k, a := range placed {
		if a.VM == nil || a.Host == nil {
			return nil, fmt.Errorf("placement: assignment %d has no VM or no host", k)
		}
		if err := checkVM(a.VM); err != nil {
			return nil, err
		}
		if _, dup := at[a.VM.ID]; dup {
			return nil, fmt.Errorf("placement: duplicate VM ID %q", a.VM.ID)
		}
		i, ok := r.byID[a.Host.ID]
		if !ok {
			return nil, fmt.Errorf("placement: VM %s is assigned to host %s, which is not in the host list", a.VM.ID, a.Host.ID)
		}
		at[a.VM.ID] = i
		r.vms = append(r.vms, rbVM{vm: a.VM, host: i})
	}
	for i := range r.hosts {
		s := &r.hosts[i]
		for _, id := range s.h.VMs {
			j, ok := at[id]
			switch {
			case !ok:
				s.others++
			case j != i:
				return nil, fmt.Errorf("placement: VM %s is assigned to host %s but host %s lists it", id, r.hosts[j].h.ID, s.h.ID)
			}
		}
	}
	slices.SortFunc(r.vms, func(a, b rbVM) int { return cmp.Compare(a.vm.ID, b.vm.ID) })
	for v := range r.vms {
		s := &r.hosts[r.vms[v].host]
		s.vms = append(s.vms, v)
		if !slices.Contains(s.h.VMs, r.vms[v].vm.ID) {
			s.view.VMs = append(s.view.VMs, r.vms[v].vm.ID)
		}
	}

	for _, f := range p.filters {
		switch f.(type) {
		case Affinity, *Affinity:
			r.reverse = true
		}
	}
	if r.reverse {
		r.antiOf, r.affOf = map[string][]int{}, map[string][]int{}
		for v := range r.vms {
			for _, id := range r.vms[v].vm.AntiAffinity {
				r.antiOf[id] = append(r.antiOf[id], v)
			}
			for _, id := range r.vms[v].vm.Affinity {
				r.affOf[id] = append(r.affOf[id], v)
			}
		}
	}
	return r, nil
}

// loads returns every host's load, in the order of hosts.
func (r *rebalancer) loads(hosts []*Host) []HostLoad {
	out := make([]HostLoad, len(hosts))
	for k, h := range hosts {
		s := &r.hosts[r.byID[h.ID]]
		out[k] = HostLoad{ID: h.ID, CPU: r.frac(s, CPU), Memory: r.frac(s, Memory), VMs: len(s.view.VMs)}
	}
	return out
}

func (r *rebalancer) frac(s *rbHost, res Resource) float64 {
	if !(s.usable[res] > 0) {
		return 0
	}
	return s.view.Used[res] / s.usable[res]
}

// load is a host's higher fraction of CPU and memory.
func (r *rebalancer) load(i int) float64 {
	s := &r.hosts[i]
	return max(r.frac(s, CPU), r.frac(s, Memory))
}

func (r *rebalancer) budgetLeft() int {
	if r.maxMoves == 0 {
		return math.MaxInt
	}
	return r.maxMoves - len(r.moves)
}

func (r *rebalancer) capped(i int) bool {
	return r.perHost > 0 && r.hosts[i].moves >= r.perHost
}

func (r *rebalancer) tick() error {
	r.steps++
	if r.steps%64 == 0 {
		return r.ctx.Err()
	}
	return nil
}

// fits reports whether demand d fits host s's usable capacity as the plan
// leaves it, whatever the filters say: CPU, memory and every other resource
// the host reports a capacity for.
func (r *rebalancer) fits(s *rbHost, d Vector, disk int64) bool {
	if disk > 0 && volumeFor(s.view.Volumes, disk) < 0 {
		return false
	}
	for res := range NumResources {
		if res > Memory && s.h.Capacity[res] == 0 {
			continue
		}
		if d[res] > s.usable[res]-s.view.Used[res] {
			return false
		}
	}
	return true
}

// accepts reports whether host j may take VM v now.
func (r *rebalancer) accepts(v, j int) (bool, error) {
	if r.reverse {
		for _, x := range r.antiOf[r.vms[v].vm.ID] {
			if x != v && r.vms[x].host == j {
				return false, nil
			}
		}
	}
	rej, err := r.p.filter(r.ctx, r.vms[v].vm, &r.hosts[j].view)
	if err != nil {
		return false, err
	}
	return rej == nil, nil
}

// canLeave reports whether VM v may leave its host without breaking the
// affinity of a placed VM that stays there.
func (r *rebalancer) canLeave(v int) bool {
	if !r.reverse {
		return true
	}
	for _, x := range r.affOf[r.vms[v].vm.ID] {
		if x != v && r.vms[x].host == r.vms[v].host {
			return false
		}
	}
	return true
}

func rbCandLess(a, b rbCand) bool {
	return a.key < b.key || (a.key == b.key && a.i < b.i)
}

// pick returns the host of the best candidate (lowest key, ties by host ID)
// that accepts VM v, or -1. It runs the filters on the best candidate first
// and on the others, in order, only when it is rejected.
func (r *rebalancer) pick(v int, cands []rbCand) (int, error) {
	if len(cands) == 0 {
		return -1, nil
	}
	best := 0
	for k := 1; k < len(cands); k++ {
		if rbCandLess(cands[k], cands[best]) {
			best = k
		}
	}
	ok, err := r.accepts(v, cands[best].i)
	if err != nil {
		return -1, err
	}
	if ok {
		return cands[best].i, nil
	}
	cands[0], cands[best] = cands[best], cands[0]
	rest := cands[1:]
	slices.SortFunc(rest, func(a, b rbCand) int {
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	for k, c := range rest {
		if k%64 == 63 {
			if err := r.ctx.Err(); err != nil {
				return -1, err
			}
		}
		ok, err := r.accepts(v, c.i)
		if err != nil {
			return -1, err
		}
		if ok {
			return c.i, nil
		}
	}
	return -1, nil
}

// apply moves VM v to host to, where it demands d.
func (r *rebalancer) apply(v, to int, d Vector) {
	vm := r.vms[v].vm
	from := r.vms[v].host
	src, dst := &r.hosts[from], &r.hosts[to]
	out := r.p.sizer.Demand(vm, src.h)
	for res := range out {
		src.view.Used[res] = max(src.view.Used[res]-out[res], 0)
	}
	dst.view.Used = dst.view.Used.Add(d)
	if vm.Disk > 0 {
		// The destination's space is taken; the source's is not counted
		// free again (which of its volumes held the disks is not known).
		dst.view.Volumes[volumeFor(dst.view.Volumes, vm.Disk)].Free -= vm.Disk
	}
	if k := slices.Index(src.view.VMs, vm.ID); k >= 0 {
		src.view.VMs = slices.Delete(src.view.VMs, k, k+1)
	}
	dst.view.VMs = append(dst.view.VMs, vm.ID)
	if k := slices.Index(src.vms, v); k >= 0 {
		src.vms = slices.Delete(src.vms, k, k+1)
	}
	dst.vms = append(dst.vms, v)
	src.moves++
	dst.moves++
	r.vms[v].host = to
	r.vms[v].moved = true
}

// balance plans the LoadBalance groups.
func (r *rebalancer) balance() error {
	var srcs []int
	for i := range r.hosts {
		s := &r.hosts[i]
		if r.goals[s.group] == LoadBalance && s.gives && len(s.vms) > 0 && r.load(i) > r.t {
			srcs = append(srcs, i)
		}
	}
	loads := make([]float64, len(r.hosts))
	for _, i := range srcs {
		loads[i] = r.load(i)
	}
	slices.SortFunc(srcs, func(a, b int) int {
		if c := cmp.Compare(loads[b], loads[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for _, s := range srcs {
		for r.load(s) > r.t && !r.capped(s) {
			if r.budgetLeft() <= 0 {
				return nil
			}
			moved, err := r.shed(s)
			if err != nil {
				return err
			}
			if !moved {
				break
			}
		}
	}
	return nil
}

// rbVMCand is a VM that could leave an overloaded host.
type rbVMCand struct {
	v          int
	enough     bool    // alone brings the host to the threshold
	size, help float64 // dominant share; share of the overloaded resources
}

// shed moves one VM off overloaded host s, if any move helps.
func (r *rebalancer) shed(s int) (bool, error) {
	src := &r.hosts[s]
	before := [2]float64{r.frac(src, CPU), r.frac(src, Memory)}
	over := [2]bool{before[0] > r.t, before[1] > r.t}
	var vcs []rbVMCand
	for _, v := range src.vms {
		if r.vms[v].moved {
			continue
		}
		d := r.p.sizer.Demand(r.vms[v].vm, src.h)
		share := [2]float64{d[CPU] / src.usable[CPU], d[Memory] / src.usable[Memory]}
		c := rbVMCand{v: v, enough: before[0]-share[0] <= r.t && before[1]-share[1] <= r.t, size: max(share[0], share[1])}
		for k := range share {
			if over[k] {
				c.help += share[k]
			}
		}
		if c.help > 0 {
			vcs = append(vcs, c)
		}
	}
	slices.SortFunc(vcs, func(a, b rbVMCand) int {
		if a.enough != b.enough {
			if a.enough {
				return -1
			}
			return 1
		}
		if a.enough {
			if c := cmp.Compare(a.size, b.size); c != 0 {
				return c
			}
		} else if c := cmp.Compare(b.help, a.help); c != 0 {
			return c
		}
		return cmp.Compare(a.v, b.v)
	})
	for _, c := range vcs {
		if err := r.tick(); err != nil {
			return false, err
		}
		if !r.canLeave(c.v) {
			continue
		}
		j, err := r.balanceDest(c.v, s)
		if err != nil {
			return false, err
		}
		if j < 0 {
			continue
		}
		vm := r.vms[c.v].vm
		r.apply(c.v, j, r.p.sizer.Demand(vm, r.hosts[j].h))
		r.moves = append(r.moves, Move{VM: vm, From: src.h, To: r.hosts[j].h, Reason: r.balanceReason(s, j, before, over)})
		return true, nil
	}
	return false, nil
}

// balanceDest returns the host of s's group that VM v leaves the least
// loaded, among those that take it and stay at or below the threshold, or
// -1.
func (r *rebalancer) balanceDest(v, s int) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return -1, err
	}
	vm := r.vms[v].vm
	cands := r.cands[:0]
	for _, j := range r.groups[r.hosts[s].group] {
		h := &r.hosts[j]
		if j == s || !h.ok || r.capped(j) {
			continue
		}
		d := r.p.sizer.Demand(vm, h.h)
		if !r.fits(h, d, vm.Disk) {
			continue
		}
		c := (h.view.Used[CPU] + d[CPU]) / h.usable[CPU]
		m := (h.view.Used[Memory] + d[Memory]) / h.usable[Memory]
		if c > r.t || m > r.t {
			continue
		}
		cands = append(cands, rbCand{i: j, key: max(c, m)})
	}
	r.cands = cands
	return r.pick(v, cands)
}

// consolidate plans the Consolidate groups.
func (r *rebalancer) consolidate() error {
	var cs []int
	for i := range r.hosts {
		s := &r.hosts[i]
		if r.goals[s.group] == Consolidate && s.gives && len(s.vms) > 0 && s.others == 0 {
			cs = append(cs, i)
		}
	}
	loads := make([]float64, len(r.hosts))
	for _, i := range cs {
		loads[i] = r.load(i)
	}
	slices.SortFunc(cs, func(a, b int) int {
		if c := cmp.Compare(loads[a], loads[b]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for _, c := range cs {
		s := &r.hosts[c]
		n := len(s.vms)
		if s.kept || n > r.budgetLeft() || (r.perHost > 0 && s.moves+n > r.perHost) {
			continue
		}
		if _, err := r.empty(c); err != nil {
			return err
		}
	}
	return nil
}

// rbUndo is what a tentative move changed on a destination.
type rbUndo struct {
	i          int
	used       Vector
	vols       []Volume
	nIDs, nVMs int
	moves      int
	kept       bool
	vm         int
}

// empty moves every VM off host c, or none when one of them fits nowhere.
func (r *rebalancer) empty(c int) (bool, error) {
	s := &r.hosts[c]
	saved := rbHost{view: s.view, vms: slices.Clone(s.vms), moves: s.moves}
	saved.view.VMs = slices.Clone(s.view.VMs)
	before := [2]float64{r.frac(s, CPU), r.frac(s, Memory)}
	count := len(s.vms)

	order := slices.Clone(s.vms)
	size := make(map[int]float64, len(order))
	for _, v := range order {
		d := r.p.sizer.Demand(r.vms[v].vm, s.h)
		size[v] = max(d[CPU]/s.usable[CPU], d[Memory]/s.usable[Memory])
	}
	// VMs that must share a host with others go last, after them.
	slices.SortFunc(order, func(a, b int) int {
		fa, fb := len(r.vms[a].vm.Affinity) > 0, len(r.vms[b].vm.Affinity) > 0
		if fa != fb {
			if fb {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(size[b], size[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})

	var undo []rbUndo
	var moves []Move
	rollback := func() {
		for k := len(undo) - 1; k >= 0; k-- {
			u := undo[k]
			d := &r.hosts[u.i]
			d.view.Used = u.used
			d.view.Volumes = u.vols
			d.view.VMs = d.view.VMs[:u.nIDs]
			d.vms = d.vms[:u.nVMs]
			d.moves, d.kept = u.moves, u.kept
			r.vms[u.vm].host = c
			r.vms[u.vm].moved = false
		}
		s.view, s.vms, s.moves = saved.view, saved.vms, saved.moves
	}
	for _, v := range order {
		if err := r.tick(); err != nil {
			rollback()
			return false, err
		}
		j, err := r.packDest(v, c)
		if err != nil || j < 0 {
			rollback()
			return false, err
		}
		d := &r.hosts[j]
		undo = append(undo, rbUndo{i: j, used: d.view.Used, vols: slices.Clone(d.view.Volumes), nIDs: len(d.view.VMs), nVMs: len(d.vms), moves: d.moves, kept: d.kept, vm: v})
		vm := r.vms[v].vm
		r.apply(v, j, r.p.sizer.Demand(vm, d.h))
		d.kept = true
		moves = append(moves, Move{VM: vm, From: s.h, To: d.h, Reason: r.consolidateReason(c, j, before, count)})
	}
	s.emptied = true
	r.emptied++
	r.moves = append(r.moves, moves...)
	return true, nil
}

// packDest returns the host of c's group that runs VMs, is not emptied and
// takes VM v with the least room left (normalized, L2 over the
// resources), or -1.
func (r *rebalancer) packDest(v, c int) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return -1, err
	}
	vm := r.vms[v].vm
	cands := r.cands[:0]
	for _, j := range r.groups[r.hosts[c].group] {
		h := &r.hosts[j]
		if j == c || !h.ok || h.emptied || len(h.view.VMs) == 0 || r.capped(j) {
			continue
		}
		d := r.p.sizer.Demand(vm, h.h)
		if !r.fits(h, d, vm.Disk) {
			continue
		}
		room := 0.0
		for res := range NumResources {
			if h.usable[res] <= 0 || (res > Memory && h.h.Capacity[res] == 0) {
				continue
			}
			x := (h.usable[res] - h.view.Used[res] - d[res]) / h.usable[res]
			room += x * x
		}
		cands = append(cands, rbCand{i: j, key: room})
	}
	r.cands = cands
	return r.pick(v, cands)
}

var rbResNames = [2]string{"CPU", "memory"}

// rbPct formats a fraction as a percentage; one decimal where a whole
// number would hide that it is above threshold t.
func rbPct(x, t float64) string {
	if x > t && math.Round(x*100) <= t*100 {
		return fmt.Sprintf("%.1f %%", x*100)
	}
	return fmt.Sprintf("%.0f %%", x*100)
}

// rbLoads formats the chosen resources' fractions: "93 % CPU and 85 %
// memory".
func rbLoads(f [2]float64, which [2]bool, t float64) string {
	var parts []string
	for k := range f {
		if which[k] {
			parts = append(parts, rbPct(f[k], t)+" "+rbResNames[k])
		}
	}
	return strings.Join(parts, " and ")
}

func (r *rebalancer) fracs(i int) [2]float64 {
	s := &r.hosts[i]
	return [2]float64{r.frac(s, CPU), r.frac(s, Memory)}
}

func (r *rebalancer) balanceReason(s, j int, before [2]float64, over [2]bool) string {
	t := strconv.FormatFloat(math.Round(r.t*1000)/10, 'f', -1, 64)
	return fmt.Sprintf("host %s at %s, above the %s %% threshold; after the move %s at %s, %s at %s",
		r.hosts[s].h.ID, rbLoads(before, over, r.t), t,
		r.hosts[s].h.ID, rbLoads(r.fracs(s), over, r.t),
		r.hosts[j].h.ID, rbLoads(r.fracs(j), over, r.t))
}

func (r *rebalancer) consolidateReason(c, j int, before [2]float64, count int) string {
	both := [2]bool{true, true}
	vms := "VMs"
	if count == 1 {
		vms = "VM"
	}
	return fmt.Sprintf("emptying host %s (%s, %d %s) so that it can be turned off; %s at %s after the move",
		r.hosts[c].h.ID, strings.Replace(rbLoads(before, both, math.Inf(1)), " and ", ", ", 1), count, vms,
		r.hosts[j].h.ID, rbLoads(r.fracs(j), both, math.Inf(1)))
}
