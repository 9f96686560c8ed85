package vhd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
)

func qemuImg(t testing.TB) string { return testenv.Tool(t, "VMM_TEST_QEMU_IMG", "qemu-img") }

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

func qemuVirtualSize(t testing.TB, img, format string) int64 {
	t.Helper()
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	out := run(t, qemuImg(t), "info", "--output=json", "-f", format, img)
	require.NoError(t, json.Unmarshal([]byte(out), &info), out)
	return info.VirtualSize
}

// qemuRaw returns the content of img, in format (vpc or vhdx), as
// qemu-img converts it to raw.
func qemuRaw(t testing.TB, img, format string) []byte {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "out.raw")
	run(t, qemuImg(t), "convert", "-f", format, "-O", "raw", img, raw)
	b, err := os.ReadFile(raw)
	require.NoError(t, err)
	return b
}

// filledImage creates img with random content and random writes over it,
// closes it, and returns it (closed) with its content.
func filledImage(t *testing.T, img string, size int64, opts *CreateOptions, seed uint64, writes int, maxLen int64) (*Disk, []byte) {
	t.Helper()
	d := mustCreate(t, img, size, opts)
	m := newModel(t, d, nil, seed)
	copy(m.ref, randomRaw(t, d.Size(), seed))
	m.write(m.ref, 0)
	m.randomWrites(writes, maxLen)
	require.NoError(t, d.Close())
	return d, m.ref
}

// checkLibvhdi reads img through vhdiinfo and libvhdi's Python binding and
// compares with d (closed) and its content ref.
func checkLibvhdi(t *testing.T, d *Disk, img string, ref []byte) {
	t.Helper()
	size, typ := vhdiinfo(t, img)
	assert.Equal(t, d.Size(), size, "vhdiinfo media size")
	assert.Equal(t, d.Type().String(), typ)
	psize, sums := pyvhdi(t, img)
	assert.Equal(t, d.Size(), psize, "libvhdi media size")
	assert.Equal(t, sha(ref), sums[0], "libvhdi content differs")
}

// qemuMake has qemu-img make the image img in format with options: empty
// (qemu-img create), or with random content (qemu-img convert of a raw
// file).
func qemuMake(t testing.TB, qi, format, img, options string, size int64, content bool, seed uint64) string {
	t.Helper()
	if !content {
		run(t, qi, "create", "-q", "-f", format, "-o", options, img, strconv.FormatInt(size, 10))
		return img
	}
	src := img + ".raw"
	require.NoError(t, os.WriteFile(src, randomRaw(t, size, seed), 0o644))
	run(t, qi, "convert", "-f", "raw", "-O", format, "-o", options, src, img)
	return img
}

func randomRaw(t testing.TB, size int64, seed uint64) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, 1))
	// Mixed: random runs, zero runs, patterned runs.
	for off := int64(0); off < size; {
		n := min(size-off, 1+r.Int64N(3<<20))
		switch r.IntN(3) {
		case 0:
			for i := off; i < off+n; i++ {
				b[i] = byte(r.Uint32())
			}
		case 1:
		case 2:
			for i := off; i < off+n; i += 4096 {
				b[i] = byte(i>>12) | 1
			}
		}
		off += n
	}
	return b
}

// TestQemuImagesReadIdentical reads images qemu-img writes and compares
// with qemu-img's own raw conversion of them.
func TestQemuImagesReadIdentical(t *testing.T) {
	qi := qemuImg(t)
	dir := t.TempDir()
	tests := []struct {
		name    string
		size    int64
		options string
		empty   bool
	}{
		{"dynamic", 10 << 20, "subformat=dynamic", false},
		{"dynamic force_size", 10<<20 + 512, "subformat=dynamic,force_size=on", false},
		{"fixed", 7 << 20, "subformat=fixed", false},
		{"fixed force_size", 7<<20 + 1536, "subformat=fixed,force_size=on", false},
		{"dynamic empty", 130 << 20, "subformat=dynamic", true},
		{"fixed empty", 1 << 20, "subformat=fixed", true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := qemuMake(t, qi, "vpc", filepath.Join(dir, fmt.Sprintf("q%d.vhd", i)), tc.options, tc.size, !tc.empty, uint64(i))
			d := mustOpen(t, img, os.O_RDONLY)
			want := qemuRaw(t, img, "vpc")
			assert.Equal(t, int64(len(want)), d.Size(), "size")
			assert.Equal(t, qemuVirtualSize(t, img, "vpc"), d.Size())
			got := readAll(t, d)
			assert.True(t, bytes.Equal(want, got), "content differs from qemu-img convert -O raw")
			checkExtents(t, d, got)
			info := d.Info()
			if strings.Contains(tc.options, "force_size") {
				assert.Equal(t, "qem2", info.CreatorApp)
			} else {
				assert.Equal(t, "qemu", info.CreatorApp)
				assert.Equal(t, info.Geometry.Size(), d.Size(), "qemu sizes by geometry")
			}
		})
	}
}

