package library

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// BenchmarkRefreshUnchanged10k times a Refresh of a share of 10 000 small
// files that have not changed since the last one (the target: at
// most 1 s).
//
//	go test ./library -run '^$' -bench RefreshUnchanged10k -benchtime 10x
func BenchmarkRefreshUnchanged10k(b *testing.B) {
	dir := b.TempDir()
	for i := range 10_000 {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i/100))
		if i%100 == 0 {
			if err := os.Mkdir(sub, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d.bin", i)), fmt.Appendf(nil, "object %d", i), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	s, err := NewDirShare("bench", "site", dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	l, err := New(Options{Shares: []Share{s}})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	st, err := l.Refresh(b.Context())
	if err != nil || st.Hashed != 10_000 {
		b.Fatalf("first refresh: %+v, %v", st, err)
	}
	first := time.Since(start)
	for b.Loop() {
		st, err := l.Refresh(b.Context())
		if err != nil || st.Hashed != 0 || st.Reused != 10_000 {
			b.Fatalf("refresh: %+v, %v", st, err)
		}
	}
	b.ReportMetric(first.Seconds(), "first-s")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "unchanged-s")
}

// BenchmarkHashSpeed compares the first Refresh of a share holding one
// 1 GiB file (read from the page cache, hashed in parallel chunks) with
// the raw speed of one core hashing the same bytes in memory, with BLAKE3
// and with SHA-256 (the target: a ratio of at least 0.8 to the
// chosen hash).
//
//	go test ./library -run '^$' -bench HashSpeed -benchtime 5x
func BenchmarkHashSpeed(b *testing.B) {
	if testing.Short() {
		b.Skip("writes a 1 GiB file")
	}
	const size = 1 << 30
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < size; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "big.raw"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	raw := func(h hash.Hash) float64 {
		// One core, whole chunks as Hash takes them; best of three.
		best := 0.0
		for range 3 {
			start := time.Now()
			for off := 0; off < size; off += ChunkSize {
				h.Reset()
				h.Write(data[off : off+ChunkSize])
				h.Sum(nil)
			}
			best = max(best, size/time.Since(start).Seconds()/1e6)
		}
		return best
	}
	rawBLAKE3, rawSHA256 := raw(blake3.New()), raw(sha256.New())
	data = nil

	s, err := NewDirShare("bench", "site", dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetBytes(size)
	for b.Loop() {
		l, err := New(Options{Shares: []Share{s}})
		if err != nil {
			b.Fatal(err)
		}
		if st, err := l.Refresh(b.Context()); err != nil || st.Hashed != 1 {
			b.Fatalf("refresh: %+v, %v", st, err)
		}
	}
	refresh := size / (b.Elapsed().Seconds() / float64(b.N)) / 1e6
	b.ReportMetric(rawBLAKE3, "blake3-1core-MB/s")
	b.ReportMetric(rawSHA256, "sha256-1core-MB/s")
	b.ReportMetric(rawBLAKE3/rawSHA256, "blake3/sha256")
	b.ReportMetric(refresh/rawBLAKE3, "refresh/blake3-1core")
}
