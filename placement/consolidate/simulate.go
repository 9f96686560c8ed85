package consolidate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// A SimHost is a physical host of a simulated data centre.
type SimHost struct {
	ID string
	// CPU is the host's capacity in MIPS (or MHz), the unit of the
	// machines' CPU; the cores are pooled.
	CPU float64
	// Memory is the host's memory in MiB; zero means memory does not
	// limit what the host can take.
	Memory float64
	// Power gives the host's draw; nil counts no energy for it.
	Power PowerModel
}

// A Migration moves a VM (an index into the traces Simulate was given) to
// a host (an index into its hosts). For a VM that has no host yet, it is
// the VM's first placement, not a migration.
type Migration struct {
	VM, To int
}

// A Policy decides, after each sample of the replay, which VMs to move
// where. Simulate calls Decide once before the first sample (every VM
// unplaced: the policy must place them all, knowing only their sizes) and
// then after every sample but the last, with the history up to that
// sample; the moves take effect for the next interval.
//
// A Policy must not keep the SimState, which is only valid during the
// call; it may keep its own state between calls (a Policy value serves one
// Simulate at a time).
type Policy interface {
	Decide(ctx context.Context, s *SimState) ([]Migration, error)
}

// SimOptions tune Simulate. The zero value (or nil) means CloudSim's
// migration model.
type SimOptions struct {
	// MigrationMBps is the bandwidth a live migration gets, in MiB/s: a
	// VM's migration lasts Machine.Memory / MigrationMBps seconds (at most
	// one interval). Zero means 62.5, half of a 1 Gb/s link, as in the
	// CloudSim experiments.
	MigrationMBps float64
	// Progress, when set, is called after every step with the steps done
	// and the total.
	Progress func(done, total int)
}

// SimResult is what a replay measured.
type SimResult struct {
	// Steps is the number of intervals replayed; Interval their length.
	Steps    int
	Interval time.Duration
	// EnergyKWh is the energy the hosts drew: each host that runs at least
	// one VM draws its power model's watts at its CPU utilisation (capped
	// at 1); a host without VMs is off and draws nothing.
	EnergyKWh float64
	// SLATAH (SLA violation Time per Active Host) is the fraction of the
	// hosts' active time during which the CPU demanded of a host exceeded
	// its capacity.
	SLATAH float64
	// PDM (Performance Degradation due to Migrations) is the CPU the VMs
	// lost to migrations (10 % of a VM's demand while it migrates, as in
	// CloudSim) as a fraction of all the CPU they demanded.
	PDM float64
	// SLAV is SLATAH × PDM, the combined SLA metric of Beloglazov & Buyya.
	SLAV float64
	// Migrations counts the live migrations (first placements excluded).
	Migrations int
	// OverloadedHostSteps counts the host-intervals in which a host's
	// demand exceeded its capacity at some time.
	OverloadedHostSteps int
	// ActiveHostsMean and ActiveHostsMax count the hosts that run VMs
	// after the interval's migrations, per interval.
	ActiveHostsMean float64
	ActiveHostsMax  int
	// Rounds counts the policy's decisions after a sample; DecisionTime
	// is their total wall time and MaxDecisionTime the longest.
	Rounds          int
	DecisionTime    time.Duration
	MaxDecisionTime time.Duration
}

// MeanDecisionTime is the mean wall time of one decision round.
func (r *SimResult) MeanDecisionTime() time.Duration {
	if r.Rounds == 0 {
		return 0
	}
	return r.DecisionTime / time.Duration(r.Rounds)
}

// A PolicyError is a decision Simulate cannot apply: a move to a host or of
// a VM that does not exist, a VM left without a host, or a host given more
// memory than it has.
type PolicyError struct {
	Step int // the sample after which the policy decided; -1 before the first
	Msg  string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("consolidate: policy decision after step %d: %s", e.Step, e.Msg)
}

// ErrBadPolicy is what every PolicyError matches.
var ErrBadPolicy = errors.New("consolidate: policy decision cannot be applied")

// Is makes a PolicyError match ErrBadPolicy.
func (e *PolicyError) Is(target error) bool { return target == ErrBadPolicy }

