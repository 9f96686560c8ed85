package sharetest

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/library"
)

func testEmpty(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	requireList(t, sh, map[string]int64{})
	requireGone(t, sh, "missing.vhd")
	requireGone(t, sh, "no/such/dir/file")
	requireErr(t, sh.Remove(ctx, "missing.vhd"), library.ErrNotFound, "Remove of a missing file")
	requireErr(t, sh.Rename(ctx, "missing.vhd", "other.vhd"), library.ErrNotFound, "Rename of a missing file")
	requireGone(t, sh, "other.vhd")
}

func testWriteRead(t *testing.T, s *Setup) {
	sh := s.New(t)
	ps := s.partSize()
	files := map[string][]byte{
		"one-byte":         content(1, 1),
		"one-part.bin":     content(2, ps),
		"three-parts.vhdx": content(3, 2*ps+ps/3),
		"exact-parts.iso":  content(4, 2*ps),
	}
	want := map[string]int64{}
	for name, data := range files {
		put(t, sh, name, data, ps)
		want[name] = int64(len(data))
	}
	for name, data := range files {
		requireContent(t, sh, name, data)
		fi, err := sh.Stat(t.Context(), name)
		require.NoError(t, err)
		assert.NotEmpty(t, fi.Version, "Stat(%q).Version", name)
		assert.False(t, fi.ModTime.IsZero(), "Stat(%q).ModTime", name)
	}
	requireList(t, sh, want)
	// List and Stat agree on what they describe.
	for fi, err := range sh.List(t.Context()) {
		require.NoError(t, err)
		st, err := sh.Stat(t.Context(), fi.Name)
		require.NoError(t, err)
		assert.Equal(t, st.Size, fi.Size, "%q: List size vs Stat size", fi.Name)
		assert.Equal(t, st.Version, fi.Version, "%q: List version vs Stat version", fi.Name)
		assert.True(t, st.ModTime.Equal(fi.ModTime), "%q: List time %v vs Stat time %v", fi.Name, fi.ModTime, st.ModTime)
	}
}

func testNames(t *testing.T, s *Setup) {
	sh := s.New(t)
	names := []string{
		"top.txt",
		"a/b/c/deep.vhd",
		"a/b/sibling.vhd",
		"with space/file name with spaces.iso",
		"ünïcødé/日本語 ファイル.vhdx",
		"Templates/Windows Server 2008 R2 (x64) #1.json",
		".hidden-but-not-ours",
		"a..b/c...d",
		"percent%20and+plus&amp=1;,'\"",
	}
	want := map[string]int64{}
	for i, name := range names {
		data := content(uint64(100+i), int64(10+i))
		put(t, sh, name, data, s.partSize())
		want[name] = int64(len(data))
	}
	for i, name := range names {
		requireContent(t, sh, name, content(uint64(100+i), int64(10+i)))
	}
	requireList(t, sh, want)
	// A folder is not a file.
	requireGone(t, sh, "a/b")
	requireGone(t, sh, "a")
	// A share may or may not fold case, but "TOP.TXT" is never another file.
	if fi, err := sh.Stat(t.Context(), "TOP.TXT"); err == nil {
		assert.Equal(t, want["top.txt"], fi.Size, "Stat of TOP.TXT on a share that folds case")
	}
}

// invalidNames are names every method must refuse with ErrInvalidName.
var invalidNames = []string{
	"",
	"../x",
	"a/../../x",
	"a/../b",
	"/abs",
	"/etc/passwd",
	"a//b",
	"a/./b",
	"./a",
	"a/",
	"a\\..\\b",
	"nul\x00byte",
	".vmmkit",
	".vmmkit-uploads/x",
	"a/.vmmkit-anything",
	"a/.vmmkitX/b",
}

