package consolidate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/placement/history"
)

// The alternating 800-host setup of the CloudSim PlanetLab experiments:
// HP ML110 G4 (2 × 1860 MIPS) and G5 (2 × 2660 MIPS), SPECpower models; VM
// memory by type (870, 1740, 1740, 613 MiB).
var vmMemory = [4]float64{870, 1740, 1740, 613}

func cloudSimHosts(n int) []SimHost {
	hs := make([]SimHost, n)
	for i := range hs {
		if i%2 == 0 {
			hs[i] = SimHost{ID: fmt.Sprintf("g4-%03d", i), CPU: 3720, Power: ML110G4Spec}
		} else {
			hs[i] = SimHost{ID: fmt.Sprintf("g5-%03d", i), CPU: 5320, Power: ML110G5Spec}
		}
	}
	return hs
}

func cloudSimVMs(series []history.Series) []Machine {
	ms := planetLabMachines(series)
	block := (len(ms) + 3) / 4
	for i := range ms {
		ms[i].Memory = vmMemory[i/block]
	}
	return ms
}

type simDay struct {
	day        string
	vms        int
	lr, dy, or *SimResult
	frontier   []*SimResult // Dynamic with each of simDrains
	lrFront    []*SimResult // LRMMT with each of simSafeties
}

// simDrains reads VMM_BENCH_DRAINS, a comma-separated list of Dynamic.Drain
// values to replay as well (the energy–SLA frontier).
func simDrains(tb testing.TB) []float64 { return benchFloats(tb, "VMM_BENCH_DRAINS") }

// simSafeties reads VMM_BENCH_LR_SAFETIES, LRMMT.Safety values to replay
// as well (LR-MMT's frontier).
func simSafeties(tb testing.TB) []float64 { return benchFloats(tb, "VMM_BENCH_LR_SAFETIES") }

func benchFloats(tb testing.TB, name string) []float64 {
	var out []float64
	for f := range strings.SplitSeq(os.Getenv(name), ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		x, err := strconv.ParseFloat(f, 64)
		require.NoError(tb, err, name)
		out = append(out, x)
	}
	return out
}

// oracle is Dynamic with perfect one-step prediction: what packing alone
// could reach if the next sample were known. A bound, not a policy.
func oracle(ms []Machine) *Dynamic {
	_, dem, _, err := machineVMs(ms)
	if err != nil {
		panic(err)
	}
	return &Dynamic{Fill: 1, Drain: 1, oracle: func(v, t int) float64 { return dem[v][t] }}
}

