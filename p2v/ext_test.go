package p2v

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
)

// extTools are the e2fsprogs programs the ext tests run.
type extTools struct {
	mkfs, debugfs, e2fsck string
}

func extNeedTools(t testing.TB) extTools {
	t.Helper()
	return extTools{
		mkfs:    testenv.Tool(t, "VMM_TEST_MKFS_EXT4", "mkfs.ext4"),
		debugfs: testenv.Tool(t, "VMM_TEST_DEBUGFS", "debugfs"),
		e2fsck:  testenv.Tool(t, "VMM_TEST_E2FSCK", "e2fsck"),
	}
}

// extTree returns files of random content by slash-separated path
// (randomTree): empty, tiny, block-sized and a few MiB, some two directories
// down.
func extTree(seed uint64) map[string][]byte {
	return randomTree(seed, "dir/sub", 0, 1, 1000, 4096, 70001, 1<<20+3, 3<<20+5, 12345, 2<<20)
}

// extMkfs makes an ext file system of size bytes over garbage, populated
// from tree, with the extra mke2fs arguments args, and returns the image.
func extMkfs(t testing.TB, tl extTools, size int64, tree map[string][]byte, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeTree(t, src, tree)
	img := filepath.Join(dir, "fs.img")
	garbageFile(t, img, size, uint64(size))
	all := append([]string{"-q", "-F", "-E", "nodiscard", "-d", src}, args...)
	run(t, tl.mkfs, append(all, img)...)
	return img
}

var extStatsRE = regexp.MustCompile(`(?m)^(Free blocks|Block size):\s+(\d+)`)

// extStatsFree returns the free block count and block size that debugfs
// reads from the superblock.
func extStatsFree(t testing.TB, tl extTools, img string) (free, blockSize int64) {
	t.Helper()
	out := run(t, tl.debugfs, "-R", "stats", img)
	for _, m := range extStatsRE.FindAllStringSubmatch(out, -1) {
		n, err := strconv.ParseInt(m[2], 10, 64)
		require.NoError(t, err)
		if m[1] == "Block size" {
			blockSize = n
		} else {
			free = n
		}
	}
	require.NotZero(t, blockSize, "no block size in debugfs stats:\n%s", out)
	return free, blockSize
}

// extScribble is the decisive check: it overwrites every free range of a
// copy of img with 0xA5, then e2fsck must find the copy clean and every file
// of tree must read back unchanged.
func extScribble(t testing.TB, tl extTools, img string, u *fsUsage, tree map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	cp := filepath.Join(dir, "scribbled.img")
	copyFile(t, img, cp)
	scribbleRanges(t, cp, u.Free)

	out, err := command(t, false, tl.e2fsck, "-fn", cp)
	require.NoError(t, err, "e2fsck -fn after overwriting the free ranges:\n%s", out)

	var cmds strings.Builder
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range tree {
			if !yield(name) {
				return
			}
		}
	})
	for i, name := range names {
		fmt.Fprintf(&cmds, "dump /%s %s\n", name, filepath.Join(dir, strconv.Itoa(i)))
	}
	cmdFile := filepath.Join(dir, "cmds")
	require.NoError(t, os.WriteFile(cmdFile, []byte(cmds.String()), 0o644))
	run(t, tl.debugfs, "-f", cmdFile, cp)
	for i, name := range names {
		got, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(i)))
		require.NoError(t, err, "dump of /%s", name)
		require.True(t, bytes.Equal(tree[name], got), "/%s changed after overwriting the free ranges", name)
	}
}

