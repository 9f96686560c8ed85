package library_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/library/sharetest"
)

func TestDirShareConformance(t *testing.T) {
	sharetest.Run(t, &sharetest.Setup{
		Locks: true,
		New: func(t *testing.T) library.Share {
			dir := filepath.Join(t.TempDir(), "share")
			require.NoError(t, os.Mkdir(dir, 0o755))
			s, err := library.NewDirShare("conformance", "site-a", dir)
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			return s
		},
		// The directory moved away looks like an unmounted share.
		Offline: func(t *testing.T, s library.Share) func() {
			dir := s.(*library.DirShare).Dir()
			require.NoError(t, os.Rename(dir, dir+".away"))
			return func() { require.NoError(t, os.Rename(dir+".away", dir)) }
		},
	})
}

// TestDirShareAbortLeavesNothing: Abort and Commit remove the upload's
// folder under .vmmkit-uploads.
func TestDirShareAbortLeavesNothing(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := library.NewDirShare("s", "site-a", dir)
	require.NoError(t, err)
	defer s.Close()
	for _, commit := range []bool{false, true} {
		u, err := s.Create(ctx, "d/f", 10, 4)
		require.NoError(t, err)
		for n, p := range []string{"0123", "4567", "89"} {
			require.NoError(t, u.WritePart(ctx, n, []byte(p), nil))
		}
		if commit {
			require.NoError(t, u.Commit(ctx))
		} else {
			require.NoError(t, u.Abort(ctx))
		}
		left, err := os.ReadDir(filepath.Join(dir, ".vmmkit-uploads"))
		require.NoError(t, err)
		require.Empty(t, left, "commit=%v", commit)
	}
}
