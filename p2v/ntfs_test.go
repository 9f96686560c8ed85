package p2v

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
)

// ntfs3g holds the paths of the ntfs-3g programs the tests run.
type ntfs3g struct {
	mkfs, cp, cat, fix, info string
}

func ntfsTools(t testing.TB) ntfs3g {
	t.Helper()
	return ntfs3g{
		mkfs: testenv.Tool(t, "VMM_TEST_MKFS_NTFS", "mkfs.ntfs"),
		cp:   testenv.Tool(t, "VMM_TEST_NTFSCP", "ntfscp"),
		cat:  testenv.Tool(t, "VMM_TEST_NTFSCAT", "ntfscat"),
		fix:  testenv.Tool(t, "VMM_TEST_NTFSFIX", "ntfsfix"),
		info: testenv.Tool(t, "VMM_TEST_NTFSINFO", "ntfsinfo"),
	}
}

// ntfsRandom returns n pseudo-random bytes.
func ntfsRandom(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 0x5a})
	_, _ = rng.Read(b)
	return b
}

// format formats a size-byte image at path, first filled with garbage, with
// the given sector and cluster sizes. -Q keeps mkntfs from zeroing the
// volume, so unused clusters keep the garbage; -F lets it format a regular
// file; -T and -H/-S/-p keep the output quiet and deterministic.
func (n ntfs3g) format(t testing.TB, path string, size, sector, cluster int64) {
	t.Helper()
	garbageFile(t, path, size, uint64(size+cluster))
	run(t, n.mkfs, "-F", "-Q", "-q", "-T", "-p", "0", "-H", "0", "-S", "0",
		"-s", strconv.FormatInt(sector, 10), "-c", strconv.FormatInt(cluster, 10), path)
}

var ntfsFreeClustersRE = regexp.MustCompile(`Free Clusters:\s*(\d+)`)

// freeClusters returns the free cluster count ntfsinfo reports.
func (n ntfs3g) freeClusters(t testing.TB, img string) int64 {
	t.Helper()
	out := run(t, n.info, "-m", img)
	m := ntfsFreeClustersRE.FindStringSubmatch(out)
	require.NotNil(t, m, "ntfsinfo -m printed no free cluster count:\n%s", out)
	c, err := strconv.ParseInt(m[1], 10, 64)
	require.NoError(t, err)
	return c
}

// check runs ntfsfix -n, which mounts the volume read-only through libntfs-3g
// and checks $MFT, $MFTMirr and the backup boot sector.
func (n ntfs3g) check(t testing.TB, img string) {
	t.Helper()
	out := run(t, n.fix, "-n", img)
	assert.Contains(t, out, "processed successfully", "ntfsfix -n %s:\n%s", img, out)
	for _, bad := range []string{"FAILED", "BAD", "corrupt", "Error"} {
		assert.NotContains(t, out, bad, "ntfsfix -n %s:\n%s", img, out)
	}
}

// ntfsParseFile parses the image at path, which must succeed, and checks the
// contract's invariants on the free ranges.
func ntfsParseFile(t testing.TB, path string) *fsUsage {
	t.Helper()
	u, err := parseFile(t, parseNTFS, path)
	require.NoError(t, err)
	st, err := os.Stat(path)
	require.NoError(t, err)
	checkFreeRanges(t, u.Free, ntfsFreeEnd(st.Size()))
	return u
}

// ntfsFreeEnd returns where the free ranges of a volume of size bytes end at
// the latest: short of its last sector, which holds the backup boot sector.
func ntfsFreeEnd(size int64) int64 { return size - 512 }

// addFiles copies files of random content and the given sizes into img and
// returns them by NTFS path.
func (n ntfs3g) addFiles(t testing.TB, img string, sizes []int) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{}
	for i, size := range sizes {
		data := ntfsRandom(size, uint64(i))
		local := filepath.Join(dir, fmt.Sprintf("f%d", i))
		require.NoError(t, os.WriteFile(local, data, 0o644))
		name := fmt.Sprintf("/file%d-%d.bin", i, size)
		run(t, n.cp, img, local, name)
		files[name] = data
	}
	return files
}

// checkFiles reads every file back from img with ntfscat.
func (n ntfs3g) checkFiles(t testing.TB, img string, files map[string][]byte) {
	t.Helper()
	for name, want := range files {
		got := runOutput(t, true, n.cat, img, name)
		if !bytes.Equal([]byte(got), want) {
			t.Errorf("ntfscat %s: got %d bytes differing from the %d written", name, len(got), len(want))
		}
	}
}