// TestParseExtImages parses file systems made by mke2fs with many feature
// combinations and checks that the free ranges are exactly the free blocks.
func TestParseExtImages(t *testing.T) {
	tl := extNeedTools(t)
	const mib = 1 << 20
	for _, tc := range []struct {
		name  string
		size  int64
		typ   string
		block int64 // allocation unit
		args  []string
	}{
		{"ext4-default-4k", 32 * mib, "ext4", 4096, []string{"-b", "4096"}},
		{"ext4-1k", 32 * mib, "ext4", 1024, []string{"-b", "1024"}},
		{"ext4-2k", 32 * mib, "ext4", 2048, []string{"-b", "2048"}},
		{"ext4-64k", 64 * mib, "ext4", 65536, []string{"-b", "65536"}},
		{"ext2", 32 * mib, "ext2", 1024, []string{"-t", "ext2"}},
		{"ext3", 32 * mib, "ext3", 4096, []string{"-t", "ext3", "-b", "4096"}},
		{"no-flex_bg", 32 * mib, "ext4", 1024, []string{"-b", "1024", "-O", "^flex_bg"}},
		{"no-64bit", 32 * mib, "ext4", 4096, []string{"-b", "4096", "-O", "^64bit"}},
		{"uninit_bg", 32 * mib, "ext4", 1024, []string{"-b", "1024", "-O", "^metadata_csum,uninit_bg"}},
		{"uninit_bg-32bit", 32 * mib, "ext4", 1024, []string{"-b", "1024", "-O", "^metadata_csum,^64bit,uninit_bg"}},
		{"many-groups", 64 * mib, "ext4", 1024, []string{"-b", "1024", "-g", "1024"}},
		{"many-groups-no-flex_bg", 64 * mib, "ext4", 1024, []string{"-b", "1024", "-g", "1024", "-O", "^flex_bg"}},
		{"sparse_super2", 64 * mib, "ext4", 1024, []string{"-b", "1024", "-g", "1024", "-O", "sparse_super2"}},
		{"meta_bg", 64 * mib, "ext4", 1024, []string{"-b", "1024", "-g", "1024", "-O", "meta_bg,^resize_inode"}},
		{"bigalloc-1k", 32 * mib, "ext4", 16384, []string{"-b", "1024", "-O", "bigalloc", "-C", "16384"}},
		{"bigalloc-4k", 64 * mib, "ext4", 65536, []string{"-b", "4096", "-O", "bigalloc", "-C", "65536"}},
		{"bigalloc-meta_bg-1k", 32 * mib, "ext4", 16384, []string{"-b", "1024", "-O", "bigalloc,meta_bg,^resize_inode", "-C", "16384"}},
		{"meta_bg-uninit_bg-32bit", 32 * mib, "ext4", 1024, []string{"-b", "1024", "-g", "1024", "-O", "meta_bg,^resize_inode,^64bit,^metadata_csum,uninit_bg"}},
		{"mmp", 32 * mib, "ext4", 4096, []string{"-b", "4096", "-O", "mmp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tree := extTree(uint64(len(tc.name)))
			img := extMkfs(t, tl, tc.size, tree, tc.args...)
			u, err := parseFile(t, parseExt, img)
			require.NoError(t, err)
			assert.Equal(t, tc.typ, u.Type)
			assert.Equal(t, tc.block, u.BlockSize)
			checkFreeRanges(t, u.Free, tc.size)

			// A fresh file system's free-block counter is exact.
			free, bs := extStatsFree(t, tl, img)
			assert.Equal(t, free*bs, rangesLen(u.Free), "free bytes: debugfs says %d blocks of %d", free, bs)

			extScribble(t, tl, img, u, tree)
		})
	}
}

// TestParseExtDeletedFile checks that the blocks of a file removed after
// mkfs are reported free.
func TestParseExtDeletedFile(t *testing.T) {
	tl := extNeedTools(t)
	for _, args := range [][]string{
		{"-b", "1024"},
		{"-t", "ext2", "-b", "4096"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			tree := extTree(9)
			img := extMkfs(t, tl, 32<<20, tree, args...)
			const victim = "f06.bin" // 3 MiB and 5 bytes
			before, err := parseFile(t, parseExt, img)
			require.NoError(t, err)

			out := run(t, tl.debugfs, "-R", "blocks /"+victim, img)
			var blocks []int64
			for _, f := range strings.Fields(out) {
				if n, err := strconv.ParseInt(f, 10, 64); err == nil {
					blocks = append(blocks, n)
				}
			}
			require.NotEmpty(t, blocks, "debugfs blocks /%s:\n%s", victim, out)
			run(t, tl.debugfs, "-w", "-R", "rm /"+victim, img)
			delete(tree, victim)

			u, err := parseFile(t, parseExt, img)
			require.NoError(t, err)
			bs := u.BlockSize
			for _, b := range blocks {
				r := Range{Off: b * bs, Len: bs}
				require.True(t, covered(u.Free, r), "block %d of the deleted file is not free", b)
				require.False(t, covered(before.Free, r), "block %d of the file was free before deletion", b)
			}
			free, fsBlock := extStatsFree(t, tl, img)
			assert.Equal(t, free*fsBlock, rangesLen(u.Free))
			extScribble(t, tl, img, u, tree)
		})
	}
}

