package library

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testChunk keeps the transfer tests fast: 64 KiB chunks instead of 8 MiB.
const testChunk = 64 << 10

func newTestShare(t *testing.T, name, dir string) *DirShare {
	t.Helper()
	s, err := NewDirShare(name, "site", dir)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// putSource writes size random bytes (from seed) as name in dir and returns
// them with their manifest.
func putSource(t *testing.T, dir, name string, size int64, seed uint64) ([]byte, *Manifest) {
	t.Helper()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1}).Read(data)
	require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	m, err := Hash(context.Background(), bytes.NewReader(data), size, &HashOptions{ChunkSize: testChunk})
	require.NoError(t, err)
	return data, m
}

// A countingShare counts the parts written through its uploads and can
// fail or stall a write.
type countingShare struct {
	Share
	writes atomic.Int64
	// written, when set, adds up the bytes of the parts written.
	written *atomic.Int64
	// beforeWrite, when set, runs before each WritePart; an error from it
	// is returned instead of writing.
	beforeWrite func(n int) error
}

func (s *countingShare) Create(ctx context.Context, name string, size, partSize int64) (Upload, error) {
	u, err := s.Share.Create(ctx, name, size, partSize)
	if err != nil {
		return nil, err
	}
	return &countingUpload{Upload: u, s: s}, nil
}

type countingUpload struct {
	Upload
	s *countingShare
}

func (u *countingUpload) WritePart(ctx context.Context, n int, p, sum []byte) error {
	if u.s.beforeWrite != nil {
		if err := u.s.beforeWrite(n); err != nil {
			return err
		}
	}
	err := u.Upload.WritePart(ctx, n, p, sum)
	if err == nil {
		u.s.writes.Add(1)
		if u.s.written != nil {
			u.s.written.Add(int64(len(p)))
		}
	}
	return err
}

// progressCheck records Progress calls and checks they only grow.
type progressCheck struct {
	t          *testing.T
	mu         sync.Mutex
	first      int64
	last       int64
	calls      int
	total      int64
	decreasing bool
}

func (p *progressCheck) fn(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls == 0 {
		p.first = done
	} else if done < p.last {
		p.decreasing = true
	}
	p.calls++
	p.last, p.total = done, total
}

func TestCopyRoundTrip(t *testing.T) {
	defer func(n int64) { flushEvery = n }(flushEvery)
	flushEvery = testChunk
	ctx := t.Context()
	for _, size := range []int64{0, 1, testChunk - 1, testChunk, 3*testChunk + 5} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			srcDir, dstDir := t.TempDir(), t.TempDir()
			src, dst := newTestShare(t, "src", srcDir), newTestShare(t, "dst", dstDir)
			data, m := putSource(t, srcDir, "images/a.vhd", size, uint64(size))

			t.Run("Copy", func(t *testing.T) {
				pc := &progressCheck{t: t}
				require.NoError(t, Copy(ctx, src, "images/a.vhd", m, dst, "copies/a.vhd", &CopyOptions{Progress: pc.fn}))
				got, err := os.ReadFile(filepath.Join(dstDir, "copies", "a.vhd"))
				require.NoError(t, err)
				assert.True(t, bytes.Equal(got, data), "copy differs from the source")
				assert.False(t, pc.decreasing, "progress went down")
				assert.Equal(t, size, pc.last, "last progress")
				assert.Equal(t, size, pc.total, "progress total")
				entries, _ := os.ReadDir(filepath.Join(dstDir, uploadsDir))
				assert.Empty(t, entries, "uploads left behind")
			})
			t.Run("CopyToFile", func(t *testing.T) {
				pool := t.TempDir()
				path := filepath.Join(pool, "a.vhd")
				pc := &progressCheck{t: t}
				require.NoError(t, CopyToFile(ctx, src, "images/a.vhd", m, path, &CopyOptions{Workers: 3, Progress: pc.fn}))
				got, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(got, data), "copy differs from the source")
				assert.Equal(t, size, pc.last, "last progress")
				entries, err := os.ReadDir(pool)
				require.NoError(t, err)
				require.Len(t, entries, 1, "files besides the copy left behind")
			})
		})
	}
}

