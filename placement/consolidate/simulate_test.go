package consolidate

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/placement/history"
)

// scripted is a Policy that plays moves given per step (index step+1).
type scripted struct {
	moves [][]Migration
	seen  []int // len(Demand(0)) at each call
}

func (p *scripted) Decide(_ context.Context, s *SimState) ([]Migration, error) {
	if s.Step() >= 0 {
		p.seen = append(p.seen, len(s.Demand(0)))
	}
	if i := s.Step() + 1; i < len(p.moves) {
		return p.moves[i], nil
	}
	return nil, nil
}

func simMachine(id string, cpu, mem float64, pct ...float64) Machine {
	return Machine{ID: id, CPU: cpu, Memory: mem, Series: history.Series{ID: id, Interval: time.Hour, CPU: pct}}
}

// TestSimulateAccounting checks the model on a case worked by hand: VM a
// (1000 MIPS, 625 MiB: a 10 s migration at 62.5 MiB/s) moves from h0 to h1
// after the first sample and overloads h1 once its copy ends.
func TestSimulateAccounting(t *testing.T) {
	ms := []Machine{
		simMachine("a", 1000, 625, 50, 100, 20),
		simMachine("b", 1000, 0, 60, 50, 50),
	}
	hosts := []SimHost{
		{ID: "h0", CPU: 1000, Power: Linear{Idle: 100, Max: 200}},
		{ID: "h1", CPU: 1400, Power: Linear{Idle: 100, Max: 300}},
	}
	p := &scripted{moves: [][]Migration{
		{{VM: 0, To: 0}, {VM: 1, To: 1}},
		{{VM: 0, To: 1}},
	}}
	r, err := Simulate(context.Background(), ms, hosts, p, nil)
	require.NoError(t, err)

	const f = 10.0 / 3600 // the migration's share of the interval
	wh := 0.0
	// Step 0: h0 runs a at 500, h1 runs b at 600.
	wh += 150 + (100 + 200*600.0/1400)
	// Step 1: h0 runs a (1000 = its capacity) until the copy ends, then is
	// off; h1 holds b (500) and 10 % of a (100) meanwhile, then 1500 >
	// 1400: overloaded, at full power.
	wh += 200 * f
	wh += (100+200*600.0/1400)*f + 300*(1-f)
	// Step 2: h1 runs a 200 and b 500.
	wh += 100 + 200*700.0/1400

	assert.InDelta(t, wh/1000, r.EnergyKWh, 1e-9)
	assert.InDelta(t, 3590.0/(7200+3610+3600), r.SLATAH, 1e-12)
	assert.InDelta(t, 0.1*1000*10/((500+600+1000+500+200+500)*3600.0), r.PDM, 1e-15)
	assert.InDelta(t, r.SLATAH*r.PDM, r.SLAV, 1e-18)
	assert.Equal(t, 1, r.Migrations)
	assert.Equal(t, 1, r.OverloadedHostSteps)
	assert.Equal(t, 3, r.Steps)
	assert.Equal(t, time.Hour, r.Interval)
	assert.InDelta(t, 4.0/3, r.ActiveHostsMean, 1e-12) // h0 is off after step 1's migration
	assert.Equal(t, 2, r.ActiveHostsMax)
	assert.Equal(t, 2, r.Rounds) // after samples 0 and 1, not after the last
	// The policy saw one sample, then two: never the future.
	assert.Equal(t, []int{1, 2}, p.seen)
}

// peeker tries to read past the current sample.
type peeker struct{ peeked bool }

func (p *peeker) Decide(_ context.Context, s *SimState) ([]Migration, error) {
	if s.Step() < 0 {
		return []Migration{{VM: 0, To: 0}}, nil
	}
	d := s.Demand(0)
	if cap(d) > s.Step()+1 {
		p.peeked = true
	}
	return nil, nil
}

