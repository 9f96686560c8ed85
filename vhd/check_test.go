package vhd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckClean(t *testing.T) {
	dir := t.TempDir()
	for _, ext := range []string{".vhd", ".vhdx"} {
		base := filepath.Join(dir, "base"+ext)
		d := mustCreate(t, base, 8<<20, &CreateOptions{BlockSize: 1 << 20})
		newModel(t, d, nil, 1).randomWrites(20, 1<<20)
		require.NoError(t, d.Close())
		child := filepath.Join(dir, "child"+ext)
		c := mustCreate(t, child, 0, &CreateOptions{Parent: base})
		newModel(t, c, readAll(t, c), 2).randomWrites(20, 100<<10)
		require.NoError(t, c.Close())
		r, err := Check(t.Context(), child, nil)
		require.NoError(t, err)
		assert.True(t, r.OK(), "%s: %v", ext, r.Problems)
		assert.Zero(t, r.LeakedBytes, ext)
	}
}

func TestCheckRepairs(t *testing.T) {
	good, data := validImage(t, 4096)
	vhdx := func(t *testing.T) (string, []byte) {
		name := filepath.Join(t.TempDir(), "x.vhdx")
		d := mustCreate(t, name, 4<<20, &CreateOptions{BlockSize: 1 << 20})
		m := newModel(t, d, nil, 3)
		m.randomWrites(10, 1<<20)
		require.NoError(t, d.Close())
		return name, m.ref
	}
	tests := []struct {
		name       string
		make       func(t *testing.T) (string, []byte)
		repairable bool
		want       string
	}{
		{"VHD without its trailing footer", func(t *testing.T) (string, []byte) {
			name := filepath.Join(t.TempDir(), "t.vhd")
			require.NoError(t, os.WriteFile(name, good[:len(good)-footerSize], 0o644))
			return name, data
		}, true, "footer at the end"},
		{"VHD with a damaged footer copy", func(t *testing.T) (string, []byte) {
			b := bytes.Clone(good)
			b[100]++
			name := filepath.Join(t.TempDir(), "h.vhd")
			require.NoError(t, os.WriteFile(name, b, 0o644))
			return name, data
		}, true, "copy at offset 0"},
		{"VHDX with a damaged header", func(t *testing.T) (string, []byte) {
			name, ref := vhdx(t)
			f, err := os.OpenFile(name, os.O_RDWR, 0)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte("XX"), vhdxHeader1Off+200)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			return name, ref
		}, true, "header damaged"},
		{"VHDX with a damaged region table", func(t *testing.T) (string, []byte) {
			name, ref := vhdx(t)
			f, err := os.OpenFile(name, os.O_RDWR, 0)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte("XX"), vhdxRegion1Off+300)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			return name, ref
		}, true, "region table damaged"},
		{"VHDX with a pending log", func(t *testing.T) (string, []byte) {
			name := filepath.Join(t.TempDir(), "p.vhdx")
			d := mustCreate(t, name, 8<<20, &CreateOptions{BlockSize: 1 << 20})
			m := newModel(t, d, nil, 4)
			for off := int64(0); off < d.Size(); off += 1 << 20 {
				m.write(bytes.Repeat([]byte{0x77}, 4096), off+8192) // new blocks too
			}
			testHookAfterLog = func() error { return errCrash }
			defer func() { testHookAfterLog = nil }()
			require.Error(t, d.Close())
			return name, m.ref
		}, true, "log holds changes"},
		{"VHD with overlapping blocks", func(t *testing.T) (string, []byte) {
			b := bytes.Clone(good)
			copy(b[footerSize+dynHeaderSize+4:], b[footerSize+dynHeaderSize:footerSize+dynHeaderSize+4])
			name := filepath.Join(t.TempDir(), "o.vhd")
			require.NoError(t, os.WriteFile(name, b, 0o644))
			return name, nil
		}, false, "overlap"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name, want := tc.make(t)
			r, err := Check(t.Context(), name, nil)
			require.NoError(t, err)
			require.False(t, r.OK(), "damage not found")
			require.NotEmpty(t, r.Problems)
			assert.Contains(t, r.Problems[0].What, tc.want)
			assert.Equal(t, tc.repairable, r.Problems[0].Repairable, "%v", r.Problems)

			r, err = Check(t.Context(), name, &CheckOptions{Repair: true})
			require.NoError(t, err)
			assert.Equal(t, tc.repairable, r.OK(), "after repair: %v", r.Problems)
			if !tc.repairable {
				return
			}
			assert.True(t, r.Problems[0].Repaired)
			r, err = Check(t.Context(), name, nil)
			require.NoError(t, err)
			assert.Empty(t, r.Problems, "a second check still finds %v", r.Problems)
			assert.Equal(t, want, readAll(t, mustOpen(t, name, os.O_RDONLY)))
		})
	}
}

func TestCheckReportsParentsAndLeaks(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.vhd")
	require.NoError(t, mustCreate(t, base, 1<<20, nil).Close())
	child := filepath.Join(dir, "child.vhd")
	require.NoError(t, mustCreate(t, child, 0, &CreateOptions{Parent: base}).Close())
	require.NoError(t, os.Remove(base))
	r, err := Check(t.Context(), child, nil)
	require.NoError(t, err)
	require.Len(t, r.Problems, 1)
	assert.Contains(t, r.Problems[0].What, "parent link")

	// A block written but never referenced (a crash before its BAT
	// entry): leaked space.
	img := filepath.Join(dir, "leak.vhd")
	d := mustCreate(t, img, 4<<20, &CreateOptions{BlockSize: 4096})
	_, err = d.WriteAt(bytes.Repeat([]byte{1}, 4096), 0)
	require.NoError(t, err)
	d.dyn.bat[0] = unusedEntry // forget it, as the file will after reopening
	var e [4]byte
	for i := range e {
		e[i] = 0xff
	}
	_, err = d.st.WriteAt(e[:], d.dyn.batOff)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	r, err = Check(t.Context(), img, nil)
	require.NoError(t, err)
	assert.True(t, r.OK())
	assert.Equal(t, int64(4096+SectorSize), r.LeakedBytes)
}

func TestCheckTestdata(t *testing.T) {
	images, err := filepath.Glob("testdata/*.vhd*")
	require.NoError(t, err)
	for _, img := range images {
		if filepath.Ext(img) == ".golden" {
			continue
		}
		r, err := Check(t.Context(), img, nil)
		require.NoError(t, err)
		assert.True(t, r.OK(), "%s: %v", img, r.Problems)
		// qemu-img leaves space between its structures, and the children
		// had their locators rewritten; vmmkit's own images waste nothing.
		if !strings.HasPrefix(filepath.Base(img), "qemu-") && !strings.Contains(img, "child") {
			assert.Zero(t, r.LeakedBytes, img)
		}
		t.Logf("%s: %d bytes leaked", img, r.LeakedBytes)
	}
}