func TestCopyCorruptSource(t *testing.T) {
	ctx := t.Context()
	srcDir, dstDir := t.TempDir(), t.TempDir()
	src, dst := newTestShare(t, "src", srcDir), newTestShare(t, "dst", dstDir)
	data, m := putSource(t, srcDir, "a.vhd", 5*testChunk+100, 1)
	// One byte of chunk 3 flips after the manifest was made.
	data[3*testChunk+17] ^= 0x40
	require.NoError(t, os.WriteFile(filepath.Join(srcDir, "a.vhd"), data, 0o644))

	err := Copy(ctx, src, "a.vhd", m, dst, "a.vhd", nil)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "chunk 3")
	assert.Contains(t, err.Error(), "src")
	_, err = dst.Stat(ctx, "a.vhd")
	require.ErrorIs(t, err, ErrNotFound, "a corrupt copy is visible")

	path := filepath.Join(t.TempDir(), "a.vhd")
	err = CopyToFile(ctx, src, "a.vhd", m, path, nil)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "chunk 3")
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "a corrupt copy is visible")
}

func TestCopySizeMismatch(t *testing.T) {
	ctx := t.Context()
	srcDir := t.TempDir()
	src := newTestShare(t, "src", srcDir)
	dst := &countingShare{Share: newTestShare(t, "dst", t.TempDir())}
	data, m := putSource(t, srcDir, "a.vhd", 2*testChunk, 2)
	// The first chunks still match; the file grew by a byte.
	require.NoError(t, os.WriteFile(filepath.Join(srcDir, "a.vhd"), append(data, 0), 0o644))

	err := Copy(ctx, src, "a.vhd", m, dst, "a.vhd", nil)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Zero(t, dst.writes.Load(), "parts written before the size check")

	err = CopyToFile(ctx, src, "a.vhd", m, filepath.Join(t.TempDir(), "a.vhd"), nil)
	require.ErrorIs(t, err, ErrCorrupt)
}

func TestCopyBadManifest(t *testing.T) {
	ctx := t.Context()
	srcDir := t.TempDir()
	src, dst := newTestShare(t, "src", srcDir), newTestShare(t, "dst", t.TempDir())
	_, m := putSource(t, srcDir, "a.vhd", 2*testChunk, 2)
	for _, tc := range []struct {
		name string
		m    *Manifest
	}{
		{"nil", nil},
		{"chunk sum missing", &Manifest{Algorithm: m.Algorithm, Size: m.Size, ChunkSize: m.ChunkSize, Chunks: m.Chunks[:1]}},
		{"zero chunk size", &Manifest{Algorithm: m.Algorithm, Size: m.Size, Chunks: m.Chunks}},
		{"unknown algorithm", &Manifest{Algorithm: "md4", Size: m.Size, ChunkSize: m.ChunkSize, Chunks: m.Chunks}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Error(t, Copy(ctx, src, "a.vhd", tc.m, dst, "a.vhd", nil))
			require.Error(t, CopyToFile(ctx, src, "a.vhd", tc.m, filepath.Join(t.TempDir(), "a"), nil))
		})
	}
}