// TestParseNTFS formats volumes with mkntfs, fills them with files, and
// checks that overwriting every range parseNTFS reports free leaves the
// files and the metadata intact.
func TestParseNTFS(t *testing.T) {
	tools := ntfsTools(t)
	for _, tc := range []struct {
		name                  string
		size, sector, cluster int64
	}{
		{"cluster512", 64 << 20, 512, 512},
		{"cluster4096", 128 << 20, 512, 4096},
		{"cluster65536", 128 << 20, 512, 65536},
		{"cluster128K", 64 << 20, 512, 128 << 10}, // sectors per cluster as a negative exponent
		{"sector4096", 32 << 20, 4096, 4096},      // 4 KiB MFT records, 8 fixup strides
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := filepath.Join(t.TempDir(), "ntfs.img")
			tools.format(t, img, tc.size, tc.sector, tc.cluster)
			files := tools.addFiles(t, img, []int{0, 1, 700, 4097, 100_000, 3<<20 + 123, 7<<20 + 5})

			u := ntfsParseFile(t, img)
			assert.Equal(t, "ntfs", u.Type)
			assert.Equal(t, tc.cluster, u.BlockSize)
			require.NotEmpty(t, u.Free)
			assert.Equal(t, tools.freeClusters(t, img)*tc.cluster, rangesLen(u.Free), "free bytes vs ntfsinfo's free clusters")

			scribbleRanges(t, img, u.Free)
			tools.checkFiles(t, img, files)
			tools.check(t, img)
			assert.Equal(t, u.Free, ntfsParseFile(t, img).Free, "free space after wiping it")
		})
	}
}

var ntfsInodeRE = regexp.MustCompile(`Dumping Inode (\d+)`)

// TestParseNTFSTruncated frees a file's clusters and checks they turn up
// free. ntfs-3g ships no ntfsrm; ntfstruncate to length 0 releases the
// clusters of a file's $DATA the same way.
func TestParseNTFSTruncated(t *testing.T) {
	tools := ntfsTools(t)
	truncate := testenv.Tool(t, "VMM_TEST_NTFSTRUNCATE", "ntfstruncate")
	const cluster = 4096
	img := filepath.Join(t.TempDir(), "ntfs.img")
	tools.format(t, img, 64<<20, 512, cluster)
	files := tools.addFiles(t, img, []int{1 << 20, 2<<20 + 1, 300_000})
	before := ntfsParseFile(t, img)

	const victim = "/file1-2097153.bin"
	m := ntfsInodeRE.FindStringSubmatch(run(t, tools.info, "-F", victim, img))
	require.NotNil(t, m, "ntfsinfo printed no inode number for %s", victim)
	run(t, truncate, "-q", img, m[1], "0")
	delete(files, victim)

	after := ntfsParseFile(t, img)
	freed := rangesLen(after.Free) - rangesLen(before.Free)
	assert.Equal(t, int64((2<<20+1+cluster-1)/cluster*cluster), freed, "bytes freed by truncating %s", victim)
	assert.Equal(t, tools.freeClusters(t, img)*cluster, rangesLen(after.Free))
	for _, r := range before.Free {
		assert.True(t, covered(after.Free, r), "range %+v free before truncation is not free after", r)
	}

	scribbleRanges(t, img, after.Free)
	tools.checkFiles(t, img, files)
	tools.check(t, img)
}

// TestParseNTFSBadFixup damages the update sequence of real MFT records.
func TestParseNTFSBadFixup(t *testing.T) {
	tools := ntfsTools(t)
	img := filepath.Join(t.TempDir(), "ntfs.img")
	tools.format(t, img, 8<<20, 512, 4096)
	orig, err := os.ReadFile(img)
	require.NoError(t, err)
	_, err = parseNTFS(bytes.NewReader(orig), int64(len(orig)))
	require.NoError(t, err)

	boot := orig[:512]
	cluster := int64(binary.LittleEndian.Uint16(boot[0x0b:])) * int64(boot[0x0d])
	mft := int64(binary.LittleEndian.Uint64(boot[0x30:])) * cluster
	const recordSize = 1024 // mkntfs's with 512-byte sectors
	for _, tc := range []struct {
		name string
		off  int64 // byte to damage
	}{
		{"record6-stride0", mft + 6*recordSize + 510},
		{"record6-stride1", mft + 6*recordSize + 1022},
		{"record0-stride1", mft + 1022},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(orig)
			b[tc.off] ^= 0xff
			_, err := parseNTFS(bytes.NewReader(b), int64(len(b)))
			var fe *FSError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, "ntfs", fe.FS)
			assert.Equal(t, tc.off&^1, fe.Off)
			assert.Contains(t, fe.Reason, "update sequence")
		})
	}
}