// SimState is what a Policy sees of a replay: the hosts, the VMs' sizes,
// where each VM runs, and the VMs' CPU demand up to the current sample,
// never beyond.
type SimState struct {
	step     int
	interval time.Duration
	hosts    []SimHost
	ms       []Machine
	demand   [][]float64 // per VM, over the whole replay: sliced to step+1 on the way out
	capa     []float64   // per VM, CPU capacity
	hostOf   []int
	on       [][]int // per host, its VMs in ascending order
	mbps     float64
}

// MigrationTime returns how long a live migration of VM v lasts.
func (s *SimState) MigrationTime(v int) time.Duration {
	return time.Duration(s.ms[v].Memory / s.mbps * float64(time.Second))
}

// Step returns the index of the latest sample the policy may read (-1
// before the first).
func (s *SimState) Step() int { return s.step }

// Interval returns the time between samples.
func (s *SimState) Interval() time.Duration { return s.interval }

// NumHosts and NumVMs count the hosts and the VMs.
func (s *SimState) NumHosts() int { return len(s.hosts) }

// NumVMs counts the VMs.
func (s *SimState) NumVMs() int { return len(s.ms) }

// Host returns host h.
func (s *SimState) Host(h int) SimHost { return s.hosts[h] }

// VMID returns VM v's ID.
func (s *SimState) VMID(v int) string { return s.ms[v].ID }

// VMCPU returns VM v's CPU capacity, the most it can demand.
func (s *SimState) VMCPU(v int) float64 { return s.capa[v] }

// VMMemory returns VM v's memory in MiB.
func (s *SimState) VMMemory(v int) float64 { return s.ms[v].Memory }

// HostOf returns the host VM v runs on, -1 when it has none.
func (s *SimState) HostOf(v int) int { return s.hostOf[v] }

// VMsOn returns the VMs on host h in ascending order. The slice must not be
// modified.
func (s *SimState) VMsOn(h int) []int { return s.on[h][:len(s.on[h]):len(s.on[h])] }

// Demand returns VM v's CPU demand (in the unit of its capacity) at every
// sample up to the current one: Step()+1 values, the latest last. The
// slice must not be modified.
func (s *SimState) Demand(v int) []float64 {
	n := s.step + 1
	return s.demand[v][:n:n]
}

// Load returns host h's CPU demand at the current sample: the sum of its
// VMs' demand (0 before the first sample).
func (s *SimState) Load(h int) float64 {
	if s.step < 0 {
		return 0
	}
	sum := 0.0
	for _, v := range s.on[h] {
		sum += s.demand[v][s.step]
	}
	return sum
}

// migration is a move being replayed: VM v from host from to host to,
// lasting dur of the interval (a fraction).
type migration struct {
	v, from, to int
	dur         float64
}

