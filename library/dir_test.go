package library

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckName(t *testing.T) {
	for _, n := range []string{"", "/abs", "../up", "a/../b", "a//b", "a/./b", "a\\b", "x\x00", ".vmmkit-uploads/x", "a/.vmmkit", "a/"} {
		err := CheckName(n)
		require.ErrorIs(t, err, ErrInvalidName, "%q", n)
	}
	for _, n := range []string{"a", "a/b.vhd", "Templates/win 2008.json", ".hidden", "a..b"} {
		require.NoError(t, CheckName(n), "%q", n)
	}
}

func TestDirShareUploadResume(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewDirShare("s", "site", dir)
	require.NoError(t, err)
	defer s.Close()

	data := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16000 bytes, parts of 4096: 4 parts
	u, err := s.Create(ctx, "d/x.bin", int64(len(data)), 4096)
	require.NoError(t, err)
	require.NoError(t, u.WritePart(ctx, 0, data[:4096], []byte{1}))
	require.NoError(t, u.WritePart(ctx, 2, data[8192:12288], []byte{3}))
	// Tear part 2's bytes behind the upload's back, as a power loss would.
	_, err = s.Stat(ctx, "d/x.bin")
	require.ErrorIs(t, err, ErrNotFound)

	matches, _ := filepath.Glob(filepath.Join(dir, uploadsDir, "*", "data"))
	require.Len(t, matches, 1)
	f, err := os.OpenFile(matches[0], os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(make([]byte, 10), 8192)
	require.NoError(t, err)
	f.Close()

	_, err = s.Create(ctx, "d/x.bin", int64(len(data)), 4096)
	require.ErrorIs(t, err, ErrBusy, "a second writer of an open upload")
	require.NoError(t, u.Close())
	u2, err := s.Create(ctx, "d/x.bin", int64(len(data)), 4096)
	require.NoError(t, err)
	parts, err := u2.Parts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[int]Part{0: {Size: 4096, Sum: []byte{1}}}, parts)
	require.Error(t, u2.Commit(ctx), "parts missing")
	require.NoError(t, u2.WritePart(ctx, 1, data[4096:8192], nil))
	require.NoError(t, u2.WritePart(ctx, 2, data[8192:12288], nil))
	require.NoError(t, u2.WritePart(ctx, 3, data[12288:], nil))
	require.NoError(t, u2.Commit(ctx))

	got, err := os.ReadFile(filepath.Join(dir, "d", "x.bin"))
	require.NoError(t, err)
	require.Equal(t, data, got)
	var names []string
	for fi, err := range s.List(ctx) {
		require.NoError(t, err)
		names = append(names, fi.Name)
	}
	require.Equal(t, []string{"d/x.bin"}, names)

	// Commit never replaces a file.
	u3, err := s.Create(ctx, "d/x.bin", 1, 4096)
	require.NoError(t, err)
	require.NoError(t, u3.WritePart(ctx, 0, []byte{9}, nil))
	require.ErrorIs(t, u3.Commit(ctx), ErrExist)
	require.NoError(t, u3.Abort(ctx))

	// The share going away is ErrOffline.
	require.NoError(t, os.Rename(dir, dir+".gone"))
	_, err = s.Stat(ctx, "d/x.bin")
	require.ErrorIs(t, err, ErrOffline)
	var se *ShareError
	require.True(t, errors.As(err, &se))
}

// A Commit cut off after it linked the file under its name, before it
// removed the upload, leaves the upload's data file linked to the visible
// file: a later Create must start afresh, not write into the visible file.
func TestDirShareCommitCutOffAfterLink(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewDirShare("s", "site", dir)
	require.NoError(t, err)
	defer s.Close()

	data := bytes.Repeat([]byte{7}, 8192)
	u, err := s.Create(ctx, "x.bin", int64(len(data)), 4096)
	require.NoError(t, err)
	require.NoError(t, u.WritePart(ctx, 0, data[:4096], []byte{1}))
	require.NoError(t, u.WritePart(ctx, 1, data[4096:], []byte{2}))
	require.NoError(t, u.Close())
	matches, _ := filepath.Glob(filepath.Join(dir, uploadsDir, "*", "data"))
	require.Len(t, matches, 1)
	require.NoError(t, os.Link(matches[0], filepath.Join(dir, "x.bin"))) // what Commit's link does

	u2, err := s.Create(ctx, "x.bin", int64(len(data)), 4096)
	require.NoError(t, err)
	parts, err := u2.Parts(ctx)
	require.NoError(t, err)
	require.Empty(t, parts, "the published upload is not resumed")
	require.NoError(t, u2.WritePart(ctx, 0, bytes.Repeat([]byte{9}, 4096), nil))
	got, err := os.ReadFile(filepath.Join(dir, "x.bin"))
	require.NoError(t, err)
	require.Equal(t, data, got, "the visible file is untouched")
	require.NoError(t, u2.Abort(ctx))
}

func TestDirShareErrorsNameTheShare(t *testing.T) {
	s, err := NewDirShare("s", "site", t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Stat(context.Background(), "../x")
	var se *ShareError
	require.ErrorAs(t, err, &se)
	require.Equal(t, "stat", se.Op)
	require.Equal(t, "s", se.Share)
	require.ErrorIs(t, err, ErrInvalidName)

	// A file where the name needs a folder is a name taken.
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir(), "a"), []byte("x"), 0o644))
	u, err := s.Create(context.Background(), "a/b", 1, 4096)
	require.NoError(t, err)
	require.NoError(t, u.WritePart(context.Background(), 0, []byte{1}, nil))
	require.ErrorIs(t, u.Commit(context.Background()), ErrExist)
	require.NoError(t, u.Abort(context.Background()))
}