// extPatch returns a copy of img with f applied to its bytes.
func extPatch(t testing.TB, img string, f func(b []byte)) string {
	t.Helper()
	b, err := os.ReadFile(img)
	require.NoError(t, err)
	f(b)
	p := filepath.Join(t.TempDir(), "patched.img")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

// extRequireFSError checks that err is a *FSError whose offset lies in
// [lo, hi).
func extRequireFSError(t testing.TB, err error, lo, hi int64) {
	t.Helper()
	var fe *FSError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "ext4", fe.FS)
	assert.True(t, fe.Off >= lo && fe.Off < hi, "error offset %d not in [%d, %d): %v", fe.Off, lo, hi, err)
}

// TestParseExtDamaged checks that damaged structures give a *FSError.
func TestParseExtDamaged(t *testing.T) {
	tl := extNeedTools(t)
	tree := map[string][]byte{"a": bytes.Repeat([]byte("data"), 100000)}
	const size = 16 << 20
	args := []string{"-b", "1024", "-g", "2048"} // 8 groups
	csum := extMkfs(t, tl, size, tree, args...)
	crc16 := extMkfs(t, tl, size, tree, append(args, "-O", "^metadata_csum,uninit_bg")...)
	// With 1 KiB blocks the descriptors start at block 2; each is 64 bytes.
	const gdt, desc = 2048, 64

	t.Run("descriptor-crc32c", func(t *testing.T) {
		img := extPatch(t, csum, func(b []byte) { b[gdt+desc+0x0E] ^= 1 }) // group 1 free inodes
		_, err := parseFile(t, parseExt, img)
		extRequireFSError(t, err, gdt+desc, gdt+2*desc)
	})
	t.Run("descriptor-crc16", func(t *testing.T) {
		img := extPatch(t, crc16, func(b []byte) { b[gdt+0x0E] ^= 1 }) // group 0 free inodes
		_, err := parseFile(t, parseExt, img)
		extRequireFSError(t, err, gdt, gdt+desc)
	})
	t.Run("superblock-crc32c", func(t *testing.T) {
		img := extPatch(t, csum, func(b []byte) { b[1024+0x78] ^= 1 }) // volume name
		_, err := parseFile(t, parseExt, img)
		extRequireFSError(t, err, 1024, 2048)
	})
	t.Run("block-bitmap-crc32c", func(t *testing.T) {
		var bitmap int64
		img := extPatch(t, csum, func(b []byte) {
			bitmap = int64(binary.LittleEndian.Uint32(b[gdt:])) * 1024
			b[bitmap] &^= 1 // block 1, the superblock, now "free"
		})
		_, err := parseFile(t, parseExt, img)
		extRequireFSError(t, err, bitmap, bitmap+1024)
	})
	t.Run("bitmap-out-of-range", func(t *testing.T) {
		img := extPatch(t, crc16, func(b []byte) {
			binary.LittleEndian.PutUint32(b[gdt+desc:], 1<<30) // group 1 block bitmap
			fixCRC16(b, gdt, desc, 1)
		})
		_, err := parseFile(t, parseExt, img)
		extRequireFSError(t, err, gdt+desc, gdt+2*desc)
	})
	t.Run("truncated", func(t *testing.T) {
		f, err := os.Open(csum)
		require.NoError(t, err)
		defer f.Close()
		_, err = parseExt(f, size-8192)
		extRequireFSError(t, err, 1024, 2048)
	})
	t.Run("errors-recorded", func(t *testing.T) {
		img := extPatch(t, crc16, func([]byte) {})
		run(t, tl.debugfs, "-w", "-R", "ssv state 3", img)
		_, err := parseFile(t, parseExt, img)
		extRequireFSError(t, err, 1024, 2048)
	})
	t.Run("stale", func(t *testing.T) {
		// A journal with a transaction to replay, and a file system without
		// a journal that is mounted: the map is given but marked stale.
		ext2 := extMkfs(t, tl, size, tree, "-t", "ext2")
		for _, tc := range []struct {
			img  string
			cmds string
		}{
			{csum, "jo\njw -b 300 /dev/null\njc\n"},
			{ext2, "ssv state 0\n"},
		} {
			want, err := parseFile(t, parseExt, tc.img)
			require.NoError(t, err)
			require.Empty(t, want.Stale)
			img := extPatch(t, tc.img, func([]byte) {})
			cmds := filepath.Join(t.TempDir(), "cmds")
			require.NoError(t, os.WriteFile(cmds, []byte(tc.cmds), 0o644))
			run(t, tl.debugfs, "-w", "-f", cmds, img)
			got, err := parseFile(t, parseExt, img)
			require.NoError(t, err)
			assert.NotEmpty(t, got.Stale)
			assert.Equal(t, want.Free, got.Free)
		}
	})
	t.Run("journal-empty", func(t *testing.T) {
		// needs_recovery with an empty log, as a frozen file system has;
		// the journal inode is mapped by extents, or by blocks in ext3.
		ext3 := extMkfs(t, tl, size, tree, "-t", "ext3")
		for _, img := range []string{csum, ext3} {
			want, err := parseFile(t, parseExt, img)
			require.NoError(t, err)
			img = extPatch(t, img, func([]byte) {})
			run(t, tl.debugfs, "-w", "-R", "feature needs_recovery", img)
			got, err := parseFile(t, parseExt, img)
			require.NoError(t, err)
			assert.Equal(t, want, got)
		}
	})
}