func TestParseNTFSNotNTFS(t *testing.T) {
	random := ntfsRandom(1<<20, 1)
	fat := make([]byte, 512)
	copy(fat[3:], "MSDOS5.0")
	for name, b := range map[string][]byte{
		"random": random,
		"zeros":  make([]byte, 4096),
		"fat":    fat,
		"short":  []byte("\xeb\x52\x90NTFS    "),
		"empty":  nil,
	} {
		t.Run(name, func(t *testing.T) {
			u, err := parseNTFS(bytes.NewReader(b), int64(len(b)))
			assert.Nil(t, u)
			assert.ErrorIs(t, err, errNotFS)
		})
	}
}

// TestParseNTFSSynthetic checks the parser on hand-built volumes, which
// need no tools.
func TestParseNTFSSynthetic(t *testing.T) {
	for _, cluster := range []int64{512, 1024, 4096} {
		t.Run(fmt.Sprint(cluster), func(t *testing.T) {
			s := newNTFSSynth(cluster, 300)
			s.setUsed(100, 140)
			s.setUsed(299, 300)
			u, err := parseNTFS(bytes.NewReader(s.img), int64(len(s.img)))
			require.NoError(t, err)
			assert.Equal(t, "ntfs", u.Type)
			assert.Equal(t, cluster, u.BlockSize)
			assert.Equal(t, s.wantFree(), u.Free)
			checkFreeRanges(t, u.Free, ntfsFreeEnd(int64(len(s.img))))
		})
	}
}

// TestParseNTFSAttrList moves $Bitmap's $DATA into extent records named by
// an attribute list, resident or not.
func TestParseNTFSAttrList(t *testing.T) {
	for _, tc := range []struct {
		name        string
		nonResident bool
		split       bool
	}{
		{"resident-list-one-extent", false, false},
		{"resident-list-two-extents", false, true},
		{"nonresident-list-two-extents", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newNTFSSynth(512, 2000) // a bitmap of 250 bytes, in one 512-byte cluster
			s.setUsed(700, 900)
			s.moveBitmapToExtents(tc.split, tc.nonResident)
			u, err := parseNTFS(bytes.NewReader(s.img), int64(len(s.img)))
			require.NoError(t, err)
			assert.Equal(t, s.wantFree(), u.Free)
		})
	}
}

