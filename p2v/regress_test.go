package p2v

// Regression tests for the findings of the first review of the package.

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memSource is a disk in memory whose content a test can change while a
// capture reads it; reads sleep while slow is set.
type memSource struct {
	mu   sync.RWMutex
	b    []byte
	slow atomic.Int64 // nanoseconds per read
}

func newMemSource(size int64, seed uint64) *memSource {
	m := &memSource{b: make([]byte, size)}
	rand.NewChaCha8([32]byte{byte(seed)}).Read(m.b)
	return m
}

func (m *memSource) Size() int64  { return int64(len(m.b)) }
func (m *memSource) Name() string { return "memory" }

func (m *memSource) ReadAt(p []byte, off int64) (int, error) {
	time.Sleep(time.Duration(m.slow.Load()))
	m.mu.RLock()
	defer m.mu.RUnlock()
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if off+int64(n) == int64(len(m.b)) {
		return n, io.EOF // allowed with a full read at the end, as vhd.Disk does
	}
	return n, nil
}

// scribble changes n random 4 KiB pages.
func (m *memSource) scribble(r *rand.Rand, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for range n {
		off := r.IntN(len(m.b)/4096) * 4096
		for i := range 4096 {
			m.b[off+i] = byte(r.Uint32())
		}
	}
}

// A source whose ReadAt says io.EOF with a full read of its last bytes is
// read to the end, not taken for a source that shrank.
func TestCaptureEOFWithFullRead(t *testing.T) {
	src := newMemSource(3*MiB+4096, 1)
	dst := filepath.Join(t.TempDir(), "a.vhdx")
	_, err := Capture(context.Background(), src, dst, nil)
	require.NoError(t, err)
	require.NoError(t, Verify(context.Background(), src, dst))
}

// A journal that records written chunks, beside an image that is gone, is
// not resumed into a new empty image that would skip those chunks.
func TestCaptureJournalWithoutImage(t *testing.T) {
	dir := t.TempDir()
	src, _ := ext4Image(t, dir, 16*MiB, 50, 3*MiB)
	dst := filepath.Join(dir, "a.vhdx")
	fs := &faultySource{Source: openDevice(t, src), failAfter: 20}
	defer func(n int64) { checkpointBytes = n }(checkpointBytes)
	checkpointBytes = MiB
	_, err := Capture(context.Background(), fs, dst, &Options{ChunkSize: 64 << 10, Parallel: 1})
	require.ErrorIs(t, err, errInjected)
	require.NoError(t, os.Remove(dst))
	_, err = Capture(context.Background(), openDevice(t, src), dst, &Options{ChunkSize: 64 << 10})
	var je *JournalError
	require.ErrorAs(t, err, &je)
	assert.Contains(t, err.Error(), "which is gone")
}

// The journal of an in-place capture that had finished (only its removal
// was lost) does not make the next in-place capture skip everything.
func TestCaptureStaleInPlaceJournal(t *testing.T) {
	dir := t.TempDir()
	src, files := ext4Image(t, dir, 16*MiB, 51, 3*MiB)
	img := filepath.Join(dir, "a.vhdx")
	_, err := Capture(context.Background(), openDevice(t, src), img, nil)
	require.NoError(t, err)
	m, err := ReadManifest(ManifestPath(img))
	require.NoError(t, err)
	j, err := createJournal(journalPath(img), journalHeader{Mode: captureInPlace, ChunkSize: m.ChunkSize,
		DiskSize: m.DiskSize, Chunks: int64(len(m.Hashes)), Pass: m.Pass, Image: m.Image})
	require.NoError(t, err)
	require.NoError(t, j.done(0, m.Hashes, true))
	j.close()

	debugfsWrite(t, src, files, 52)
	res, err := Capture(context.Background(), openDevice(t, src), "", &Options{Previous: img, InPlace: true})
	require.NoError(t, err)
	assert.False(t, res.Resumed)
	assert.Positive(t, res.Written)
	require.NoError(t, Verify(context.Background(), openDevice(t, src), img))
}