func TestCopyDestinationExists(t *testing.T) {
	ctx := t.Context()
	srcDir, dstDir := t.TempDir(), t.TempDir()
	src := newTestShare(t, "src", srcDir)
	dst := &countingShare{Share: newTestShare(t, "dst", dstDir)}
	_, m := putSource(t, srcDir, "a.vhd", 2*testChunk, 3)
	require.NoError(t, os.WriteFile(filepath.Join(dstDir, "a.vhd"), []byte("keep me"), 0o644))

	err := Copy(ctx, src, "a.vhd", m, dst, "a.vhd", nil)
	require.ErrorIs(t, err, ErrExist)
	assert.Zero(t, dst.writes.Load())
	got, _ := os.ReadFile(filepath.Join(dstDir, "a.vhd"))
	assert.Equal(t, "keep me", string(got))

	path := filepath.Join(t.TempDir(), "a.vhd")
	require.NoError(t, os.WriteFile(path, []byte("keep me"), 0o644))
	err = CopyToFile(ctx, src, "a.vhd", m, path, nil)
	require.ErrorIs(t, err, ErrExist)
	got, _ = os.ReadFile(path)
	assert.Equal(t, "keep me", string(got))

	// The name taken while the copy ran: Commit refuses, the upload stays.
	dst2 := &countingShare{Share: dst.Share}
	dst2.beforeWrite = func(n int) error {
		if n == 1 {
			os.WriteFile(filepath.Join(dstDir, "b.vhd"), []byte("late"), 0o644)
		}
		return nil
	}
	err = Copy(ctx, src, "a.vhd", m, dst2, "b.vhd", &CopyOptions{Workers: 1})
	require.ErrorIs(t, err, ErrExist)
	got, _ = os.ReadFile(filepath.Join(dstDir, "b.vhd"))
	assert.Equal(t, "late", string(got))
}

// cancelAtHalf returns options that cancel the copy once half of size is in
// place.
func cancelAtHalf(cancel context.CancelFunc, size int64, workers int) *CopyOptions {
	return &CopyOptions{Workers: workers, Progress: func(done, total int64) {
		if done >= size/2 {
			cancel()
		}
	}}
}

func TestCopyResume(t *testing.T) {
	srcDir, dstDir := t.TempDir(), t.TempDir()
	src := newTestShare(t, "src", srcDir)
	dst := &countingShare{Share: newTestShare(t, "dst", dstDir)}
	const size = 40*testChunk + 123
	data, m := putSource(t, srcDir, "a.vhd", size, 4)
	chunks := int64(len(m.Chunks))

	ctx, cancel := context.WithCancel(t.Context())
	err := Copy(ctx, src, "a.vhd", m, dst, "b/a.vhd", cancelAtHalf(cancel, size, 3))
	require.ErrorIs(t, err, context.Canceled)
	first := dst.writes.Load()
	require.Less(t, first, chunks, "the copy was not cut off")
	require.GreaterOrEqual(t, first, chunks/2-1)
	// Promptly: no more than the parts the 3 workers had started.
	require.LessOrEqual(t, first, chunks/2+1+3, "parts written after the cancel")
	_, err = dst.Stat(t.Context(), "b/a.vhd")
	require.ErrorIs(t, err, ErrNotFound, "a cancelled copy is visible")

	// A part that no longer matches the manifest (another content of the
	// same size, or a part stored with a wrong sum) is rewritten.
	u, err := dst.Share.Create(t.Context(), "b/a.vhd", size, testChunk)
	require.NoError(t, err)
	stored, err := u.Parts(t.Context())
	require.NoError(t, err)
	require.Len(t, stored, int(first), "parts that survived the cancel")
	for n := range stored {
		require.NoError(t, u.WritePart(t.Context(), n, data[n*testChunk:(n+1)*testChunk], []byte("not the sum")))
		break
	}
	require.NoError(t, u.Close())

	pc := &progressCheck{t: t}
	dst.writes.Store(0)
	require.NoError(t, Copy(t.Context(), src, "a.vhd", m, dst, "b/a.vhd", &CopyOptions{Progress: pc.fn}))
	assert.Equal(t, chunks-first+1, dst.writes.Load(), "parts written on resume, with first=%d", first)
	var want int64
	for n := range stored {
		_, l := m.ChunkRange(n)
		want += l
	}
	assert.Equal(t, want-testChunk, pc.first, "progress at the start of the resume")
	got, err := os.ReadFile(filepath.Join(dstDir, "b", "a.vhd"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(got, data), "resumed copy differs from the source")
}

func TestCopyToFileResume(t *testing.T) {
	defer func(n int64) { flushEvery = n }(flushEvery)
	flushEvery = 3 * testChunk // background syncs during the copy
	srcDir := t.TempDir()
	src := newTestShare(t, "src", srcDir)
	const size = 40*testChunk + 123
	data, m := putSource(t, srcDir, "a.vhd", size, 5)
	pool := t.TempDir()
	path := filepath.Join(pool, "a.vhd")

	ctx, cancel := context.WithCancel(t.Context())
	err := CopyToFile(ctx, src, "a.vhd", m, path, cancelAtHalf(cancel, size, 3))
	require.ErrorIs(t, err, context.Canceled)
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "a cancelled copy is visible")
	tmp := filepath.Join(pool, ".vmmkit-partial-a.vhd")
	journal, err := os.ReadFile(filepath.Join(pool, ".vmmkit-journal-a.vhd"))
	require.NoError(t, err)
	listed := strings.Count(string(journal), "\n") - 1
	require.Greater(t, listed, 1)
	require.Less(t, listed, len(m.Chunks))

	// Damage a chunk the journal lists, as a power loss could: the resume
	// checks it and writes it again.
	var damaged int
	_, err = fmt.Sscanf(strings.Split(string(journal), "\n")[1], "%d", &damaged)
	require.NoError(t, err)
	f, err := os.OpenFile(tmp, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{^data[damaged*testChunk+9]}, int64(damaged*testChunk+9))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	pc := &progressCheck{t: t}
	require.NoError(t, CopyToFile(t.Context(), src, "a.vhd", m, path, &CopyOptions{Progress: pc.fn}))
	assert.Equal(t, int64(listed-1)*testChunk, pc.first, "progress at the start of the resume")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(got, data), "resumed copy differs from the source")
	entries, _ := os.ReadDir(pool)
	assert.Len(t, entries, 1, "files besides the copy left behind")
}