// Simulate replays the machines' CPU histories as VMs on the hosts, with a
// Policy that consolidates them dynamically: after each sample it may
// migrate VMs, and the next interval runs on the new placement. It counts
// what the Beloglazov & Buyya experiments count, so that policies can be
// compared with the published CloudSim results: energy, SLATAH, PDM and
// SLAV, migrations, and the policy's decision time.
//
// The model. A VM's demand in an interval is its sample (Series.CPU in
// percent of Machine.CPU, else Series.CPUCapacity; a missing sample counts
// as the VM's peak, as in Plan), constant over the interval. A host's
// demand is the sum of its VMs'. A live migration of VM v lasts
// Memory/MigrationMBps from the start of the interval after the decision:
// meanwhile v runs on its old host and the new host holds 10 % of v's
// demand in reserve; then v runs on the new host. Hosts are pooled CPU (a
// VM may need more than one core of a host). A host without VMs is off.
//
// All machines must share one time line; Machine.Memory is a VM's memory,
// which migrations copy and which SimHost.Memory limits.
func Simulate(ctx context.Context, traces []Machine, hosts []SimHost, policy Policy, opts *SimOptions) (*SimResult, error) {
	var o SimOptions
	if opts != nil {
		o = *opts
	}
	if o.MigrationMBps == 0 {
		o.MigrationMBps = 62.5
	}
	if !(o.MigrationMBps > 0) || math.IsInf(o.MigrationMBps, 0) {
		return nil, fmt.Errorf("consolidate: migration bandwidth %v MiB/s must be above zero and finite", o.MigrationMBps)
	}
	if policy == nil {
		return nil, errors.New("consolidate: Simulate needs a policy")
	}
	if len(traces) == 0 {
		return nil, errors.New("consolidate: nothing to simulate: no traces")
	}
	if len(hosts) == 0 {
		return nil, errors.New("consolidate: nothing to simulate on: no hosts")
	}
	seen := make(map[string]bool, len(hosts))
	for i, h := range hosts {
		if !(h.CPU > 0) || math.IsInf(h.CPU, 0) {
			return nil, fmt.Errorf("consolidate: host %d (%s): CPU %v must be above zero and finite", i, h.ID, h.CPU)
		}
		if !(h.Memory >= 0) || math.IsInf(h.Memory, 0) {
			return nil, fmt.Errorf("consolidate: host %d (%s): memory %v must be finite and not negative", i, h.ID, h.Memory)
		}
		if seen[h.ID] {
			return nil, fmt.Errorf("consolidate: two hosts have the ID %q", h.ID)
		}
		seen[h.ID] = true
	}
	clear(seen)
	for _, m := range traces {
		if seen[m.ID] {
			return nil, fmt.Errorf("consolidate: two traces have the ID %q", m.ID)
		}
		seen[m.ID] = true
	}
	_, demand, interval, err := machineVMs(traces)
	if err != nil {
		return nil, err
	}
	if interval <= 0 {
		return nil, errors.New("consolidate: the traces do not say their interval (Series.Interval)")
	}
	st := &SimState{
		step:     -1,
		interval: interval,
		hosts:    hosts,
		ms:       traces,
		demand:   demand,
		capa:     make([]float64, len(traces)),
		hostOf:   make([]int, len(traces)),
		on:       make([][]int, len(hosts)),
		mbps:     o.MigrationMBps,
	}
	for v, m := range traces {
		st.capa[v] = m.CPU
		if st.capa[v] == 0 {
			st.capa[v] = m.Series.CPUCapacity
		}
		st.hostOf[v] = -1
	}
	n := len(demand[0])
	res := &SimResult{Steps: n, Interval: interval}
	secs := interval.Seconds()

	decide := func() ([]migration, error) {
		start := time.Now()
		moves, err := policy.Decide(ctx, st)
		took := time.Since(start)
		if err != nil {
			return nil, err
		}
		if st.step >= 0 {
			res.Rounds++
			res.DecisionTime += took
			res.MaxDecisionTime = max(res.MaxDecisionTime, took)
		}
		return st.apply(moves, o.MigrationMBps, secs)
	}
	if _, err := decide(); err != nil {
		return nil, err
	}
	var pending []migration
	var active, over, demanded, lost float64
	for t := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st.step = t
		out := make([][]migration, len(hosts)) // migrations per source and target host
		in := make([][]migration, len(hosts))
		for _, m := range pending {
			out[m.from] = append(out[m.from], m)
			in[m.to] = append(in[m.to], m)
		}
		activeHosts := 0
		for h := range hosts {
			if len(st.on[h]) == 0 && len(out[h]) == 0 {
				continue
			}
			if len(st.on[h]) > 0 {
				activeHosts++
			}
			a, ov, e := hostInterval(hosts[h], st.on[h], out[h], in[h], demand, t)
			active += a * secs
			over += ov * secs
			if ov > 0 {
				res.OverloadedHostSteps++
			}
			res.EnergyKWh += e * secs / 3600 / 1000
		}
		res.ActiveHostsMean += float64(activeHosts)
		res.ActiveHostsMax = max(res.ActiveHostsMax, activeHosts)
		for _, m := range pending {
			lost += 0.1 * demand[m.v][t] * m.dur * secs
		}
		for v := range demand {
			demanded += demand[v][t] * secs
		}
		pending = nil
		if t < n-1 {
			if pending, err = decide(); err != nil {
				return nil, err
			}
			res.Migrations += len(pending)
		}
		if o.Progress != nil {
			o.Progress(t+1, n)
		}
	}
	res.ActiveHostsMean /= float64(n)
	if active > 0 {
		res.SLATAH = over / active
	}
	if demanded > 0 {
		res.PDM = lost / demanded
	}
	res.SLAV = res.SLATAH * res.PDM
	return res, nil
}

