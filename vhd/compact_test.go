package vhd

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCompact(t *testing.T) {
	for _, tc := range []struct {
		name string
		ext  string
		diff bool
		bs   int64
	}{
		{"vhd dynamic", ".vhd", false, 64 << 10},
		{"vhd differencing", ".vhd", true, 64 << 10},
		{"vhdx dynamic", ".vhdx", false, 1 << 20},
		{"vhdx differencing", ".vhdx", true, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			const size = 24 << 20
			name, ref := crashImage(t, dir, tc.ext, tc.diff, size, tc.bs)
			d := mustOpen(t, name, os.O_RDWR)
			m := newModel(t, d, ref, 9)
			m.randomWrites(60, 3*tc.bs)
			// Blocks that end up reading as zeros, or as the parent.
			for off := int64(0); off < size; off += 4 * tc.bs {
				under := make([]byte, tc.bs)
				if tc.diff {
					p := d.Parent()
					_, err := p.ReadAt(under, off)
					require.NoError(t, err)
				}
				m.write(under, off)
			}
			require.NoError(t, d.Close())
			before, _ := os.Stat(name)

			res, err := Compact(t.Context(), name, nil)
			require.NoError(t, err)
			t.Logf("%+v", *res)
			assert.Positive(t, res.BlocksDropped)
			assert.Less(t, res.SizeAfter, before.Size())
			c := mustOpen(t, name, os.O_RDONLY)
			checkContent(t, c, m.ref, 1)
			r, err := Check(t.Context(), name, nil)
			require.NoError(t, err)
			assert.True(t, r.OK(), "%v", r.Problems)
			// What is left are gaps smaller than a block (a differencing
			// VHD keeps 512 bytes before each block it added).
			assert.Less(t, r.LeakedBytes, tc.bs)

			// The compacted image takes new writes.
			w := mustOpen(t, name, os.O_RDWR)
			m2 := newModel(t, w, m.ref, 10)
			m2.randomWrites(30, 2*tc.bs)
			m2.write(bytes.Repeat([]byte{0xee}, 700), size-5000)
			require.NoError(t, w.Close())
			checkContent(t, mustOpen(t, name, os.O_RDONLY), m2.ref, 2)
		})
	}
}
