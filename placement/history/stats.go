package history

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"
)

// Resample returns s at another interval. Bucket i of the result covers
// [Start + i·interval, Start + (i+1)·interval) and holds the average of the
// samples of s whose time (Start + j·s.Interval) falls in it, NaN samples
// left out; a bucket with no such sample is NaN. So downsampling averages
// (a last, partial bucket averages the samples it has), and upsampling
// leaves NaN between the original samples (FillGaps can interpolate them).
// The result ends with the bucket of the last sample, so it has
// ⌊(Len−1)·s.Interval / interval⌋ + 1 samples (none when s has none); it
// keeps Start, ID and the capacities, and has nil slices where s has.
//
// It returns an error, and allocates nothing, if interval is not
// positive, if s has samples and its Interval is not positive, or if the
// result would have more than MaxSeriesSamples samples.
func Resample(s Series, interval time.Duration) (Series, error) {
	if interval <= 0 {
		return Series{}, fmt.Errorf("history: Resample %q: interval %v is not positive", s.ID, interval)
	}
	n := s.Len()
	if n > 0 && s.Interval <= 0 {
		return Series{}, fmt.Errorf("history: Resample %q: the series' interval %v is not positive", s.ID, s.Interval)
	}
	out := s
	out.Interval = interval
	if n == 0 {
		return out, nil
	}
	// Exact integer arithmetic: j·s.Interval may overflow 64 bits.
	bucket := func(j int) int {
		hi, lo := bits.Mul64(uint64(j), uint64(s.Interval))
		q, _ := bits.Div64(hi, lo, uint64(interval)) // hi < interval: checked below for j = n−1
		return int(q)
	}
	if hi, lo := bits.Mul64(uint64(n-1), uint64(s.Interval)); hi >= uint64(interval) {
		return Series{}, fmt.Errorf("history: Resample %q: %d samples at %v make more than %d at %v (MaxSeriesSamples)", s.ID, n, s.Interval, maxSlots, interval)
	} else if q, _ := bits.Div64(hi, lo, uint64(interval)); q >= uint64(maxSlots) {
		return Series{}, fmt.Errorf("history: Resample %q: %d samples at %v make %d at %v, more than %d (MaxSeriesSamples)", s.ID, n, s.Interval, q+1, interval, maxSlots)
	}
	m := bucket(n-1) + 1
	do := func(x []float64) []float64 {
		if x == nil {
			return nil
		}
		sum := make([]float64, m)
		cnt := make([]int, m)
		for j, v := range x {
			if !math.IsNaN(v) {
				b := bucket(j)
				sum[b] += v
				cnt[b]++
			}
		}
		for b := range sum {
			if cnt[b] == 0 {
				sum[b] = math.NaN()
			} else {
				sum[b] /= float64(cnt[b])
			}
		}
		return sum
	}
	out.CPU, out.Memory = do(s.CPU), do(s.Memory)
	out.DiskIOPS, out.DiskMBps, out.Network = do(s.DiskIOPS), do(s.DiskMBps), do(s.Network)
	return out, nil
}

