package library

import "testing"

func TestChunkSizeFor(t *testing.T) {
	for _, tc := range []struct {
		size, want int64
	}{
		{0, ChunkSize},
		{1, ChunkSize},
		{MaxChunks * ChunkSize, ChunkSize},
		{MaxChunks*ChunkSize + 1, 9 << 20},
		{100 << 30, 11 << 20}, // 10.24 MiB rounded up
		{5 << 40, 525 << 20},  // S3's largest object
	} {
		got := ChunkSizeFor(tc.size)
		if got != tc.want {
			t.Errorf("ChunkSizeFor(%d) = %d, want %d", tc.size, got, tc.want)
		}
		if n := NumChunks(tc.size, got); n > MaxChunks {
			t.Errorf("ChunkSizeFor(%d) = %d makes %d chunks, more than %d", tc.size, got, n, MaxChunks)
		}
		if got%(1<<20) != 0 {
			t.Errorf("ChunkSizeFor(%d) = %d is not a whole number of MiB", tc.size, got)
		}
	}
}
