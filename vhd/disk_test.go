package vhd

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRandomWritesMatchReference(t *testing.T) {
	tests := []struct {
		name string
		size int64
		opts *CreateOptions
	}{
		{"fixed", 9<<20 + 7*512, &CreateOptions{Type: Fixed}},
		{"dynamic-2M", 9<<20 + 7*512, nil},
		{"dynamic-4K", 3<<20 + 512, &CreateOptions{BlockSize: 4096}},
		{"dynamic-512B", 1 << 20, &CreateOptions{BlockSize: 512}},
		{"dynamic-8M", 20 << 20, &CreateOptions{BlockSize: 8 << 20}},
		{"odd-size", 5<<20 + 1, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "d.vhd")
			d := mustCreate(t, name, tc.size, tc.opts)
			require.Equal(t, alignUp(tc.size, SectorSize), d.Size())
			m := newModel(t, d, nil, uint64(i))
			m.randomWrites(150, 300<<10)
			m.check()
			checkExtents(t, d, m.ref)
			require.NoError(t, d.Close())

			r := mustOpen(t, name, os.O_RDONLY)
			checkContent(t, r, m.ref, 1)
			checkExtents(t, r, m.ref)
			_, err := r.WriteAt([]byte{1}, 0)
			require.ErrorIs(t, err, ErrReadOnly)

			// And once more after further writes through a reopened disk.
			w := mustOpen(t, name, os.O_RDWR)
			m = newModel(t, w, m.ref, uint64(i)+100)
			m.randomWrites(50, 100<<10)
			m.check()
		})
	}
}

func TestZeroWritesAllocateNothing(t *testing.T) {
	name := filepath.Join(t.TempDir(), "z.vhd")
	d := mustCreate(t, name, 16<<20, nil)
	fi, _ := os.Stat(name)
	before := fi.Size()
	_, err := d.WriteAt(make([]byte, 16<<20), 0)
	require.NoError(t, err)
	fi, _ = os.Stat(name)
	assert.Equal(t, before, fi.Size(), "file grew for all-zero writes")
	assert.Empty(t, collect(d.Extents()))

	// A differencing child must record zeros: they hide the parent's data.
	_, err = d.WriteAt(bytes.Repeat([]byte{7}, 4096), 0)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	child := filepath.Join(filepath.Dir(name), "c.vhd")
	c := mustCreate(t, child, 0, &CreateOptions{Parent: name})
	_, err = c.WriteAt(make([]byte, 4096), 0)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, 4096), readAll(t, c)[:4096])
}

func collect[T any](seq func(func(T) bool)) []T {
	var out []T
	for v := range seq {
		out = append(out, v)
	}
	return out
}

func TestReadAtContract(t *testing.T) {
	name := filepath.Join(t.TempDir(), "c.vhd")
	d := mustCreate(t, name, 1<<20, &CreateOptions{BlockSize: 4096})
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	_, err := d.WriteAt(data, 0)
	require.NoError(t, err)

	tests := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantErr error
	}{
		{"inside", 100, 1000, 1000, nil},
		{"empty inside", 5, 0, 0, nil},
		{"up to the end", 1<<20 - 10, 10, 10, io.EOF},
		{"across the end", 1<<20 - 10, 100, 10, io.EOF},
		{"at the end", 1 << 20, 10, 0, io.EOF},
		{"past the end", 1<<20 + 1, 10, 0, io.EOF},
		{"unaligned across blocks", 4095, 4098, 4098, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := make([]byte, tc.n)
			n, err := d.ReadAt(p, tc.off)
			assert.Equal(t, tc.wantN, n)
			assert.Equal(t, tc.wantErr, err)
			if n > 0 {
				assert.Equal(t, data[tc.off:tc.off+int64(n)], p[:n])
			}
		})
	}
	_, err = d.ReadAt(make([]byte, 1), -1)
	assert.Error(t, err, "negative offset")
	_, err = d.WriteAt(make([]byte, 1), -1)
	assert.Error(t, err, "negative offset")

	n, err := d.WriteAt(bytes.Repeat([]byte{9}, 20), 1<<20-8)
	assert.Equal(t, 8, n)
	assert.ErrorIs(t, err, ErrOutOfRange)
	p := make([]byte, 8)
	_, _ = d.ReadAt(p, 1<<20-8)
	assert.Equal(t, bytes.Repeat([]byte{9}, 8), p)

	require.NoError(t, d.Close())
	_, err = d.ReadAt(p, 0)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = d.WriteAt(p, 0)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, d.Close(), ErrClosed)
}

