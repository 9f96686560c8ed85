package p2v

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
)

// fatTools are the dosfstools and mtools programs the FAT tests run.
type fatTools struct {
	mkfs, fsck, mcopy, mdel string
}

func fatNeedTools(t testing.TB) fatTools {
	t.Helper()
	return fatTools{
		mkfs:  testenv.Tool(t, "VMM_TEST_MKFS_VFAT", "mkfs.vfat"),
		fsck:  testenv.Tool(t, "VMM_TEST_FSCK_VFAT", "fsck.vfat"),
		mcopy: testenv.Tool(t, "VMM_TEST_MCOPY", "mcopy"),
		mdel:  testenv.Tool(t, "VMM_TEST_MDEL", "mdel"),
	}
}

// fatMkfs makes a FAT file system with mkfs.vfat args on a garbage-filled
// image of size bytes in dir, and returns the image's path. mkfs.vfat formats
// a regular file in place at its current size (no -C, which would create it).
func fatMkfs(t testing.TB, tl fatTools, dir string, size int64, args ...string) string {
	t.Helper()
	img := filepath.Join(dir, "fs.img")
	garbageFile(t, img, size, uint64(size))
	run(t, tl.mkfs, append(args, img)...)
	return img
}

// fatRand returns a pseudo-random source seeded with seed.
func fatRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

// fatTree returns files of random content to copy into an image: an empty
// file, files around a cluster in size, a long name, a big file and a
// subdirectory with enough entries to span several directory clusters.
// budget bounds the total size.
func fatTree(seed uint64, cluster, budget int64) map[string][]byte {
	src := fatRand(seed)
	rng := rand.New(src)
	data := func(n int64) []byte {
		b := make([]byte, n)
		src.Read(b)
		return b
	}
	tree := map[string][]byte{
		"empty":                      nil,
		"one":                        data(1),
		"cluster-1":                  data(cluster - 1),
		"cluster":                    data(cluster),
		"cluster+1":                  data(cluster + 1),
		"A Long File Name.bin":       data(rng.Int64N(budget / 8)),
		"big.bin":                    data(budget / 4),
		"sub/deep/deeper/nested.dat": data(rng.Int64N(budget / 16)),
	}
	for i := range 40 {
		tree[fmt.Sprintf("sub/file number %02d.txt", i)] = data(rng.Int64N(budget / 200))
	}
	return tree
}

// fatCopyIn writes tree to a host directory and copies it into img with
// mcopy -s, which makes the subdirectories.
func fatCopyIn(t testing.TB, tl fatTools, img string, tree map[string][]byte) {
	t.Helper()
	src := t.TempDir()
	writeTree(t, src, tree)
	top, err := os.ReadDir(src)
	require.NoError(t, err)
	args := []string{"-s", "-i", img}
	for _, e := range top {
		args = append(args, filepath.Join(src, e.Name()))
	}
	run(t, tl.mcopy, append(args, "::/")...)
}

// fatDelete deletes the named files of tree from img with mdel.
func fatDelete(t testing.TB, tl fatTools, img string, tree map[string][]byte, names ...string) {
	t.Helper()
	args := []string{"-i", img}
	for _, n := range names {
		args = append(args, "::/"+n)
		delete(tree, n)
	}
	run(t, tl.mdel, args...)
}

var fatFsckClusters = regexp.MustCompile(`(\d+) files?, (\d+)/(\d+) clusters`)

// fatFsckFree returns the count of free clusters fsck.vfat -n -v reports for
// img ("N files, used/total clusters").
func fatFsckFree(t testing.TB, tl fatTools, img string) int64 {
	t.Helper()
	out := run(t, tl.fsck, "-n", "-v", img)
	m := fatFsckClusters.FindStringSubmatch(out)
	require.NotNil(t, m, "no cluster count in fsck.vfat output:\n%s", out)
	used, _ := strconv.ParseInt(m[2], 10, 64)
	total, _ := strconv.ParseInt(m[3], 10, 64)
	return total - used
}