// fixCRC16 recomputes the gdt_csum checksum of descriptor g of a 64-bit
// file system whose descriptor table is at byte gdt.
func fixCRC16(b []byte, gdt, desc int, g uint32) {
	d := b[gdt+int(g)*desc:][:desc]
	var le [4]byte
	binary.LittleEndian.PutUint32(le[:], g)
	c := extCRC16(0xFFFF, b[1024+extSBUUID:][:16])
	c = extCRC16(c, le[:])
	c = extCRC16(c, d[:extGDChecksum])
	c = extCRC16(c, d[extGDChecksum+2:])
	binary.LittleEndian.PutUint16(d[extGDChecksum:], c)
}

// TestParseExtNotExt checks that data without an ext superblock gives
// errNotFS.
func TestParseExtNotExt(t *testing.T) {
	random := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	for name, data := range map[string][]byte{
		"random": random,
		"zeros":  make([]byte, 1<<20),
		"tiny":   {0x53, 0xEF},
		"empty":  nil,
	} {
		_, err := parseExt(bytes.NewReader(data), int64(len(data)))
		require.ErrorIs(t, err, errNotFS, name)
	}

	tl := extNeedTools(t)
	img := extMkfs(t, tl, 8<<20, nil, "-b", "1024")
	zeroed := extPatch(t, img, func(b []byte) { clear(b[1024:2048]) })
	_, err := parseFile(t, parseExt, zeroed)
	require.ErrorIs(t, err, errNotFS)
}

// extReadRecorder records the end of the furthest read.
type extReadRecorder struct {
	r   io.ReaderAt
	end int64
}

func (rr *extReadRecorder) ReadAt(b []byte, off int64) (int, error) {
	rr.end = max(rr.end, off+int64(len(b)))
	return rr.r.ReadAt(b, off)
}

// extFailingReader fails every read that reaches past byte limit.
type extFailingReader struct {
	r     io.ReaderAt
	limit int64
}

var errExtInjected = errors.New("injected read error")

func (f extFailingReader) ReadAt(b []byte, off int64) (int, error) {
	if off+int64(len(b)) > f.limit {
		return 0, errExtInjected
	}
	return f.r.ReadAt(b, off)
}