// pyvhdiScript prints the media size and the SHA-256 of the ranges given as
// offset:length arguments (the whole image when none), read through
// libvhdi's Python binding.
const pyvhdiScript = `
import hashlib, sys, pyvhdi
f = pyvhdi.file()
f.open(sys.argv[1])
size = f.get_media_size()
ranges = [tuple(map(int, a.split(':'))) for a in sys.argv[2:]] or [(0, size)]
for off, n in ranges:
    h = hashlib.sha256()
    while n > 0:
        k = min(n, 1 << 22)
        b = f.read_buffer_at_offset(k, off)
        if len(b) != k:
            sys.exit('short read at %d' % off)
        h.update(b)
        off += k
        n -= k
    print(size, h.hexdigest())
`

func pyvhdi(t testing.TB, img string, ranges ...Extent) (size int64, sums []string) {
	t.Helper()
	py := testenv.Var(t, "VMM_TEST_PYVHDI_PYTHON")
	args := []string{"-c", pyvhdiScript, img}
	for _, r := range ranges {
		args = append(args, fmt.Sprintf("%d:%d", r.Offset, r.Length))
	}
	out := run(t, py, args...)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		require.Len(t, f, 2, out)
		size, _ = strconv.ParseInt(f[0], 10, 64)
		sums = append(sums, f[1])
	}
	return size, sums
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

var vhdiMediaSize = regexp.MustCompile(`Media size\s*:.*\((\d+) bytes\)`)
var vhdiDiskType = regexp.MustCompile(`Disk type\s*:\s*(\w+)`)

func vhdiinfo(t testing.TB, img string) (size int64, typ string) {
	t.Helper()
	out := run(t, testenv.Tool(t, "VMM_TEST_VHDIINFO", "vhdiinfo"), img)
	m := vhdiMediaSize.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	size, _ = strconv.ParseInt(m[1], 10, 64)
	m = vhdiDiskType.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	return size, strings.ToLower(m[1])
}

// TestOurImagesReadByTools writes images and reads them back through
// qemu-img and libvhdi.
func TestOurImagesReadByTools(t *testing.T) {
	qemuImg(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		size int64
		opts *CreateOptions
	}{
		{"fixed odd size", 10<<20 + 3*512, &CreateOptions{Type: Fixed}},
		{"fixed MiB (Azure)", 16 << 20, &CreateOptions{Type: Fixed}},
		{"dynamic", 24 << 20, nil},
		{"dynamic odd bytes", 5<<20 + 1, nil},
		{"dynamic 512K blocks", 9<<20 + 512, &CreateOptions{BlockSize: 512 << 10}},
		{"dynamic rounded to geometry", 10 << 20, &CreateOptions{RoundToGeometry: true}},
		{"fixed exact geometry", 1000 * 4 * 17 * 512, &CreateOptions{Type: Fixed}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(dir, fmt.Sprintf("ours%d.vhd", i))
			d, ref := filledImage(t, img, tc.size, tc.opts, uint64(i), 40, 256<<10)

			assert.Equal(t, d.Size(), qemuVirtualSize(t, img, "vpc"), "qemu-img virtual size")
			assert.True(t, bytes.Equal(ref, qemuRaw(t, img, "vpc")), "qemu-img convert -f vpc -O raw differs")
			checkLibvhdi(t, d, img, ref)
		})
	}
}