// fatFreeClusters returns how many clusters u lists as free.
func fatFreeClusters(t testing.TB, u *fsUsage) int64 {
	t.Helper()
	var n int64
	for _, r := range u.Free {
		require.Zero(t, r.Len%u.BlockSize, "free range %+v is not whole clusters", r)
		n += r.Len / u.BlockSize
	}
	return n
}

// fatCheckScribble is the decisive check: it overwrites every free range of a
// copy of img with 0xA5, then fsck.vfat must find the copy clean and every
// file of tree must read back unchanged.
func fatCheckScribble(t testing.TB, tl fatTools, img string, u *fsUsage, tree map[string][]byte) {
	t.Helper()
	cp := img + ".scribbled"
	copyFile(t, img, cp)
	scribbleRanges(t, cp, u.Free)
	if out, err := command(t, false, tl.fsck, "-n", cp); err != nil {
		t.Fatalf("fsck.vfat -n of the image with its free clusters overwritten: %v\n%s", err, out)
	}
	out := t.TempDir()
	run(t, tl.mcopy, "-s", "-n", "-i", cp, "::/*", out)
	got := map[string][]byte{}
	err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(out, p)
		got[filepath.ToSlash(rel)] = b
		return err
	})
	require.NoError(t, err)
	require.Equal(t, slices.Sorted(maps.Keys(tree)), slices.Sorted(maps.Keys(got)), "files read back")
	for name, want := range tree {
		if !bytes.Equal(want, got[name]) {
			t.Errorf("%s: read back %d bytes differing from the %d written", name, len(got[name]), len(want))
		}
	}
	require.NoError(t, os.Remove(cp))
}

// TestParseFATImages parses file systems made by mkfs.vfat and filled by
// mtools, across FAT types, sector sizes and cluster sizes.
func TestParseFATImages(t *testing.T) {
	tl := fatNeedTools(t)
	for _, tc := range []struct {
		name    string
		size    int64
		args    []string
		typ     string
		cluster int64
	}{
		{"fat12-floppy", 1440 << 10, []string{"-F", "12"}, "fat12", 512},
		{"fat12-4k-clusters", 8 << 20, []string{"-F", "12", "-s", "8"}, "fat12", 4096},
		{"fat12-4k-sectors", 4 << 20, []string{"-F", "12", "-S", "4096"}, "fat12", 16384},
		{"fat16", 64 << 20, []string{"-F", "16"}, "fat16", 2048},
		{"fat16-one-fat", 16 << 20, []string{"-F", "16", "-f", "1", "-s", "2"}, "fat16", 1024},
		{"fat16-4k-sectors", 64 << 20, []string{"-F", "16", "-S", "4096", "-s", "1"}, "fat16", 4096},
		{"fat16-16k-clusters", 128 << 20, []string{"-F", "16", "-s", "32"}, "fat16", 16384},
		{"fat32", 300 << 20, []string{"-F", "32"}, "fat32", 4096},
		{"fat32-4k-sectors", 260 << 20, []string{"-F", "32", "-S", "4096", "-s", "1"}, "fat32", 4096},
		{"fat32-512-clusters", 40 << 20, []string{"-F", "32", "-s", "1"}, "fat32", 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := fatMkfs(t, tl, t.TempDir(), tc.size, tc.args...)
			tree := fatTree(uint64(tc.size), tc.cluster, tc.size/4)
			fatCopyIn(t, tl, img, tree)
			var holes []string
			for i := 1; i < 40; i += 2 {
				holes = append(holes, fmt.Sprintf("sub/file number %02d.txt", i))
			}
			fatDelete(t, tl, img, tree, holes...)

			u, err := parseFile(t, parseFAT, img)
			require.NoError(t, err)
			assert.Equal(t, tc.typ, u.Type)
			assert.Equal(t, tc.cluster, u.BlockSize)
			checkFreeRanges(t, u.Free, tc.size)
			assert.Greater(t, len(u.Free), 1, "deleted files should leave holes")
			assert.Equal(t, fatFsckFree(t, tl, img), fatFreeClusters(t, u), "free clusters, fsck.vfat vs parseFAT")
			fatCheckScribble(t, tl, img, u, tree)
		})
	}
}