func TestSimulateHidesTheFuture(t *testing.T) {
	p := &peeker{}
	_, err := Simulate(context.Background(), []Machine{simMachine("a", 100, 0, 1, 2, 3, 4)},
		[]SimHost{{ID: "h", CPU: 100}}, p, nil)
	require.NoError(t, err)
	assert.False(t, p.peeked, "Demand's capacity reaches samples not yet seen")
}

func TestSimulateRefusesBadDecisions(t *testing.T) {
	ms := []Machine{simMachine("a", 100, 512, 10, 10), simMachine("b", 100, 512, 10, 10)}
	hosts := []SimHost{{ID: "h0", CPU: 1000, Memory: 1024}, {ID: "h1", CPU: 1000, Memory: 600}}
	for name, moves := range map[string][][]Migration{
		"unplaced":       {{{VM: 0, To: 0}}},
		"no such host":   {{{VM: 0, To: 0}, {VM: 1, To: 2}}},
		"no such VM":     {{{VM: 0, To: 0}, {VM: 1, To: 0}, {VM: 2, To: 0}}},
		"moved twice":    {{{VM: 0, To: 0}, {VM: 1, To: 0}, {VM: 1, To: 1}}},
		"already there":  {{{VM: 0, To: 0}, {VM: 1, To: 0}}, {{VM: 0, To: 0}}},
		"out of memory":  {{{VM: 0, To: 1}, {VM: 1, To: 1}}},
		"memory later":   {{{VM: 0, To: 0}, {VM: 1, To: 1}}, {{VM: 0, To: 1}}},
		"negative index": {{{VM: -1, To: 0}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Simulate(context.Background(), ms, hosts, &scripted{moves: moves}, nil)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrBadPolicy), "%v", err)
			var pe *PolicyError
			require.ErrorAs(t, err, &pe)
			t.Log(err)
		})
	}
}

func TestSimulateRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	ok := []Machine{simMachine("a", 100, 0, 10, 20)}
	hosts := []SimHost{{ID: "h", CPU: 100}}
	pol := &scripted{moves: [][]Migration{{{VM: 0, To: 0}}}}
	cases := map[string]func() error{
		"no traces": func() error { _, err := Simulate(ctx, nil, hosts, pol, nil); return err },
		"no hosts":  func() error { _, err := Simulate(ctx, ok, nil, pol, nil); return err },
		"no policy": func() error { _, err := Simulate(ctx, ok, hosts, nil, nil); return err },
		"zero host CPU": func() error {
			_, err := Simulate(ctx, ok, []SimHost{{ID: "h"}}, pol, nil)
			return err
		},
		"duplicate host": func() error {
			_, err := Simulate(ctx, ok, []SimHost{{ID: "h", CPU: 1}, {ID: "h", CPU: 1}}, pol, nil)
			return err
		},
		"duplicate trace": func() error {
			_, err := Simulate(ctx, append(ok, ok[0]), hosts, pol, nil)
			return err
		},
		"different lengths": func() error {
			_, err := Simulate(ctx, append(ok, simMachine("b", 100, 0, 1, 2, 3)), hosts, pol, nil)
			return err
		},
		"no interval": func() error {
			m := ok[0]
			m.Series.Interval = 0
			_, err := Simulate(ctx, []Machine{m}, hosts, pol, nil)
			return err
		},
		"negative bandwidth": func() error {
			_, err := Simulate(ctx, ok, hosts, pol, &SimOptions{MigrationMBps: -1})
			return err
		},
		"negative sample": func() error {
			_, err := Simulate(ctx, []Machine{simMachine("a", 100, 0, 10, -5)}, hosts, pol, nil)
			return err
		},
	}
	for name, run := range cases {
		t.Run(name, func(t *testing.T) {
			err := run()
			require.Error(t, err)
			t.Log(err)
		})
	}
}

