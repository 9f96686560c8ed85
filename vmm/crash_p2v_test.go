package vmm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/pgtest"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// p2vLib opens the library of the P2V crash test: one share in dir.
func p2vLib(t testing.TB, dir string) *library.Library {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	share, err := library.NewDirShare("central", "paris", dir)
	require.NoError(t, err)
	lib, err := library.New(library.Options{Shares: []library.Share{share}})
	require.NoError(t, err)
	_, err = lib.Refresh(context.Background())
	require.NoError(t, err)
	return lib
}

// runP2VChild is the manager of TestCrashMidConvertPhysical that dies: it
// queues the conversion and stalls, once the chosen step is a third done,
// until the parent kills it.
func runP2VChild(t *testing.T) {
	dir, src, point := os.Getenv(helperEnv+"_DIR"), os.Getenv(helperEnv+"_SOURCE"), os.Getenv(helperEnv+"_POINT")
	marker := filepath.Join(dir, "stalled")
	vmm.SetTestHookProgress(func(_, step string, frac float64) {
		if step == point && frac >= 0.3 {
			require.NoError(t, os.WriteFile(marker, nil, 0o600))
			select {} // stalled until killed
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := vmm.New(vmm.Config{StorePath: filepath.Join(dir, "vmm.db"), PostgresDSN: os.Getenv(helperEnv + "_PG"), Instance: "child",
		Library: p2vLib(t, filepath.Join(dir, "library")), Lease: 2 * time.Second, Poll: 100 * time.Millisecond,
		Logger: childLogger()})
	require.NoError(t, err)
	defer m.Close()
	j, err := m.ConvertPhysical(ctx, vmm.ConvertSpec{Source: src, Name: "phys", Share: "central"})
	require.NoError(t, err)
	_, err = m.Wait(ctx, j.ID)
	t.Errorf("the job ended before the child was killed: %v", err)
}

// A manager killed in the middle of a P2V capture, and of the copy of the
// image into the library: another one resumes the job after the lease,
// and the library ends with one image, equal to the disk, and nothing else.
func TestCrashMidConvertPhysical(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and captures a 128 MiB disk")
	}
	for _, tc := range []struct{ point, store string }{
		{"capture", "sqlite"}, {"upload", "sqlite"}, {"capture", "postgres"}, {"upload", "postgres"},
	} {
		point := tc.point
		t.Run(tc.store+"/"+point, func(t *testing.T) {
			dsn := ""
			if tc.store == "postgres" {
				dsn = pgtest.FreshDB(t)
			}
			dir := t.TempDir()
			src := filepath.Join(dir, "sda.raw")
			want := make([]byte, 128<<20)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := 0; i+8 <= len(want); i += 8 {
				v := rng.Uint64()
				for k := range 8 {
					want[i+k] = byte(v >> (8 * k))
				}
			}
			require.NoError(t, os.WriteFile(src, want, 0o600))
			child := startHelper(t, "p2v-"+point, helperEnv+"=p2v", helperEnv+"_DIR="+dir,
				helperEnv+"_SOURCE="+src, helperEnv+"_POINT="+point, helperEnv+"_PG="+dsn)
			marker := filepath.Join(dir, "stalled")
			require.Eventually(t, func() bool {
				_, err := os.Stat(marker)
				return err == nil || child.exited()
			}, time.Minute, 20*time.Millisecond, "the child reaching %s", point)
			require.False(t, child.exited(), "the child ended before it stalled")
			child.kill()
			<-child.done

			st := crashStore(t, dir, dsn)
			jobs, err := st.Jobs(t.Context(), store.JobFilter{Kind: vmm.KindConvertPhysical})
			require.NoError(t, err)
			require.NoError(t, st.Close())
			require.Len(t, jobs, 1)
			require.Equal(t, store.JobRunning, jobs[0].State, "the killed manager's job")

			lib := p2vLib(t, filepath.Join(dir, "library"))
			cfg := vmm.Config{Library: lib, Lease: 2 * time.Second, Poll: 100 * time.Millisecond}
			useStore(&cfg, dir, dsn)
			m, err := vmm.New(cfg)
			require.NoError(t, err)
			defer m.Close()
			c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			j, err := m.Wait(c, jobs[0].ID)
			require.NoError(t, err)
			assert.Equal(t, 2, j.Attempts)
			var res vmm.ConvertResult
			require.NoError(t, json.Unmarshal(j.Result, &res))
			if point == "capture" {
				assert.True(t, res.Resumed, "the capture continued where it stopped")
			}

			// One image in the share, equal to the disk; no upload left.
			var files []string
			require.NoError(t, filepath.WalkDir(filepath.Join(dir, "library"), func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					rel, _ := filepath.Rel(filepath.Join(dir, "library"), p)
					files = append(files, rel)
				}
				return err
			}))
			assert.Equal(t, []string{"p2v/phys.vhdx"}, files, "files in the share")
			got := readImage(t, filepath.Join(dir, "library", "p2v", "phys.vhdx"), len(want))
			assert.True(t, bytes.Equal(want, got), "the image holds the disk")
			objs := 0
			for o := range lib.Objects() {
				objs++
				assert.Empty(t, o.Problem)
			}
			assert.Equal(t, 1, objs, "library objects")
			left, _ := filepath.Glob(filepath.Join(dir, "vmmkit-work", "*"))
			assert.Empty(t, left, "work folders left")
		})
	}
}
