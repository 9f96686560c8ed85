package library

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"

	"github.com/zeebo/blake3"
)

// ChunkSize is the unit of hashing and transfer: content is hashed in
// chunks of this size (the last may be shorter) and moved part by part.
// Files of more than MaxChunks chunks use larger ones (ChunkSizeFor).
const ChunkSize = 8 << 20

// MaxChunks is the most chunks a file is cut into: S3 takes at most
// 10 000 parts in an upload, and a chunk is a part.
const MaxChunks = 10000

// ChunkSizeFor returns the chunk size of a file of size bytes: ChunkSize,
// or for files above MaxChunks × ChunkSize (about 78 GiB) the smallest
// multiple of 1 MiB that keeps them within MaxChunks chunks. It depends on
// the size only, so equal content has equal manifests wherever it is.
func ChunkSizeFor(size int64) int64 {
	if size <= MaxChunks*ChunkSize {
		return ChunkSize
	}
	const mib = 1 << 20
	c := (size + MaxChunks - 1) / MaxChunks
	return (c + mib - 1) / mib * mib
}

// The hash algorithms a Manifest can use. BLAKE3 is the default: it hashes
// about twice as fast as SHA-256 here (BENCHMARKS.md).
const (
	BLAKE3 = "blake3"
	SHA256 = "sha256"
)

func newHash(alg string) (hash.Hash, error) {
	switch alg {
	case BLAKE3, "":
		return blake3.New(), nil
	case SHA256:
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("library: unknown hash algorithm %q", alg)
}

// A Manifest is the identity of a file's content and the check of each
// of its chunks: the sum of every ChunkSize bytes, and an ID that is the
// hash of the size and of the chunk sums. Identical content has the same
// ID wherever it is stored; a transfer checks each chunk it reads against
// the manifest, so a replica that no longer matches is never served.
type Manifest struct {
	Algorithm string   `json:"algorithm"` // BLAKE3 or SHA256
	Size      int64    `json:"size"`
	ChunkSize int64    `json:"chunkSize"`
	Chunks    [][]byte `json:"chunks"` // one sum per chunk
}

// ID returns "algorithm:hex" of the hash of the content's size (8 bytes,
// little endian) followed by the chunk sums.
func (m *Manifest) ID() string {
	h, err := newHash(m.Algorithm)
	if err != nil {
		return ""
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(m.Size))
	h.Write(n[:])
	for _, c := range m.Chunks {
		h.Write(c)
	}
	alg := m.Algorithm
	if alg == "" {
		alg = BLAKE3
	}
	return alg + ":" + hex.EncodeToString(h.Sum(nil))
}

// NumChunks returns how many chunks a file of size bytes has.
func NumChunks(size, chunkSize int64) int {
	if size <= 0 {
		return 0
	}
	return int((size + chunkSize - 1) / chunkSize)
}

// ChunkRange returns the offset and length of chunk n.
func (m *Manifest) ChunkRange(n int) (off, length int64) {
	off = int64(n) * m.ChunkSize
	return off, min(m.ChunkSize, m.Size-off)
}

// Sum returns the sum of p under the manifest's algorithm.
func (m *Manifest) Sum(p []byte) []byte {
	h, err := newHash(m.Algorithm)
	if err != nil {
		return nil
	}
	h.Write(p)
	return h.Sum(nil)
}

// Verify checks that p is chunk n of the content; the error wraps
// ErrCorrupt.
func (m *Manifest) Verify(n int, p []byte) error {
	if n < 0 || n >= len(m.Chunks) {
		return fmt.Errorf("chunk %d of %d: %w", n, len(m.Chunks), ErrCorrupt)
	}
	if _, l := m.ChunkRange(n); int64(len(p)) != l {
		return fmt.Errorf("chunk %d is %d bytes, want %d: %w", n, len(p), l, ErrCorrupt)
	}
	if got := m.Sum(p); !equalBytes(got, m.Chunks[n]) {
		return fmt.Errorf("chunk %d (bytes %d-): sum %x, want %x: %w", n, int64(n)*m.ChunkSize, got, m.Chunks[n], ErrCorrupt)
	}
	return nil
}

func equalBytes(a, b []byte) bool { return string(a) == string(b) }

// HashOptions tune Hash.
type HashOptions struct {
	Algorithm string // BLAKE3 (default) or SHA256
	ChunkSize int64  // 0: ChunkSizeFor(size)
	// Workers hash chunks in parallel; 0 means GOMAXPROCS.
	Workers int
	// Progress, when set, is called with the bytes hashed so far (from
	// one goroutine at a time).
	Progress func(done, total int64)
}

// Hash reads size bytes of r and returns their Manifest. Chunks are read
// and hashed in parallel.
func Hash(ctx context.Context, r io.ReaderAt, size int64, opts *HashOptions) (*Manifest, error) {
	var o HashOptions
	if opts != nil {
		o = *opts
	}
	if o.Algorithm == "" {
		o.Algorithm = BLAKE3
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = ChunkSizeFor(size)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if _, err := newHash(o.Algorithm); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, errors.New("library: negative size")
	}
	m := &Manifest{Algorithm: o.Algorithm, Size: size, ChunkSize: o.ChunkSize}
	m.Chunks = make([][]byte, NumChunks(size, o.ChunkSize))
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		done     int64
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(o.Workers, len(m.Chunks)) {
		wg.Go(func() {
			buf := make([]byte, o.ChunkSize)
			h, _ := newHash(o.Algorithm)
			for n := range next {
				off, l := m.ChunkRange(n)
				p := buf[:l]
				if k, err := r.ReadAt(p, off); k < len(p) {
					if err == nil || errors.Is(err, io.EOF) {
						err = io.ErrUnexpectedEOF
					}
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("read chunk %d at %d: %w", n, off, err)
					}
					mu.Unlock()
					cancel()
					continue
				}
				h.Reset()
				h.Write(p)
				m.Chunks[n] = h.Sum(nil)
				mu.Lock()
				done += l
				if o.Progress != nil {
					o.Progress(done, size)
				}
				mu.Unlock()
			}
		})
	}
loop:
	for n := range m.Chunks {
		select {
		case next <- n:
		case <-ctx.Done():
			break loop
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return m, nil
}
