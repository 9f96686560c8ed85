package vhd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
)

func TestResize(t *testing.T) {
	tests := []struct {
		name string
		ext  string
		size int64
		opts *CreateOptions
		grow int64
	}{
		{"fixed VHD", ".vhd", 4 << 20, &CreateOptions{Type: Fixed}, 9<<20 + 512},
		{"dynamic VHD within its BAT", ".vhd", 4 << 20, &CreateOptions{BlockSize: 64 << 10}, 5 << 20},
		{"dynamic VHD, BAT moved", ".vhd", 4 << 20, &CreateOptions{BlockSize: 64 << 10}, 40 << 20},
		{"dynamic VHDX", ".vhdx", 8 << 20, &CreateOptions{BlockSize: 1 << 20}, 1 << 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			name := filepath.Join(dir, "r"+tc.ext)
			d := mustCreate(t, name, tc.size, tc.opts)
			m := newModel(t, d, nil, 1)
			m.randomWrites(20, 1<<20)
			require.NoError(t, d.Close())

			// Grow: old data stays, new space reads as zeros and takes writes.
			require.NoError(t, Resize(t.Context(), name, tc.grow, nil))
			g := mustOpen(t, name, os.O_RDWR)
			require.Equal(t, tc.grow, g.Size())
			ref := append(bytes.Clone(m.ref), make([]byte, tc.grow-tc.size)...)
			checkContent(t, g, ref, 1)
			gm := newModel(t, g, ref, 2)
			gm.write(bytes.Repeat([]byte{0x42}, 8192), tc.grow-8192)
			gm.write(bytes.Repeat([]byte{0x43}, 100), tc.size-50)
			require.NoError(t, g.Close())
			checkContent(t, mustOpen(t, name, os.O_RDONLY), gm.ref, 3)
			r, err := Check(t.Context(), name, nil)
			require.NoError(t, err)
			assert.True(t, r.OK(), "%v", r.Problems)
			// qemu-img's view too, when the environment has it (and it must
			// under VMM_TEST_REQUIRE=1); the rest of the test runs anyway.
			if os.Getenv("VMM_TEST_QEMU_IMG") != "" || testenv.Required() {
				format := map[string]string{".vhd": "vpc", ".vhdx": "vhdx"}[tc.ext]
				assert.Equal(t, tc.grow, qemuVirtualSize(t, name, format))
				assert.True(t, bytes.Equal(gm.ref, qemuRaw(t, name, format)), "qemu-img reads the resized image differently")
			}

			// Shrinking over data is refused; over nothing it works.
			err = Resize(t.Context(), name, tc.size/2, nil)
			require.ErrorIs(t, err, ErrOutOfRange)
			w := mustOpen(t, name, os.O_RDWR)
			_, err = w.WriteAt(make([]byte, 8192), tc.grow-8192)
			require.NoError(t, err)
			clear(gm.ref[tc.grow-8192:])
			require.NoError(t, w.Close())
			if tc.opts.Type == Fixed {
				return // a fixed image's tail is stored data, not a hole
			}
			// The zeroed tail block must be unallocated: compact first.
			_, err = Compact(t.Context(), name, nil)
			require.NoError(t, err)
			require.NoError(t, Resize(t.Context(), name, tc.size+1<<20, nil))
			s := mustOpen(t, name, os.O_RDONLY)
			assert.Equal(t, tc.size+1<<20, s.Size())
			checkContent(t, s, gm.ref[:tc.size+1<<20], 4)
		})
	}
}
