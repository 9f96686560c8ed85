package vhd

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Applied log entries are blanked, so that no reader can replay an old one
// after newer changes.
func TestVHDXLogBlankedAfterFlush(t *testing.T) {
	name := filepath.Join(t.TempDir(), "l.vhdx")
	d := mustCreate(t, name, 200<<30, &CreateOptions{BlockSize: 1 << 20})
	// Enough new blocks far apart for more than one log entry.
	for i := range int64(160) {
		_, err := d.WriteAt([]byte{1}, i*(1<<30))
		require.NoError(t, err)
	}
	require.NoError(t, d.Sync())
	log := make([]byte, d.vhdx.header.logLength)
	require.NoError(t, readFull(d.vhdx.w.file, log, int64(d.vhdx.header.logOffset)))
	for pos := int64(0); pos < int64(len(log)); pos += logSector {
		assert.Nil(t, parseLogEntry(log, pos, d.vhdx.header.logGUID), "a valid entry is left at log offset %d", pos)
	}
	require.NoError(t, d.Close())
}

// Sync and ReadAt may run at once.
func TestVHDXSyncWhileReading(t *testing.T) {
	name := filepath.Join(t.TempDir(), "r.vhdx")
	d := mustCreate(t, name, 64<<20, &CreateOptions{BlockSize: 1 << 20})
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for i := range 200 {
			_, _ = d.ReadAt(buf, int64(i%1000)*(64<<10))
		}
	})
	for i := range int64(40) {
		_, err := d.WriteAt([]byte{byte(i + 1)}, i<<20)
		require.NoError(t, err)
		require.NoError(t, d.Sync())
	}
	wg.Wait()
}

// A metadata region of length 0 is an error, not a panic.
func TestVHDXEmptyMetadataRegion(t *testing.T) {
	name := filepath.Join(t.TempDir(), "m.vhdx")
	require.NoError(t, mustCreate(t, name, 4<<20, &CreateOptions{BlockSize: 1 << 20}).Close())
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	for _, off := range []int{vhdxRegion1Off, vhdxRegion2Off} {
		rt := b[off : off+vhdxRegionSize]
		for i := range 2 {
			e := rt[16+32*i:]
			if UUID(e[0:16]) == regionMetadata {
				binary.LittleEndian.PutUint32(e[24:], 0)
			}
		}
		binary.LittleEndian.PutUint32(rt[4:], vhdxChecksum(rt, 4))
	}
	_, err = NewDisk(bytes.NewReader(b), int64(len(b)))
	require.ErrorIs(t, err, ErrFormat)
}

// Opening qemu's fixed VHDX for writing keeps its size, and Check finds it
// clean. (qemu-img preallocates the file but marks every block ZERO without
// an offset, so its space counts as unused.)
func TestQemuFixedVHDXKeepsItsSpace(t *testing.T) {
	qi := qemuImg(t)
	name := filepath.Join(t.TempDir(), "f.vhdx")
	run(t, qi, "create", "-q", "-f", "vhdx", "-o", "subformat=fixed,block_size=1M", name, "16M")
	before, err := os.Stat(name)
	require.NoError(t, err)
	d := mustOpen(t, name, os.O_RDWR)
	_, err = d.WriteAt(bytes.Repeat([]byte{9}, 4096), 5<<20)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	after, err := os.Stat(name)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, after.Size(), before.Size())
	r, err := Check(t.Context(), name, nil)
	require.NoError(t, err)
	assert.True(t, r.OK(), "%v", r.Problems)
	out := run(t, qi, "check", "-f", "vhdx", name)
	assert.Contains(t, out, "No errors were found")
}