// TestParseFATDelete checks that deleting a file with mdel frees exactly its
// clusters and nothing else changes.
func TestParseFATDelete(t *testing.T) {
	tl := fatNeedTools(t)
	for _, tc := range []struct {
		name    string
		size    int64
		args    []string
		cluster int64
	}{
		{"fat12", 4 << 20, []string{"-F", "12", "-s", "2"}, 1024},
		{"fat32", 40 << 20, []string{"-F", "32", "-s", "1"}, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := fatMkfs(t, tl, t.TempDir(), tc.size, tc.args...)
			tree := fatTree(1, tc.cluster, tc.size/4)
			fatCopyIn(t, tl, img, tree)
			before, err := parseFile(t, parseFAT, img)
			require.NoError(t, err)
			big := int64(len(tree["big.bin"]))

			fatDelete(t, tl, img, tree, "big.bin")
			after, err := parseFile(t, parseFAT, img)
			require.NoError(t, err)
			checkFreeRanges(t, after.Free, tc.size)
			freed := fatFreeClusters(t, after) - fatFreeClusters(t, before)
			assert.Equal(t, (big+tc.cluster-1)/tc.cluster, freed, "clusters freed by deleting a %d-byte file", big)
			for _, r := range before.Free {
				require.True(t, covered(after.Free, r), "range %+v free before the deletion is not free after it", r)
			}
			assert.Equal(t, fatFsckFree(t, tl, img), fatFreeClusters(t, after))
			fatCheckScribble(t, tl, img, after, tree)
		})
	}
}

// TestParseFATTooSmall checks that a FAT whose volume or data area does not
// fit the size given is a *FSError.
func TestParseFATTooSmall(t *testing.T) {
	tl := fatNeedTools(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, 64<<20)) // sparse is enough here
	run(t, tl.mkfs, "-F", "16", img)
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()

	for _, size := range []int64{32 << 20, 64<<20 - 512, 100 << 10, 4096} {
		_, err := parseFAT(f, size)
		var fe *FSError
		require.ErrorAs(t, err, &fe, "size %d", size)
		assert.Equal(t, "fat16", fe.FS)
	}
	// The same with the image file itself cut short.
	require.NoError(t, os.Truncate(img, 48<<20))
	_, err = parseFile(t, parseFAT, img)
	var fe *FSError
	require.ErrorAs(t, err, &fe)
}

// TestParseFATSmallFAT32 checks that a volume with a FAT32 layout but too few
// clusters for FAT32, which mkfs.vfat makes with a warning, is a *FSError:
// the Microsoft rule makes it FAT16, and its FAT cannot be read as such.
func TestParseFATSmallFAT32(t *testing.T) {
	tl := fatNeedTools(t)
	img := filepath.Join(t.TempDir(), "fs.img")
	require.NoError(t, os.WriteFile(img, nil, 0o644))
	require.NoError(t, os.Truncate(img, 64<<20))
	run(t, tl.mkfs, "-F", "32", "-s", "8", img)
	_, err := parseFile(t, parseFAT, img)
	var fe *FSError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "fat16", fe.FS)
}

// fatGeom describes a hand-made FAT volume.
type fatGeom struct {
	bps, spc, rsvd, nfats, rootEnt, totSec, fatSz int
	fat32                                         bool
	rootClus                                      int
	label                                         string
}

func (g fatGeom) fatOff(copy int) int { return (g.rsvd + copy*g.fatSz) * g.bps }

func (g fatGeom) dataOff() int {
	return (g.rsvd + g.nfats*g.fatSz + (g.rootEnt*32+g.bps-1)/g.bps) * g.bps
}

func (g fatGeom) clusters() int { return (g.totSec - g.dataOff()/g.bps) / g.spc }

func (g fatGeom) size() int64 { return int64(g.totSec) * int64(g.bps) }

