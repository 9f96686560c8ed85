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
