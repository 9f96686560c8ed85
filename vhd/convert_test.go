package vhd

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConvert(t *testing.T) {
	dir := t.TempDir()
	// A raw source with random data, zero runs and a real hole.
	raw := filepath.Join(dir, "src.raw")
	content := randomRaw(t, 9<<20+512, 1)
	clear(content[6<<20 : 8<<20])
	require.NoError(t, os.WriteFile(raw, content, 0o644))
	f, err := os.OpenFile(raw, os.O_RDWR, 0)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(12<<20)) // a 3 MiB hole at the end
	require.NoError(t, f.Close())
	content = append(content, make([]byte, 12<<20-len(content))...)

	// A differencing chain as another source.
	base := filepath.Join(dir, "base.vhd")
	bd := mustCreate(t, base, 4<<20, nil)
	bm := newModel(t, bd, nil, 2)
	bm.randomWrites(30, 200<<10)
	require.NoError(t, bd.Close())
	child := filepath.Join(dir, "child.vhd")
	cd := mustCreate(t, child, 0, &CreateOptions{Parent: base, BlockSize: 64 << 10})
	cm := newModel(t, cd, bm.ref, 3)
	cm.randomWrites(30, 100<<10)
	require.NoError(t, cd.Close())

	// And a VHDX chain.
	xbase := filepath.Join(dir, "base.vhdx")
	xd := mustCreate(t, xbase, 6<<20, &CreateOptions{BlockSize: 1 << 20})
	xm := newModel(t, xd, nil, 4)
	xm.randomWrites(30, 300<<10)
	require.NoError(t, xd.Close())
	xchild := filepath.Join(dir, "child.vhdx")
	xc := mustCreate(t, xchild, 0, &CreateOptions{Parent: xbase})
	xcm := newModel(t, xc, xm.ref, 5)
	xcm.randomWrites(30, 100<<10)
	require.NoError(t, xc.Close())

	tests := []struct {
		name string
		src  string
		ext  string
		want []byte
		opts *ConvertOptions
	}{
		{"raw to dynamic", raw, ".vhd", content, nil},
		{"raw to fixed", raw, ".vhd", content, &ConvertOptions{Create: CreateOptions{Type: Fixed}}},
		{"raw to dynamic 512K blocks", raw, ".vhd", content, &ConvertOptions{Create: CreateOptions{BlockSize: 512 << 10}}},
		{"chain to dynamic", child, ".vhd", cm.ref, nil},
		{"raw to VHDX", raw, ".vhdx", content, nil},
		{"raw to fixed VHDX", raw, ".vhdx", content, &ConvertOptions{Create: CreateOptions{Type: Fixed, BlockSize: 1 << 20}}},
		{"VHD chain to VHDX", child, ".vhdx", cm.ref, nil},
		{"VHDX chain to VHD", xchild, ".vhd", xcm.ref, nil},
		{"VHDX chain to raw", xchild, ".raw", xcm.ref, nil},
		{"VHD chain to raw", child, ".img", cm.ref, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(dir, "out"+itoa64(int64(i))+tc.ext)
			var calls int
			var last, total int64
			o := &ConvertOptions{}
			if tc.opts != nil {
				o = tc.opts
			}
			o.Progress = func(done, all int64) { calls++; last, total = done, all }
			require.NoError(t, Convert(t.Context(), dst, tc.src, o))
			if tc.ext != ".vhd" && tc.ext != ".vhdx" {
				got, err := os.ReadFile(dst)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(tc.want, got), "raw content differs")
				assert.Equal(t, total, last, "progress ends at the total")
				return
			}
			d := mustOpen(t, dst, os.O_RDONLY)
			assert.Nil(t, d.Parent(), "a converted chain stands alone")
			assert.True(t, bytes.Equal(tc.want, readAll(t, d)), "content differs")
			checkExtents(t, d, tc.want)
			assert.Positive(t, calls)
			assert.Equal(t, total, last, "progress ends at the total")
			if d.Type() == Dynamic {
				// No block that is all zeros in the source is allocated.
				var blocks []blockRange
				if d.vhdx != nil {
					blocks = d.vhdx.blocks(d.Size())
				} else {
					blocks = d.dyn.blocks(d.Size())
				}
				for _, b := range blocks {
					assert.False(t, allZero(tc.want[b.disk.Offset:b.disk.End()]), "zero block at %d allocated", b.disk.Offset)
				}
			}
		})
	}
}

func TestConvertFailures(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "src.raw")
	require.NoError(t, os.WriteFile(raw, randomRaw(t, 8<<20, 4), 0o644))

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		dst := filepath.Join(dir, "c.vhd")
		err := Convert(ctx, dst, raw, nil)
		require.ErrorIs(t, err, context.Canceled)
		_, serr := os.Stat(dst)
		assert.ErrorIs(t, serr, fs.ErrNotExist, "a failed Convert leaves no file")
	})
	t.Run("cancelled midway", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		dst := filepath.Join(dir, "m.vhd")
		err := Convert(ctx, dst, raw, &ConvertOptions{Progress: func(done, total int64) {
			if done > total/4 {
				cancel()
			}
		}})
		require.ErrorIs(t, err, context.Canceled)
		_, serr := os.Stat(dst)
		assert.ErrorIs(t, serr, fs.ErrNotExist)
	})
	t.Run("destination exists", func(t *testing.T) {
		dst := filepath.Join(dir, "exists.vhd")
		require.NoError(t, os.WriteFile(dst, []byte("keep me"), 0o644))
		err := Convert(t.Context(), dst, raw, nil)
		require.ErrorIs(t, err, fs.ErrExist)
		b, _ := os.ReadFile(dst)
		assert.Equal(t, "keep me", string(b))
	})
	t.Run("damaged source image", func(t *testing.T) {
		good, _ := validImage(t, 4096)
		good[footerSize+60]++ // dynamic header checksum
		src := filepath.Join(dir, "bad.vhd")
		require.NoError(t, os.WriteFile(src, good, 0o644))
		err := Convert(t.Context(), filepath.Join(dir, "x.vhd"), src, nil)
		require.ErrorIs(t, err, ErrChecksum)
	})
	t.Run("missing source", func(t *testing.T) {
		err := Convert(t.Context(), filepath.Join(dir, "y.vhd"), filepath.Join(dir, "none.raw"), nil)
		require.ErrorIs(t, err, fs.ErrNotExist)
	})
}