// image returns the start of the volume up to its data area: boot sector,
// FATs with their media entries, root directory. The rest reads as zeros
// (fatSparse).
func (g fatGeom) image() []byte {
	le := binary.LittleEndian
	b := make([]byte, g.dataOff())
	copy(b, []byte{0xEB, 0x3C, 0x90})
	copy(b[3:], "MSWIN4.1")
	le.PutUint16(b[11:], uint16(g.bps))
	b[13] = byte(g.spc)
	le.PutUint16(b[14:], uint16(g.rsvd))
	b[16] = byte(g.nfats)
	le.PutUint16(b[17:], uint16(g.rootEnt))
	if g.totSec < 1<<16 && !g.fat32 {
		le.PutUint16(b[19:], uint16(g.totSec))
	} else {
		le.PutUint32(b[32:], uint32(g.totSec))
	}
	b[21] = 0xF8
	if g.fat32 {
		le.PutUint32(b[36:], uint32(g.fatSz))
		le.PutUint32(b[44:], uint32(g.rootClus))
		copy(b[82:], g.label)
	} else {
		le.PutUint16(b[22:], uint16(g.fatSz))
		copy(b[54:], g.label)
	}
	b[510], b[511] = 0x55, 0xAA
	for k := range g.nfats {
		g.set(b, k, 0, 0xFFFFFF8)
		g.set(b, k, 1, 0xFFFFFFF)
	}
	return b
}

// set sets entry c of FAT copy k in img to v, cut to the entry width.
func (g fatGeom) set(img []byte, k, c int, v uint32) {
	p := img[g.fatOff(k):]
	switch {
	case g.fat32:
		binary.LittleEndian.PutUint32(p[c*4:], v)
	case g.clusters() < 4085:
		o := c * 3 / 2
		if c%2 == 0 {
			p[o] = byte(v)
			p[o+1] = p[o+1]&0xF0 | byte(v>>8)&0x0F
		} else {
			p[o] = p[o]&0x0F | byte(v<<4)
			p[o+1] = byte(v >> 4)
		}
	default:
		binary.LittleEndian.PutUint16(p[c*2:], uint16(v))
	}
}

// fatSparse reads as its bytes followed by zeros without end.
type fatSparse []byte

func (s fatSparse) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	n := 0
	if off < int64(len(s)) {
		n = copy(p, s[off:])
	}
	clear(p[n:])
	return len(p), nil
}

// fatClusterRanges returns the byte ranges of the runs of clusters first to
// last of g, for building expected Free lists.
func fatClusterRanges(g fatGeom, runs ...[2]int) []Range {
	cs := int64(g.bps * g.spc)
	var rs []Range
	for _, r := range runs {
		rs = append(rs, Range{Off: int64(g.dataOff()) + int64(r[0]-2)*cs, Len: int64(r[1]-r[0]+1) * cs})
	}
	return rs
}

// fat12Geom is a small FAT12 with 61 clusters of 1 KiB, a label that says
// FAT16, and a sector past the last whole cluster.
var fat12Geom = fatGeom{bps: 512, spc: 2, rsvd: 1, nfats: 2, rootEnt: 16, fatSz: 1, totSec: 4 + 61*2 + 1, label: "FAT16   "}

// fat32Geom is a FAT32 with 70000 clusters of 512 bytes.
var fat32Geom = fatGeom{bps: 512, spc: 1, rsvd: 32, nfats: 2, fatSz: 547, totSec: 32 + 2*547 + 70000, fat32: true, rootClus: 2, label: "FAT32   "}

