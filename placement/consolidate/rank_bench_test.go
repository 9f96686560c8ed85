package consolidate

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmmkit/vmmkit/placement/history"
)

// The experiment of BenchmarkRankBitbrains: week 1 of the trace is the
// history Rank sees, week 2 what happened next.
var (
	rankBenchStart   = time.Unix(1372629804, 0).UTC()
	rankBenchWeek    = 7 * 24 * time.Hour
	rankBenchBucket  = 5 * time.Minute
	rankBenchHost    = RankHost{CPU: 32 * 2926, Memory: 256 << 10}
	rankBenchIdle    = 10.0 // week-1 mean CPU % under which a machine looks idle
	rankBenchPeakPct = 80.0 // week-2 peak CPU % that makes it a surprise
)

// rankBenchData is the Bitbrains trace cut into weeks.
type rankBenchData struct {
	machines []Machine            // week 1, machines with a sample in it
	week2    map[string][]float64 // week-2 CPU % per bucket, by ID
	traces   int
	skipped  int // rows above their capacity
}

// rankBenchOpen returns the traces of path, a folder of CSV files or a
// (gzipped) tar archive.
func rankBenchOpen(path string) (iter.Seq2[history.Trace, error], func() error, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		return history.ReadBitbrainsDir(path), func() error { return nil }, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	return history.ReadBitbrainsTar(f), f.Close, nil
}

func rankBenchLoad(path string) (*rankBenchData, error) {
	traces, closeFn, err := rankBenchOpen(path)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	n := int(rankBenchWeek / rankBenchBucket)
	end := rankBenchStart.Add(rankBenchWeek)
	d := &rankBenchData{week2: map[string][]float64{}}
	var w history.Warnings // rows above their capacity: skipped, counted
	for t, err := range traces {
		if err != nil {
			return nil, err
		}
		d.traces++
		s1, err := history.BitbrainsSeries(t, rankBenchStart, rankBenchBucket, n, &w)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(s1.CPU, func(x float64) bool { return !math.IsNaN(x) }) || s1.CPUCapacity == 0 {
			continue
		}
		var w2 history.Warnings // the same rows again: counted once, in w
		s2, err := history.BitbrainsSeries(t, end, rankBenchBucket, n, &w2)
		if err != nil {
			return nil, err
		}
		d.machines = append(d.machines, Machine{ID: t.ID, CPU: s1.CPUCapacity, Memory: s1.MemoryCapacity, Series: s1})
		d.week2[t.ID] = s2.CPU
	}
	d.skipped = w.Count
	return d, nil
}