// TestParseNTFSDamaged checks that damaged structures give a *FSError.
func TestParseNTFSDamaged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(s *ntfsSynth)
		reason string
	}{
		{"sectors-per-cluster-0", func(s *ntfsSynth) { s.img[0x0d] = 0 }, "sectors per cluster"},
		{"sectors-per-cluster-3", func(s *ntfsSynth) { s.img[0x0d] = 3 }, "sectors per cluster"},
		{"cluster-too-large", func(s *ntfsSynth) { s.img[0x0d] = 0xe0 }, "sectors per cluster"},
		{"bytes-per-sector-0", func(s *ntfsSynth) { s.put16(0x0b, 0) }, "bytes per sector"},
		{"bytes-per-sector-768", func(s *ntfsSynth) { s.put16(0x0b, 768) }, "bytes per sector"},
		{"total-sectors-0", func(s *ntfsSynth) { s.put64(0x28, 0) }, "sectors"},
		{"total-sectors-past-end", func(s *ntfsSynth) { s.put64(0x28, uint64(len(s.img)/512+1)) }, "do not fit"},
		{"total-sectors-huge", func(s *ntfsSynth) { s.put64(0x28, 1<<63) }, "do not fit"},
		{"mft-past-end", func(s *ntfsSynth) { s.put64(0x30, uint64(s.clusters)) }, "outside the volume"},
		{"mft-mismatch", func(s *ntfsSynth) { s.put64(0x30, uint64(s.bitmapLCN)) }, "magic"},
		{"record-size-0", func(s *ntfsSynth) { s.img[0x40] = 0 }, "MFT record"},
		{"record-size-3-clusters", func(s *ntfsSynth) { s.img[0x40] = 3 }, "MFT record"},
		{"record-size-2^-128", func(s *ntfsSynth) { s.img[0x40] = 0x80 }, "MFT record"},
		{"record-size-differs", func(s *ntfsSynth) { s.img[0x40] = 0xf6 + 1 }, "update sequence"},
		{"record6-magic", func(s *ntfsSynth) { copy(s.record(6), "BAAD") }, "magic"},
		{"record6-fixup", func(s *ntfsSynth) { s.record(6)[1022] ^= 1 }, "update sequence"},
		{"record6-usa-count", func(s *ntfsSynth) { s.record(6)[6] = 9 }, "update sequence"},
		{"record6-not-in-use", func(s *ntfsSynth) { s.rewrite(6, func(r []byte) { r[22] = 0 }) }, "not in use"},
		{"record6-bad-attr-length", func(s *ntfsSynth) { s.rewrite(6, func(r []byte) { r[ntfsSynthFirstAttr+4] = 7 }) }, "length"},
		{"record6-no-end-marker", func(s *ntfsSynth) {
			s.rewrite(6, func(r []byte) { binary.LittleEndian.PutUint32(r[24:], ntfsSynthFirstAttr+4) })
		}, "attribute"},
		{"record0-no-data", func(s *ntfsSynth) { s.rewrite(0, func(r []byte) { r[ntfsSynthFirstAttr] = 0x90 }) }, "no non-resident"},
		{"mft-too-short", func(s *ntfsSynth) { s.putRecord(0, 0, s.mftData(6*1024)) }, "initialized size"},
		{"mft-runs-miss-record6", func(s *ntfsSynth) {
			const size = ntfsSynthRecords * ntfsSynthRecord
			s.putRecord(0, 0, ntfsNonResident(ntfsAttrData, 0, 3, size, size, size, ntfsPairs(ntfsRun{lcn: s.mftLCN, n: 4})))
		}, "not followed"},
		{"bitmap-missing", func(s *ntfsSynth) { s.putRecord(6, 0) }, "no unnamed $DATA"},
		{"bitmap-too-short", func(s *ntfsSynth) { s.putRecord(6, 0, s.bitmapData(int64(len(s.bitmap()))-20)) }, "clusters need"},
		{"bitmap-sparse", func(s *ntfsSynth) {
			s.putRecord(6, 0, ntfsNonResident(ntfsAttrData, 0, 0, 512, 512, 512, ntfsPairs(ntfsRun{lcn: -1, n: 1})))
		}, "sparse"},
		{"bitmap-run-past-volume", func(s *ntfsSynth) {
			s.putRecord(6, 0, ntfsNonResident(ntfsAttrData, 0, 1, 1024, 512, 512, ntfsPairs(ntfsRun{lcn: s.clusters - 1, n: 2})))
		}, "outside the volume"},
		{"bitmap-compressed", func(s *ntfsSynth) {
			s.rewrite(6, func(r []byte) { r[ntfsSynthFirstAttr+12] = 1 })
		}, "compressed"},
		{"bitmap-frees-mft", func(s *ntfsSynth) { s.setFree(s.mftLCN+1, s.mftLCN+2) }, "of $MFT free"},
		{"bitmap-frees-boot", func(s *ntfsSynth) { s.setFree(3, 4) }, "of $Boot free"},
		{"bitmap-frees-itself", func(s *ntfsSynth) { s.setFree(s.bitmapLCN, s.bitmapLCN+1) }, "of $Bitmap free"},
		{"extent-wrong-base", func(s *ntfsSynth) {
			s.moveBitmapToExtents(true, false)
			s.rewrite(9, func(r []byte) { r[32] = 5 })
		}, "names base record 5"},
		{"extent-wrong-sequence", func(s *ntfsSynth) {
			s.moveBitmapToExtents(true, false)
			s.rewrite(9, func(r []byte) { r[16] = 77 })
		}, "sequence number"},
		{"extent-not-in-record", func(s *ntfsSynth) {
			s.moveBitmapToExtents(true, false)
			s.putRecord(9, 6, s.bitmapExtent(2, 1))
		}, "no $DATA extent at VCN 1"},
		{"extent-gap", func(s *ntfsSynth) {
			s.moveBitmapToExtents(true, false)
			s.putRecord(9, 6, s.bitmapExtent(2, 1))
			s.putRecord(6, 0, ntfsResident(ntfsAttrList, append(ntfsListBytes(0, 8, 1), ntfsListBytes(2, 9, 1)...)))
		}, "extent at VCN 2, want 1"},
		{"extent-record-missing", func(s *ntfsSynth) {
			s.moveBitmapToExtents(true, false)
			s.putRecord(6, 0, ntfsResident(ntfsAttrList, append(ntfsListBytes(0, 8, 1), ntfsListBytes(1, 4000, 1)...)))
		}, "past $MFT's initialized size"},
		{"attribute-list-empty", func(s *ntfsSynth) {
			s.putRecord(6, 0, ntfsResident(ntfsAttrList, nil), s.bitmapData(s.bitmapSize))
		}, "names 0 unnamed $DATA extents"},
		{"attribute-list-cut", func(s *ntfsSynth) {
			s.putRecord(6, 0, ntfsResident(ntfsAttrList, ntfsListBytes(0, 8, 1)[:20]))
		}, "cut short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newNTFSSynth(512, 2000)
			tc.damage(s)
			u, err := parseNTFS(bytes.NewReader(s.img), int64(len(s.img)))
			assert.Nil(t, u)
			var fe *FSError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, "ntfs", fe.FS)
			assert.Contains(t, fe.Reason, tc.reason)
		})
	}
}

// TestParseNTFSShortReader checks that a reader shorter than the size it is
// said to have gives an I/O error, not a damaged file system.
func TestParseNTFSShortReader(t *testing.T) {
	s := newNTFSSynth(512, 2000)
	_, err := parseNTFS(bytes.NewReader(s.img[:12<<10]), int64(len(s.img)))
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	var fe *FSError
	assert.False(t, errors.As(err, &fe))
}