// A child is not made from an image an interrupted in-place capture left
// half written, and Verify says why it will not compare it.
func TestCaptureRefusesPreviousMidCapture(t *testing.T) {
	dir := t.TempDir()
	src, files := ext4Image(t, dir, 16*MiB, 53, 3*MiB)
	img := filepath.Join(dir, "a.vhdx")
	_, err := Capture(context.Background(), openDevice(t, src), img, &Options{ChunkSize: 64 << 10})
	require.NoError(t, err)
	debugfsWrite(t, src, files, 54)
	fs := &faultySource{Source: openDevice(t, src), failAfter: 10}
	_, err = Capture(context.Background(), fs, "", &Options{Previous: img, InPlace: true, Parallel: 1})
	require.ErrorIs(t, err, errInjected)

	var je *JournalError
	_, err = Capture(context.Background(), openDevice(t, src), filepath.Join(dir, "child.vhdx"), &Options{Previous: img})
	require.ErrorAs(t, err, &je)
	assert.Contains(t, err.Error(), "was interrupted")
	require.ErrorAs(t, Verify(context.Background(), openDevice(t, src), img), &je)
	assert.NoFileExists(t, filepath.Join(dir, "child.vhdx"))
}

// flakyFreezer stands for a file system whose writers land just as it is
// frozen: each Freeze changes the source, and makes reads slow for the
// first attempts so that the watchdog cuts the frozen pass short.
type flakyFreezer struct {
	src     *memSource
	r       *rand.Rand
	freezes int
	slowFor int // freezes during which reads are slow
	frozen  atomic.Bool
}

func (f *flakyFreezer) Freeze(context.Context) (func() error, error) {
	f.freezes++
	f.src.scribble(f.r, 40)
	if f.freezes <= f.slowFor {
		f.src.slow.Store(int64(10 * time.Millisecond))
	}
	f.frozen.Store(true)
	return func() error {
		f.frozen.Store(false)
		f.src.slow.Store(0)
		return nil
	}, nil
}

// TestFreezeTimeoutThenSuccess: a frozen pass cut short by the watchdog is
// retried after a live pass, the capture ends consistent with the source as
// it was during the frozen pass that succeeded, and no done record ever
// becomes durable before the image data it describes.
func TestFreezeTimeoutThenSuccess(t *testing.T) {
	defer func(n int64) { checkpointBytes = n }(checkpointBytes)
	checkpointBytes = MiB
	var events []string
	var mu sync.Mutex
	testHook = func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
	defer func() { testHook = nil }()

	src := newMemSource(8*MiB, 2)
	fr := &flakyFreezer{src: src, r: rand.New(rand.NewPCG(3, 3)), slowFor: 1}
	dst := filepath.Join(t.TempDir(), "a.vhdx")
	res, err := Capture(context.Background(), src, dst, &Options{ChunkSize: 256 << 10, Parallel: 1,
		Snapshotter: fr, MaxFreeze: 150 * time.Millisecond})
	require.NoError(t, err)
	assert.Equal(t, 2, res.FreezeAttempts)
	require.NoError(t, Verify(context.Background(), src, dst), "the image holds the source as frozen")

	// Every done record follows an image sync made after the last write.
	dirty := false
	for i, e := range events {
		switch e {
		case "write":
			dirty = true
		case "image sync":
			dirty = false
		case "done":
			require.False(t, dirty, "done record %d appended with writes not synced: %v", i, events[max(0, i-6):i+1])
		}
	}

	// Every attempt times out: the error says so, and the source is thawed.
	fr = &flakyFreezer{src: src, r: rand.New(rand.NewPCG(4, 4)), slowFor: 100}
	_, err = Capture(context.Background(), src, filepath.Join(t.TempDir(), "b.vhdx"), &Options{ChunkSize: 256 << 10, Parallel: 1,
		Snapshotter: fr, MaxFreeze: 50 * time.Millisecond})
	require.ErrorIs(t, err, ErrFreezeTimeout)
	assert.Contains(t, err.Error(), "3 attempts")
	assert.False(t, fr.frozen.Load())
}
