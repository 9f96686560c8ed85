package vhd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVHDXRandomWrites(t *testing.T) {
	tests := []struct {
		name string
		size int64
		opts *CreateOptions
	}{
		{"dynamic", 40<<20 + 512, &CreateOptions{BlockSize: 1 << 20}},
		{"dynamic default blocks", 70 << 20, nil},
		{"fixed", 9 << 20, &CreateOptions{Type: Fixed, BlockSize: 2 << 20}},
		{"4Kn", 12 << 20, &CreateOptions{BlockSize: 1 << 20, LogicalSectorSize: 4096}},
		{"512n", 5 << 20, &CreateOptions{BlockSize: 1 << 20, PhysicalSectorSize: 512}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "d.vhdx")
			d := mustCreate(t, name, tc.size, tc.opts)
			require.Equal(t, FormatVHDX, d.Format())
			m := newModel(t, d, nil, uint64(i))
			m.randomWrites(120, 3<<20)
			m.check()
			checkExtents(t, d, m.ref)
			require.NoError(t, d.Close())

			r := mustOpen(t, name, os.O_RDONLY)
			checkContent(t, r, m.ref, 1)
			checkExtents(t, r, m.ref)
			if tc.opts != nil && tc.opts.LogicalSectorSize != 0 {
				assert.Equal(t, tc.opts.LogicalSectorSize, r.Info().LogicalSectorSize)
			}

			w := mustOpen(t, name, os.O_RDWR)
			m = newModel(t, w, m.ref, uint64(i)+100)
			m.randomWrites(40, 1<<20)
			m.check()
			require.NoError(t, w.Close())
			checkContent(t, mustOpen(t, name, os.O_RDONLY), m.ref, 2)
		})
	}
}

func TestVHDXDifferencingChain(t *testing.T) {
	dir := t.TempDir()
	const size = 24<<20 + 4096
	base := filepath.Join(dir, "base.vhdx")
	d := mustCreate(t, base, size, &CreateOptions{BlockSize: 1 << 20})
	m := newModel(t, d, nil, 1)
	m.randomWrites(40, 2<<20)
	require.NoError(t, d.Close())
	parent, ref := base, m.ref
	for level := 1; level <= 3; level++ {
		name := filepath.Join(dir, "c"+itoa64(int64(level))+".vhdx")
		c := mustCreate(t, name, 0, &CreateOptions{Parent: parent})
		require.Equal(t, Differencing, c.Type())
		cm := newModel(t, c, bytes.Clone(ref), uint64(level))
		cm.check()
		cm.randomWrites(60, 600<<10)
		for i := range 20 {
			cm.write(bytes.Repeat([]byte{byte(i + 1)}, 1+cm.rng.IntN(700)), cm.rng.Int64N(size-700))
		}
		cm.check()
		checkExtents(t, c, cm.ref)
		require.NoError(t, c.Close())
		r := mustOpen(t, name, os.O_RDONLY)
		checkContent(t, r, cm.ref, 3)
		parent, ref = name, cm.ref
	}
	// Writing to a parent changes its data write GUID: its child refuses it.
	p := mustOpen(t, base, os.O_RDWR)
	_, err := p.WriteAt([]byte{1}, 0)
	require.NoError(t, err)
	require.NoError(t, p.Close())
	_, err = Open(filepath.Join(dir, "c1.vhdx"))
	require.ErrorIs(t, err, ErrParent)
	assert.Contains(t, err.Error(), "data write GUID")
}

// TestVHDXPendingLog leaves an image whose metadata changes are in the log
// but not in place, as a crash between the two would, and checks that
// vmmkit replays it in memory for a read-only open (leaving the file as it
// is), into the file for a writable open, and that qemu-img replays our log
// the same way.
func TestVHDXPendingLog(t *testing.T) {
	for _, diff := range []bool{false, true} {
		t.Run(map[bool]string{false: "dynamic", true: "differencing"}[diff], func(t *testing.T) {
			dir := t.TempDir()
			const size = 12 << 20
			name, base := crashImage(t, dir, ".vhdx", diff, size, 1<<20)
			d := mustOpen(t, name, os.O_RDWR)
			m := newModel(t, d, base, 77)
			m.randomWrites(30, 1<<20)
			testHookAfterLog = func() error { return errCrash }
			defer func() { testHookAfterLog = nil }()
			require.ErrorIs(t, d.Sync(), errCrash)
			require.ErrorIs(t, d.Close(), errCrash)
			testHookAfterLog = nil

			pending, err := os.ReadFile(name)
			require.NoError(t, err)
			// Without the log, the image reads as before the writes.
			b := bytes.Clone(pending)
			h := patchLogGUID(t, b)
			nolog, err := newDisk(readOnly{bytes.NewReader(b)}, int64(len(b)), name, false, nil, nil, nil)
			require.NoError(t, err, "header %+v", h)
			assert.False(t, bytes.Equal(m.ref, readAll(t, nolog)), "the writes reached their places: no pending log to test")

			r := mustOpen(t, name, os.O_RDONLY)
			checkContent(t, r, m.ref, 1)
			require.NoError(t, r.Close())
			after, err := os.ReadFile(name)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(pending, after), "a read-only open changed the file")

			if !diff {
				// qemu-img replays the log when it opens the image for
				// writing; then it reads what we wrote.
				cp := filepath.Join(dir, "qemu-replay.vhdx")
				require.NoError(t, os.WriteFile(cp, pending, 0o644))
				run(t, qemuImg(t), "check", "-r", "all", "-f", "vhdx", cp)
				assert.True(t, bytes.Equal(m.ref, qemuRaw(t, cp, "vhdx")), "qemu-img's replay of our log differs")
			}

			w := mustOpen(t, name, os.O_RDWR)
			checkContent(t, w, m.ref, 2)
			require.NoError(t, w.Close())
			r = mustOpen(t, name, os.O_RDONLY)
			assert.True(t, r.vhdx.header.logGUID.IsZero(), "log still pending after a writable open")
			checkContent(t, r, m.ref, 3)
		})
	}
}

// patchLogGUID clears the log GUID of the current header in an image's
// bytes, so that its log is ignored, and returns the header.
func patchLogGUID(t *testing.T, b []byte) *vhdxHeaderInfo {
	t.Helper()
	var cur *vhdxHeaderInfo
	for _, off := range []int64{vhdxHeader1Off, vhdxHeader2Off} {
		h, err := parseVHDXHeader(b[off:off+vhdxHeaderSize], off)
		if err == nil && (cur == nil || h.seq > cur.seq) {
			cur = h
		}
	}
	require.NotNil(t, cur)
	cur.logGUID = UUID{}
	copy(b[cur.off:], putHeader(cur))
	return cur
}