func testInvalidNames(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	put(t, sh, "good", content(5, 10), s.partSize())
	for _, name := range invalidNames {
		_, err := sh.Stat(ctx, name)
		requireErr(t, err, library.ErrInvalidName, "Stat %q", name)
		f, err := sh.Open(ctx, name)
		if err == nil {
			f.Close()
		}
		requireErr(t, err, library.ErrInvalidName, "Open %q", name)
		u, err := sh.Create(ctx, name, 10, s.partSize())
		if err == nil {
			u.Abort(ctx)
		}
		requireErr(t, err, library.ErrInvalidName, "Create %q", name)
		requireErr(t, sh.Rename(ctx, "good", name), library.ErrInvalidName, "Rename to %q", name)
		requireErr(t, sh.Rename(ctx, name, "other"), library.ErrInvalidName, "Rename from %q", name)
		requireErr(t, sh.Remove(ctx, name), library.ErrInvalidName, "Remove %q", name)
	}
	// Nothing happened to the share.
	requireList(t, sh, map[string]int64{"good": 10})
	requireContent(t, sh, "good", content(5, 10))
}

func testHidden(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	put(t, sh, "visible", content(6, 3), ps)
	// Uploads in progress, in several states, keep bookkeeping that List
	// must not show.
	data := content(7, 2*ps+1)
	u, err := sh.Create(ctx, "dir/pending", int64(len(data)), ps)
	require.NoError(t, err)
	require.NoError(t, u.WritePart(ctx, 1, slicePart(data, ps, 1), []byte("s1")))
	_, err = sh.Create(ctx, "empty-pending", 5, ps)
	require.NoError(t, err)
	aborted, err := sh.Create(ctx, "aborted", 5, ps)
	require.NoError(t, err)
	require.NoError(t, aborted.WritePart(ctx, 0, content(8, 5), nil))
	require.NoError(t, aborted.Abort(ctx))
	committed, err := sh.Create(ctx, "committed", 5, ps)
	require.NoError(t, err)
	require.NoError(t, committed.WritePart(ctx, 0, content(9, 5), nil))
	require.NoError(t, committed.Commit(ctx))

	for fi, err := range sh.List(ctx) {
		require.NoError(t, err)
		for el := range strings.SplitSeq(fi.Name, "/") {
			require.False(t, strings.HasPrefix(el, ".vmmkit"), "List yielded hidden bookkeeping %q", fi.Name)
		}
	}
	requireList(t, sh, map[string]int64{"visible": 3, "committed": 5})
}

func testRename(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	a, b := content(10, 100), content(11, 200)
	put(t, sh, "a", a, ps)
	put(t, sh, "b", b, ps)

	requireErr(t, sh.Rename(ctx, "a", "b"), library.ErrExist, "Rename onto an existing file")
	requireContent(t, sh, "a", a)
	requireContent(t, sh, "b", b)

	requireErr(t, sh.Rename(ctx, "missing", "c"), library.ErrNotFound, "Rename of a missing file")
	requireGone(t, sh, "c")

	require.NoError(t, sh.Rename(ctx, "a", "new/folder/c"))
	requireGone(t, sh, "a")
	requireContent(t, sh, "new/folder/c", a)
	require.NoError(t, sh.Rename(ctx, "new/folder/c", "a again"))
	requireContent(t, sh, "a again", a)
	requireList(t, sh, map[string]int64{"a again": 100, "b": 200})
}

func testRemove(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	put(t, sh, "x/y", content(12, 10), s.partSize())
	put(t, sh, "z", content(13, 20), s.partSize())
	require.NoError(t, sh.Remove(ctx, "x/y"))
	requireGone(t, sh, "x/y")
	requireErr(t, sh.Remove(ctx, "x/y"), library.ErrNotFound, "second Remove")
	requireList(t, sh, map[string]int64{"z": 20})
	// The name can be used again.
	put(t, sh, "x/y", content(14, 5), s.partSize())
	requireContent(t, sh, "x/y", content(14, 5))
}