func TestCopyToFileOtherContent(t *testing.T) {
	// A partial copy of other content to the same path is not reused.
	srcDir := t.TempDir()
	src := newTestShare(t, "src", srcDir)
	const size = 8 * testChunk
	_, m1 := putSource(t, srcDir, "one", size, 6)
	data2, m2 := putSource(t, srcDir, "two", size, 7)
	path := filepath.Join(t.TempDir(), "a.vhd")
	ctx, cancel := context.WithCancel(t.Context())
	require.ErrorIs(t, CopyToFile(ctx, src, "one", m1, path, cancelAtHalf(cancel, size, 1)), context.Canceled)
	pc := &progressCheck{t: t}
	require.NoError(t, CopyToFile(t.Context(), src, "two", m2, path, &CopyOptions{Progress: pc.fn}))
	assert.Zero(t, pc.first)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(got, data2))
}

func TestCopyToFileLocked(t *testing.T) {
	srcDir := t.TempDir()
	src := newTestShare(t, "src", srcDir)
	_, m := putSource(t, srcDir, "a", 3*testChunk, 8)
	pool := t.TempDir()
	// Another process copying to the same path holds the lock.
	f, err := os.OpenFile(filepath.Join(pool, ".vmmkit-partial-a"), os.O_RDWR|os.O_CREATE, 0o644)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX))
	err = CopyToFile(t.Context(), src, "a", m, filepath.Join(pool, "a"), nil)
	require.ErrorContains(t, err, "another copy")
	require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_UN))
	require.NoError(t, CopyToFile(t.Context(), src, "a", m, filepath.Join(pool, "a"), nil))
}