// rankBenchPath is the trace: VMM_BENCH_BITBRAINS_DIR, else the archive in
// shared/data next to the repository; "" when neither is there.
func rankBenchPath() string {
	if p := os.Getenv("VMM_BENCH_BITBRAINS_DIR"); p != "" {
		return p
	}
	p := filepath.Join("..", "..", "..", "shared", "data", "bitbrains-rnd", "rnd-2013-7-14d.tar.gz")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// rankBenchNaNMax is the largest non-NaN value of xs, NaN when none.
func rankBenchNaNMax(xs []float64) float64 {
	m := math.NaN()
	for _, x := range xs {
		if !math.IsNaN(x) && (math.IsNaN(m) || x > m) {
			m = x
		}
	}
	return m
}

// rankBenchOrderStats counts the surprises among the first half of order
// and gives their mean position as a fraction of len(order) (0 = top).
func rankBenchOrderStats(order []string, surprise map[string]bool) (topHalf int, meanPos float64) {
	n := 0
	for i, id := range order {
		if !surprise[id] {
			continue
		}
		if i < len(order)/2 {
			topHalf++
		}
		meanPos += float64(i) / float64(len(order))
		n++
	}
	if n > 0 {
		meanPos /= float64(n)
	}
	return topHalf, meanPos
}

// BenchmarkRankBitbrains ranks the Bitbrains Rnd VMs on their first week
// and checks the ranking against the second: of the VMs that look idle in
// week 1 (mean CPU under 10 %), some peak above 80 % in week 2. Ranked by
// mean alone they are spread through the list; Rank, which weighs the
// tail and the bursts, should push them down, so fewer of them are in the
// top half of the idle VMs than by mean. It reports both counts and times
// Rank. The trace is VMM_BENCH_BITBRAINS_DIR (a folder of the CSV files or
// the .tar.gz), else the archive in shared/data next to the repository;
// the benchmark is skipped when neither is there.
//
//	go test ./placement/consolidate -run '^$' -bench RankBitbrains -benchtime 1x
func BenchmarkRankBitbrains(b *testing.B) {
	path := rankBenchPath()
	if path == "" {
		b.Skip("no trace: set VMM_BENCH_BITBRAINS_DIR")
	}
	t0 := time.Now()
	d, err := rankBenchLoad(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("read %d traces (%d with week-1 history; %d rows above their capacity skipped) in %v", d.traces, len(d.machines), d.skipped, time.Since(t0).Round(time.Millisecond))
	opts := &RankOptions{Host: rankBenchHost}
	var cs []Candidate
	for b.Loop() {
		cs, err = Rank(context.Background(), d.machines, opts)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()

	// The idle-looking VMs, and the surprises among them.
	byID := map[string]*Candidate{}
	for i := range cs {
		byID[cs[i].Machine.ID] = &cs[i]
	}
	idle := map[string]bool{}
	surprise := map[string]bool{}
	var surprises []string
	for _, m := range d.machines {
		c := byID[m.ID]
		if c.Stats.CPU.Samples == 0 || c.Stats.CPU.Mean >= rankBenchIdle {
			continue
		}
		idle[m.ID] = true
		if pk := rankBenchNaNMax(d.week2[m.ID]); pk > rankBenchPeakPct {
			surprise[m.ID] = true
			surprises = append(surprises, m.ID)
		}
	}
	if len(idle) == 0 {
		b.Fatal("no idle-looking VM")
	}

	// Rank's order and the mean-only order, over the idle VMs.
	var byRank, byMean, byP95 []string
	candidates := 0
	for _, c := range cs {
		if idle[c.Machine.ID] {
			byRank = append(byRank, c.Machine.ID)
			if c.Consolidate {
				candidates++
			}
		}
	}
	byMean = slices.Clone(byRank)
	slices.SortFunc(byMean, func(x, y string) int {
		return cmp.Or(cmp.Compare(byID[x].Stats.CPU.Mean, byID[y].Stats.CPU.Mean), strings.Compare(x, y))
	})
	byP95 = slices.Clone(byRank)
	slices.SortFunc(byP95, func(x, y string) int {
		return cmp.Or(cmp.Compare(byID[x].Stats.CPU.P95, byID[y].Stats.CPU.P95), strings.Compare(x, y))
	})
	rankTop, rankPos := rankBenchOrderStats(byRank, surprise)
	meanTop, meanPos := rankBenchOrderStats(byMean, surprise)
	p95Top, p95Pos := rankBenchOrderStats(byP95, surprise)

	// The candidates Rank keeps: how many surprises among them.
	candSurprise := 0
	for _, id := range byRank[:candidates] {
		if surprise[id] {
			candSurprise++
		}
	}

	b.ReportMetric(float64(len(idle)), "idle-vms")
	b.ReportMetric(100*float64(len(surprise))/float64(len(idle)), "idle-peaking-%")
	b.ReportMetric(float64(rankTop), "rank-tophalf-peakers")
	b.ReportMetric(float64(meanTop), "mean-tophalf-peakers")
	fmt.Printf("rank bitbrains: %d VMs with week-1 history, %d look idle (week-1 mean CPU < %g %%), %d of them (%.1f %%) peak above %g %% in week 2: %v\n",
		len(d.machines), len(idle), rankBenchIdle, len(surprise), 100*float64(len(surprise))/float64(len(idle)), rankBenchPeakPct, surprises)
	fmt.Printf("rank bitbrains: week-2 peakers in the top half (%d) of the idle VMs: Rank %d, mean-only %d, p95-only %d; mean position (0 top, 1 bottom): Rank %.2f, mean-only %.2f, p95-only %.2f\n",
		len(byRank)/2, rankTop, meanTop, p95Top, rankPos, meanPos, p95Pos)
	fmt.Printf("rank bitbrains: Rank keeps %d of the %d idle VMs as candidates, %d of them week-2 peakers; Rank of %d VMs in %v\n",
		candidates, len(idle), candSurprise, len(d.machines), b.Elapsed()/time.Duration(max(1, b.N)))
	for _, id := range surprises {
		c := byID[id]
		fmt.Printf("rank bitbrains:   peaker %-4s week-2 peak %5.1f %%; week-1 mean %.2f %%, score %.3f, Rank pos %d, mean pos %d: %q\n",
			id, rankBenchNaNMax(d.week2[id]), c.Stats.CPU.Mean, c.Score, slices.Index(byRank, id), slices.Index(byMean, id), c.Reasons)
	}
	if rankTop >= meanTop && meanTop > 0 {
		b.Errorf("Rank puts %d week-2 peakers in the top half of the idle VMs, mean-only %d: want fewer", rankTop, meanTop)
	}
}
