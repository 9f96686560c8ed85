package placement

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
)

// A Plugin is a named part of a placement decision.
type Plugin interface {
	Name() string
}

// A Filter decides whether a host can take a VM at all. It returns nil, or
// an error from Reject saying why not; any other error fails the call that
// ran it.
type Filter interface {
	Plugin
	Filter(ctx context.Context, vm *VM, h *Host) error
}

// A Scorer rates a host that passed every filter.
type Scorer interface {
	Plugin
	// Score rates h for vm from 0 (worst) to 1 (best).
	Score(ctx context.Context, vm *VM, h *Host) (float64, error)
}

// Weighted gives a Scorer its weight in the overall score.
type Weighted struct {
	Scorer Scorer
	Weight float64
}

// ErrRejected is what every rejection matches: errors.Is(r.Err, ErrRejected).
var ErrRejected = errors.New("rejected")

// A Rejection says why a filter turned a host down.
type Rejection struct {
	Plugin string // the filter's name
	Reason string // for a person: "memory: needs 8 GiB, 5.5 GiB free after 2 GiB reserve"
}

func (r *Rejection) Error() string { return r.Plugin + ": " + r.Reason }

// Is makes every Rejection match ErrRejected.
func (r *Rejection) Is(target error) bool { return target == ErrRejected }

// Reject returns the error a Filter returns to turn a host down; the
// placer fills in the filter's name.
func Reject(format string, args ...any) error {
	return &Rejection{Reason: fmt.Sprintf(format, args...)}
}

// A PluginError reports a plugin that failed (returned an error other than
// a rejection, a score that is not a number, or panicked).
type PluginError struct {
	Plugin string
	Host   string
	Err    error
}

func (e *PluginError) Error() string {
	return fmt.Sprintf("placement: plugin %s on host %s: %v", e.Plugin, e.Host, e.Err)
}

func (e *PluginError) Unwrap() error { return e.Err }

// Config sets up a Placer. Zero fields mean defaults.
type Config struct {
	// Filters decide which hosts can take a VM; nil means DefaultFilters.
	Filters []Filter
	// Scorers rate the hosts that pass; nil means one Headroom scorer made
	// from Goal, GroupGoals and Priority.
	Scorers []Weighted

	// Goal of every host group not in GroupGoals.
	Goal       Goal
	GroupGoals map[string]Goal
	// Priority weighs the resources in the default scorer, like the
	// classic CPU, memory, disk and network sliders; zero means CPU and
	// memory 1, disk and network 0.5.
	Priority Vector
	// Sizing picks the figure of a VM's History that placement counts on;
	// zero means the 95th percentile.
	Sizing Sizing
	// DefaultCPU is the CPU a VM without history or expectation is
	// expected to use, as a fraction of one of the host's cores; zero
	// means 0.2.
	DefaultCPU float64
}

// Sizing is the figure of a VM's measured use that placement counts on.
type Sizing int

// Sizings.
const (
	SizeP95 Sizing = iota
	SizeMean
	SizePeak
)

// DefaultPriority is the resource weighting of the default scorer.
var DefaultPriority = Vector{CPU: 1, Memory: 1, DiskIOPS: 0.5, DiskMBps: 0.5, Network: 0.5}

// A Placer rates hosts for VMs, places batches of VMs and plans
// rebalancing. It is safe for concurrent use if its plugins are.
type Placer struct {
	filters []Filter
	fnames  []string // the filters' names, asked once
	scorers []Weighted
	snames  []string
	sizer   Sizer
	goals   goals
	prio    Vector
	ready   bool // made by New
	fitDot  bool // best fit by dot product (measurement only)
}

// errNotNew reports a Placer that New did not make.
var errNotNew = errors.New("placement: use New to make a Placer")

// A Sizer turns a VM into what it would use on a host.
type Sizer struct {
	Sizing     Sizing
	DefaultCPU float64 // fraction of one core; zero means 0.2
}

// Demand returns what vm is expected to use on h: memory in full, CPU and
// the rest from its history (at the sizing figure), else its expectation,
// else the default CPU. CPU never exceeds the VM's vCPUs at the host's
// per-core clock.
func (s Sizer) Demand(vm *VM, h *Host) Vector {
	var d Vector
	switch {
	case vm.History != nil:
		switch s.Sizing {
		case SizeMean:
			d = vm.History.Mean
		case SizePeak:
			d = vm.History.Peak
		default:
			d = vm.History.P95
		}
	default:
		d = vm.Expected
	}
	core := coreMHz(h)
	if d[CPU] == 0 && vm.History == nil {
		f := s.DefaultCPU
		if f == 0 {
			f = 0.2
		}
		d[CPU] = f * core
	}
	if vm.VCPU > 0 && core > 0 {
		d[CPU] = min(d[CPU], float64(vm.VCPU)*core)
	}
	d[Memory] = vm.Memory
	return d
}

func coreMHz(h *Host) float64 {
	if h.Cores > 0 {
		return h.Capacity[CPU] / float64(h.Cores)
	}
	return h.Capacity[CPU]
}

