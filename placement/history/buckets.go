package history

import "time"

// Buckets turns samples into n values at a fixed step: bucket i is the
// average of value over the samples with
//
//	start + i·width ≤ Time < start + (i+1)·width.
//
// A bucket without samples carries the last observation forward: it takes
// the value of the latest sample before it, which may lie before start;
// when no sample precedes it (a VM not measured yet) it is zero. So a gap
// in a trace repeats the use last seen, and a VM that appears late counts
// as idle until it does. Samples after the last bucket are ignored. The
// samples need not be in time order; among samples at the same time the
// later in the slice counts as the latest.
//
// It returns nil when n ≤ 0 and panics when width is not positive.
func Buckets(samples []Sample, start time.Time, width time.Duration, n int, value func(Sample) float64) []float64 {
	if width <= 0 {
		panic("history: Buckets: width must be positive")
	}
	if n <= 0 {
		return nil
	}
	type bucket struct {
		sum    float64
		count  int
		latest time.Time
		last   float64 // value of the latest sample
	}
	bs := make([]bucket, n)
	var before bucket // the latest sample before start
	for _, s := range samples {
		d := s.Time.Sub(start) // saturates far from start: still outside
		b := &before
		if d >= 0 {
			i := d / width
			if i >= time.Duration(n) {
				continue
			}
			b = &bs[i]
		}
		v := value(s)
		if b != &before {
			b.sum += v
		}
		if b.count == 0 || !s.Time.Before(b.latest) {
			b.latest, b.last = s.Time, v
		}
		b.count++
	}
	out := make([]float64, n)
	carry := 0.0
	if before.count > 0 {
		carry = before.last
	}
	for i, b := range bs {
		if b.count == 0 {
			out[i] = carry
			continue
		}
		out[i] = b.sum / float64(b.count)
		carry = b.last
	}
	return out
}
