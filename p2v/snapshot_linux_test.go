package p2v

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
)

// mountedExt4 makes an ext4 file system on a loop device and mounts it; it
// returns the device and the mount point. Needs root.
func mountedExt4(t *testing.T, size int64) (dev, mnt string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "loop devices and mounting need root")
	}
	losetup := testenv.Tool(t, "VMM_TEST_LOSETUP", "losetup")
	mkfs := testenv.Tool(t, "VMM_TEST_MKFS_EXT4", "mkfs.ext4")
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	garbageFile(t, img, size, 21)
	run(t, mkfs, "-q", "-F", "-E", "nodiscard", img)
	out, err := exec.Command(losetup, "--find", "--show", img).CombinedOutput()
	if err != nil {
		testenv.Missing(t, "no loop device: %v: %s", err, out)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command(losetup, "-d", dev).Run() })
	mnt = filepath.Join(dir, "mnt")
	require.NoError(t, os.Mkdir(mnt, 0o755))
	run(t, "mount", dev, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return dev, mnt
}

// churn writes and deletes files under dir until stop is closed, each file
// written, synced and closed before the next.
func churn(t *testing.T, dir string, stop <-chan struct{}, written *atomic.Int64) error {
	r := rand.New(rand.NewPCG(5, 5))
	buf := make([]byte, 256<<10)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		for k := range buf {
			buf[k] = byte(r.Uint32())
		}
		name := filepath.Join(dir, fmt.Sprintf("churn%d", i%40))
		if err := os.WriteFile(name, buf, 0o644); err != nil {
			return err
		}
		written.Add(int64(len(buf)))
		time.Sleep(2 * time.Millisecond)
	}
}

// TestCaptureLiveFrozen captures a mounted file system while a writer keeps
// changing it: live passes converge, the file system is frozen for the last
// one, and the image is a clean file system holding every file that was
// there before the capture.
func TestCaptureLiveFrozen(t *testing.T) {
	dev, mnt := mountedExt4(t, 128*MiB)
	files := randomFiles(t, mnt, 22, 6*MiB, 5*MiB, 4*MiB, MiB, 300000)
	run(t, "sync")
	stop := make(chan struct{})
	var written atomic.Int64
	var wg sync.WaitGroup
	var churnErr error
	wg.Go(func() { churnErr = churn(t, mnt, stop, &written) })

	src := openDevice(t, dev)
	assert.True(t, src.Direct(), "a block device is read with O_DIRECT")
	dst := filepath.Join(t.TempDir(), "live.vhdx")
	time.Sleep(50 * time.Millisecond)
	res, err := Capture(context.Background(), src, dst, &Options{
		Snapshotter: FSFreezer{Mountpoint: mnt}, ConvergeBytes: 4 * MiB, MaxFreeze: 5 * time.Second})
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	require.NoError(t, churnErr)
	assert.Positive(t, written.Load(), "the writer ran during the capture")

	require.GreaterOrEqual(t, len(res.Passes), 2)
	lastPass := res.Passes[len(res.Passes)-1]
	assert.True(t, lastPass.Frozen)
	assert.Positive(t, res.FreezeTime)
	assert.Less(t, res.FreezeTime, 5*time.Second)
	assert.Equal(t, 1, res.FreezeAttempts)
	for i, p := range res.Passes {
		t.Logf("pass %d: frozen %v, read %d, wrote %d, %d chunks, %v", i+1, p.Frozen, p.Read, p.Written, p.Changed, p.Duration)
	}
	t.Logf("freeze %v", res.FreezeTime)
	live, err := Analyze(src, src.Size())
	require.NoError(t, err)
	t.Logf("live layout: %+v", live)

	raw := filepath.Join(t.TempDir(), "live.raw")
	rawOf(t, dst, raw)
	checkExt4(t, raw, files) // e2fsck -fn clean, files intact
}

// TestFreezeTimeout: a frozen pass that cannot finish in MaxFreeze is cut
// short, the file system is thawed, and after its attempts Capture fails
// with ErrFreezeTimeout.
func TestFreezeTimeout(t *testing.T) {
	dev, mnt := mountedExt4(t, 64*MiB)
	randomFiles(t, mnt, 23, 8*MiB)
	src := &slowSource{Source: openDevice(t, dev), delay: 5 * time.Millisecond}
	start := time.Now()
	_, err := Capture(context.Background(), src, filepath.Join(t.TempDir(), "x.vhdx"), &Options{
		Snapshotter: FSFreezer{Mountpoint: mnt}, MaxFreeze: 50 * time.Millisecond, Parallel: 1})
	require.ErrorIs(t, err, ErrFreezeTimeout)
	t.Logf("gave up after %v", time.Since(start))
	// Thawed: writing works.
	done := make(chan error, 1)
	go func() { done <- os.WriteFile(filepath.Join(mnt, "after"), []byte("x"), 0o644) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the file system stayed frozen")
	}
}

func TestFreezeRefusesImageOnFrozenFS(t *testing.T) {
	dev, mnt := mountedExt4(t, 32*MiB)
	_, err := Capture(context.Background(), openDevice(t, dev), filepath.Join(mnt, "x.vhdx"), &Options{
		Snapshotter: FSFreezer{Mountpoint: mnt}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "would be frozen")
}

type slowSource struct {
	Source
	delay time.Duration
}

func (s *slowSource) ReadAt(p []byte, off int64) (int, error) {
	time.Sleep(s.delay)
	return s.Source.ReadAt(p, off)
}