// FillGaps returns a copy of x in which every gap (a maximal run of NaN)
// of at most maxGap samples with a number on each side is filled by
// linear interpolation between those two numbers. Longer gaps, and runs
// of NaN at the start or end (with no number on one side), stay NaN; gaps
// counts those runs still NaN in filled. maxGap ≤ 0 fills nothing. A nil
// x gives a nil result.
func FillGaps(x []float64, maxGap int) (filled []float64, gaps int) {
	filled = slices.Clone(x)
	for i := 0; i < len(filled); {
		if !math.IsNaN(filled[i]) {
			i++
			continue
		}
		j := i
		for j < len(filled) && math.IsNaN(filled[j]) {
			j++
		}
		// filled[i:j] is a gap.
		if i == 0 || j == len(filled) || j-i > maxGap {
			gaps++
		} else {
			a, b := filled[i-1], filled[j]
			steps := float64(j - i + 1)
			for k := i; k < j; k++ {
				f := float64(k-i+1) / steps
				filled[k] = a + (b-a)*f
			}
		}
		i = j
	}
	return filled, gaps
}

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of the numbers in
// x, NaN left out, by the nearest rank: with the n numbers sorted as
// v₁ ≤ … ≤ vₙ, it is vₖ with k = ⌈p·n/100⌉ (k = 1 for p = 0), the smallest
// of the numbers with at least p % of them at or below it. So it is always
// one of the numbers (a use that was measured, never one between two
// samples), p = 0 is the minimum, 100 the maximum, and 50 the lower median
// of an even count.
//
// This is the one percentile definition of this module's sizing and
// consolidation code (consolidate.Rank's statistics use it too). It
// returns NaN when x has no number or p is outside [0, 100] or NaN. x is
// not modified.
func Percentile(x []float64, p float64) float64 {
	if !(p >= 0 && p <= 100) {
		return math.NaN()
	}
	v := make([]float64, 0, len(x))
	for _, a := range x {
		if !math.IsNaN(a) {
			v = append(v, a)
		}
	}
	slices.Sort(v)
	return PercentileSorted(v, p)
}

// PercentileSorted is Percentile of numbers already sorted in ascending
// order without NaN (as slices.Sort leaves them), for taking several
// percentiles of one sort. It returns NaN when sorted is empty or p is
// outside [0, 100] or NaN.
func PercentileSorted(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 || !(p >= 0 && p <= 100) {
		return math.NaN()
	}
	// p·n first: exact for the whole percentages and counts of practice,
	// where p/100·n may round up past a whole number (0.07·100 = 7.000…01).
	k := int(math.Ceil(p * float64(n) / 100))
	return sorted[min(max(k, 1), n)-1]
}

// PeakToMean returns the largest number in x divided by their mean, NaN
// left out: 1 for a flat series, higher the burstier it is. It is meant
// for non-negative use; it returns NaN when x has no number or the mean
// is zero.
func PeakToMean(x []float64) float64 {
	peak, sum, n := math.Inf(-1), 0.0, 0
	for _, a := range x {
		if math.IsNaN(a) {
			continue
		}
		peak = max(peak, a)
		sum += a
		n++
	}
	if n == 0 || sum == 0 {
		return math.NaN()
	}
	return peak / (sum / float64(n))
}

// DailyProfile returns the mean use per time of day of the resource res
// picks from s (for example func(s *Series) []float64 { return s.CPU }):
// 24h/s.Interval buckets, bucket b covering the times of day
// [b·Interval, (b+1)·Interval) from midnight, each the average over all
// days of the samples in it, NaN left out; a bucket with no number is
// NaN. A sample's time is Start + j·Interval, its time of day read on the
// clock of Start's location (UTC for what the readers return).
//
// It returns nil when res returns nil, or when Interval is not positive or
// does not divide 24 hours evenly.
func DailyProfile(s Series, res func(*Series) []float64) []float64 {
	x := res(&s)
	const day = 24 * time.Hour
	if x == nil || s.Interval <= 0 || day%s.Interval != 0 {
		return nil
	}
	m := int(day / s.Interval)
	sum := make([]float64, m)
	cnt := make([]int, m)
	for j, v := range x {
		if math.IsNaN(v) {
			continue
		}
		t := s.Start.Add(time.Duration(j) * s.Interval)
		h, mi, sec := t.Clock()
		tod := time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute +
			time.Duration(sec)*time.Second + time.Duration(t.Nanosecond())
		b := int(tod / s.Interval)
		sum[b] += v
		cnt[b]++
	}
	for b := range sum {
		if cnt[b] == 0 {
			sum[b] = math.NaN()
		} else {
			sum[b] /= float64(cnt[b])
		}
	}
	return sum
}
