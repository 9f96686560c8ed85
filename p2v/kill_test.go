package p2v

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary act as a capturing process that the
// SIGKILL test kills.
func TestMain(m *testing.M) {
	if src := os.Getenv("P2V_TEST_CAPTURE_SRC"); src != "" {
		os.Exit(childCapture(src, os.Getenv("P2V_TEST_CAPTURE_DST"), os.Getenv("P2V_TEST_CAPTURE_PREV")))
	}
	os.Exit(m.Run())
}

func childCapture(src, dst, prev string) int {
	dev, err := OpenDevice(src)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	o := &Options{ChunkSize: 64 << 10, Previous: prev}
	if _, err := Capture(context.Background(), &slowSource{Source: dev, delay: 200 * time.Microsecond}, dst, o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestCaptureSIGKILL kills a capturing process at random moments, several
// times over, and checks that the capture resumed afterwards gives the image
// and manifest an uninterrupted one gives: for a full capture and for an
// incremental one into a child.
func TestCaptureSIGKILL(t *testing.T) {
	defer func(n int64) { checkpointBytes = n }(checkpointBytes)
	checkpointBytes = 2 * MiB
	dir := t.TempDir()
	src, files := ext4Image(t, dir, 48*MiB, 40, 9*MiB, 8*MiB, 7*MiB)
	want := filepath.Join(dir, "want.vhdx")
	_, err := Capture(context.Background(), openDevice(t, src), want, &Options{ChunkSize: 64 << 10})
	require.NoError(t, err)

	r := rand.New(rand.NewPCG(40, 1))
	killed := 0
	capture := func(dst, prev string) {
		for round := 0; ; round++ {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "P2V_TEST_CAPTURE_SRC="+src, "P2V_TEST_CAPTURE_DST="+dst, "P2V_TEST_CAPTURE_PREV="+prev)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			if round < 6 {
				select {
				case err := <-done:
					require.NoError(t, err)
					return
				case <-time.After(time.Duration(20+r.IntN(150)) * time.Millisecond):
					cmd.Process.Kill()
					<-done
					killed++
					if _, err := os.Stat(journalPath(dst)); os.IsNotExist(err) {
						if _, err := os.Stat(ManifestPath(dst)); err == nil {
							return // it had finished just before the kill
						}
					}
					continue
				}
			}
			require.NoError(t, <-done)
			return
		}
	}

	dst := filepath.Join(dir, "killed.vhdx")
	capture(dst, "")
	assert.Positive(t, killed, "no capture was killed: make the source slower")
	m, err := ReadManifest(ManifestPath(dst))
	require.NoError(t, err)
	wm, err := ReadManifest(ManifestPath(want))
	require.NoError(t, err)
	assert.Equal(t, wm.Hashes, m.Hashes)
	require.NoError(t, Verify(context.Background(), openDevice(t, src), dst))

	debugfsWrite(t, src, files, 41)
	child := filepath.Join(dir, "child.vhdx")
	killed = 0
	capture(child, dst)
	require.NoError(t, Verify(context.Background(), openDevice(t, src), child))
	raw := filepath.Join(dir, "child.raw")
	rawOf(t, child, raw)
	checkExt4(t, raw, files)
	t.Logf("child capture killed %d times", killed)
}