// TestParseExtReadError checks that a read error is passed up as such, not
// mistaken for a damaged or absent file system.
func TestParseExtReadError(t *testing.T) {
	tl := extNeedTools(t)
	img := extMkfs(t, tl, 8<<20, nil, "-b", "1024")
	b, err := os.ReadFile(img)
	require.NoError(t, err)
	for _, limit := range []int64{1500, 3000, 8 << 10} {
		_, err := parseExt(extFailingReader{bytes.NewReader(b), limit}, int64(len(b)))
		require.ErrorIs(t, err, errExtInjected, "limit %d", limit)
		var fe *FSError
		require.False(t, errors.As(err, &fe) || errors.Is(err, errNotFS), "limit %d: %v", limit, err)
	}
}

// extFuzzBases returns the images that fuzz inputs patch: small file systems
// made by mke2fs (when installed) with a fixed UUID, hash seed and time so
// that a fuzz input means the same on every run, each cut after the last
// byte parseExt reads; and hand-made superblocks.
func extFuzzBases(f *testing.F) [][]byte {
	var bases [][]byte
	mkfs := optionalTool(f, "VMM_TEST_MKFS_EXT4", "mkfs.ext4")
	const uuid = "0f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
	for i, tc := range []struct {
		size int64
		args []string
	}{
		{64 << 10, []string{"-t", "ext2", "-b", "1024", "-N", "16"}},
		{64 << 10, []string{"-O", "^has_journal,^metadata_csum", "-b", "1024", "-N", "16"}},
		{64 << 10, []string{"-O", "^has_journal,^metadata_csum,uninit_bg", "-b", "1024", "-N", "16"}},
		{64 << 10, []string{"-O", "^has_journal,^resize_inode", "-b", "1024", "-N", "16"}},
		{64 << 10, []string{"-O", "^has_journal,^resize_inode,^64bit", "-b", "1024", "-N", "16"}},
		{64 << 10, []string{"-O", "^has_journal,meta_bg,^resize_inode", "-b", "1024", "-N", "16"}},
		{1 << 20, []string{"-O", "^has_journal,^resize_inode,^metadata_csum,uninit_bg", "-b", "1024", "-N", "64", "-g", "256"}},
		{1 << 20, []string{"-O", "^has_journal,^resize_inode,bigalloc", "-C", "4096", "-b", "1024", "-N", "64"}},
	} {
		if mkfs == "" {
			break
		}
		img := filepath.Join(f.TempDir(), fmt.Sprintf("base%d.img", i))
		require.NoError(f, os.WriteFile(img, make([]byte, tc.size), 0o644))
		args := append([]string{"-q", "-F", "-U", uuid, "-E", "nodiscard,hash_seed=" + uuid}, append(tc.args, img)...)
		cmd := exec.Command(mkfs, args...)
		cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1000000000")
		out, err := cmd.CombinedOutput()
		require.NoError(f, err, "%s", out)
		b, err := os.ReadFile(img)
		require.NoError(f, err)
		rr := &extReadRecorder{r: bytes.NewReader(b)}
		_, err = parseExt(rr, int64(len(b)))
		require.NoError(f, err, "base %d (%s)", i, strings.Join(tc.args, " "))
		bases = append(bases, b[:rr.end])
	}

	// Hand-made: magic only, and a plausible 1 KiB-block geometry.
	magic := make([]byte, 8192)
	binary.LittleEndian.PutUint16(magic[1024+extSBMagic:], extMagic)
	geo := bytes.Clone(magic)
	sb := geo[1024:]
	binary.LittleEndian.PutUint32(sb[extSBInodesCount:], 16)
	binary.LittleEndian.PutUint32(sb[extSBBlocksCountLo:], 8)
	binary.LittleEndian.PutUint32(sb[extSBFirstDataBlock:], 1)
	binary.LittleEndian.PutUint32(sb[extSBBlocksPerGroup:], 8192)
	binary.LittleEndian.PutUint32(sb[extSBClustersPerGroup:], 8192)
	binary.LittleEndian.PutUint32(sb[extSBInodesPerGroup:], 16)
	binary.LittleEndian.PutUint32(sb[extSBRevLevel:], 1)
	binary.LittleEndian.PutUint16(sb[extSBInodeSize:], 128)
	binary.LittleEndian.PutUint32(geo[2048:], 3) // block bitmap
	binary.LittleEndian.PutUint32(geo[2052:], 4) // inode bitmap
	binary.LittleEndian.PutUint32(geo[2056:], 5) // inode table
	return append(bases, magic, geo)
}