func testReadAt(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	data := content(15, 2*ps+777)
	size := int64(len(data))
	put(t, sh, "r", data, ps)
	f, err := sh.Open(ctx, "r")
	require.NoError(t, err)
	defer f.Close()
	require.Equal(t, size, f.Size())

	cases := []struct {
		name    string
		off     int64
		len     int
		wantN   int
		wantEOF bool // err must be io.EOF; otherwise nil or io.EOF when the read ends at size
	}{
		{"start", 0, 100, 100, false},
		{"middle across parts", ps - 50, 100, 100, false},
		{"whole", 0, int(size), int(size), false},
		{"to the end", size - 10, 10, 10, false},
		{"past the end", size - 10, 20, 10, true},
		{"at the end", size, 1, 0, true},
		{"beyond the end", size + 100, 1, 0, true},
		{"empty buffer", 5, 0, 0, false},
	}
	for _, tc := range cases {
		p := make([]byte, tc.len)
		n, err := f.ReadAt(p, tc.off)
		require.Equal(t, tc.wantN, n, "%s: n", tc.name)
		switch {
		case tc.wantEOF:
			require.Truef(t, err == io.EOF, "%s: got err %v, want io.EOF", tc.name, err)
		case err != nil:
			end := tc.off+int64(tc.len) == size
			require.Truef(t, end && err == io.EOF, "%s: got err %v, want nil", tc.name, err)
		}
		if n > 0 {
			require.True(t, bytes.Equal(data[tc.off:tc.off+int64(n)], p[:n]), "%s: wrong bytes", tc.name)
		}
	}
	n, err := f.ReadAt(make([]byte, 1), -1)
	require.Error(t, err, "ReadAt at a negative offset")
	require.Zero(t, n)

	// Concurrent reads at random offsets.
	parallel(8, func(i int) {
		r := rand.New(rand.NewPCG(uint64(i), 1))
		for range 10 {
			off := r.Int64N(size)
			p := make([]byte, 1+r.IntN(int(min(size-off, 3*ps/2))))
			n, err := f.ReadAt(p, off)
			if err != nil && !(errors.Is(err, io.EOF) && off+int64(len(p)) == size) {
				t.Errorf("reader %d: ReadAt(%d bytes at %d): %v", i, len(p), off, err)
				return
			}
			if n != len(p) || !bytes.Equal(p, data[off:off+int64(n)]) {
				t.Errorf("reader %d: ReadAt(%d bytes at %d): got %d bytes, or the wrong ones", i, len(p), off, n)
				return
			}
		}
	})
	require.NoError(t, f.Close())

	// A second Open reads the same, independently of the first.
	f2, err := sh.Open(ctx, "r")
	require.NoError(t, err)
	defer f2.Close()
	p := make([]byte, 10)
	_, err = f2.ReadAt(p, 3)
	require.NoError(t, err)
	require.Equal(t, data[3:13], p)
}

func testZeroSize(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	u, err := sh.Create(ctx, "empty/zero", 0, s.partSize())
	require.NoError(t, err)
	parts, err := u.Parts(ctx)
	require.NoError(t, err)
	require.Empty(t, parts)
	requireGone(t, sh, "empty/zero")
	require.NoError(t, u.Commit(ctx))
	fi, err := sh.Stat(ctx, "empty/zero")
	require.NoError(t, err)
	require.Zero(t, fi.Size)
	f, err := sh.Open(ctx, "empty/zero")
	require.NoError(t, err)
	require.Zero(t, f.Size())
	n, err := f.ReadAt(make([]byte, 1), 0)
	require.Zero(t, n)
	require.Truef(t, err == io.EOF, "ReadAt of an empty file: got %v, want io.EOF", err)
	require.NoError(t, f.Close())
	requireList(t, sh, map[string]int64{"empty/zero": 0})

	// A second empty file on the same name is refused like any other.
	u2, err := sh.Create(ctx, "empty/zero", 0, s.partSize())
	require.NoError(t, err)
	requireErr(t, u2.Commit(ctx), library.ErrExist, "Commit of an empty file onto an existing one")
	require.NoError(t, u2.Abort(ctx))
}
