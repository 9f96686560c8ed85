package vhd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMergeAndFlatten(t *testing.T) {
	for _, ext := range []string{".vhd", ".vhdx"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			bs := int64(64 << 10)
			if ext == ".vhdx" {
				bs = 1 << 20
			}
			base := filepath.Join(dir, "base"+ext)
			d := mustCreate(t, base, 8<<20, &CreateOptions{BlockSize: bs})
			m := newModel(t, d, nil, 1)
			m.randomWrites(30, 300<<10)
			require.NoError(t, d.Close())
			mid := filepath.Join(dir, "mid"+ext)
			c := mustCreate(t, mid, 0, &CreateOptions{Parent: base, BlockSize: bs})
			cm := newModel(t, c, bytes.Clone(m.ref), 2)
			cm.randomWrites(30, 200<<10)
			cm.write(make([]byte, 70000), 100000) // zeros over parent data
			for i := range 10 {
				cm.write(bytes.Repeat([]byte{byte(i + 1)}, 100+i*37), int64(i)*700001)
			}
			require.NoError(t, c.Close())
			top := filepath.Join(dir, "top"+ext)
			g := mustCreate(t, top, 0, &CreateOptions{Parent: mid, BlockSize: bs})
			gm := newModel(t, g, bytes.Clone(cm.ref), 3)
			gm.randomWrites(20, 100<<10)
			require.NoError(t, g.Close())

			// Flatten top: one standalone image with the chain's content.
			flat := filepath.Join(dir, "flat"+ext)
			b, err := os.ReadFile(top)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(flat, b, 0o644))
			require.NoError(t, Flatten(t.Context(), flat, nil))
			f := mustOpen(t, flat, os.O_RDONLY)
			assert.Nil(t, f.Parent())
			assert.Equal(t, Dynamic, f.Type())
			checkContent(t, f, gm.ref, 1)

			// Commit mid into base: base then reads as mid did.
			var calls int
			require.NoError(t, Merge(t.Context(), mid, &MergeOptions{Progress: func(int64, int64) { calls++ }}))
			assert.Positive(t, calls)
			checkContent(t, mustOpen(t, base, os.O_RDONLY), cm.ref, 2)
			if ext == ".vhd" {
				// The child still reads the same (VHD parents keep their
				// UUID), and merging again changes nothing.
				checkContent(t, mustOpen(t, mid, os.O_RDONLY), cm.ref, 3)
				require.NoError(t, Merge(t.Context(), mid, nil))
				checkContent(t, mustOpen(t, base, os.O_RDONLY), cm.ref, 4)
			} else {
				_, err := Open(mid)
				assert.ErrorIs(t, err, ErrParent, "a VHDX child of a written parent is refused")
			}
			r, err := Check(t.Context(), base, nil)
			require.NoError(t, err)
			assert.True(t, r.OK(), "%v", r.Problems)

			err = Merge(t.Context(), base, nil)
			assert.ErrorIs(t, err, ErrFormat, "a base image has nothing to merge into")
		})
	}
}

// An interrupted commit into a VHDX parent is finished by running Merge
// again with IgnoreParentLinkage.
func TestMergeInterruptedVHDX(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.vhdx")
	d := mustCreate(t, base, 16<<20, &CreateOptions{BlockSize: 1 << 20})
	m := newModel(t, d, nil, 1)
	m.randomWrites(20, 1<<20)
	require.NoError(t, d.Close())
	child := filepath.Join(dir, "child.vhdx")
	c := mustCreate(t, child, 0, &CreateOptions{Parent: base, BlockSize: 1 << 20})
	cm := newModel(t, c, bytes.Clone(m.ref), 2)
	cm.randomWrites(40, 1<<20)
	require.NoError(t, c.Close())

	ctx, cancel := context.WithCancel(t.Context())
	err := Merge(ctx, child, &MergeOptions{Progress: func(done, total int64) {
		if done > total/3 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	_, err = Open(child)
	require.ErrorIs(t, err, ErrParent)
	assert.Contains(t, err.Error(), "IgnoreParentLinkage")

	recovery := &OpenOptions{IgnoreParentLinkage: true}
	r, err := OpenFile(child, os.O_RDONLY, recovery)
	require.NoError(t, err)
	checkContent(t, r, cm.ref, 1) // the child still reads as before
	require.NoError(t, r.Close())
	require.NoError(t, Merge(t.Context(), child, &MergeOptions{Open: recovery}))
	checkContent(t, mustOpen(t, base, os.O_RDONLY), cm.ref, 2)
}
