package history

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func cpu(s Sample) float64 { return s.CPUUsageMHz }

func at(start time.Time, d time.Duration, mhz float64) Sample {
	return Sample{Time: start.Add(d), CPUUsageMHz: mhz}
}

func TestBuckets(t *testing.T) {
	t0 := time.Unix(1372629804, 0).UTC()
	m := time.Minute
	samples := []Sample{
		at(t0, 0, 10), at(t0, 1*m, 20), at(t0, 4*m+59*time.Second, 30), // bucket 0: 20
		// bucket 1 empty: carries 30, the latest sample before it
		at(t0, 10*m, 100), // bucket 2: start boundary belongs to it
		// buckets 3, 4 empty: 100
		at(t0, 25*m, 7), at(t0, 25*m, 9), // bucket 5: same time, average 8; the later one carries
		// bucket 6: 9
		at(t0, 35*m, 1000), // past the last bucket: ignored
	}
	got := Buckets(samples, t0, 5*m, 7, cpu)
	assert.Equal(t, []float64{20, 30, 100, 100, 100, 8, 9}, got)

	// Order does not matter (beyond ties at the same time).
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := append([]Sample(nil), samples...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		g := Buckets(shuffled, t0, 5*m, 7, cpu)
		assert.Equal(t, []float64{20, 30, 100, 100, 100, 8}, g[:6])
		assert.Contains(t, []float64{7, 9}, g[6])
	}

	// Zero before the first sample; the latest sample before start carries
	// into the first buckets.
	assert.Equal(t, []float64{0, 0, 5, 5}, Buckets([]Sample{at(t0, 10*m, 5)}, t0, 5*m, 4, cpu))
	assert.Equal(t, []float64{3, 3, 5, 5}, Buckets([]Sample{at(t0, -time.Hour, 1), at(t0, -time.Second, 3), at(t0, 10*m, 5)}, t0, 5*m, 4, cpu))
	assert.Equal(t, []float64{0, 0}, Buckets(nil, t0, 5*m, 2, cpu))
	// Far-off times do not overflow.
	assert.Equal(t, []float64{0, 0}, Buckets([]Sample{{Time: time.Unix(1<<62, 0)}}, t0, 5*m, 2, func(Sample) float64 { return 1 }))
	assert.Equal(t, []float64{1, 1}, Buckets([]Sample{{Time: time.Unix(-1<<62, 0)}}, t0, 5*m, 2, func(Sample) float64 { return 1 }))

	assert.Nil(t, Buckets(samples, t0, 5*m, 0, cpu))
	assert.Panics(t, func() { Buckets(samples, t0, 0, 3, cpu) })
}

// TestBucketsSample checks Buckets on a real trace against a direct
// computation.
func TestBucketsSample(t *testing.T) {
	s, err := ReadBitbrainsFile(filepath.Join(sampleDir, "264.csv"))
	require.NoError(t, err)
	t0 := time.Unix(1372629804, 0).UTC()
	const n = 2 * 288
	got := Buckets(s, t0, 5*time.Minute, n, cpu)
	require.Len(t, got, n)
	first := int(s[0].Time.Sub(t0) / (5 * time.Minute))
	for i, x := range got {
		lo, hi := t0.Add(time.Duration(i)*5*time.Minute), t0.Add(time.Duration(i+1)*5*time.Minute)
		var sum float64
		k := 0
		for _, x := range s {
			if !x.Time.Before(lo) && x.Time.Before(hi) {
				sum += x.CPUUsageMHz
				k++
			}
		}
		switch {
		case i < first:
			assert.Zero(t, x, "bucket %d before the first sample", i)
		case k > 0:
			assert.InDelta(t, sum/float64(k), x, 1e-9, "bucket %d", i)
		default:
			assert.Equal(t, got[i-1], x, "bucket %d carries", i) // the sample holds one value per bucket
		}
	}
}