// TestParseFATHandMade checks entry decoding against hand-made FATs: FAT12
// nibble packing, the count rule over the label, bad clusters, copies that
// disagree, and clusters past the last.
func TestParseFATHandMade(t *testing.T) {
	t.Run("fat12", func(t *testing.T) {
		g := fat12Geom
		img := g.image()
		for k := range 2 {
			g.set(img, k, 2, 3)
			g.set(img, k, 3, 4)
			g.set(img, k, 4, 0xFFF)
			g.set(img, k, 10, 0xFFF)
			g.set(img, k, 11, 0xFF7) // bad
			g.set(img, k, 62, 0xFFF) // the last cluster
			g.set(img, k, 63, 0)     // past the last: never free
		}
		g.set(img, 0, 30, 0xFFF) // used in the first copy only
		g.set(img, 1, 20, 0xFFF) // used in the second copy only
		u, err := parseFAT(fatSparse(img), g.size())
		require.NoError(t, err)
		assert.Equal(t, "fat12", u.Type)
		assert.Equal(t, int64(1024), u.BlockSize)
		assert.Equal(t, fatClusterRanges(g, [2]int{5, 9}, [2]int{12, 19}, [2]int{21, 29}, [2]int{31, 61}), u.Free)
	})
	t.Run("fat32", func(t *testing.T) {
		g := fat32Geom
		img := g.image()
		for k := range 2 {
			g.set(img, k, 2, 0xFFFFFFF) // root
			g.set(img, k, 5, 0xF0000000)
			g.set(img, k, 70001, 0xFFFFFFF)
		}
		u, err := parseFAT(fatSparse(img), g.size())
		require.NoError(t, err)
		assert.Equal(t, "fat32", u.Type)
		assert.Equal(t, int64(512), u.BlockSize)
		assert.Equal(t, fatClusterRanges(g, [2]int{3, 4}, [2]int{6, 70000}), u.Free,
			"an entry with only reserved high bits set counts as used")
	})
}

// TestParseFATDamaged checks that plausible boot sectors with inconsistent
// geometry give a *FSError naming the FAT type.
func TestParseFATDamaged(t *testing.T) {
	le := binary.LittleEndian
	for _, tc := range []struct {
		name  string
		g     fatGeom
		fs    string
		size  int64 // 0: the volume's size
		patch func(g fatGeom, img []byte)
	}{
		{name: "volume past size", g: fat12Geom, fs: "fat12", size: fat12Geom.size() - 512},
		{name: "data area past size", g: fat12Geom, fs: "fat12", size: int64(fat12Geom.dataOff())},
		{name: "no data area", g: fat12Geom, fs: "fat", patch: func(_ fatGeom, b []byte) { le.PutUint16(b[19:], 4) }},
		{name: "no whole cluster", g: fat12Geom, fs: "fat12", patch: func(_ fatGeom, b []byte) { le.PutUint16(b[19:], 5) }},
		{name: "fat12 no root directory", g: fat12Geom, fs: "fat12", patch: func(_ fatGeom, b []byte) { le.PutUint16(b[17:], 0) }},
		{name: "fat32 FAT too small", g: fat32Geom, fs: "fat32", patch: func(_ fatGeom, b []byte) { le.PutUint32(b[36:], 500); le.PutUint32(b[32:], 32+1000+70000) }},
		{name: "fat32 root cluster free", g: fat32Geom, fs: "fat32", patch: func(g fatGeom, b []byte) { g.set(b, 0, 2, 0); g.set(b, 1, 2, 0) }},
		{name: "fat32 root cluster 0", g: fat32Geom, fs: "fat32", patch: func(_ fatGeom, b []byte) { le.PutUint32(b[44:], 0) }},
		{name: "fat32 root cluster past the last", g: fat32Geom, fs: "fat32", patch: func(_ fatGeom, b []byte) { le.PutUint32(b[44:], 70002) }},
		{name: "fat32 version", g: fat32Geom, fs: "fat32", patch: func(_ fatGeom, b []byte) { le.PutUint16(b[42:], 0x100) }},
		{name: "fat32 with root entries", g: fat32Geom, fs: "fat32", patch: func(_ fatGeom, b []byte) { le.PutUint16(b[17:], 512) }},
		{name: "fat32 layout with fat16 count", g: fat32Geom, fs: "fat16", patch: func(_ fatGeom, b []byte) { le.PutUint32(b[32:], 32+2*547+60000) }},
		{name: "fat32 too many clusters", g: fat32Geom, fs: "fat32", size: 1 << 42, patch: func(_ fatGeom, b []byte) {
			le.PutUint32(b[32:], 0xFFFFFFF0)
			le.PutUint32(b[36:], 0x400000) // FAT of 2 GiB: big enough, so the count is what fails
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.g.image()
			for k := range tc.g.nfats {
				tc.g.set(img, k, 2, 0xFFFFFFF)
			}
			if tc.patch != nil {
				tc.patch(tc.g, img)
			}
			size := tc.size
			if size == 0 {
				size = tc.g.size()
			}
			u, err := parseFAT(fatSparse(img), size)
			var fe *FSError
			require.ErrorAs(t, err, &fe, "got usage %+v", u)
			assert.Equal(t, tc.fs, fe.FS)
			assert.NotErrorIs(t, err, errNotFS)
			t.Log(err)
		})
	}
}