// usable returns what a host can give VMs: its capacity less its reserve.
func usable(h *Host) Vector {
	u := h.Capacity
	u[CPU] -= h.Reserve[CPU] * h.Capacity[CPU]
	for r := Memory; r < NumResources; r++ {
		u[r] -= h.Reserve[r]
	}
	return u
}

type goals struct {
	def     Goal
	byGroup map[string]Goal
}

func (g goals) of(group string) Goal {
	if x, ok := g.byGroup[group]; ok {
		return x
	}
	return g.def
}

// New returns a Placer with the configured plugins.
func New(cfg Config) (*Placer, error) {
	p := &Placer{
		sizer: Sizer{Sizing: cfg.Sizing, DefaultCPU: cfg.DefaultCPU},
		goals: goals{def: cfg.Goal, byGroup: cfg.GroupGoals},
		prio:  cfg.Priority,
	}
	if p.prio == (Vector{}) {
		p.prio = DefaultPriority
	}
	if !p.prio.valid() {
		return nil, fmt.Errorf("placement: priorities must be finite and not negative: %v", p.prio)
	}
	if cfg.Goal != LoadBalance && cfg.Goal != Consolidate {
		return nil, fmt.Errorf("placement: unknown goal %d", int(cfg.Goal))
	}
	for g, x := range cfg.GroupGoals {
		if x != LoadBalance && x != Consolidate {
			return nil, fmt.Errorf("placement: unknown goal %d for group %q", int(x), g)
		}
	}
	if cfg.Sizing < SizeP95 || cfg.Sizing > SizePeak {
		return nil, fmt.Errorf("placement: unknown sizing %d", int(cfg.Sizing))
	}
	if cfg.DefaultCPU < 0 || math.IsNaN(cfg.DefaultCPU) {
		return nil, fmt.Errorf("placement: default CPU fraction %v", cfg.DefaultCPU)
	}
	p.filters = cfg.Filters
	if p.filters == nil {
		p.filters = DefaultFilters(p.sizer)
	}
	p.scorers = cfg.Scorers
	if p.scorers == nil {
		p.scorers = []Weighted{{Scorer: &Headroom{Sizer: p.sizer, Goal: cfg.Goal, GroupGoals: cfg.GroupGoals, Priority: p.prio}, Weight: 1}}
	}
	for i, f := range p.filters {
		if f == nil {
			return nil, fmt.Errorf("placement: filter %d is nil", i)
		}
		name, err := pluginName(f)
		if err != nil {
			return nil, fmt.Errorf("placement: filter %d: %w", i, err)
		}
		p.fnames = append(p.fnames, name)
	}
	for i, w := range p.scorers {
		if w.Scorer == nil || !(w.Weight > 0) || math.IsInf(w.Weight, 0) {
			return nil, fmt.Errorf("placement: scorer %d: needs a scorer and a positive finite weight", i)
		}
		name, err := pluginName(w.Scorer)
		if err != nil {
			return nil, fmt.Errorf("placement: scorer %d: %w", i, err)
		}
		p.snames = append(p.snames, name)
	}
	p.ready = true
	return p, nil
}

// pluginName asks a plugin its name, once, safely.
func pluginName(pl Plugin) (name string, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("Name panicked: %v", v)
		}
	}()
	return pl.Name(), nil
}

// DefaultFilters returns the built-in filters in the order they run.
func DefaultFilters(s Sizer) []Filter {
	return []Filter{HostUp{}, InGroup{}, HasFeatures{}, Affinity{}, &FitsResources{Sizer: s}}
}

// A Rating is a host's answer for a VM.
type Rating struct {
	Host *Host
	// Stars from 0 to 5 in half stars; 0 for a rejected host.
	Stars float64
	// Score is the weighted mean of the scorers' scores, from 0 to 1.
	Score float64
	// Scores holds each scorer's score, in Config order.
	Scores []PluginScore
	// Err is nil for a host that can take the VM, and matches ErrRejected
	// (a *Rejection) for one that cannot.
	Err error
}

// PluginScore is one scorer's score of a host.
type PluginScore struct {
	Plugin string
	Score  float64
	Weight float64
}

// ErrNoHosts reports a call given no hosts.
var ErrNoHosts = errors.New("placement: no hosts")