// A child whose block is a hole over parent data (a sparse copy of zeros
// it wrote) differs from its parent there: Diff says so, Merge carries it.
func TestDiffAndMergeSeeChildHoles(t *testing.T) {
	for _, ext := range []string{".vhd", ".vhdx"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "base"+ext)
			p := mustCreate(t, base, 4<<20, &CreateOptions{BlockSize: 1 << 20})
			_, err := p.WriteAt(bytes.Repeat([]byte{0xab}, 4<<20), 0)
			require.NoError(t, err)
			require.NoError(t, p.Close())
			child := filepath.Join(dir, "child"+ext)
			c := mustCreate(t, child, 0, &CreateOptions{Parent: base, BlockSize: 1 << 20})
			_, err = c.WriteAt(make([]byte, 1<<20), 1<<20)
			require.NoError(t, err)
			require.NoError(t, c.Close())
			// Copied sparsely, the zeros become a hole.
			sparse := filepath.Join(dir, "sparse"+ext)
			run(t, "cp", "--sparse=always", child, sparse)
			require.NoError(t, os.Rename(sparse, child))

			c = mustOpen(t, child, os.O_RDONLY)
			want := bytes.Repeat([]byte{0xab}, 4<<20)
			clear(want[1<<20 : 2<<20])
			require.Equal(t, want, readAll(t, c))
			assert.Equal(t, []Extent{{1 << 20, 1 << 20}}, diffAll(t, c.Parent(), c))
			require.NoError(t, c.Close())

			require.NoError(t, Merge(t.Context(), child, nil))
			assert.Equal(t, want, readAll(t, mustOpen(t, base, os.O_RDONLY)))
		})
	}
}

// An image whose log is empty or lies over another region opens for
// reading but is refused for writing.
func TestVHDXBadLogRefusedForWriting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		length uint32
		offset uint64
	}{
		{"empty log", 0, vhdxLogOff},
		{"log over the metadata", vhdxMB, vhdxMetadataOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "b.vhdx")
			require.NoError(t, mustCreate(t, name, 4<<20, &CreateOptions{BlockSize: 1 << 20}).Close())
			b, err := os.ReadFile(name)
			require.NoError(t, err)
			for _, off := range []int64{vhdxHeader1Off, vhdxHeader2Off} {
				h, err := parseVHDXHeader(b[off:off+vhdxHeaderSize], off)
				require.NoError(t, err)
				h.logLength, h.logOffset = tc.length, tc.offset
				copy(b[off:], putHeader(h))
			}
			require.NoError(t, os.WriteFile(name, b, 0o644))
			r := mustOpen(t, name, os.O_RDONLY)
			assert.Equal(t, int64(4<<20), r.Size())
			_, err = OpenFile(name, os.O_RDWR, nil)
			require.ErrorIs(t, err, ErrUnsupported)
			assert.Contains(t, err.Error(), "log")
		})
	}
}

// A log entry that asks for huge zero ranges is not replayed (nor expanded
// into memory).
func TestVHDXHostileLogZeros(t *testing.T) {
	name := filepath.Join(t.TempDir(), "z.vhdx")
	require.NoError(t, mustCreate(t, name, 4<<20, &CreateOptions{BlockSize: 1 << 20}).Close())
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	guid := NewUUID()
	le := binary.LittleEndian
	entry := make([]byte, logSector)
	copy(entry[0:4], "loge")
	le.PutUint32(entry[8:], logSector)
	le.PutUint64(entry[16:], 1) // sequence
	le.PutUint32(entry[24:], 126)
	copy(entry[32:48], guid[:])
	for i := range 126 {
		d := entry[logHeaderSize+i*logDescSize:]
		copy(d[0:4], "zero")
		le.PutUint64(d[8:], 1<<30) // 1 GiB of zeros each
		le.PutUint64(d[16:], uint64(i)<<30)
		le.PutUint64(d[24:], 1)
	}
	le.PutUint32(entry[4:], vhdxChecksum(entry, 4))
	copy(b[vhdxLogOff:], entry)
	for _, off := range []int64{vhdxHeader1Off, vhdxHeader2Off} {
		h, err := parseVHDXHeader(b[off:off+vhdxHeaderSize], off)
		require.NoError(t, err)
		h.logGUID = guid
		copy(b[off:], putHeader(h))
	}
	d, err := NewDisk(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err, "the bogus entry is ignored")
	assert.Equal(t, int64(4<<20), d.Size())
}
