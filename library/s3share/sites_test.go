package s3share_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/library/s3share"
)

// countingShare counts the bytes written through its uploads.
type countingShare struct {
	library.Share
	written *atomic.Int64
}

func (c countingShare) Create(ctx context.Context, name string, size, partSize int64) (library.Upload, error) {
	u, err := c.Share.Create(ctx, name, size, partSize)
	if err != nil {
		return nil, err
	}
	return countingUpload{u, c.written}, nil
}

type countingUpload struct {
	library.Upload
	written *atomic.Int64
}

func (u countingUpload) WritePart(ctx context.Context, n int, p, sum []byte) error {
	err := u.Upload.WritePart(ctx, n, p, sum)
	if err == nil {
		u.written.Add(int64(len(p)))
	}
	return err
}

// TestSites copies a file from a directory share to the share of one site
// bucket and on to another's with library.Copy, the first copy cut off
// after its first chunk and resumed: the resume writes only the chunks
// not yet stored, and each site holds its own files.
func TestSites(t *testing.T) {
	sv := testServer(t)
	require.GreaterOrEqual(t, len(sv.buckets), 2, "VMM_TEST_S3_BUCKETS")
	ctx := t.Context()
	prefix := randomName("sites")
	var sites []*s3share.Share
	for _, b := range sv.buckets[:2] {
		cfg := sv.config(b, prefix)
		cfg.Name, cfg.Site = "s3-"+b, b
		sites = append(sites, sv.newShare(t, cfg))
	}

	dir := filepath.Join(t.TempDir(), "share")
	require.NoError(t, os.Mkdir(dir, 0o755))
	local, err := library.NewDirShare("local", "here", dir)
	require.NoError(t, err)
	defer local.Close()
	data := pattern(3*library.ChunkSize+12345, 7)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "disk.vhd"), data, 0o644))
	f, err := local.Open(ctx, "disk.vhd")
	require.NoError(t, err)
	m, err := library.Hash(ctx, f, f.Size(), nil)
	f.Close()
	require.NoError(t, err)

	// Cut off once the first chunk is in place.
	var written atomic.Int64
	dst := countingShare{sites[0], &written}
	cctx, cancel := context.WithCancel(ctx)
	err = library.Copy(cctx, local, "disk.vhd", m, dst, "images/disk.vhd", &library.CopyOptions{
		Workers: 1,
		Progress: func(done, total int64) {
			if done > 0 {
				cancel()
			}
		},
	})
	cancel()
	require.Error(t, err)
	require.True(t, errors.Is(err, context.Canceled), "got %v, want context.Canceled", err)
	_, err = sites[0].Stat(ctx, "images/disk.vhd")
	require.ErrorIs(t, err, library.ErrNotFound, "a cut-off copy is invisible")
	first := written.Load()
	require.Positive(t, first)

	require.NoError(t, library.Copy(ctx, local, "disk.vhd", m, dst, "images/disk.vhd", nil))
	require.Equal(t, int64(len(data)), written.Load(), "bytes written by the copy and its resume, in all")

	// On to the other site, straight from the first.
	require.NoError(t, library.Copy(ctx, sites[0], "images/disk.vhd", m, sites[1], "images/disk.vhd", nil))
	for _, s := range sites {
		require.True(t, bytes.Equal(data, readAll(t, s, "images/disk.vhd")), "content at %s", s.Site())
	}
	require.NoError(t, sites[1].Remove(ctx, "images/disk.vhd"))
	_, err = sites[0].Stat(ctx, "images/disk.vhd")
	require.NoError(t, err, "removing a file at one site touches no other")
}