// TestLargeSparseImages checks sizes above the 127 GiB that a CHS geometry
// can describe, without writing them whole: patterns at a few offsets are
// read back through qemu-io and libvhdi.
func TestLargeSparseImages(t *testing.T) {
	qemuImg(t)
	qemuIO := testenv.Tool(t, "VMM_TEST_QEMU_IO", "qemu-io")
	dir := t.TempDir()
	tests := []struct {
		name string
		size int64
		opts *CreateOptions
	}{
		{"dynamic 200 GiB", 200 << 30, nil},
		{"dynamic 2040 GiB", MaxVHDSize, nil},
		{"fixed 130 GiB sparse", 130<<30 + 512, &CreateOptions{Type: Fixed}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(dir, fmt.Sprintf("big%d.vhd", i))
			d := mustCreate(t, img, tc.size, tc.opts)
			size := d.Size()
			spots := []Extent{{0, 64 << 10}, {127<<30 + 12345*512, 1 << 20}, {size/2 + 512, 4096}, {size - 8192, 8192}}
			for j, s := range spots {
				_, err := d.WriteAt(bytes.Repeat([]byte{byte(0x11 * (j + 1))}, int(s.Length)), s.Offset)
				require.NoError(t, err)
			}
			require.NoError(t, d.Close())
			fi, err := os.Stat(img)
			require.NoError(t, err)
			t.Logf("%s: virtual %d bytes, file %d bytes", tc.name, size, fi.Size())

			assert.Equal(t, size, qemuVirtualSize(t, img, "vpc"))
			vsize, _ := vhdiinfo(t, img)
			assert.Equal(t, size, vsize)
			psize, sums := pyvhdi(t, img, spots...)
			assert.Equal(t, size, psize)
			for j, s := range spots {
				want := bytes.Repeat([]byte{byte(0x11 * (j + 1))}, int(s.Length))
				assert.Equal(t, sha(want), sums[j], "libvhdi at %d", s.Offset)
				out := run(t, qemuIO, "-r", "-f", "vpc", "-c",
					fmt.Sprintf("read -P 0x%02x %d %d", byte(0x11*(j+1)), s.Offset, s.Length), img)
				assert.NotContains(t, out, "Pattern verification failed", "qemu-io at %d", s.Offset)
			}
			// A zero range next to data reads as zeros through qemu too.
			out := run(t, qemuIO, "-r", "-f", "vpc", "-c", fmt.Sprintf("read -P 0 %d 65536", size-8192-65536), img)
			assert.NotContains(t, out, "Pattern verification failed")
		})
	}
}

// TestQemuVHDXReadIdentical reads VHDX images qemu-img writes, of several
// block and log sizes, fixed and dynamic, 512-byte and 4 KiB logical
// sectors, and compares with qemu-img's raw conversion of them.
func TestQemuVHDXReadIdentical(t *testing.T) {
	qi := qemuImg(t)
	dir := t.TempDir()
	tests := []struct {
		name    string
		size    int64
		options string
		empty   bool
	}{
		{"dynamic default", 20<<20 + 4096, "subformat=dynamic", false},
		{"dynamic 1M blocks 1M log", 12 << 20, "subformat=dynamic,block_size=1M,log_size=1M", false},
		{"dynamic 8M blocks 4M log", 30 << 20, "subformat=dynamic,block_size=8M,log_size=4M", false},
		{"dynamic 64M blocks", 70 << 20, "subformat=dynamic,block_size=64M", false},
		{"fixed", 9 << 20, "subformat=fixed", false},
		{"dynamic empty", 1 << 30, "subformat=dynamic", true},
		{"no zero block state", 10 << 20, "subformat=dynamic,block_size=1M,block_state_zero=off", false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := qemuMake(t, qi, "vhdx", filepath.Join(dir, fmt.Sprintf("q%d.vhdx", i)), tc.options, tc.size, !tc.empty, uint64(i))
			d := mustOpen(t, img, os.O_RDONLY)
			assert.Equal(t, FormatVHDX, d.Format())
			want := qemuRaw(t, img, "vhdx")
			assert.Equal(t, qemuVirtualSize(t, img, "vhdx"), d.Size())
			got := readAll(t, d)
			assert.True(t, bytes.Equal(want, got), "content differs from qemu-img convert -O raw")
			checkExtents(t, d, got)
			t.Logf("%s: %s, block size %d", tc.name, d.Info().CreatorApp, d.Info().BlockSize)
		})
	}
}

// TestOurVHDXReadByTools writes VHDX images and checks them with qemu-img
// check, qemu-img convert, qemu-img info and libvhdi.
func TestOurVHDXReadByTools(t *testing.T) {
	qi := qemuImg(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		size int64
		opts *CreateOptions
	}{
		{"dynamic 32M blocks", 80<<20 + 4096, nil},
		{"dynamic 1M blocks", 20 << 20, &CreateOptions{BlockSize: 1 << 20}},
		{"fixed", 12 << 20, &CreateOptions{Type: Fixed, BlockSize: 4 << 20}},
		{"4Kn", 16 << 20, &CreateOptions{LogicalSectorSize: 4096, BlockSize: 2 << 20}},
		{"odd size", 5<<20 + 512, &CreateOptions{BlockSize: 1 << 20}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(dir, fmt.Sprintf("ours%d.vhdx", i))
			d, ref := filledImage(t, img, tc.size, tc.opts, uint64(i), 30, 1<<20)

			if d.Info().LogicalSectorSize == 512 { // qemu opens only 512-byte-sector VHDX
				out := run(t, qi, "check", "-f", "vhdx", img)
				assert.Contains(t, out, "No errors were found", out)
				assert.Equal(t, d.Size(), qemuVirtualSize(t, img, "vhdx"), "qemu-img virtual size")
				assert.True(t, bytes.Equal(ref, qemuRaw(t, img, "vhdx")), "qemu-img convert -f vhdx -O raw differs")
			}
			checkLibvhdi(t, d, img, ref)
		})
	}
}