func TestCopySourceOffline(t *testing.T) {
	srcDir := filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.Mkdir(srcDir, 0o755))
	src := newTestShare(t, "src", srcDir)
	dst := &countingShare{Share: newTestShare(t, "dst", t.TempDir())}
	_, m := putSource(t, srcDir, "a", 3*testChunk, 9)
	require.NoError(t, os.RemoveAll(srcDir))
	err := Copy(t.Context(), src, "a", m, dst, "a", nil)
	require.ErrorIs(t, err, ErrOffline)
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, or skips.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("VMM_TEST_REQUIRE") == "1" {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	// Lazily: an Upload has no Close, so the files of one a failed Copy
	// left may still be open.
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func remountTmpfs(t *testing.T, dir string, size int64) {
	t.Helper()
	out, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%d", size), dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

func TestCopyNoSpace(t *testing.T) {
	srcDir := t.TempDir()
	src := newTestShare(t, "src", srcDir)
	const size = 6 << 20 // on a 4 MiB file system
	data, m := putSource(t, srcDir, "a.vhd", size, 10)

	t.Run("Copy", func(t *testing.T) {
		full := mountTmpfs(t, 4<<20)
		dst := &countingShare{Share: newTestShare(t, "dst", full)}
		err := Copy(t.Context(), src, "a.vhd", m, dst, "a.vhd", &CopyOptions{Workers: 2})
		require.ErrorIs(t, err, ErrNoSpace)
		first := dst.writes.Load()
		require.Positive(t, first)
		_, err = dst.Stat(t.Context(), "a.vhd")
		require.ErrorIs(t, err, ErrNotFound)

		remountTmpfs(t, full, 16<<20)
		dst.writes.Store(0)
		require.NoError(t, Copy(t.Context(), src, "a.vhd", m, dst, "a.vhd", nil))
		assert.Equal(t, int64(len(m.Chunks))-first, dst.writes.Load(), "parts written after space was freed")
		got, err := os.ReadFile(filepath.Join(full, "a.vhd"))
		require.NoError(t, err)
		require.True(t, bytes.Equal(got, data))
	})
	t.Run("CopyToFile", func(t *testing.T) {
		full := mountTmpfs(t, 4<<20)
		path := filepath.Join(full, "a.vhd")
		err := CopyToFile(t.Context(), src, "a.vhd", m, path, &CopyOptions{Workers: 2})
		require.ErrorIs(t, err, ErrNoSpace)
		_, err = os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist)

		remountTmpfs(t, full, 16<<20)
		pc := &progressCheck{t: t}
		require.NoError(t, CopyToFile(t.Context(), src, "a.vhd", m, path, &CopyOptions{Progress: pc.fn}))
		assert.Positive(t, pc.first, "nothing kept from before the file system filled")
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		require.True(t, bytes.Equal(got, data))
	})
}

func TestCopyWriteError(t *testing.T) {
	// A failing write stops the other workers and comes back as is.
	srcDir := t.TempDir()
	src := newTestShare(t, "src", srcDir)
	_, m := putSource(t, srcDir, "a", 30*testChunk, 11)
	boom := errors.New("boom")
	dst := &countingShare{Share: newTestShare(t, "dst", t.TempDir())}
	dst.beforeWrite = func(n int) error {
		if n == 5 {
			return boom
		}
		return nil
	}
	err := Copy(t.Context(), src, "a", m, dst, "a", &CopyOptions{Workers: 1})
	require.ErrorIs(t, err, boom)
	assert.Equal(t, int64(5), dst.writes.Load())
}

func TestCopyZeroChunks(t *testing.T) {
	// Empty chunks are checked without hashing; a byte set in one is
	// still caught.
	ctx := t.Context()
	srcDir := t.TempDir()
	src := newTestShare(t, "src", srcDir)
	const size = 4*testChunk + 1000
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{12}).Read(data[:testChunk])
	rand.NewChaCha8([32]byte{13}).Read(data[2*testChunk : 3*testChunk])
	// Chunks 1, 3 and the short last one are empty.
	require.NoError(t, os.WriteFile(filepath.Join(srcDir, "a"), data, 0o644))
	m, err := Hash(ctx, bytes.NewReader(data), size, &HashOptions{ChunkSize: testChunk})
	require.NoError(t, err)

	for _, flip := range []int{-1, testChunk + 5, 4*testChunk + 999} {
		t.Run(fmt.Sprint(flip), func(t *testing.T) {
			d := bytes.Clone(data)
			if flip >= 0 {
				d[flip] = 1
			}
			require.NoError(t, os.WriteFile(filepath.Join(srcDir, "a"), d, 0o644))
			dstDir := t.TempDir()
			err := Copy(ctx, src, "a", m, newTestShare(t, "dst", dstDir), "a", nil)
			path := filepath.Join(t.TempDir(), "a")
			err2 := CopyToFile(ctx, src, "a", m, path, nil)
			if flip >= 0 {
				require.ErrorIs(t, err, ErrCorrupt)
				require.ErrorIs(t, err2, ErrCorrupt)
				assert.Contains(t, err.Error(), fmt.Sprintf("chunk %d ", flip/testChunk))
				return
			}
			require.NoError(t, err)
			require.NoError(t, err2)
			for _, p := range []string{filepath.Join(dstDir, "a"), path} {
				got, err := os.ReadFile(p)
				require.NoError(t, err)
				require.True(t, bytes.Equal(got, data))
			}
		})
	}
}