func TestSimulateCancel(t *testing.T) {
	ms := cloudSimVMs(readPlanetLabDay(t, "../history/testdata/planetlab/20110303-sample.tar.gz"))
	ctx, cancel := context.WithCancel(context.Background())
	steps := 0
	_, err := Simulate(ctx, ms, cloudSimHosts(40), &Dynamic{}, &SimOptions{Progress: func(done, total int) {
		steps = done
		if done == 10 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 10, steps)
}

// TestSimulateSample replays the 20-VM PlanetLab sample with both policies.
func TestSimulateSample(t *testing.T) {
	ms := cloudSimVMs(readPlanetLabDay(t, "../history/testdata/planetlab/20110303-sample.tar.gz"))
	hosts := cloudSimHosts(40)
	ctx := context.Background()
	lr, err := Simulate(ctx, ms, hosts, &LRMMT{}, nil)
	require.NoError(t, err)
	dy, err := Simulate(ctx, ms, hosts, &Dynamic{}, nil)
	require.NoError(t, err)
	for _, r := range []*SimResult{lr, dy} {
		assert.Equal(t, 288, r.Steps)
		assert.Equal(t, 287, r.Rounds)
		assert.Greater(t, r.EnergyKWh, 0.0)
		assert.GreaterOrEqual(t, r.SLATAH, 0.0)
		assert.LessOrEqual(t, r.SLATAH, 1.0)
		// Every VM ran somewhere at every step: at least the hosts their
		// demand needs, at most one per VM.
		assert.GreaterOrEqual(t, r.ActiveHostsMean, 1.0)
		assert.LessOrEqual(t, r.ActiveHostsMax, len(ms))
	}
	t.Logf("LR-MMT  %.2f kWh SLATAH %.2f %% %d migrations %.1f hosts", lr.EnergyKWh, 100*lr.SLATAH, lr.Migrations, lr.ActiveHostsMean)
	t.Logf("Dynamic %.2f kWh SLATAH %.2f %% %d migrations %.1f hosts", dy.EnergyKWh, 100*dy.SLATAH, dy.Migrations, dy.ActiveHostsMean)
}

// lastStep is a Policy spy: the hosts in use when the policy decided for
// the last time.
type lastStep struct {
	p      Policy
	active int
}

func (l *lastStep) Decide(ctx context.Context, s *SimState) ([]Migration, error) {
	moves, err := l.p.Decide(ctx, s)
	used := map[int]bool{}
	for v := range s.NumVMs() {
		used[s.HostOf(v)] = true
	}
	for _, m := range moves {
		used[m.To] = true
	}
	l.active = len(used) // an upper bound: hosts emptied by the moves still count
	return moves, err
}

// Steady VMs placed one per host at their capacity end up on one host.
func TestDynamicConsolidatesSteadyVMs(t *testing.T) {
	var ms []Machine
	var hosts []SimHost
	for i := range 8 {
		pct := make([]float64, 30)
		for j := range pct {
			pct[j] = 10
		}
		ms = append(ms, simMachine(fmt.Sprint("vm", i), 1000, 512, pct...))
		hosts = append(hosts, SimHost{ID: fmt.Sprint("h", i), CPU: 1000, Power: ML110G5Spec})
	}
	spy := &lastStep{p: &Dynamic{}}
	r, err := Simulate(context.Background(), ms, hosts, spy, nil)
	require.NoError(t, err)
	assert.Equal(t, 8, r.ActiveHostsMax)
	assert.Zero(t, r.OverloadedHostSteps)
	assert.Positive(t, r.Migrations)
	// 8 × 100 MIPS fit one host once the prior is dropped; allow the
	// count to settle.
	assert.Equal(t, 1, spy.active)
}

// A host that is overloaded is relieved for the next interval.
func TestDynamicRelievesOverload(t *testing.T) {
	a := make([]float64, 30)
	b := make([]float64, 30)
	for i := range a {
		a[i], b[i] = 40, 40
		if i >= 20 {
			a[i], b[i] = 100, 60 // 1600 > 1500 from step 20 on
		}
	}
	ms := []Machine{simMachine("a", 1000, 512, a...), simMachine("b", 1000, 512, b...)}
	hosts := []SimHost{{ID: "h0", CPU: 1500}, {ID: "h1", CPU: 1500}, {ID: "h2", CPU: 1500}}
	spy := &lastStep{p: &Dynamic{}}
	r, err := Simulate(context.Background(), ms, hosts, spy, nil)
	require.NoError(t, err)
	// Together on one host until the jump (800 of 1500), overloaded at
	// step 20, then apart: step 21 counts too, for the 8 s the migration
	// keeps the leaving VM on the old host.
	assert.Equal(t, 2, r.OverloadedHostSteps)
	assert.Equal(t, 2, spy.active)
}

// TestLRMMTRegression checks the overload test on histories built for it:
// a rising host is overloaded before it reaches 1, a flat one is not.
func TestLRMMTRegression(t *testing.T) {
	rising := make([]float64, 12)
	flat := make([]float64, 12)
	for i := range rising {
		rising[i] = 30 + 4*float64(i) // 30 % … 74 %: next ~78 %, × 1.2 > 0.9
		flat[i] = 70
	}
	ms := []Machine{simMachine("rising", 1000, 625, rising...), simMachine("flat", 1000, 625, flat...)}
	s := &SimState{step: 11, interval: time.Hour, ms: ms, hosts: []SimHost{{ID: "a", CPU: 1000}, {ID: "b", CPU: 1000}},
		demand: [][]float64{scale(rising, 10), scale(flat, 10)}, capa: []float64{1000, 1000},
		hostOf: []int{0, 1}, on: [][]int{{0}, {1}}, mbps: 62.5}
	p := &LRMMT{sec: 3600}
	ls := &lrState{s: s, p: p, safety: 1.2, alloc: []float64{740, 700}, vms: [][]int{{0}, {1}},
		hist: make([][lrHistory]float64, 2), mig: make([]float64, 2), n: lrHistory}
	ls.addHist(0, 0, 1)
	ls.addHist(1, 1, 1)
	// rising: the line through 38…74 % predicts 78 % at x = 11; × 1.2 = 0.936.
	assert.False(t, ls.overloaded(0, -1))
	ls.safety = 1.3 // 1.014
	assert.True(t, ls.overloaded(0, -1))
	ls.safety = 1.2
	assert.False(t, ls.overloaded(1, -1)) // 0.84
	assert.True(t, ls.overloaded(1, 0))   // 70 % + 78 % of the same host
}

func scale(pct []float64, k float64) []float64 {
	out := make([]float64, len(pct))
	for i, x := range pct {
		out[i] = x * k
	}
	return out
}

func ExampleSimulate() {
	// Two web servers that take turns being busy: placed apart at first
	// (at their full 3000 MIPS each), they share one host as soon as their
	// history shows that their peaks do not coincide.
	var busy, idle []float64
	for i := range 48 {
		if i/4%2 == 0 {
			busy, idle = append(busy, 80), append(idle, 10)
		} else {
			busy, idle = append(busy, 10), append(idle, 80)
		}
	}
	ms := []Machine{
		{ID: "web1", CPU: 3000, Memory: 1024, Series: history.Series{Interval: 5 * time.Minute, CPU: busy}},
		{ID: "web2", CPU: 3000, Memory: 1024, Series: history.Series{Interval: 5 * time.Minute, CPU: idle}},
	}
	hosts := []SimHost{
		{ID: "g5-a", CPU: 5320, Power: ML110G5Spec},
		{ID: "g5-b", CPU: 5320, Power: ML110G5Spec},
	}
	r, err := Simulate(context.Background(), ms, hosts, &Dynamic{}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%.3f kWh, SLATAH %.1f %%, %d migrations, %.1f hosts on average\n",
		r.EnergyKWh, 100*r.SLATAH, r.Migrations, r.ActiveHostsMean)
	// Output:
	// 0.474 kWh, SLATAH 0.0 %, 1 migrations, 1.0 hosts on average
}
