package history

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// MaxWarnings is how many of the skipped rows or values a Warnings keeps
// the reason of; it counts them all.
const MaxWarnings = 10

// Warnings counts the rows or values a reader or converter skipped rather
// than failed on, when the caller asked for that by passing a *Warnings:
// input that is well-formed but inconsistent (a Bitbrains row using more
// CPU than it has) or impossible for its counter (a negative rate in a
// perfmon log). What is skipped is missing (NaN) in the result, never a
// number made up for it. With a nil *Warnings the same input is an error.
type Warnings struct {
	// Count is the number of rows or values skipped.
	Count int
	// First holds the reasons of the first MaxWarnings of them, each a
	// *ParseError naming the file (when known), the line and the column.
	First []error
}

// add counts err and keeps it among the first.
func (w *Warnings) add(err error) {
	w.Count++
	if len(w.First) < MaxWarnings {
		w.First = append(w.First, err)
	}
}

// String summarises w: the count and the first reason.
func (w *Warnings) String() string {
	if w == nil || w.Count == 0 {
		return "nothing skipped"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d skipped", w.Count)
	if len(w.First) > 0 {
		fmt.Fprintf(&b, "; first: %v", w.First[0])
	}
	return b.String()
}

// skip handles a row or value that is inconsistent: with w nil it is the
// error to return; otherwise it is counted and skip returns nil.
func skip(w *Warnings, err error) error {
	if w == nil {
		return err
	}
	w.add(err)
	return nil
}

// Check reports whether a Bitbrains sample is consistent in itself: CPU
// usage at most 100 % and at most the CPU capacity provisioned, memory
// used at most the memory provisioned. The error is a *ParseError with
// the sample's Line and the column at fault (its Path is for the caller
// to set).
//
// The published Rnd trace has such rows: about 1.7 % of them use up to
// 182 % of the CPU provisioned, and a few use more memory than provisioned.
// A utilisation above the capacity cannot be sized on: BitbrainsSeries
// skips or refuses them.
func (s Sample) Check() error {
	switch {
	case s.CPUUsagePercent > 100:
		return &ParseError{Line: s.Line, Column: 5, Err: fmt.Errorf("CPU usage %v %% is above 100 %%", s.CPUUsagePercent)}
	case s.CPUUsageMHz > s.CPUCapacityMHz:
		return &ParseError{Line: s.Line, Column: 4, Err: fmt.Errorf("CPU usage %v MHz is above the %v MHz provisioned", s.CPUUsageMHz, s.CPUCapacityMHz)}
	case s.MemoryUsageKB > s.MemoryProvisionedKB:
		return &ParseError{Line: s.Line, Column: 7, Err: fmt.Errorf("memory usage %v KB is above the %v KB provisioned", s.MemoryUsageKB, s.MemoryProvisionedKB)}
	}
	return nil
}

// BitbrainsSeries turns a Bitbrains trace into a Series of n samples at
// the given interval from start: sample i averages the trace's samples
// with start + i·interval ≤ Time < start + (i+1)·interval, and is NaN when
// there is none (a gap; the trace's rows before start or after the last
// sample are left out). With n = 0 the series ends with the trace's last
// sample (none when it has none in [start, …)).
//
// The Series has ID t.ID, Start start and:
//
//   - CPUCapacity: the largest CPU capacity provisioned (MHz) of the
//     trace's consistent rows, and CPU: the average CPU used (MHz) in
//     percent of it, so that CPU/100 × CPUCapacity is the use in MHz even
//     where the VM was smaller;
//   - MemoryCapacity: the largest memory provisioned, and Memory: the
//     memory used, both in MiB (1 KB of the trace = 1024 bytes);
//   - DiskMBps: disk read + write, MB/s (10⁶ bytes); DiskIOPS nil (the
//     trace does not count operations);
//   - Network: received + transmitted, Mb/s (10⁶ bits).
//
// A row that reports no CPU capacity (0 MHz, as some VMs do while they
// report 0 cores) has no CPU sample, and one that reports no memory
// provisioned no memory sample: missing, not zero use.
//
// A row that fails Sample.Check (CPU above 100 % or above its capacity,
// memory used above provisioned) is an error when w is nil; otherwise it is
// left out and counted in w, with its file (t.Path) and line. Other errors:
// interval not positive, n negative or above MaxSeriesSamples (as is a
// series that n = 0 would make longer).
func BitbrainsSeries(t Trace, start time.Time, interval time.Duration, n int, w *Warnings) (Series, error) {
	fail := func(format string, args ...any) (Series, error) {
		return Series{}, fmt.Errorf("history: BitbrainsSeries %q: %s", t.ID, fmt.Sprintf(format, args...))
	}
	if interval <= 0 {
		return fail("interval %v is not positive", interval)
	}
	if n < 0 || n > maxSlots {
		return fail("%d samples asked, want 0 to %d (MaxSeriesSamples)", n, maxSlots)
	}
	ok := make([]bool, len(t.Samples))
	var cpuCap, memCap float64
	last := -1
	for i, s := range t.Samples {
		if err := s.Check(); err != nil {
			var pe *ParseError
			if errors.As(err, &pe) {
				pe.Path = t.Path
			}
			if err := skip(w, err); err != nil {
				return Series{}, err
			}
			continue
		}
		ok[i] = true
		cpuCap = max(cpuCap, s.CPUCapacityMHz)
		memCap = max(memCap, s.MemoryProvisionedKB)
		if d := s.Time.Sub(start); d >= 0 {
			last = max(last, int(min(d/interval, math.MaxInt32)))
		}
	}
	if n == 0 {
		if last >= maxSlots {
			return fail("the trace spans %d samples at %v from %s, more than %d (MaxSeriesSamples)", last+1, interval, start.Format(time.RFC3339), maxSlots)
		}
		n = last + 1
	}
	type acc struct {
		sum [4]float64 // CPU MHz, memory KB, disk KB/s, network KB/s
		cnt [2]int     // CPU, memory; disk and network count as rows
		row int
	}
	bs := make([]acc, n)
	for i, s := range t.Samples {
		d := s.Time.Sub(start)
		if !ok[i] || d < 0 || d/interval >= time.Duration(n) {
			continue
		}
		b := &bs[d/interval]
		if s.CPUCapacityMHz > 0 {
			b.sum[0] += s.CPUUsageMHz
			b.cnt[0]++
		}
		if s.MemoryProvisionedKB > 0 {
			b.sum[1] += s.MemoryUsageKB
			b.cnt[1]++
		}
		b.sum[2] += s.DiskReadKBps + s.DiskWriteKBps
		b.sum[3] += s.NetRxKBps + s.NetTxKBps
		b.row++
	}
	out := Series{ID: t.ID, Start: start, Interval: interval, CPUCapacity: cpuCap, MemoryCapacity: memCap / 1024,
		CPU: nanSlice(n), Memory: nanSlice(n), DiskMBps: nanSlice(n), Network: nanSlice(n)}
	for i, b := range bs {
		if b.cnt[0] > 0 {
			out.CPU[i] = min(100, b.sum[0]/float64(b.cnt[0])/cpuCap*100) // min: rounding only
		}
		if b.cnt[1] > 0 {
			out.Memory[i] = b.sum[1] / float64(b.cnt[1]) / 1024
		}
		if b.row > 0 {
			out.DiskMBps[i] = b.sum[2] / float64(b.row) * 1024 / 1e6
			out.Network[i] = b.sum[3] / float64(b.row) * 1024 * 8 / 1e6
		}
	}
	return out, nil
}

// Align puts series of one interval on one time line: each result starts
// at the earliest Start and has the length that reaches the latest end,
// the samples before and after a series' own NaN. The Starts must lie a
// whole number of intervals apart, and the result must not be longer than
// MaxSeriesSamples; the inputs are not modified. Series without samples
// are aligned too (all NaN where they have a resource).
func Align(series []Series) ([]Series, error) {
	if len(series) == 0 {
		return nil, nil
	}
	iv := series[0].Interval
	if iv <= 0 {
		return nil, fmt.Errorf("history: Align: series %q has interval %v", series[0].ID, iv)
	}
	start := series[0].Start
	for _, s := range series[1:] {
		if s.Interval != iv {
			return nil, fmt.Errorf("history: Align: series %q is at %v, series %q at %v: resample first", s.ID, s.Interval, series[0].ID, iv)
		}
		if s.Start.Before(start) {
			start = s.Start
		}
	}
	offsets := make([]int, len(series))
	n := 0
	for i, s := range series {
		d := s.Start.Sub(start)
		if d%iv != 0 || d == math.MaxInt64 {
			return nil, fmt.Errorf("history: Align: series %q starts %v after the earliest, not a whole number of %v", s.ID, d, iv)
		}
		if d/iv > time.Duration(maxSlots-s.Len()) {
			return nil, fmt.Errorf("history: Align: series %q would end more than %d samples (MaxSeriesSamples) after the earliest start", s.ID, maxSlots)
		}
		offsets[i] = int(d / iv)
		n = max(n, offsets[i]+s.Len())
	}
	out := make([]Series, len(series))
	for i, s := range series {
		a := s
		a.Start = start
		for _, p := range []*[]float64{&a.CPU, &a.Memory, &a.DiskIOPS, &a.DiskMBps, &a.Network} {
			if *p == nil {
				continue
			}
			x := nanSlice(n)
			copy(x[offsets[i]:], *p)
			*p = x
		}
		out[i] = a
	}
	return out, nil
}