// BenchmarkSimulatePlanetLab replays each shared PlanetLab day on the
// alternating 800-host setup with LR-MMT-1.2 (the published baseline,
// reproduced in the same model) and with Dynamic, and prints both per
// day. Published for LR-MMT-1.2 (CloudSim 3.0.3, mean per day): 165.0 kWh,
// SLATAH 6.21 %, 28.8 k migrations.
func BenchmarkSimulatePlanetLab(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join(planetLabDir(), "*.tar.gz"))
	if len(files) == 0 {
		b.Skip("no PlanetLab archives in", planetLabDir(), "(set VMM_BENCH_PLANETLAB_DIR)")
	}
	slices.Sort(files)
	if only := os.Getenv("VMM_BENCH_PLANETLAB_DAYS"); only != "" {
		files = slices.DeleteFunc(files, func(f string) bool { return !strings.Contains(only, strings.TrimSuffix(filepath.Base(f), ".tar.gz")) })
	}
	ctx := context.Background()
	drains := simDrains(b)
	safeties := simSafeties(b)
	var rs []simDay
	for range b.N {
		rs = rs[:0]
		for _, f := range files {
			ms := cloudSimVMs(readPlanetLabDay(b, f))
			hosts := cloudSimHosts(800)
			lr, err := Simulate(ctx, ms, hosts, &LRMMT{}, nil)
			require.NoError(b, err)
			dy, err := Simulate(ctx, ms, hosts, &Dynamic{}, nil)
			require.NoError(b, err)
			or, err := Simulate(ctx, ms, hosts, oracle(ms), nil)
			require.NoError(b, err)
			day := simDay{strings.TrimSuffix(filepath.Base(f), ".tar.gz"), len(ms), lr, dy, or, nil, nil}
			for _, safety := range safeties {
				r, err := Simulate(ctx, ms, hosts, &LRMMT{Safety: safety}, nil)
				require.NoError(b, err)
				day.lrFront = append(day.lrFront, r)
			}
			for _, drain := range drains {
				r, err := Simulate(ctx, ms, hosts, &Dynamic{Drain: drain}, nil)
				require.NoError(b, err)
				day.frontier = append(day.frontier, r)
			}
			rs = append(rs, day)
		}
	}
	b.StopTimer()
	var sb strings.Builder
	row := func(day string, vms int, r *SimResult) {
		fmt.Fprintf(&sb, "  %7.1f %6.2f %6.3f %7d %5.1f %7.2f",
			r.EnergyKWh, 100*r.SLATAH, 100*r.PDM, r.Migrations, r.ActiveHostsMean, float64(r.MeanDecisionTime().Microseconds())/1000)
	}
	fmt.Fprintf(&sb, "\n%-9s %5s | LR-MMT-1.2: %5s %6s %6s %7s %5s %7s | Dynamic | oracle (next sample known)\n", "day", "VMs", "kWh", "SLATAH%", "PDM%", "migr", "hosts", "ms/rnd")
	var mlr, mdy, mor SimResult
	var tlr, tdy, tor time.Duration
	for _, r := range rs {
		fmt.Fprintf(&sb, "%-9s %5d |", r.day, r.vms)
		row(r.day, r.vms, r.lr)
		sb.WriteString(" |")
		row(r.day, r.vms, r.dy)
		sb.WriteString(" |")
		row(r.day, r.vms, r.or)
		sb.WriteString("\n")
		for _, p := range []struct {
			m *SimResult
			r *SimResult
			t *time.Duration
		}{{&mlr, r.lr, &tlr}, {&mdy, r.dy, &tdy}, {&mor, r.or, &tor}} {
			p.m.EnergyKWh += p.r.EnergyKWh
			p.m.SLATAH += p.r.SLATAH
			p.m.PDM += p.r.PDM
			p.m.Migrations += p.r.Migrations
			p.m.ActiveHostsMean += p.r.ActiveHostsMean
			*p.t += p.r.MeanDecisionTime()
		}
	}
	d := float64(len(rs))
	mean := func(m *SimResult, t time.Duration) {
		fmt.Fprintf(&sb, "  %7.1f %6.2f %6.3f %7.0f %5.1f %7.2f", m.EnergyKWh/d, 100*m.SLATAH/d, 100*m.PDM/d, float64(m.Migrations)/d, m.ActiveHostsMean/d, float64(t.Microseconds())/1000/d)
	}
	fmt.Fprintf(&sb, "%-9s %5s |", "mean", "")
	mean(&mlr, tlr)
	sb.WriteString(" |")
	mean(&mdy, tdy)
	sb.WriteString(" |")
	mean(&mor, tor)
	sb.WriteString("\npublished LR-MMT-1.2: 165.0 kWh, SLATAH 6.21 %, 28.8 k migrations; target Dynamic <= 140 kWh, SLATAH <= 1 %, fewer migrations\n")
	fmt.Print(sb.String())
	if len(drains) > 0 {
		sb.Reset()
		fmt.Fprintf(&sb, "Dynamic frontier (mean per day): %6s %7s %7s %8s %6s\n", "drain", "kWh", "SLATAH%", "migr", "hosts")
		for i, drain := range drains {
			var m SimResult
			for _, r := range rs {
				m.EnergyKWh += r.frontier[i].EnergyKWh
				m.SLATAH += r.frontier[i].SLATAH
				m.Migrations += r.frontier[i].Migrations
				m.ActiveHostsMean += r.frontier[i].ActiveHostsMean
			}
			fmt.Fprintf(&sb, "%32s %6.2f %7.1f %7.2f %8.0f %6.1f\n", "", drain, m.EnergyKWh/d, 100*m.SLATAH/d, float64(m.Migrations)/d, m.ActiveHostsMean/d)
		}
		fmt.Print(sb.String())
	}
	if len(safeties) > 0 {
		sb.Reset()
		fmt.Fprintf(&sb, "LR-MMT frontier (mean per day):  %6s %7s %7s %8s %6s\n", "safety", "kWh", "SLATAH%", "migr", "hosts")
		for i, safety := range safeties {
			var m SimResult
			for _, r := range rs {
				m.EnergyKWh += r.lrFront[i].EnergyKWh
				m.SLATAH += r.lrFront[i].SLATAH
				m.Migrations += r.lrFront[i].Migrations
				m.ActiveHostsMean += r.lrFront[i].ActiveHostsMean
			}
			fmt.Fprintf(&sb, "%32s %6.2f %7.1f %7.2f %8.0f %6.1f\n", "", safety, m.EnergyKWh/d, 100*m.SLATAH/d, float64(m.Migrations)/d, m.ActiveHostsMean/d)
		}
		fmt.Print(sb.String())
	}
	b.ReportMetric(mdy.EnergyKWh/d, "kWh/day")
	b.ReportMetric(100*mdy.SLATAH/d, "SLATAH%")
	fmt.Printf("ratio energy Dynamic/LR-MMT %.3f\nratio SLATAH Dynamic/LR-MMT %.3f\nratio migrations Dynamic/LR-MMT %.3f\nratio energy Dynamic/oracle %.3f\n",
		mdy.EnergyKWh/mlr.EnergyKWh, mdy.SLATAH/mlr.SLATAH, float64(mdy.Migrations)/float64(mlr.Migrations), mdy.EnergyKWh/mor.EnergyKWh)
}