func TestDecodeNTFSRuns(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pairs     []byte
		low, high int64
		want      ntfsRunList
		err       string
	}{
		{"one", []byte{0x11, 0x04, 0x10, 0}, 0, 3, ntfsRunList{{0, 16, 4}}, ""},
		{"negative-delta", []byte{0x21, 0x02, 0x00, 0x01, 0x11, 0x03, 0xf0, 0}, 0, 4, ntfsRunList{{0, 256, 2}, {2, 240, 3}}, ""},
		{"sparse", []byte{0x11, 0x01, 0x05, 0x01, 0x02, 0x11, 0x01, 0x01, 0}, 10, 13, ntfsRunList{{10, 5, 1}, {11, -1, 2}, {13, 6, 1}}, ""},
		{"no-terminator", []byte{0x11, 0x04, 0x10}, 0, 3, ntfsRunList{{0, 16, 4}}, ""},
		{"short-of-high", []byte{0x11, 0x04, 0x10, 0}, 0, 4, nil, "runs end"},
		{"past-high", []byte{0x11, 0x04, 0x10, 0}, 0, 2, nil, "leaves the range"},
		{"zero-length", []byte{0x11, 0x00, 0x10, 0}, 0, 0, nil, "leaves the range"},
		{"negative-length", []byte{0x11, 0xff, 0x10, 0}, 0, 0, nil, "leaves the range"},
		{"before-volume", []byte{0x11, 0x01, 0xf0, 0}, 0, 0, nil, "outside the volume"},
		{"past-volume", []byte{0x21, 0x02, 0xe7, 0x03, 0}, 0, 1, nil, "outside the volume"},
		{"huge-delta", []byte{0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x80, 0}, 0, 0, nil, "leaves the volume"},
		{"bad-header", []byte{0x19, 0x01}, 0, 0, nil, "header"},
		{"cut-short", []byte{0x21, 0x01, 0x10}, 0, 0, nil, "header"},
		{"bad-range", []byte{0}, 5, 4, nil, "VCN range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeNTFSRuns(tc.pairs, tc.low, tc.high, 1000)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestNTFSRunsRoundTrip(t *testing.T) {
	runs := ntfsRunList{{0, 700, 3}, {3, 20, 1}, {4, -1, 300}, {304, 999, 1}, {305, 0, 2}}
	got, err := decodeNTFSRuns(ntfsPairs(runs...), 0, 306, 1000)
	require.NoError(t, err)
	assert.Equal(t, runs, got)
}

// FuzzParseNTFS checks parseNTFS never panics and returns only errors of the
// contract and free ranges inside the volume. The seeds are tens of KiB, so
// run it with -fuzzminimizetime=20x or so: by default a worker spends up to a
// minute minimizing each new input and reports no progress meanwhile.
func FuzzParseNTFS(f *testing.F) {
	f.Add(newNTFSSynth(512, 48).img)
	f.Add(newNTFSSynth(1024, 30).img)
	attrList := newNTFSSynth(512, 48)
	attrList.moveBitmapToExtents(true, false)
	f.Add(attrList.img)
	nonResList := newNTFSSynth(512, 48)
	nonResList.moveBitmapToExtents(true, true)
	f.Add(nonResList.img)
	f.Add(newNTFSSynth(512, 48).img[:4096])
	f.Add([]byte("\xeb\x52\x90NTFS    \x00\x02\x08"))
	if mkfs := optionalTool(f, "VMM_TEST_MKFS_NTFS", "mkfs.ntfs"); mkfs != "" {
		f.Add(ntfsSmallImage(f, mkfs))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		size := int64(len(b))
		u, err := parseNTFS(bytes.NewReader(b), size)
		checkParsed(t, u, err, ntfsFreeEnd(size), "ntfs")
	})
}