// chain makes base ← c1 ← c2 … with random writes at every level, checking
// each level against its own reference.
func TestDifferencingChain(t *testing.T) {
	dir := t.TempDir()
	const size = 6<<20 + 512
	base := filepath.Join(dir, "base.vhd")
	d := mustCreate(t, base, size, &CreateOptions{BlockSize: 64 << 10})
	m := newModel(t, d, nil, 1)
	m.randomWrites(60, 200<<10)
	baseRef := bytes.Clone(m.ref)
	require.NoError(t, d.Close())

	parent, ref := base, baseRef
	refs := []([]byte){baseRef}
	for level := 1; level <= 4; level++ {
		name := filepath.Join(dir, "c"+itoa64(int64(level))+".vhd")
		opts := &CreateOptions{Parent: parent, BlockSize: int64(4096) << (2 * (level % 3))}
		c := mustCreate(t, name, 0, opts)
		require.Equal(t, Differencing, c.Type())
		require.NotNil(t, c.Parent())
		cm := newModel(t, c, bytes.Clone(ref), uint64(level)*10)
		cm.check() // reads through to the parent before any write
		cm.randomWrites(60, 100<<10)
		// Sub-sector writes into unallocated and allocated blocks.
		for i := range 30 {
			off := cm.rng.Int64N(size - 600)
			cm.write(bytes.Repeat([]byte{byte(i + 1)}, 1+cm.rng.IntN(600)), off)
		}
		cm.check()
		checkExtents(t, c, cm.ref)
		require.NoError(t, c.Close())
		parent, ref = name, cm.ref
		refs = append(refs, cm.ref)
	}

	// Every level still reads as it was: writing to a child never touches
	// its parents.
	for i, r := range refs {
		name := base
		if i > 0 {
			name = filepath.Join(dir, "c"+itoa64(int64(i))+".vhd")
		}
		d := mustOpen(t, name, os.O_RDONLY)
		checkContent(t, d, r, uint64(i))
		depth := 0
		for p := d; p.Parent() != nil; p = p.Parent() {
			depth++
		}
		assert.Equal(t, i, depth, "chain depth of %s", name)
	}
}

func TestChildLargerThanParent(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.vhd")
	d := mustCreate(t, base, 1<<20, nil)
	_, err := d.WriteAt(bytes.Repeat([]byte{1}, 1<<20), 0)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	c := mustCreate(t, filepath.Join(dir, "c.vhd"), 3<<20, &CreateOptions{Parent: base})
	got := readAll(t, c)
	assert.Equal(t, bytes.Repeat([]byte{1}, 1<<20), got[:1<<20])
	assert.True(t, allZero(got[1<<20:]))
	_, err = Create(filepath.Join(dir, "small.vhd"), 512, &CreateOptions{Parent: base})
	assert.ErrorContains(t, err, "smaller than the parent")
}

func TestSectorBitmapIsMSBFirst(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.vhd")
	d := mustCreate(t, base, 1<<20, nil)
	_, err := d.WriteAt(bytes.Repeat([]byte{0xaa}, 1<<20), 0)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	child := filepath.Join(dir, "c.vhd")
	c := mustCreate(t, child, 0, &CreateOptions{Parent: base})
	// Sector 1 of block 0 only.
	_, err = c.WriteAt(bytes.Repeat([]byte{0x55}, 512), 512)
	require.NoError(t, err)
	e := c.dyn.bat[0]
	bm := make([]byte, 1)
	_, err = c.st.ReadAt(bm, int64(e)*SectorSize)
	require.NoError(t, err)
	assert.Equal(t, byte(0x40), bm[0], "bit for sector 1 must be 0x40 (MSB-first)")

	// Hand-set bit 7 (sector 0) and check that the read goes to the child.
	_, err = c.st.WriteAt([]byte{0x80}, int64(e)*SectorSize)
	require.NoError(t, err)
	got := make([]byte, 1024)
	_, err = c.ReadAt(got, 0)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, 512), got[:512], "sector 0 from the child (zeros)")
	assert.Equal(t, bytes.Repeat([]byte{0xaa}, 512), got[512:], "sector 1 from the parent once its bit is cleared")
}

