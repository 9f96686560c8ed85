package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/vmm/store"
	"github.com/vmmkit/vmmkit/vmm/store/sqlite"
	"github.com/vmmkit/vmmkit/vmm/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "vmm.db")
		return func() (store.Store, error) { return sqlite.Open(path) }
	})
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmm.db")
	s, err := sqlite.Open(path)
	require.NoError(t, err)
	g, err := s.CreateGroup(t.Context(), store.HostGroup{Name: "g"})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	ro, err := sqlite.New(t.Context(), sqlite.Config{Path: path, ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	got, err := ro.Group(t.Context(), g.ID)
	require.NoError(t, err, "reads work")
	assert.Equal(t, g, got)
	_, err = ro.CreateGroup(t.Context(), store.HostGroup{Name: "h"})
	assert.ErrorIs(t, err, store.ErrReadOnly)
	_, err = ro.CreateJob(t.Context(), store.Job{Kind: "k"})
	assert.ErrorIs(t, err, store.ErrReadOnly)
}

func TestReadOnlyNewFile(t *testing.T) {
	_, err := sqlite.New(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "new.db"), ReadOnly: true})
	assert.ErrorIs(t, err, store.ErrReadOnly, "a read-only store without its schema")
}

func TestFull(t *testing.T) {
	s, err := sqlite.New(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "vmm.db"), MaxSize: 256 << 10})
	require.NoError(t, err)
	defer s.Close()
	g, err := s.CreateGroup(t.Context(), store.HostGroup{Name: "g"})
	require.NoError(t, err)
	big := make([]byte, 16<<10)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	var full error
	for i := 0; i < 1000 && full == nil; i++ {
		_, full = s.CreateVM(t.Context(), store.VM{Name: fmt.Sprint(i), GroupID: g.ID, Spec: []byte(`"` + string(big) + `"`)})
	}
	require.Error(t, full, "the store never filled up")
	assert.ErrorIs(t, full, store.ErrReadOnly)
	// Reads and deletes still work on a full store.
	vms, err := s.VMs(t.Context(), store.VMFilter{})
	require.NoError(t, err)
	require.NotEmpty(t, vms)
	require.NoError(t, s.DeleteVM(t.Context(), vms[0].ID))
}

func TestNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmm.db")
	s, err := sqlite.Open(path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.ExecContext(context.Background(), `INSERT INTO schema_version (version) VALUES (9999)`)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	_, err = sqlite.Open(path)
	assert.ErrorContains(t, err, "newer than this program's")
}

func sqliteDB(tb testing.TB) storetest.Opener {
	path := filepath.Join(tb.TempDir(), "vmm.db")
	return func() (store.Store, error) { return sqlite.Open(path) }
}

func BenchmarkStartup(b *testing.B) { storetest.BenchStartup(b, sqliteDB) }

func BenchmarkJobs(b *testing.B) { storetest.BenchJobs(b, sqliteDB) }

// TestReadOnlyFile opens a store whose file (and directory) the process
// may not write: either Open fails with ErrReadOnly (SQLite cannot make the
// WAL index of a read-only directory), or reads work and writes fail with
// ErrReadOnly.
func TestReadOnlyFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes read-only files; run the test binary as another user")
	}
	for _, tc := range []struct {
		name   string
		dirToo bool
	}{{"file", false}, {"file and directory", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "vmm.db")
			s, err := sqlite.Open(path)
			require.NoError(t, err)
			g, err := s.CreateGroup(t.Context(), store.HostGroup{Name: "g"})
			require.NoError(t, err)
			require.NoError(t, s.Close())
			require.NoError(t, os.Chmod(path, 0o444))
			if tc.dirToo {
				require.NoError(t, os.Chmod(dir, 0o555))
				t.Cleanup(func() { os.Chmod(dir, 0o755) })
			}

			ro, err := sqlite.Open(path)
			if err != nil {
				t.Logf("Open: %v", err)
				assert.ErrorIs(t, err, store.ErrReadOnly, "Open")
				return
			}
			defer ro.Close()
			got, err := ro.Group(t.Context(), g.ID)
			require.NoError(t, err, "reads work")
			assert.Equal(t, g, got)
			_, err = ro.CreateGroup(t.Context(), store.HostGroup{Name: "h"})
			assert.ErrorIs(t, err, store.ErrReadOnly)
		})
	}
}

// A path is a path, even with the characters a file: URI gives meanings.
func TestOddPath(t *testing.T) {
	for _, name := range []string{"a#b.db", "50%41.db", "q?x=1.db", "sp ace.db"} {
		dir := t.TempDir()
		path := filepath.Join(dir, name)
		s, err := sqlite.Open(path)
		require.NoError(t, err, name)
		_, err = s.CreateGroup(t.Context(), store.HostGroup{Name: "g"})
		require.NoError(t, err, name)
		require.NoError(t, s.Close())
		_, err = os.Stat(path)
		require.NoError(t, err, "the store is at %q", path)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			require.True(t, strings.HasPrefix(e.Name(), name), "file %q beside %q", e.Name(), name)
		}
	}
}
