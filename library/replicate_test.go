package library

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReplicate(t *testing.T) {
	near := newLibShare(t, "near", "east")
	far := newLibShare(t, "far", "west")
	dst := newLibShare(t, "dst", "east")
	data := bytes.Repeat([]byte("0123456789abcdef"), 3*ChunkSize/16+100) // 4 chunks
	writeLibFile(t, near.dir, "disks/big.raw", data)
	writeLibFile(t, far.dir, "disks/big.raw", data)
	l := newLib(t, Options{Costs: map[[2]string]float64{{"east", "west"}: 10}}, near, far, dst)
	mustRefresh(t, l)
	obj := find1(t, l, "big.raw")

	// The near copy rots behind the library's back: a byte in chunk 2.
	f, err := os.OpenFile(filepath.Join(near.dir, "disks", "big.raw"), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{'X'}, 2*ChunkSize+5)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	var last int64
	require.NoError(t, l.Replicate(t.Context(), obj, "dst", &CopyOptions{Progress: func(done, total int64) { last = done }}))
	got, err := os.ReadFile(filepath.Join(dst.dir, "disks", "big.raw"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, got), "the copy is the object's content")
	assert.Equal(t, int64(len(data)), last)

	obj = find1(t, l, "big.raw")
	require.Equal(t, []string{"near:disks/big.raw", "far:disks/big.raw", "dst:disks/big.raw"}, replicaPlaces(obj))
	assert.Contains(t, obj.Replicas[0].Problem, "corrupt", "the rotten copy is marked")
	assert.Empty(t, obj.Replicas[1].Problem)
	assert.Empty(t, obj.Replicas[2].Problem)
	r, err := l.Nearest(obj, "east")
	require.NoError(t, err)
	assert.Equal(t, "dst", r.Share, "the marked copy no longer serves")

	// Already there: nothing to do.
	require.NoError(t, l.Replicate(t.Context(), obj, "dst", nil))
	assert.ErrorIs(t, l.Replicate(t.Context(), obj, "nowhere", nil), ErrNotFound)

	// To a host, from the nearest sound copy.
	out := filepath.Join(t.TempDir(), "host.raw")
	require.NoError(t, l.CopyToHost(t.Context(), obj, "west", out, nil))
	got, err = os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, got))

	// With every copy gone bad, nothing is served.
	for _, s := range []libShare{far, dst} {
		f, err := os.OpenFile(filepath.Join(s.dir, "disks", "big.raw"), os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteAt([]byte{'Y'}, 7)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	out2 := filepath.Join(t.TempDir(), "host2.raw")
	err = l.CopyToHost(t.Context(), obj, "east", out2, nil)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.ErrorIs(t, err, ErrCorrupt)
	_, err = os.Stat(out2)
	assert.ErrorIs(t, err, os.ErrNotExist, "no partial file")

	// A Refresh sees the changed files as new content, with no marks.
	mustRefresh(t, l)
	for o := range l.Objects() {
		for _, r := range o.Replicas {
			assert.Empty(t, r.Problem)
		}
	}
}

// A replica marked corrupt while a Refresh runs stays marked while its
// file is unchanged.
func TestMarkDuringRefresh(t *testing.T) {
	a := newLibShare(t, "a", "east")
	writeLibFile(t, a.dir, "x.raw", []byte("x"))
	hooked := &hookShare{Share: a.DirShare}
	l, err := New(Options{Shares: []Share{hooked}})
	require.NoError(t, err)
	mustRefresh(t, l)
	obj := find1(t, l, "x.raw")
	hooked.hook = func() { l.markReplica(obj.Replicas[0], "chunk 0: content corrupt") }
	mustRefresh(t, l)
	hooked.hook = nil
	assert.Equal(t, "chunk 0: content corrupt", find1(t, l, "x.raw").Replicas[0].Problem)
	mustRefresh(t, l)
	assert.Equal(t, "chunk 0: content corrupt", find1(t, l, "x.raw").Replicas[0].Problem)
}

// A replicate that falls back to a replica at another path finishes the
// upload the first source began, under one name, and leaves no upload
// behind.
func TestReplicateFallbackLeavesNoUpload(t *testing.T) {
	near := newLibShare(t, "near", "east")
	far := newLibShare(t, "far", "west")
	dst := newLibShare(t, "dst", "east")
	data := bytes.Repeat([]byte("fallback"), 3*ChunkSize/8+11) // 4 chunks
	writeLibFile(t, near.dir, "disks/a.raw", data)
	writeLibFile(t, far.dir, "other/place/a.raw", data)
	l := newLib(t, Options{Costs: map[[2]string]float64{{"east", "west"}: 10}}, near, far, dst)
	mustRefresh(t, l)
	obj := find1(t, l, "a.raw")

	f, err := os.OpenFile(filepath.Join(near.dir, "disks", "a.raw"), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{'!'}, int64(len(data))-3) // the last chunk rots
	require.NoError(t, err)
	require.NoError(t, f.Close())

	require.NoError(t, l.Replicate(t.Context(), obj, "dst", &CopyOptions{Workers: 1}))
	got, err := os.ReadFile(filepath.Join(dst.dir, "disks", "a.raw"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got))
	_, err = os.Stat(filepath.Join(dst.dir, "other"))
	require.ErrorIs(t, err, os.ErrNotExist, "one name only")
	uploads, _ := filepath.Glob(filepath.Join(dst.dir, ".vmmkit-uploads", "*"))
	require.Empty(t, uploads, "no upload left behind")
}