// ntfsSmallImage formats the smallest volume mkntfs makes and cuts it short
// after $Bitmap, shrinking the volume in its boot sector to match, to seed
// the fuzzer with real metadata in few bytes.
func ntfsSmallImage(t testing.TB, mkfs string) []byte {
	t.Helper()
	img := filepath.Join(t.TempDir(), "ntfs.img")
	garbageFile(t, img, 1<<20+4096, 1)
	run(t, mkfs, "-F", "-Q", "-q", "-T", "-p", "0", "-H", "0", "-S", "0", "-s", "512", "-c", "512", img)
	b, err := os.ReadFile(img)
	require.NoError(t, err)
	v, err := readNTFSBoot(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	require.NoError(t, v.loadMFT())
	bm, err := v.bitmap()
	require.NoError(t, err)
	var end int64 // first cluster past $MFT's and $Bitmap's
	for _, r := range append(bm.runs, v.mft...) {
		end = max(end, r.lcn+r.n)
	}
	b = b[:end*v.clusterSize+512]
	binary.LittleEndian.PutUint64(b[0x28:], uint64(len(b)/512-1))
	_, err = parseNTFS(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err, "the cut-down volume")
	return b
}

// ntfsSynth builds a minimal NTFS volume: 512-byte sectors, 1 KiB MFT
// records, $Boot in the first 8 KiB, 10 MFT records, then $Bitmap, and a
// backup boot sector after the last cluster. Only records 0 and 6 have
// attributes; the others are empty records in use. Unused clusters hold
// garbage.
type ntfsSynth struct {
	img        []byte
	cluster    int64
	clusters   int64
	mftLCN     int64
	bitmapLCN  int64
	bitmapSize int64 // bytes of $Bitmap's data
}

const (
	ntfsSynthRecord    = 1024
	ntfsSynthRecords   = 10
	ntfsSynthFirstAttr = 56
)

func newNTFSSynth(cluster, clusters int64) *ntfsSynth {
	s := &ntfsSynth{cluster: cluster, clusters: clusters}
	s.img = make([]byte, clusters*cluster+512)
	for i := range s.img {
		s.img[i] = byte(i*7 + 0x33)
	}
	s.mftLCN = max(8192/cluster, 1)
	s.bitmapLCN = s.mftLCN + (ntfsSynthRecords*ntfsSynthRecord+cluster-1)/cluster
	s.bitmapSize = (clusters + 63) / 64 * 8
	bitmapClusters := (s.bitmapSize + cluster - 1) / cluster

	boot := s.img[:512]
	clear(boot)
	copy(boot, "\xeb\x52\x90NTFS    ")
	s.put16(0x0b, 512)
	boot[0x0d] = byte(cluster / 512)
	boot[0x15] = 0xf8
	s.put64(0x28, uint64(clusters*cluster/512))
	s.put64(0x30, uint64(s.mftLCN))
	s.put64(0x38, uint64(s.bitmapLCN+bitmapClusters))
	boot[0x40] = 0xf6 // 2^10-byte records
	boot[0x44] = 1
	boot[0x1fe], boot[0x1ff] = 0x55, 0xaa
	copy(s.img[len(s.img)-512:], boot)

	for n := int64(0); n < ntfsSynthRecords; n++ {
		s.putRecord(n, 0)
	}
	s.putRecord(0, 0, s.mftData(ntfsSynthRecords*ntfsSynthRecord))
	s.putRecord(6, 0, s.bitmapData(s.bitmapSize))
	clear(s.bitmap())
	s.setUsed(0, s.bitmapLCN+bitmapClusters)
	return s
}

func (s *ntfsSynth) put16(off int, x uint16) { binary.LittleEndian.PutUint16(s.img[off:], x) }
func (s *ntfsSynth) put64(off int, x uint64) { binary.LittleEndian.PutUint64(s.img[off:], x) }

// record returns the on-disk bytes of MFT record n.
func (s *ntfsSynth) record(n int64) []byte {
	off := s.mftLCN*s.cluster + n*ntfsSynthRecord
	return s.img[off : off+ntfsSynthRecord]
}

// bitmap returns the on-disk bytes of $Bitmap's data.
func (s *ntfsSynth) bitmap() []byte {
	off := s.bitmapLCN * s.cluster
	return s.img[off : off+s.bitmapSize]
}

func (s *ntfsSynth) setUsed(from, to int64) {
	for c := from; c < to; c++ {
		s.bitmap()[c/8] |= 1 << (c % 8)
	}
}

func (s *ntfsSynth) setFree(from, to int64) {
	for c := from; c < to; c++ {
		s.bitmap()[c/8] &^= 1 << (c % 8)
	}
}

// wantFree returns the free byte ranges the bitmap gives, cluster by
// cluster.
func (s *ntfsSynth) wantFree() []Range {
	var free []Range
	for c := int64(0); c < s.clusters; c++ {
		if s.bitmap()[c/8]&(1<<(c%8)) != 0 {
			continue
		}
		if k := len(free); k > 0 && free[k-1].End() == c*s.cluster {
			free[k-1].Len += s.cluster
		} else {
			free = append(free, Range{Off: c * s.cluster, Len: s.cluster})
		}
	}
	return free
}

// putRecord writes MFT record n, an extent of base record base (0 for a
// base record), holding attrs, with its update sequence applied.
func (s *ntfsSynth) putRecord(n int64, base uint64, attrs ...[]byte) {
	copy(s.record(n), ntfsRecord(n, base, attrs...))
}

// rewrite undoes the update sequence of record n, lets edit change it, and
// writes it back with the update sequence applied again.
func (s *ntfsSynth) rewrite(n int64, edit func(rec []byte)) {
	rec := bytes.Clone(s.record(n))
	for i := 1; i <= ntfsSynthRecord/512; i++ {
		copy(rec[i*512-2:i*512], rec[48+2*i:])
	}
	edit(rec)
	ntfsProtect(rec)
	copy(s.record(n), rec)
}

// mftData returns $MFT's $DATA attribute, contiguous from mftLCN, of the
// given initialized size.
func (s *ntfsSynth) mftData(size int64) []byte {
	n := (ntfsSynthRecords*ntfsSynthRecord + s.cluster - 1) / s.cluster
	alloc := n * s.cluster
	return ntfsNonResident(ntfsAttrData, 0, n-1, alloc, size, size, ntfsPairs(ntfsRun{lcn: s.mftLCN, n: n}))
}

// bitmapData returns $Bitmap's $DATA attribute of the given size.
func (s *ntfsSynth) bitmapData(size int64) []byte {
	n := (s.bitmapSize + s.cluster - 1) / s.cluster
	return ntfsNonResident(ntfsAttrData, 0, n-1, n*s.cluster, size, size, ntfsPairs(ntfsRun{lcn: s.bitmapLCN, n: n}))
}

// bitmapExtent returns the extent of $Bitmap's $DATA mapping its clusters
// from VCN low on, n of them, without sizes (those are in the first
// extent).
func (s *ntfsSynth) bitmapExtent(low, n int64) []byte {
	return ntfsNonResident(ntfsAttrData, low, low+n-1, 0, 0, 0, ntfsPairs(ntfsRun{lcn: s.bitmapLCN + low, n: n}))
}

// moveBitmapToExtents replaces $Bitmap's $DATA by an attribute list in
// record 6 naming extents in records 8 and, when split, 9. A non-resident
// list is stored in the volume's last cluster.
func (s *ntfsSynth) moveBitmapToExtents(split, nonResident bool) {
	n := (s.bitmapSize + s.cluster - 1) / s.cluster
	var list []byte
	if split {
		// The first extent maps the bitmap's clusters, the second
		// one more cluster of allocation past the data.
		s.setUsed(s.bitmapLCN+n, s.bitmapLCN+n+1)
		first := ntfsNonResident(ntfsAttrData, 0, n-1, (n+1)*s.cluster, s.bitmapSize, s.bitmapSize,
			ntfsPairs(ntfsRun{lcn: s.bitmapLCN, n: n}))
		s.putRecord(8, 6, first)
		s.putRecord(9, 6, s.bitmapExtent(n, 1))
		list = append(ntfsListBytes(0, 8, 1), ntfsListBytes(n, 9, 1)...)
	} else {
		s.putRecord(8, 6, s.bitmapData(s.bitmapSize))
		list = ntfsListBytes(0, 8, 1)
	}
	if !nonResident {
		s.putRecord(6, 0, ntfsResident(ntfsAttrList, list))
		return
	}
	lcn := s.clusters - 1
	s.setUsed(lcn, lcn+1)
	copy(s.img[lcn*s.cluster:], list)
	size := int64(len(list))
	s.putRecord(6, 0, ntfsNonResident(ntfsAttrList, 0, 0, s.cluster, size, size, ntfsPairs(ntfsRun{lcn: lcn, n: 1})))
}

// ntfsRecord returns MFT record n, in use, holding attrs, with its update
// sequence applied.
func ntfsRecord(n int64, base uint64, attrs ...[]byte) []byte {
	rec := make([]byte, ntfsSynthRecord)
	le := binary.LittleEndian
	copy(rec, "FILE")
	le.PutUint16(rec[4:], 48)                    // update sequence array offset
	le.PutUint16(rec[6:], ntfsSynthRecord/512+1) // and count
	le.PutUint16(rec[16:], 1)                    // sequence number
	le.PutUint16(rec[18:], 1)                    // link count
	le.PutUint16(rec[20:], ntfsSynthFirstAttr)   // first attribute
	le.PutUint16(rec[22:], ntfsRecordInUse)      // flags
	le.PutUint32(rec[28:], ntfsSynthRecord)      // bytes allocated
	le.PutUint64(rec[32:], base)                 // base record
	le.PutUint32(rec[44:], uint32(n))            // record number
	off := ntfsSynthFirstAttr
	for _, a := range attrs {
		off += copy(rec[off:], a)
	}
	le.PutUint32(rec[off:], ntfsAttrEnd)
	le.PutUint32(rec[24:], uint32(off+8)) // bytes in use
	ntfsProtect(rec)
	return rec
}

// ntfsProtect applies the update sequence to rec: the last two bytes of each
// stride move to the update sequence array and the sequence number replaces
// them.
func ntfsProtect(rec []byte) {
	const usa = 48
	rec[usa], rec[usa+1] = 0x2a, 0x00
	for i := 1; i <= len(rec)/512; i++ {
		end := i*512 - 2
		copy(rec[usa+2*i:], rec[end:end+2])
		copy(rec[end:], rec[usa:usa+2])
	}
}

// ntfsResident returns a resident unnamed attribute.
func ntfsResident(typ uint32, value []byte) []byte {
	a := make([]byte, (24+len(value)+7)&^7)
	le := binary.LittleEndian
	le.PutUint32(a, typ)
	le.PutUint32(a[4:], uint32(len(a)))
	le.PutUint32(a[16:], uint32(len(value)))
	le.PutUint16(a[20:], 24)
	copy(a[24:], value)
	return a
}

// ntfsNonResident returns a non-resident unnamed attribute.
func ntfsNonResident(typ uint32, low, high, alloc, size, init int64, pairs []byte) []byte {
	a := make([]byte, (64+len(pairs)+1+7)&^7)
	le := binary.LittleEndian
	le.PutUint32(a, typ)
	le.PutUint32(a[4:], uint32(len(a)))
	a[8] = 1
	le.PutUint64(a[16:], uint64(low))
	le.PutUint64(a[24:], uint64(high))
	le.PutUint16(a[32:], 64)
	le.PutUint64(a[40:], uint64(alloc))
	le.PutUint64(a[48:], uint64(size))
	le.PutUint64(a[56:], uint64(init))
	copy(a[64:], pairs)
	return a
}

// ntfsListBytes returns an attribute list entry naming the unnamed $DATA
// extent at VCN low in record rec, of sequence number seq.
func ntfsListBytes(low int64, rec uint64, seq uint16) []byte {
	e := make([]byte, 32)
	le := binary.LittleEndian
	le.PutUint32(e, ntfsAttrData)
	le.PutUint16(e[4:], 32)
	e[7] = 26
	le.PutUint64(e[8:], uint64(low))
	le.PutUint64(e[16:], rec|uint64(seq)<<48)
	return e
}

// ntfsPairs encodes runs as mapping pairs, without the terminating zero.
func ntfsPairs(runs ...ntfsRun) []byte {
	var b []byte
	var prev int64
	for _, r := range runs {
		n := ntfsIntBytes(r.n)
		if r.sparse() {
			b = append(b, byte(len(n)))
			b = append(b, n...)
			continue
		}
		d := ntfsIntBytes(r.lcn - prev)
		prev = r.lcn
		b = append(b, byte(len(d)<<4|len(n)))
		b = append(b, n...)
		b = append(b, d...)
	}
	return b
}

// ntfsIntBytes encodes x in the fewest little-endian two's-complement bytes.
func ntfsIntBytes(x int64) []byte {
	for n := 1; n < 8; n++ {
		if lim := int64(1) << (8*n - 1); -lim <= x && x < lim {
			b := binary.LittleEndian.AppendUint64(nil, uint64(x))
			return b[:n]
		}
	}
	return binary.LittleEndian.AppendUint64(nil, uint64(x))
}

// TestNTFSDirty: a volume marked dirty (mounted, or not shut down cleanly)
// has a $Bitmap that may lag, so Analyze copies it whole, while a live pass
// of a converging capture may still use it as a hint.
func TestNTFSDirty(t *testing.T) {
	dir := t.TempDir()
	_, _, img := fsImages(t, dir)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	v, err := readNTFSBoot(f, st.Size())
	require.NoError(t, err)
	require.NoError(t, v.loadMFT())
	rec, off, attrs, err := v.readRecord(3)
	require.NoError(t, err)
	flagAt := int64(-1)
	for _, a := range attrs {
		if a.typ == 0x70 {
			flagAt = off + int64(a.off) + int64(binary.LittleEndian.Uint16(rec[a.off+20:])) + 10
		}
	}
	require.Positive(t, flagAt)
	assert.Empty(t, v.dirty())

	var flags [2]byte
	_, err = f.ReadAt(flags[:], flagAt)
	require.NoError(t, err)
	flags[0] |= volumeDirty
	_, err = f.WriteAt(flags[:], flagAt)
	require.NoError(t, err)

	u, err := parseNTFS(f, st.Size())
	require.NoError(t, err)
	assert.Contains(t, u.Stale, "dirty")
	l, err := Analyze(f, st.Size())
	require.NoError(t, err)
	assert.Empty(t, l.Free)
	require.Len(t, l.Warnings, 1)
	assert.Contains(t, l.Warnings[0].Error(), "dirty")
	l, err = analyze(f, st.Size(), true)
	require.NoError(t, err)
	assert.Empty(t, l.Warnings)
	assert.Equal(t, u.Free, l.Free)
	assert.True(t, l.Partitions[0].Stale)
}