// fatNTFSBoot is the start of a boot sector made by mkfs.ntfs.
var fatNTFSBoot = []byte{
	0xeb, 0x52, 0x90, 0x4e, 0x54, 0x46, 0x53, 0x20, 0x20, 0x20, 0x20, 0x00, 0x02, 0x08, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x80, 0x00, 0xff, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0xf6, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x72, 0x29, 0x2d, 0x64, 0x98, 0x8e, 0xaf, 0x34,
}

// fatSector returns a 512-byte sector starting with head and ending with the
// boot signature, the rest zero.
func fatSector(head ...byte) []byte {
	b := make([]byte, 512)
	copy(b, head)
	b[510], b[511] = 0x55, 0xAA
	return b
}

// TestParseFATNotFS checks that what is not a FAT boot sector gives errNotFS.
func TestParseFATNotFS(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 1<<16)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	randomSigned := bytes.Clone(random)
	randomSigned[510], randomSigned[511] = 0x55, 0xAA

	// An MBR: boot code, a partition table with a FAT32 (LBA) partition, the
	// signature. Classic DOS code starts "xor ax,ax"; GRUB's starts with a
	// short jump over a zeroed BPB area.
	mbr := func(code ...byte) []byte {
		b := fatSector(code...)
		p := b[446:]
		p[0] = 0x80
		p[4] = 0x0C
		binary.LittleEndian.PutUint32(p[8:], 2048)
		binary.LittleEndian.PutUint32(p[12:], 1<<20)
		return append(b, make([]byte, 1<<16)...)
	}
	bpb := func(patch func(b []byte)) []byte {
		b := fat12Geom.image()
		patch(b)
		return b
	}
	withZeros := func(b []byte) []byte { return append(b, make([]byte, 1<<16)...) }

	for _, tc := range []struct {
		name string
		img  []byte
		size int64 // 0: len(img)
	}{
		{name: "empty", img: nil},
		{name: "short", img: fatSector(0xEB, 0x3C, 0x90)[:511]},
		{name: "zeros", img: make([]byte, 1<<16)},
		{name: "random", img: random},
		{name: "random with signature", img: randomSigned},
		{name: "mbr dos", img: mbr(0x33, 0xC0, 0x8E, 0xD0, 0xBC, 0x00, 0x7C)},
		{name: "mbr grub", img: mbr(0xEB, 0x63, 0x90)},
		{name: "mbr zero code", img: mbr()},
		{name: "ntfs", img: withZeros(fatSector(fatNTFSBoot...))},
		{name: "exfat", img: withZeros(fatSector(append([]byte{0xEB, 0x76, 0x90}, "EXFAT   "...)...))},
		{name: "no signature", img: bpb(func(b []byte) { b[511] = 0 })},
		{name: "no jump", img: bpb(func(b []byte) { b[0] = 0 })},
		{name: "sector 256", img: bpb(func(b []byte) { b[12] = 1 })},
		{name: "sector 8192", img: bpb(func(b []byte) { b[11], b[12] = 0, 0x20 })},
		{name: "sector 1536", img: bpb(func(b []byte) { b[11], b[12] = 0, 6 })},
		{name: "cluster 3 sectors", img: bpb(func(b []byte) { b[13] = 3 })},
		{name: "cluster 0 sectors", img: bpb(func(b []byte) { b[13] = 0 })},
		{name: "no reserved sectors", img: bpb(func(b []byte) { b[14] = 0 })},
		{name: "no FATs", img: bpb(func(b []byte) { b[16] = 0 })},
		{name: "media", img: bpb(func(b []byte) { b[21] = 0x12 })},
		{name: "no total sectors", img: bpb(func(b []byte) { b[19], b[20] = 0, 0 })},
		{name: "no FAT size", img: bpb(func(b []byte) { b[22] = 0 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size := tc.size
			if size == 0 {
				size = int64(len(tc.img))
			}
			u, err := parseFAT(bytes.NewReader(tc.img), size)
			require.ErrorIs(t, err, errNotFS, "got usage %+v", u)
		})
	}

	t.Run("mkfs.ntfs", func(t *testing.T) {
		mkntfs := testenv.Tool(t, "VMM_TEST_MKFS_NTFS", "mkfs.ntfs")
		img := filepath.Join(t.TempDir(), "ntfs.img")
		require.NoError(t, os.WriteFile(img, nil, 0o644))
		require.NoError(t, os.Truncate(img, 8<<20))
		run(t, mkntfs, "-F", "-Q", "-q", img)
		_, err := parseFile(t, parseFAT, img)
		require.ErrorIs(t, err, errNotFS)
	})
}