// Rate rates every host for vm and returns all of them, best first: hosts
// that can take the VM by score (ties by host ID), then the rejected ones by
// host ID with their reasons. Only a failing plugin or bad input fails it.
func (p *Placer) Rate(ctx context.Context, vm *VM, hosts []*Host) ([]Rating, error) {
	if !p.ready {
		return nil, errNotNew
	}
	if err := checkInput(vm, hosts); err != nil {
		return nil, err
	}
	ns := len(p.scorers)
	rs := make([]Rating, len(hosts))
	scores := make([]PluginScore, len(hosts)*ns)
	for i, h := range hosts {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		r := &rs[i]
		r.Host = h
		rej, err := p.filter(ctx, vm, h)
		if err != nil {
			return nil, err
		}
		if rej != nil {
			r.Err = rej
			continue
		}
		r.Scores = scores[i*ns : (i+1)*ns : (i+1)*ns]
		if err := p.score(ctx, vm, h, r); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(rs, compareRatings) // a total order: host IDs are unique
	return rs, nil
}

func compareRatings(a, b Rating) int {
	if (a.Err == nil) != (b.Err == nil) {
		if a.Err == nil {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(b.Score, a.Score); c != 0 {
		return c
	}
	return cmp.Compare(a.Host.ID, b.Host.ID)
}

// filter runs the filters; it returns the rejection, if any, or the error
// of a filter that failed.
func (p *Placer) filter(ctx context.Context, vm *VM, h *Host) (rej error, err error) {
	if !validHost(h) {
		return &Rejection{Plugin: "Validate", Reason: fmt.Sprintf("capacity %v, use %v, reserve %v, %d cores or the use series is not valid: amounts finite and not negative, CPU, memory and cores above zero", h.Capacity, h.Used, h.Reserve, h.Cores)}, nil
	}
	for k, f := range p.filters {
		e := runFilter(ctx, f, vm, h)
		if e == nil {
			continue
		}
		var r *Rejection
		if errors.As(e, &r) && r != nil {
			if r.Plugin == "" {
				// A copy: the plugin may return the same rejection for
				// many hosts, from many goroutines.
				c := *r
				c.Plugin = p.fnames[k]
				return &c, nil
			}
			return r, nil
		}
		return nil, &PluginError{Plugin: p.fnames[k], Host: h.ID, Err: e}
	}
	return nil, nil
}

func runFilter(ctx context.Context, f Filter, vm *VM, h *Host) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return f.Filter(ctx, vm, h)
}

func runScorer(ctx context.Context, s Scorer, vm *VM, h *Host) (x float64, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return s.Score(ctx, vm, h)
}

func (p *Placer) score(ctx context.Context, vm *VM, h *Host, r *Rating) error {
	var total, wsum float64
	for k, w := range p.scorers {
		s, err := runScorer(ctx, w.Scorer, vm, h)
		if err == nil && (math.IsNaN(s) || math.IsInf(s, 0)) {
			err = fmt.Errorf("score %v is not a number", s)
		}
		if err != nil {
			return &PluginError{Plugin: p.snames[k], Host: h.ID, Err: err}
		}
		s = min(max(s, 0), 1)
		r.Scores[k] = PluginScore{Plugin: p.snames[k], Score: s, Weight: w.Weight}
		total += s * w.Weight
		wsum += w.Weight
	}
	r.Score = 1 // no scorer: every host that passes is as good
	if wsum > 0 {
		r.Score = total / wsum
	}
	r.Stars = math.Round(r.Score*10) / 2
	return nil
}

func validHost(h *Host) bool {
	if !h.Capacity.valid() || !h.Used.valid() || !h.Reserve.valid() ||
		!(h.Capacity[CPU] > 0) || !(h.Capacity[Memory] > 0) || !(h.Reserve[CPU] < 1) || h.Cores <= 0 {
		return false
	}
	for _, u := range h.UsedSeries {
		if !u.valid() {
			return false
		}
	}
	return true
}

// checkInput refuses what no answer can be given for.
func checkInput(vm *VM, hosts []*Host) error {
	if len(hosts) == 0 {
		return ErrNoHosts
	}
	if err := checkVM(vm); err != nil {
		return err
	}
	return checkHosts(hosts)
}

func checkVM(vm *VM) error {
	if vm == nil {
		return errors.New("placement: nil VM")
	}
	if !vm.Expected.valid() || math.IsNaN(vm.Memory) || math.IsInf(vm.Memory, 0) || vm.Memory < 0 || vm.VCPU < 0 || vm.Disk < 0 {
		return fmt.Errorf("placement: VM %s: demand must be finite and not negative (memory %v, expected %v, %d vCPU, disk %d)", vm.ID, vm.Memory, vm.Expected, vm.VCPU, vm.Disk)
	}
	if h := vm.History; h != nil {
		if !h.Mean.valid() || !h.P95.valid() || !h.Peak.valid() {
			return fmt.Errorf("placement: VM %s: history figures must be finite and not negative", vm.ID)
		}
		for i, s := range h.Series {
			if !s.valid() {
				return fmt.Errorf("placement: VM %s: history sample %d is not finite or negative", vm.ID, i)
			}
		}
	}
	return nil
}

func checkHosts(hosts []*Host) error {
	seen := make(map[string]struct{}, len(hosts))
	for i, h := range hosts {
		if h == nil {
			return fmt.Errorf("placement: host %d is nil", i)
		}
		if _, dup := seen[h.ID]; dup {
			return fmt.Errorf("placement: duplicate host ID %q", h.ID)
		}
		seen[h.ID] = struct{}{}
	}
	return nil
}
