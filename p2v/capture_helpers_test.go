package p2v

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
	"github.com/vmmkit/vmmkit/vhd"
)

// randomFiles writes files of random content into dir (randomTree, with the
// subdirectory sub) and returns their contents by path relative to dir.
func randomFiles(t testing.TB, dir string, seed uint64, sizes ...int) map[string][]byte {
	t.Helper()
	files := randomTree(seed, "sub", sizes...)
	writeTree(t, dir, files)
	return files
}

// ext4Image makes an ext4 file system of size bytes over garbage, populated
// with random files of the given sizes, and returns the image path and the
// files.
func ext4Image(t testing.TB, dir string, size int64, seed uint64, sizes ...int) (string, map[string][]byte) {
	t.Helper()
	mkfs := testenv.Tool(t, "VMM_TEST_MKFS_EXT4", "mkfs.ext4")
	img := filepath.Join(dir, "ext4.img")
	garbageFile(t, img, size, seed)
	content := filepath.Join(dir, "content")
	files := randomFiles(t, content, seed, sizes...)
	run(t, mkfs, "-q", "-F", "-E", "nodiscard", "-b", "4096", "-d", content, img)
	return img, files
}

// rawOf reads a whole image through vmmkit (chains included) into a raw
// file.
func rawOf(t testing.TB, image, raw string) {
	t.Helper()
	d, err := vhd.Open(image)
	require.NoError(t, err)
	defer d.Close()
	f, err := os.Create(raw)
	require.NoError(t, err)
	defer f.Close()
	_, err = io.Copy(f, io.NewSectionReader(d, 0, d.Size()))
	require.NoError(t, err)
}

// qemuRaw converts an image to raw with qemu-img.
func qemuRaw(t testing.TB, image, raw string) {
	t.Helper()
	qemu := testenv.Tool(t, "VMM_TEST_QEMU_IMG", "qemu-img")
	// A fixed VHD has its footer only at the end, so qemu-img's probe
	// takes it for raw: name the format.
	format := "vpc"
	if strings.HasSuffix(image, ".vhdx") {
		format = "vhdx"
	}
	run(t, qemu, "convert", "-f", format, "-O", "raw", image, raw)
}

// pyvhdiSHA256 hashes an image's virtual disk as libvhdi's Python binding
// reads it.
func pyvhdiSHA256(t testing.TB, image string) string {
	t.Helper()
	py := testenv.Var(t, "VMM_TEST_PYVHDI_PYTHON")
	script := `
import hashlib, sys, pyvhdi
f = pyvhdi.file()
f.open(sys.argv[1])
h = hashlib.sha256()
left = f.get_media_size()
while left > 0:
    b = f.read_buffer(min(left, 1 << 20))
    if not b:
        raise SystemExit("short read")
    h.update(b)
    left -= len(b)
print(h.hexdigest())
`
	return strings.TrimSpace(run(t, py, "-c", script, image))
}

func fileSHA256(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, io.LimitReader(f, size))
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// checkExt4 runs e2fsck on a raw image and compares every file with its
// expected content through debugfs.
func checkExt4(t testing.TB, raw string, files map[string][]byte) {
	t.Helper()
	fsck := testenv.Tool(t, "VMM_TEST_E2FSCK", "e2fsck")
	run(t, fsck, "-fn", raw)
	debugfs := testenv.Tool(t, "VMM_TEST_DEBUGFS", "debugfs")
	out := t.TempDir()
	for name, want := range files {
		dump := filepath.Join(out, strings.ReplaceAll(name, "/", "_"))
		run(t, debugfs, "-R", fmt.Sprintf("dump /%s %s", name, dump), raw)
		got, err := os.ReadFile(dump)
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got), "file %s differs after capture", name)
	}
}

// compareUsed checks that raw equals src wherever layout says the source is
// used, and reads zeros elsewhere.
func compareUsed(t testing.TB, src, raw string, layout *Layout) {
	t.Helper()
	a, err := os.ReadFile(src)
	require.NoError(t, err)
	b, err := os.ReadFile(raw)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(b), len(a))
	for _, f := range layout.Free {
		clear(a[f.Off:f.End()])
	}
	if !bytes.Equal(a, b[:len(a)]) {
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("image differs from the source's used content at byte %d", i)
			}
		}
	}
	require.True(t, zeroBytes(b[len(a):]), "bytes past the disk are not zero")
}

// allocated returns the bytes a file occupies on its file system.
func allocated(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return allocatedBytes(st)
}

// faultySource wraps a Source: reads of bad ranges fail with EIO, the data
// ends at end (a shrunk source), and after failAfter successful reads every
// read fails (the process "dies" there).
type faultySource struct {
	Source
	bad       []Range
	end       int64
	failAfter int64
	reads     atomic.Int64
}

var errInjected = fmt.Errorf("injected I/O error")

func (f *faultySource) ReadAt(p []byte, off int64) (int, error) {
	if f.failAfter > 0 && f.reads.Add(1) > f.failAfter {
		return 0, errInjected
	}
	for _, b := range f.bad {
		if off < b.End() && b.Off < off+int64(len(p)) {
			return 0, errInjected
		}
	}
	if f.end > 0 && off+int64(len(p)) > f.end {
		n := max(0, f.end-off)
		if n > 0 {
			f.Source.ReadAt(p[:n], off)
		}
		return int(n), io.EOF
	}
	return f.Source.ReadAt(p, off)
}

func allocatedBytes(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}
