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
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
)

// Helpers shared by the tests of the package: running external programs,
// making images over garbage, random file trees, and checking what the
// file-system parsers return.

// command runs prog with args and returns its output and the error of the
// run. The output is the standard output and standard error interleaved, or
// with stdoutOnly the standard output alone, for a program whose standard
// output is data (ntfscat); the standard error then goes into the error.
//
// MTOOLS_SKIP_CHECK=1 is set in prog's environment: mtools otherwise refuses
// images whose size is not a whole number of tracks. prog is not bound to
// t.Context(), which is done before cleanups run, so that a cleanup can run
// programs too.
func command(t testing.TB, stdoutOnly bool, prog string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if !stdoutOnly {
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w\nstderr:\n%s", err, stderr.Bytes())
	}
	return string(out), err
}

// runOutput is command that fails the test, with all prog wrote, when prog
// fails.
func runOutput(t testing.TB, stdoutOnly bool, prog string, args ...string) string {
	t.Helper()
	out, err := command(t, stdoutOnly, prog, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\noutput:\n%s", prog, strings.Join(args, " "), err, out)
	}
	return out
}

// run runs a program and returns its standard output and standard error
// interleaved, failing the test with them when it fails (runOutput).
func run(t testing.TB, prog string, args ...string) string {
	t.Helper()
	return runOutput(t, false, prog, args...)
}

// optionalTool is testenv.Tool for fuzz seeds, which a fuzz test makes with
// the program when it is at hand: it returns the program named by the
// environment variable env, or else found on PATH, and "" when it is missing,
// unless VMM_TEST_REQUIRE=1 makes that a failure.
func optionalTool(t testing.TB, env, program string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = program
	}
	p, err := exec.LookPath(p)
	if err != nil {
		if testenv.Required() {
			t.Fatalf("VMM_TEST_REQUIRE=1 but %s not found: %v", program, err)
		}
		return ""
	}
	return p
}

// garbageFile makes a file of size bytes of pseudo-random garbage that seed
// determines, with no zero byte: nothing in an image made over it is zero
// unless the program that made the image wrote it so, no 4 KiB page of it is
// zero, and free space that a capture copied by mistake shows. Each MiB
// starts with its offset in hex digits, so that no two MiBs are alike.
func garbageFile(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range len(buf) / 8 {
		binary.LittleEndian.PutUint64(buf[8*i:], r.Uint64())
	}
	for i, c := range buf {
		if c == 0 {
			buf[i] = 0xFF
		}
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		copy(buf, fmt.Sprintf("%016x", off))
		_, err := f.WriteAt(buf[:min(int64(len(buf)), size-off)], off)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
}

// randomTree returns files of random content that seed determines, of the
// given sizes, by slash-separated path: f00.bin, f01.bin and so on, every
// third one (f02.bin, f05.bin, ...) in the directory sub.
func randomTree(seed uint64, sub string, sizes ...int) map[string][]byte {
	r := rand.New(rand.NewPCG(seed, 11))
	files := map[string][]byte{}
	for i, n := range sizes {
		name := fmt.Sprintf("f%02d.bin", i)
		if i%3 == 2 {
			name = sub + "/" + name
		}
		b := make([]byte, n)
		for k := range b {
			b[k] = byte(r.Uint32())
		}
		files[name] = b
	}
	return files
}

// writeTree writes the files of tree, by slash-separated path, below dir,
// making dir and the subdirectories.
func writeTree(t testing.TB, dir string, tree map[string][]byte) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, b := range tree {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, b, 0o644))
	}
}

// copyFile copies the file src to a new file dst.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(dst)
	require.NoError(t, err)
	defer out.Close()
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

// scribbleRanges overwrites the ranges rs of the file at path with 0xA5. The
// parser tests' decisive check does so to the free ranges of a copy of an
// image: the file system must then still check clean and its files read back
// unchanged.
func scribbleRanges(t testing.TB, path string, rs []Range) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	fill := bytes.Repeat([]byte{0xA5}, 1<<20)
	for _, r := range rs {
		for off := r.Off; off < r.End(); off += int64(len(fill)) {
			_, err := f.WriteAt(fill[:min(int64(len(fill)), r.End()-off)], off)
			require.NoError(t, err)
		}
	}
	require.NoError(t, f.Close())
}

// parseFile runs parse, a file-system parser, over the whole image file img.
func parseFile(t testing.TB, parse fsParser, img string) (*fsUsage, error) {
	t.Helper()
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	return parse(f, st.Size())
}

// checkFreeRanges checks the fsParser contract on the free ranges of a
// file system: each non-empty, a whole number of 512-byte sectors and inside
// [0, end), and the list sorted and merged, no range overlapping or touching
// the one before. end is the file system's size less what must never be
// free at its end (NTFS's backup boot sector).
func checkFreeRanges(t testing.TB, free []Range, end int64) {
	t.Helper()
	for i, r := range free {
		if r.Len <= 0 || r.Off < 0 || r.End() > end || r.Off%512 != 0 || r.Len%512 != 0 {
			t.Fatalf("free range %d %+v is empty, unaligned or outside [0, %d)", i, r, end)
		}
		if i > 0 && r.Off <= free[i-1].End() {
			t.Fatalf("free range %d %+v overlaps, touches or precedes the one before, %+v", i, r, free[i-1])
		}
	}
}

// checkParsed checks the fsParser contract on what a parser returned,
// whatever its input held: an error wraps errNotFS or is a *FSError and comes
// with no usage; a usage has one of types, a positive block size, and free
// ranges inside [0, end) as checkFreeRanges wants them. It reports whether
// there was a usage, for the caller to check further.
func checkParsed(t testing.TB, u *fsUsage, err error, end int64, types ...string) bool {
	t.Helper()
	if err != nil {
		var fe *FSError
		if !errors.Is(err, errNotFS) && !errors.As(err, &fe) {
			t.Fatalf("error is neither errNotFS nor *FSError: %v", err)
		}
		if u != nil {
			t.Fatalf("usage %+v returned with error %v", u, err)
		}
		return false
	}
	if !slices.Contains(types, u.Type) || u.BlockSize <= 0 {
		t.Fatalf("usage %+v: type not one of %q, or no block size", u, types)
	}
	checkFreeRanges(t, u.Free, end)
	return true
}

// rangesLen returns the total length of the ranges rs.
func rangesLen(rs []Range) int64 {
	var n int64
	for _, r := range rs {
		n += r.Len
	}
	return n
}

// covered reports whether r lies inside one range of rs, which are sorted
// and do not overlap, as checkFreeRanges requires of free ranges.
func covered(rs []Range, r Range) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].End() > r.Off })
	return i < len(rs) && rs[i].Off <= r.Off && r.End() <= rs[i].End()
}