// An eioShare's files fail every read after the first reads with EIO, as a
// lost network mount does.
type eioShare struct {
	Share
	reads  atomic.Int64
	before int64
	onFail func()
}

func (s *eioShare) Open(ctx context.Context, name string) (File, error) {
	f, err := s.Share.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	return eioFile{f, s}, nil
}

type eioFile struct {
	File
	s *eioShare
}

func (f eioFile) ReadAt(p []byte, off int64) (int, error) {
	if f.s.reads.Add(1) > f.s.before {
		f.s.onFail()
		return 0, &os.PathError{Op: "read", Path: "x", Err: syscall.EIO}
	}
	return f.File.ReadAt(p, off)
}

func TestCopySourceLostMidway(t *testing.T) {
	parent := t.TempDir()
	srcDir := filepath.Join(parent, "src")
	require.NoError(t, os.Mkdir(srcDir, 0o755))
	_, m := putSource(t, srcDir, "a", 10*testChunk, 14)
	for _, toFile := range []bool{false, true} {
		t.Run(fmt.Sprint("to file ", toFile), func(t *testing.T) {
			ds := newTestShare(t, "src", srcDir)
			src := &eioShare{Share: ds, before: 4, onFail: func() {
				// The mount point is left empty, as after an unmount.
				os.Rename(srcDir, filepath.Join(parent, "gone"))
				os.Mkdir(srcDir, 0o755)
			}}
			var err error
			if toFile {
				err = CopyToFile(t.Context(), src, "a", m, filepath.Join(t.TempDir(), "a"), &CopyOptions{Workers: 1})
			} else {
				err = Copy(t.Context(), src, "a", m, newTestShare(t, "dst", t.TempDir()), "a", &CopyOptions{Workers: 1})
			}
			require.ErrorIs(t, err, ErrOffline)
			require.ErrorIs(t, err, syscall.EIO)
			var se *ShareError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, "src", se.Share)
			// Back for the next case.
			require.NoError(t, os.Remove(srcDir))
			require.NoError(t, os.Rename(filepath.Join(parent, "gone"), srcDir))
		})
	}
}

