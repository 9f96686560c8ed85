// Package benchkit is what vmmkit's benchmarks share: timing commands
// several times, in one run, against an anchor such as cat or qemu-img, and
// printing the ratios that BENCHMARKS.md records.
package benchkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// Timing runs f reps times (each after prepare, untimed) and returns the
// minimum and median durations.
func Timing(tb testing.TB, reps int, prepare func(), f func() error) (minD, median time.Duration) {
	tb.Helper()
	var ds []time.Duration
	for range reps {
		if prepare != nil {
			prepare()
		}
		start := time.Now()
		if err := f(); err != nil {
			tb.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[0], ds[len(ds)/2]
}

// Warm reads name once so that it is in the page cache.
func Warm(tb testing.TB, name string) {
	tb.Helper()
	if err := Cat(name)(); err != nil {
		tb.Fatal(err)
	}
}

// Command returns a function that runs a program and reports its output on
// failure.
func Command(name string, args ...string) func() error {
	return func() error {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", name, err, out)
		}
		return nil
	}
}

// Cat returns a function that runs cat of name into /dev/null: the
// page-cache read throughput anchor.
func Cat(name string) func() error {
	return func() error {
		cmd := exec.Command("cat", name)
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer devnull.Close()
		cmd.Stdout = devnull
		return cmd.Run()
	}
}

// Size returns VMM_BENCH_SIZE, or def when it is unset.
func Size(tb testing.TB, def int64) int64 {
	if s := os.Getenv("VMM_BENCH_SIZE"); s != "" {
		size, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			tb.Fatal(err)
		}
		return size
	}
	return def
}

// OutDir returns a new directory on tmpfs (/dev/shm) when there is one, so
// that outputs cost each tool's own work rather than the disk's; it is
// removed when the benchmark ends.
func OutDir(tb testing.TB) string {
	out := "/dev/shm"
	if _, err := os.Stat(out); err != nil {
		out = tb.TempDir()
	}
	dir, err := os.MkdirTemp(out, "vmmkit-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// SrcPath returns where a benchmark's source file goes: the temporary
// directory's file system, or VMM_BENCH_SRC_DIR. It is removed at the end.
func SrcPath(tb testing.TB, name string) string {
	dir := tb.TempDir()
	if d := os.Getenv("VMM_BENCH_SRC_DIR"); d != "" {
		dir = d
	}
	p := filepath.Join(dir, fmt.Sprintf("vmmkit-bench-%d-%s", os.Getpid(), name))
	tb.Cleanup(func() { os.Remove(p) })
	return p
}

// A Harness times commands over the same source and compares them.
type Harness struct {
	TB   testing.TB
	Reps int
	Size int64 // bytes of source, for throughput
	Rows []Row
}

// A Row is one timed command.
type Row struct {
	Name        string
	Min, Median time.Duration
}

// Run times f (after prepare, untimed) and returns the row's index.
func (h *Harness) Run(name string, prepare func(), f func() error) int {
	mn, md := Timing(h.TB, h.Reps, prepare, f)
	h.Rows = append(h.Rows, Row{name, mn, md})
	return len(h.Rows) - 1
}

// Table prints the rows with their throughput.
func (h *Harness) Table(title string) {
	mbs := func(d time.Duration) float64 { return float64(h.Size) / d.Seconds() / 1e6 }
	fmt.Printf("%s; %d runs each\n", title, h.Reps)
	fmt.Printf("%-48s %10s %10s %12s %12s\n", "command", "min", "median", "MB/s (best)", "MB/s (med)")
	for _, r := range h.Rows {
		fmt.Printf("%-48s %10v %10v %12.0f %12.0f\n", r.Name, r.Min.Round(time.Millisecond), r.Median.Round(time.Millisecond), mbs(r.Min), mbs(r.Median))
	}
}

// Ratio prints and returns how many times faster row x is than the anchor
// (best against best; the median ratio is printed too).
func (h *Harness) Ratio(label string, anchor, x int, target string) float64 {
	a, r := h.Rows[anchor], h.Rows[x]
	best := a.Min.Seconds() / r.Min.Seconds()
	fmt.Printf("ratio %-48s best %.2f  median %.2f  (target %s)\n", label, best, a.Median.Seconds()/r.Median.Seconds(), target)
	return best
}