// extFixChecksums recomputes the superblock, descriptor and block bitmap
// checksums of the ext file system in b, as far as they can be found, so
// that fuzzing reaches past checksum verification.
func extFixChecksums(b []byte) {
	if len(b) < extSuperOff+extSuperSize {
		return
	}
	sb := b[extSuperOff : extSuperOff+extSuperSize]
	binary.LittleEndian.PutUint32(sb[extSBChecksum:], extCRC32c(^uint32(0), sb[:extSBChecksum]))
	fs, err := readExtSuper(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return
	}
	csum := fs.has(0, 0, extROCompatMetadataCsum)
	for g := uint64(0); g < fs.groupCount; g++ {
		loc := fs.descBlockLoc(g / fs.descPerBlock)
		off := loc*fs.blockSize + g%fs.descPerBlock*fs.descSize
		if off+fs.descSize > uint64(len(b)) {
			return
		}
		d := b[off : off+fs.descSize]
		bitmap := uint64(binary.LittleEndian.Uint32(d[extGDBlockBitmapLo:]))
		if fs.descSize >= 64 {
			bitmap |= uint64(binary.LittleEndian.Uint32(d[extGDBlockBitmapHi:])) << 32
		}
		if csum && bitmap < uint64(len(b))/fs.blockSize && (bitmap+1)*fs.blockSize <= uint64(len(b)) {
			c := extCRC32c(fs.csumSeed, b[bitmap*fs.blockSize:][:fs.clustersPerGroup/8])
			binary.LittleEndian.PutUint16(d[extGDBlockBitmapCsumLo:], uint16(c))
			if fs.descSize >= 64 {
				binary.LittleEndian.PutUint16(d[extGDBlockBitmapCsumHi:], uint16(c>>16))
			}
		}
		binary.LittleEndian.PutUint16(d[extGDChecksum:], fs.descCsum(g, d))
	}
}

// FuzzParseExt checks that parseExt never panics and keeps its contract on
// any input. An input picks a base image, extends it by pad KiB of zeros,
// sets bytes as patch says (3 bytes each: little-endian offset, value),
// optionally fixes the checksums, and cuts the result to trunc sectors
// unless trunc is 0. Patches keep inputs small, which the fuzzer needs: it
// minimizes every input it finds interesting in time quadratic in its size.
func FuzzParseExt(f *testing.F) {
	bases := extFuzzBases(f)
	for i := range bases {
		f.Add(uint8(i), uint16(60), []byte{}, false, uint16(0))
		f.Add(uint8(i), uint16(0), []byte{0x04, 0x04, 0x80}, true, uint16(0)) // blocks count
		f.Add(uint8(i), uint16(0), []byte{0x12, 0x08, 0x03}, true, uint16(0)) // group 0 flags
		f.Add(uint8(i), uint16(0), []byte{0x60, 0x04, 0x14}, true, uint16(0)) // incompat
		f.Add(uint8(i), uint16(4), []byte{0x00, 0x0C, 0x00}, true, uint16(9))
	}
	f.Fuzz(func(t *testing.T, base uint8, pad uint16, patch []byte, fix bool, trunc uint16) {
		b := bases[int(base)%len(bases)]
		img := make([]byte, len(b)+int(pad)*1024)
		copy(img, b)
		for ; len(patch) >= 3; patch = patch[3:] {
			if off := int(binary.LittleEndian.Uint16(patch)); off < len(img) {
				img[off] = patch[2]
			}
		}
		if fix {
			extFixChecksums(img)
		}
		size := int64(len(img))
		if trunc != 0 {
			size = min(size, int64(trunc)*512)
		}
		u, err := parseExt(bytes.NewReader(img), size)
		checkParsed(t, u, err, size, "ext2", "ext3", "ext4")
	})
}
