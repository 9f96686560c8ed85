package vhd

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bruteDiff lists the differing sectors of two references, merged.
func bruteDiff(a, b []byte) []Extent {
	n := max(len(a), len(b))
	pad := func(x []byte) []byte { return append(bytes.Clone(x), make([]byte, n-len(x))...) }
	a, b = pad(a), pad(b)
	var out []Extent
	for s := 0; s < n; s += SectorSize {
		t := min(s+SectorSize, n)
		if bytes.Equal(a[s:t], b[s:t]) {
			continue
		}
		if k := len(out); k > 0 && out[k-1].End() == int64(s) {
			out[k-1].Length += int64(t - s)
		} else {
			out = append(out, Extent{int64(s), int64(t - s)})
		}
	}
	return out
}

func diffAll(t *testing.T, a, b *Disk) []Extent {
	t.Helper()
	var out []Extent
	for e, err := range Diff(t.Context(), a, b) {
		require.NoError(t, err)
		out = append(out, e)
	}
	return out
}

func TestDiff(t *testing.T) {
	dir := t.TempDir()
	for _, ext := range []string{".vhd", ".vhdx"} {
		t.Run(ext, func(t *testing.T) {
			bs := int64(64 << 10)
			if ext == ".vhdx" {
				bs = 1 << 20
			}
			// Two unrelated disks of different sizes.
			x := mustCreate(t, filepath.Join(dir, "x"+ext), 8<<20, &CreateOptions{BlockSize: bs})
			y := mustCreate(t, filepath.Join(dir, "y"+ext), 9<<20, &CreateOptions{BlockSize: bs})
			mx, my := newModel(t, x, nil, 1), newModel(t, y, nil, 2)
			mx.randomWrites(30, 200<<10)
			copy(my.ref, mx.ref)
			my.write(mx.ref, 0)
			my.randomWrites(10, 50<<10)
			assert.Equal(t, bruteDiff(mx.ref, my.ref), diffAll(t, x, y))
			assert.Empty(t, diffAll(t, x, x))

			// A parent and its child: only the child's blocks are read.
			require.NoError(t, x.Close())
			c := mustCreate(t, filepath.Join(dir, "c"+ext), 0, &CreateOptions{Parent: filepath.Join(dir, "x"+ext)})
			mc := newModel(t, c, bytes.Clone(mx.ref), 3)
			mc.randomWrites(15, 100<<10)
			p := c.Parent()
			assert.Equal(t, bruteDiff(mx.ref, mc.ref), diffAll(t, p, c))
			assert.Equal(t, bruteDiff(mc.ref, mx.ref), diffAll(t, c, p))
			cand := diffCandidates(p, c, c.Size())
			var n int64
			for _, e := range cand {
				n += e.Length
			}
			var own int64
			for _, e := range c.ownExtents() {
				own += e.Length
			}
			assert.Equal(t, own, n, "only the child's own data is a candidate")
		})
	}
}

func TestDiffCancelled(t *testing.T) {
	dir := t.TempDir()
	a := mustCreate(t, filepath.Join(dir, "a.vhd"), 4<<20, nil)
	b := mustCreate(t, filepath.Join(dir, "b.vhd"), 4<<20, nil)
	_, err := a.WriteAt(bytes.Repeat([]byte{1}, 1<<20), 0)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var got error
	for _, err := range Diff(ctx, a, b) {
		got = err
	}
	assert.ErrorIs(t, got, context.Canceled)
}