// FuzzParseFAT feeds parseFAT arbitrary volumes: data followed by tail zero
// bytes. The seeds are small mkfs.vfat images, when mkfs.vfat is at hand, and
// hand-made volumes. Every error must be errNotFS or a *FSError, and the free
// ranges must keep the contract.
func FuzzParseFAT(f *testing.F) {
	// Seeds are cut after their last non-zero byte: small inputs keep the
	// fuzzer's mutation and minimization fast.
	add := func(img []byte, size int64) {
		head := bytes.TrimRight(img, "\x00")
		f.Add(head, uint32(size-int64(len(head))))
	}
	if mkfs := optionalTool(f, "VMM_TEST_MKFS_VFAT", "mkfs.vfat"); mkfs != "" {
		dir := f.TempDir()
		for i, tc := range []struct {
			size int64
			args []string
		}{
			{160 << 10, []string{"-F", "12"}},
			{3 << 20, []string{"-F", "16", "-s", "1", "-f", "1"}},
			{33 << 20, []string{"-F", "32", "-s", "1", "-f", "1"}},
			{4 << 20, []string{"-F", "12", "-S", "4096", "-f", "1"}},
		} {
			img := filepath.Join(dir, fmt.Sprintf("seed%d.img", i))
			require.NoError(f, os.WriteFile(img, nil, 0o644))
			require.NoError(f, os.Truncate(img, tc.size))
			run(f, mkfs, append(tc.args, img)...)
			b, err := os.ReadFile(img)
			require.NoError(f, err)
			add(b, tc.size)
		}
	}
	oneFAT32 := fat32Geom
	oneFAT32.rsvd, oneFAT32.nfats, oneFAT32.totSec = 1, 1, 1+547+70000
	for _, g := range []fatGeom{fat12Geom, oneFAT32} {
		img := g.image()
		g.set(img, 0, 2, 0xFFFFFFF)
		g.set(img, 0, 9, 0xFFFFFF7)
		add(img, g.size())
	}
	add(fatSector(fatNTFSBoot...), 1<<20)
	f.Add([]byte{}, uint32(512))

	f.Fuzz(func(t *testing.T, data []byte, tail uint32) {
		size := int64(len(data)) + int64(tail%(64<<20))
		u, err := parseFAT(fatSparse(data), size)
		if checkParsed(t, u, err, size, "fat12", "fat16", "fat32") && u.BlockSize%512 != 0 {
			t.Fatalf("block size %d", u.BlockSize)
		}
	})
}