func TestParentLocators(t *testing.T) {
	// Build dir/a/base.vhd ← dir/b/child.vhd.
	setup := func(t *testing.T) (dir, base, child string, want []byte) {
		dir = t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "a"), 0o755))
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "b"), 0o755))
		base = filepath.Join(dir, "a", "base.vhd")
		d := mustCreate(t, base, 1<<20, nil)
		want = bytes.Repeat([]byte("parent!!"), 1<<17)
		_, err := d.WriteAt(want, 0)
		require.NoError(t, err)
		require.NoError(t, d.Close())
		child = filepath.Join(dir, "b", "child.vhd")
		c, err := Create(child, 0, &CreateOptions{Parent: base})
		require.NoError(t, err)
		require.NoError(t, c.Close())
		return
	}
	readChild := func(t *testing.T, name string, opts *OpenOptions) ([]byte, error) {
		d, err := OpenFile(name, os.O_RDONLY, opts)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		return readAll(t, d), nil
	}

	t.Run("recorded", func(t *testing.T) {
		_, base, child, _ := setup(t)
		d := mustOpen(t, child, os.O_RDONLY)
		info := d.Info()
		abs, _ := filepath.Abs(base)
		assert.Equal(t, abs, info.ParentName)
		require.Len(t, info.ParentLocators, 3)
		assert.Equal(t, Locator{"W2ru", `..\a\base.vhd`}, info.ParentLocators[0])
		assert.Equal(t, Locator{"W2ku", strings.ReplaceAll(abs, "/", `\`)}, info.ParentLocators[1])
		assert.Equal(t, Locator{"MacX", "file://" + abs}, info.ParentLocators[2])
		assert.Equal(t, d.Parent().Info().UUID, info.ParentUUID)
	})
	t.Run("relative after moving the chain", func(t *testing.T) {
		dir, _, _, want := setup(t)
		moved := dir + "-moved"
		require.NoError(t, os.Rename(dir, moved))
		defer os.RemoveAll(moved)
		got, err := readChild(t, filepath.Join(moved, "b", "child.vhd"), nil)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
	t.Run("absolute after moving the child", func(t *testing.T) {
		dir, _, child, want := setup(t)
		other := filepath.Join(dir, "c", "d")
		require.NoError(t, os.MkdirAll(other, 0o755))
		require.NoError(t, os.Rename(child, filepath.Join(other, "child.vhd")))
		got, err := readChild(t, filepath.Join(other, "child.vhd"), nil)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
	t.Run("windows paths and name fallback", func(t *testing.T) {
		dir, base, child, want := setup(t)
		// A child made on Windows: locators name C:\ paths that do not exist
		// here; the parent sits beside the child.
		require.NoError(t, os.Rename(base, filepath.Join(dir, "b", "base.vhd")))
		rewriteLocators(t, child, []locatorData{
			{platW2ru, utf16le(`..\VMs\Base Disks\base.vhd`)},
			{platW2ku, utf16le(`C:\VMs\Base Disks\base.vhd`)},
		}, `C:\VMs\Base Disks\base.vhd`)
		got, err := readChild(t, child, nil)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
	t.Run("windows relative path with backslashes", func(t *testing.T) {
		dir, base, child, want := setup(t)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "b", "sub dir"), 0o755))
		require.NoError(t, os.Rename(base, filepath.Join(dir, "b", "sub dir", "p.vhd")))
		rewriteLocators(t, child, []locatorData{{platW2ru, utf16le(`.\sub dir\p.vhd`)}}, "")
		got, err := readChild(t, child, nil)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
	t.Run("MacX only", func(t *testing.T) {
		_, base, child, want := setup(t)
		abs, _ := filepath.Abs(base)
		rewriteLocators(t, child, []locatorData{{platMacX, []byte("file://localhost" + strings.ReplaceAll(abs, " ", "%20"))}}, "")
		got, err := readChild(t, child, nil)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
	t.Run("custom opener", func(t *testing.T) {
		_, base, child, want := setup(t)
		var asked []string
		opts := &OpenOptions{OpenParent: func(name string) (File, error) {
			asked = append(asked, name)
			if filepath.Base(name) != "base.vhd" {
				return nil, fs.ErrNotExist
			}
			return os.Open(base)
		}}
		got, err := readChild(t, child, opts)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.NotEmpty(t, asked)
	})
	t.Run("missing parent lists the paths tried", func(t *testing.T) {
		_, base, child, _ := setup(t)
		require.NoError(t, os.Remove(base))
		_, err := Open(child)
		require.ErrorIs(t, err, ErrParent)
		var pe *ParentError
		require.ErrorAs(t, err, &pe)
		// The relative and absolute locators name the same file; the
		// parent name adds the child's own directory.
		require.Len(t, pe.Tried, 2)
		for _, tr := range pe.Tried {
			assert.ErrorIs(t, tr.Err, fs.ErrNotExist)
			assert.Contains(t, err.Error(), tr.Path)
		}
		assert.Equal(t, "W2ru", pe.Tried[0].From)
	})
	t.Run("wrong parent UUID", func(t *testing.T) {
		_, base, child, _ := setup(t)
		require.NoError(t, os.Remove(base))
		d := mustCreate(t, base, 1<<20, nil)
		require.NoError(t, d.Close())
		_, err := Open(child)
		require.ErrorIs(t, err, ErrParent)
		assert.Contains(t, err.Error(), "its UUID is")
	})
	t.Run("changed parent time stamp", func(t *testing.T) {
		_, base, child, want := setup(t)
		patch(t, base, func(f *footer, _ *dynHeader) { f.Timestamp -= 3600 })
		old := time.Now().Add(-48 * time.Hour)
		require.NoError(t, os.Chtimes(base, old, old))
		_, err := Open(child)
		require.ErrorIs(t, err, ErrParent)
		assert.Contains(t, err.Error(), "IgnoreParentTimestamp")
		got, err := readChild(t, child, &OpenOptions{IgnoreParentTimestamp: true})
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})
	t.Run("loop", func(t *testing.T) {
		dir, base, child, _ := setup(t)
		c2 := filepath.Join(dir, "b", "c2.vhd")
		d := mustCreate(t, c2, 0, &CreateOptions{Parent: child})
		c2UUID := d.Info().UUID
		require.NoError(t, d.Close())
		// Turn the base into a child of c2: base ← child ← c2 ← base.
		rewriteLocators(t, base, []locatorData{{platW2ru, utf16le(`..\b\c2.vhd`)}}, "")
		patch(t, base, func(f *footer, h *dynHeader) {
			f.DiskType = diskTypeDifferencing
			h.ParentUUID = c2UUID
			h.ParentTimestamp = 0
		})
		_, err := Open(c2)
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrFormat)
		assert.Contains(t, err.Error(), "loops")
	})
}

func utf16le(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r), byte(r>>8))
	}
	return b
}

// rewriteLocators replaces the parent locators of a differencing image,
// placing their data at the end of the file, and its parent name.
func rewriteLocators(t *testing.T, name string, locs []locatorData, parentName string) {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	// Blank the old locators' data.
	patchBytes(t, b, func(_ *footer, h *dynHeader) {
		for _, l := range h.Locators {
			if l.Code != platNone {
				clear(b[l.DataOffset : l.DataOffset+uint64(l.DataLength)])
			}
		}
	})
	foot := bytes.Clone(b[len(b)-footerSize:])
	b = b[:len(b)-footerSize]
	var entries [8]locatorEntry
	for i, l := range locs {
		entries[i] = locatorEntry{Code: l.code, DataSpace: SectorSize, DataLength: uint32(len(l.data)), DataOffset: uint64(len(b))}
		pad := make([]byte, alignUp(int64(len(l.data)), SectorSize))
		copy(pad, l.data)
		b = append(b, pad...)
	}
	b = append(b, foot...)
	b = patchBytes(t, b, func(_ *footer, h *dynHeader) {
		h.Locators = entries
		h.ParentName = parentName
	})
	require.NoError(t, os.WriteFile(name, b, 0o644))
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "e.vhd")
	mustCreate(t, existing, 1<<20, nil)
	tests := []struct {
		name    string
		file    string
		size    int64
		opts    *CreateOptions
		wantIs  error
		wantMsg string
	}{
		{"exists", existing, 1 << 20, nil, fs.ErrExist, ""},
		{"zero size", "z.vhd", 0, nil, ErrOutOfRange, ""},
		{"negative size", "n.vhd", -5, nil, ErrOutOfRange, ""},
		{"too large", "l.vhd", MaxVHDSize + 512, nil, ErrOutOfRange, "2040 GiB"},
		{"block size not a power of two", "b.vhd", 1 << 20, &CreateOptions{BlockSize: 3000}, nil, "power of two"},
		{"block size too large", "b2.vhd", 1 << 20, &CreateOptions{BlockSize: 1 << 30}, nil, "power of two"},
		{"vhdx block size below 1 MiB", "x.vhdx", 1 << 20, &CreateOptions{BlockSize: 4096}, nil, "from 1 MiB"},
		{"vhdx sector size", "s.vhdx", 1 << 20, &CreateOptions{LogicalSectorSize: 1024}, nil, "512 or 4096"},
		{"vhd 4K sectors", "s.vhd", 1 << 20, &CreateOptions{LogicalSectorSize: 4096}, nil, "512-byte sectors"},
		{"missing parent", "p.vhd", 0, &CreateOptions{Parent: filepath.Join(dir, "none.vhd")}, fs.ErrNotExist, "open parent"},
		{"differencing without parent", "d.vhd", 1 << 20, &CreateOptions{Type: Differencing}, nil, "needs CreateOptions.Parent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.file
			if !filepath.IsAbs(name) {
				name = filepath.Join(dir, name)
			}
			_, err := Create(name, tc.size, tc.opts)
			require.Error(t, err)
			if tc.wantIs != nil {
				assert.ErrorIs(t, err, tc.wantIs)
			}
			assert.Contains(t, err.Error(), tc.wantMsg)
			if name != existing {
				_, serr := os.Stat(name)
				assert.ErrorIs(t, serr, fs.ErrNotExist, "Create left a file behind")
			}
		})
	}
}

func TestSizeAndGeometry(t *testing.T) {
	tests := []struct {
		name     string
		size     int64
		round    bool
		wantSize int64
		wantGeo  Geometry
	}{
		// Sizes a geometry describes exactly keep it.
		{"exact CHS", 1000 * 4 * 17 * 512, false, 1000 * 4 * 17 * 512, Geometry{1000, 4, 17}},
		// Others keep their size and record the maximum geometry.
		{"10 MiB", 10 << 20, false, 10 << 20, maxGeometry},
		{"odd bytes", 10<<20 + 1, false, 10<<20 + 512, maxGeometry},
		{"above 127 GiB", 200 << 30, false, 200 << 30, maxGeometry},
		// Rounded up as qemu-img does (the sizes qemu-img create -f vpc
		// reports for 10M and 1G).
		{"round 10 MiB", 10 << 20, true, 10514432, Geometry{302, 4, 17}},
		{"round 1 GiB", 1 << 30, true, 1073995776, Geometry{2081, 16, 63}},
		{"round above CHS", 200 << 30, true, 200 << 30, maxGeometry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotSize, gotGeo := vhdSize(alignUp(tc.size, SectorSize), tc.round)
			assert.Equal(t, tc.wantSize, gotSize)
			assert.Equal(t, tc.wantGeo, gotGeo)
			if tc.round && gotGeo != maxGeometry {
				assert.Equal(t, gotSize, gotGeo.Size())
			}
		})
	}
}

// validImage returns the bytes of a small dynamic image with some data, and
// the data.
func validImage(t testing.TB, blockSize int64) ([]byte, []byte) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "v.vhd")
	d := mustCreate(t, name, 64<<10, &CreateOptions{BlockSize: blockSize})
	data := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(3, 3))
	for i := range 20 << 10 {
		data[i] = byte(r.Uint32())
	}
	_, err := d.WriteAt(data, 0)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return b, data
}

func TestHostileImages(t *testing.T) {
	good, _ := validImage(t, 4096)
	setBE32 := func(b []byte, off int, v uint32) {
		b[off], b[off+1], b[off+2], b[off+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	}
	batOff := footerSize + dynHeaderSize
	tests := []struct {
		name   string
		mutate func(t *testing.T, b []byte) []byte
		want   error
	}{
		{"empty", func(t *testing.T, b []byte) []byte { return nil }, ErrFormat},
		{"short", func(t *testing.T, b []byte) []byte { return b[:100] }, ErrFormat},
		{"not a VHD", func(t *testing.T, b []byte) []byte { return bytes.Repeat([]byte{0x42}, 4096) }, ErrFormat},
		{"VHDX too short", func(t *testing.T, b []byte) []byte { return append([]byte("vhdxfile"), make([]byte, 1<<16)...) }, ErrFormat},
		{"VHDX without headers", func(t *testing.T, b []byte) []byte { return append([]byte("vhdxfile"), make([]byte, 1<<20)...) }, ErrFormat},
		{"footer checksums", func(t *testing.T, b []byte) []byte {
			b[100]++
			b[len(b)-footerSize+100]++
			return b
		}, ErrChecksum},
		{"dynamic header checksum", func(t *testing.T, b []byte) []byte { b[footerSize+60]++; return b }, ErrChecksum},
		{"block size not a power of two", func(t *testing.T, b []byte) []byte {
			return patchBytes(t, b, func(_ *footer, h *dynHeader) { h.BlockSize = 3000 })
		}, ErrFormat},
		{"block size 2 GiB", func(t *testing.T, b []byte) []byte {
			return patchBytes(t, b, func(_ *footer, h *dynHeader) { h.BlockSize = 1 << 31 })
		}, ErrFormat},
		{"BAT past the end", func(t *testing.T, b []byte) []byte {
			return patchBytes(t, b, func(_ *footer, h *dynHeader) { h.TableOffset = 1 << 40 })
		}, ErrFormat},
		{"huge table", func(t *testing.T, b []byte) []byte {
			return patchBytes(t, b, func(f *footer, h *dynHeader) {
				h.MaxTableEntries = 1<<32 - 1
				h.BlockSize = 512
				f.CurrentSize = MaxVHDSize
			})
		}, ErrFormat},
		{"table too small for the size", func(t *testing.T, b []byte) []byte {
			return patchBytes(t, b, func(_ *footer, h *dynHeader) { h.MaxTableEntries = 2 })
		}, ErrFormat},
		{"BAT entry past the end", func(t *testing.T, b []byte) []byte { setBE32(b, batOff, 1<<30); return b }, ErrFormat},
		{"BAT entry over the header", func(t *testing.T, b []byte) []byte { setBE32(b, batOff, 1); return b }, ErrFormat},
		{"dynamic header offset past the end", func(t *testing.T, b []byte) []byte {
			return patchBytes(t, b, func(f *footer, _ *dynHeader) { f.DataOffset = 1 << 50 })
		}, ErrFormat},
		{"dynamic header offset unaligned", func(t *testing.T, b []byte) []byte {
			return patchBytes(t, b, func(f *footer, _ *dynHeader) { f.DataOffset = 513 })
		}, ErrFormat},
		{"version 2", func(t *testing.T, b []byte) []byte {
			return patchBytes(t, b, func(f *footer, _ *dynHeader) { f.Version = 0x00020000 })
		}, ErrUnsupported},
		{"disk type 7", func(t *testing.T, b []byte) []byte {
			return patchBytes(t, b, func(f *footer, _ *dynHeader) { f.DiskType = 7 })
		}, ErrUnsupported},
		{"size of exabytes", func(t *testing.T, b []byte) []byte {
			return patchBytes(t, b, func(f *footer, _ *dynHeader) { f.CurrentSize = 1 << 62 })
		}, ErrUnsupported},
		{"fixed shorter than its size", func(t *testing.T, b []byte) []byte {
			b = patchBytes(t, b, func(f *footer, _ *dynHeader) { f.DiskType = diskTypeFixed; f.CurrentSize = 1 << 30 })
			copy(b, make([]byte, footerSize))
			return b
		}, ErrFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(t, bytes.Clone(good))
			_, err := NewDisk(bytes.NewReader(b), int64(len(b)))
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			var fe *FormatError
			assert.True(t, errors.As(err, &fe), "want a *FormatError, got %T: %v", err, err)
			t.Log(err)
		})
	}
}

func TestOverlappingBlocksRefusedForWriting(t *testing.T) {
	good, _ := validImage(t, 4096)
	b := bytes.Clone(good)
	copy(b[footerSize+dynHeaderSize+4:], b[footerSize+dynHeaderSize:footerSize+dynHeaderSize+4]) // entry 1 = entry 0
	name := filepath.Join(t.TempDir(), "o.vhd")
	require.NoError(t, os.WriteFile(name, b, 0o644))
	_, err := OpenFile(name, os.O_RDWR, nil)
	require.ErrorIs(t, err, ErrFormat)
	assert.Contains(t, err.Error(), "overlaps")
}

func TestTornTrailingFooter(t *testing.T) {
	good, data := validImage(t, 4096)
	// Cut the last footer: the copy at offset 0 must stand in, read-only
	// without touching the file, and a writable open must repair it.
	b := good[:len(good)-footerSize]
	name := filepath.Join(t.TempDir(), "t.vhd")
	require.NoError(t, os.WriteFile(name, b, 0o644))
	d := mustOpen(t, name, os.O_RDONLY)
	assert.Equal(t, data, readAll(t, d))
	fi, _ := os.Stat(name)
	assert.Equal(t, int64(len(b)), fi.Size(), "read-only open changed the file")

	w := mustOpen(t, name, os.O_RDWR)
	assert.Equal(t, data, readAll(t, w))
	got, _ := os.ReadFile(name)
	assert.Equal(t, good, got, "repair must restore the footer after the last block")
}
