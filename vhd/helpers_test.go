package vhd

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// model pairs a disk with a plain byte slice that receives the same writes:
// the reference every read is checked against.
type model struct {
	t   testing.TB
	d   *Disk
	ref []byte
	rng *rand.Rand
}

func newModel(t testing.TB, d *Disk, ref []byte, seed uint64) *model {
	if ref == nil {
		ref = make([]byte, d.Size())
	}
	require.Equal(t, d.Size(), int64(len(ref)), "reference size")
	return &model{t: t, d: d, ref: ref, rng: rand.New(rand.NewPCG(seed, 7))}
}

func (m *model) write(p []byte, off int64) {
	m.t.Helper()
	n, err := m.d.WriteAt(p, off)
	require.NoError(m.t, err, "WriteAt(%d bytes at %d)", len(p), off)
	require.Equal(m.t, len(p), n)
	copy(m.ref[off:], p)
}

// randomWrites makes count writes of random data, zeros and small patterns
// at random, often unaligned, offsets.
func (m *model) randomWrites(count int, maxLen int64) {
	m.t.Helper()
	size := int64(len(m.ref))
	for range count {
		off := m.rng.Int64N(size)
		if m.rng.IntN(3) == 0 {
			off &^= SectorSize - 1
		}
		n := m.rng.Int64N(min(maxLen, size-off)) + 1
		m.write(fill(m.rng, int(n)), off)
	}
}

func fill(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	switch r.IntN(4) {
	case 0: // zeros
	case 1:
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	default:
		c := byte(r.Uint32()) | 1
		for i := range b {
			b[i] = c + byte(i/512)
		}
	}
	return b
}

// check reads the whole disk in random-sized pieces, from several
// goroutines at once, and compares with the reference.
func (m *model) check() {
	m.t.Helper()
	checkContent(m.t, m.d, m.ref, m.rng.Uint64())
}

func checkContent(t testing.TB, d *Disk, ref []byte, seed uint64) {
	t.Helper()
	require.Equal(t, int64(len(ref)), d.Size(), "size")
	var wg sync.WaitGroup
	errs := make([]string, 4)
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			buf := make([]byte, 3<<20)
			for off := int64(0); off < d.Size(); {
				n := r.Int64N(int64(len(buf))) + 1
				got, err := d.ReadAt(buf[:n], off)
				if want := min(n, d.Size()-off); int64(got) != want || (err != nil && err != io.EOF) {
					errs[g] = fmt.Sprintf("ReadAt(%d bytes at %d) = %d, %v", n, off, got, err)
					return
				}
				if !bytes.Equal(buf[:got], ref[off:off+int64(got)]) {
					i := firstDiff(buf[:got], ref[off:])
					errs[g] = "content differs at offset " + itoa64(off+int64(i))
					return
				}
				off += int64(got)
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		require.Empty(t, e)
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

func itoa64(n int64) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int64) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// checkExtents verifies that every non-zero byte lies in an extent and that
// extents are sorted, disjoint and inside the disk.
func checkExtents(t testing.TB, d *Disk, ref []byte) {
	t.Helper()
	var prev int64
	var pos int64
	for e := range d.Extents() {
		require.GreaterOrEqual(t, e.Offset, prev, "extents out of order")
		require.Positive(t, e.Length)
		require.LessOrEqual(t, e.End(), d.Size())
		require.True(t, allZero(ref[pos:e.Offset]), "non-zero data in hole %d-%d", pos, e.Offset)
		pos, prev = e.End(), e.End()
	}
	require.True(t, allZero(ref[pos:]), "non-zero data after the last extent")
}

func mustCreate(t testing.TB, name string, size int64, o *CreateOptions) *Disk {
	t.Helper()
	d, err := Create(name, size, o)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func mustOpen(t testing.TB, name string, flag int) *Disk {
	t.Helper()
	d, err := OpenFile(name, flag, nil)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func readAll(t testing.TB, d *Disk) []byte {
	t.Helper()
	b := make([]byte, d.Size())
	n, err := d.ReadAt(b, 0)
	if err != io.EOF {
		require.NoError(t, err)
	}
	require.Equal(t, len(b), n)
	return b
}

// patch rewrites the footer (both copies) and the dynamic header of an image
// file through f, with fresh checksums.
func patch(t testing.TB, name string, f func(*footer, *dynHeader)) {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	b = patchBytes(t, b, f)
	require.NoError(t, os.WriteFile(name, b, 0o644))
}

func patchBytes(t testing.TB, b []byte, f func(*footer, *dynHeader)) []byte {
	t.Helper()
	b = bytes.Clone(b)
	tail := int64(len(b)) - footerSize
	ft, err := parseFooter(b[tail:], tail)
	require.NoError(t, err)
	var h *dynHeader
	if ft.DiskType != diskTypeFixed {
		h, err = parseDynHeader(b[ft.DataOffset:], int64(ft.DataOffset))
		require.NoError(t, err)
	}
	hOff := ft.DataOffset
	f(ft, h)
	fb := ft.marshal()
	copy(b[tail:], fb)
	if h != nil {
		copy(b[0:], fb)
		copy(b[hOff:], h.marshal())
	}
	return b
}