func TestCopyToFileLeftovers(t *testing.T) {
	srcDir := t.TempDir()
	src := newTestShare(t, "src", srcDir)
	const size = 3*testChunk + 7
	data, m := putSource(t, srcDir, "a", size, 15)
	pool := t.TempDir()
	path := filepath.Join(pool, "a")
	tmp, journal := filepath.Join(pool, ".vmmkit-partial-a"), filepath.Join(pool, ".vmmkit-journal-a")

	// Cut off between the link and the removal of the temporary name: the
	// copy is whole and the leftovers go on the next call.
	require.NoError(t, os.WriteFile(tmp, data, 0o644))
	require.NoError(t, os.Link(tmp, path))
	require.NoError(t, os.WriteFile(journal, []byte("vmmkit-copy 1 x\n0\n"), 0o644))
	require.ErrorIs(t, CopyToFile(t.Context(), src, "a", m, path, nil), ErrExist)
	entries, err := os.ReadDir(pool)
	require.NoError(t, err)
	require.Len(t, entries, 1, "leftovers kept")

	// Taken while the copy ran: the rename refuses, the copy is kept, and
	// once the name is free again nothing is written twice.
	path2 := filepath.Join(pool, "b")
	opts := &CopyOptions{Workers: 1, Progress: func(done, total int64) {
		if done == total {
			os.WriteFile(path2, []byte("late"), 0o644)
		}
	}}
	require.ErrorIs(t, CopyToFile(t.Context(), src, "a", m, path2, opts), ErrExist)
	got, err := os.ReadFile(path2)
	require.NoError(t, err)
	require.Equal(t, "late", string(got))
	require.NoError(t, os.Remove(path2))
	pc := &progressCheck{t: t}
	require.NoError(t, CopyToFile(t.Context(), src, "a", m, path2, &CopyOptions{Progress: pc.fn}))
	assert.Equal(t, int64(size), pc.first, "bytes kept from the refused copy")
	got, err = os.ReadFile(path2)
	require.NoError(t, err)
	require.True(t, bytes.Equal(got, data))
}

func TestCopyDestinationOffline(t *testing.T) {
	srcDir, parent := t.TempDir(), t.TempDir()
	src := newTestShare(t, "src", srcDir)
	dstDir := filepath.Join(parent, "dst")
	require.NoError(t, os.Mkdir(dstDir, 0o755))
	const size = 10 * testChunk
	data, m := putSource(t, srcDir, "a", size, 16)
	dst := &countingShare{Share: newTestShare(t, "dst", dstDir)}
	dst.beforeWrite = func(n int) error {
		if n == 3 {
			// Unmounted: the mount point is left empty.
			require.NoError(t, os.Rename(dstDir, filepath.Join(parent, "away")))
			require.NoError(t, os.Mkdir(dstDir, 0o755))
		}
		return nil
	}
	err := Copy(t.Context(), src, "a", m, dst, "a", &CopyOptions{Workers: 1})
	require.ErrorIs(t, err, ErrOffline)
	var se *ShareError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "dst", se.Share)

	// Back again: the copy resumes where it stopped.
	require.NoError(t, os.Remove(dstDir))
	require.NoError(t, os.Rename(filepath.Join(parent, "away"), dstDir))
	first := dst.writes.Load()
	dst.beforeWrite = nil
	dst.writes.Store(0)
	require.NoError(t, Copy(t.Context(), src, "a", m, dst, "a", nil))
	assert.Equal(t, int64(len(m.Chunks))-first, dst.writes.Load())
	got, err := os.ReadFile(filepath.Join(dstDir, "a"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(got, data))
}

// A commit cut off after the link, whose file was then renamed by its
// user: the temporary name still shares the renamed file's inode, and the
// next copy must not write into it.
func TestCopyToFileLeftoverRenamed(t *testing.T) {
	srcDir := t.TempDir()
	src := newTestShare(t, "src", srcDir)
	const size = 2*testChunk + 3
	data, m := putSource(t, srcDir, "a", size, 16)
	pool := t.TempDir()
	path := filepath.Join(pool, "a")
	tmp := filepath.Join(pool, ".vmmkit-partial-a")
	other := bytes.Repeat([]byte{0x5a}, size)
	require.NoError(t, os.WriteFile(tmp, other, 0o644))
	require.NoError(t, os.Link(tmp, filepath.Join(pool, "vm1.img"))) // published, then renamed

	require.NoError(t, CopyToFile(t.Context(), src, "a", m, path, nil))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(got, data), "the copy is the source")
	got, err = os.ReadFile(filepath.Join(pool, "vm1.img"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(got, other), "the renamed file is untouched")
}