// hostInterval replays one host over interval t: the VMs it holds after
// the migrations (on), those leaving it (out) and those arriving (in).
// It returns the fraction of the interval the host was active (ran a VM),
// the fraction it was overloaded, and its energy in watts × intervals.
func hostInterval(h SimHost, on []int, out, in []migration, demand [][]float64, t int) (active, over, energy float64) {
	// Load and VM count are piecewise constant: they change when a
	// migration ends.
	load, count := 0.0, len(on)+len(out)
	for _, v := range on {
		load += demand[v][t]
	}
	type change struct {
		at, delta float64
		count     int
	}
	var ch []change
	for _, m := range in {
		d := demand[m.v][t]
		load -= 0.9 * d // only the 10 % reserve until the copy ends
		ch = append(ch, change{m.dur, 0.9 * d, 0})
	}
	for _, m := range out {
		d := demand[m.v][t]
		load += d
		ch = append(ch, change{m.dur, -d, -1})
	}
	slices.SortFunc(ch, func(a, b change) int { return cmp.Compare(a.at, b.at) })
	at := 0.0
	seg := func(until float64) {
		if until <= at || count == 0 {
			at = max(at, until)
			return
		}
		w := until - at
		active += w
		if load > h.CPU*(1+1e-9) {
			over += w
		}
		if h.Power != nil {
			energy += h.Power.Watts(load/h.CPU) * w
		}
		at = until
	}
	for _, c := range ch {
		seg(c.at)
		load += c.delta
		count += c.count
	}
	seg(1)
	return active, over, energy
}

// apply checks the policy's moves and carries them out in the state,
// returning the live migrations among them.
func (s *SimState) apply(moves []Migration, mbps, secs float64) ([]migration, error) {
	fail := func(format string, a ...any) error {
		return &PolicyError{Step: s.step, Msg: fmt.Sprintf(format, a...)}
	}
	var out []migration
	moved := map[int]bool{}
	for _, mv := range moves {
		if mv.VM < 0 || mv.VM >= len(s.ms) {
			return nil, fail("no VM %d (there are %d)", mv.VM, len(s.ms))
		}
		if mv.To < 0 || mv.To >= len(s.hosts) {
			return nil, fail("VM %s: no host %d (there are %d)", s.ms[mv.VM].ID, mv.To, len(s.hosts))
		}
		if moved[mv.VM] {
			return nil, fail("VM %s is moved twice", s.ms[mv.VM].ID)
		}
		moved[mv.VM] = true
		from := s.hostOf[mv.VM]
		if from == mv.To {
			return nil, fail("VM %s is already on host %s", s.ms[mv.VM].ID, s.hosts[mv.To].ID)
		}
		if from >= 0 {
			s.on[from] = deleteSorted(s.on[from], mv.VM)
			dur := s.ms[mv.VM].Memory / mbps / secs
			out = append(out, migration{v: mv.VM, from: from, to: mv.To, dur: min(dur, 1)})
		}
		s.hostOf[mv.VM] = mv.To
		s.on[mv.To] = insertSorted(s.on[mv.To], mv.VM)
	}
	for v, h := range s.hostOf {
		if h < 0 {
			return nil, fail("VM %s has no host", s.ms[v].ID)
		}
	}
	for h, vs := range s.on {
		if s.hosts[h].Memory == 0 {
			continue
		}
		mem := 0.0
		for _, v := range vs {
			mem += s.ms[v].Memory
		}
		if mem > s.hosts[h].Memory*(1+1e-9) {
			return nil, fail("host %s would hold %.0f MiB of VMs, more than its %.0f MiB", s.hosts[h].ID, mem, s.hosts[h].Memory)
		}
	}
	return out, nil
}

func insertSorted(s []int, x int) []int {
	i, _ := slices.BinarySearch(s, x)
	return slices.Insert(s, i, x)
}

func deleteSorted(s []int, x int) []int {
	i, ok := slices.BinarySearch(s, x)
	if !ok {
		return s
	}
	return slices.Delete(s, i, i+1)
}
