package library

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// CopyOptions tune Copy and CopyToFile.
type CopyOptions struct {
	// Workers copy chunks in parallel, each reading, verifying and writing
	// one chunk at a time, so that memory stays at Workers × the
	// manifest's chunk size; 0 means 4.
	Workers int
	// Progress, when set, is called with the bytes in place at the
	// destination (parts kept from an interrupted copy count as done at
	// the start), from one goroutine at a time.
	Progress func(done, total int64)
}

const defaultWorkers = 4

// Copy copies src:srcName, whose content m describes, to dst:dstName in
// chunks of m.ChunkSize, each chunk read from src checked against m before
// it is written (a mismatch fails with an error wrapping ErrCorrupt naming
// the chunk and share, and nothing appears at dstName), through
// dst.Create/WritePart/Commit, so that an interrupted Copy (cancel, crash,
// lost share) restarted with the same arguments writes only the chunks not
// yet stored (parts whose recorded sum equals m's chunk sum are kept;
// others are rewritten) and dstName appears atomically, whole.
//
// Copy fails with ErrExist if dstName exists, and with ErrCorrupt before
// copying anything if the source's size is not m.Size. When it fails
// otherwise (ctx done, ErrNoSpace, ErrOffline), the upload is kept so that
// a later Copy with the same arguments resumes it; a caller that gives up
// discards it with Abort on the Upload that dst.Create(ctx, dstName,
// m.Size, m.ChunkSize) returns. A nil opts means defaults.
func Copy(ctx context.Context, src Share, srcName string, m *Manifest, dst Share, dstName string, opts *CopyOptions) error {
	if err := checkManifest(m); err != nil {
		return err
	}
	if _, err := dst.Stat(ctx, dstName); err == nil {
		return &ShareError{Op: "copy", Share: dst.Name(), Name: dstName, Err: ErrExist}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	f, err := openSource(ctx, src, srcName, m)
	if err != nil {
		return err
	}
	defer f.Close()
	u, err := dst.Create(ctx, dstName, m.Size, m.ChunkSize)
	if err != nil {
		return err
	}
	defer u.Close() // after Commit it does nothing; otherwise the upload is kept for a resume
	parts, err := u.Parts(ctx)
	if err != nil {
		return err
	}
	var todo []int
	var done int64
	for n := range m.Chunks {
		_, l := m.ChunkRange(n)
		if p, ok := parts[n]; ok && p.Size == l && bytes.Equal(p.Sum, m.Chunks[n]) {
			done += l
			continue
		}
		todo = append(todo, n)
	}
	c := &chunkCopy{m: m, src: f, share: src, srcShare: src.Name(), srcName: srcName, opts: opts,
		write: func(ctx context.Context, n int, p []byte) error {
			return u.WritePart(ctx, n, p, m.Chunks[n])
		},
	}
	if err := c.run(ctx, todo, done); err != nil {
		return err
	}
	return u.Commit(ctx)
}

// CopyToFile copies to a local file path (a host's pool directory) the same
// way: chunks verified, written to a temporary name beside path plus a
// small journal so that a restart resumes, then fsync and rename
// (no-replace: fails with ErrExist if path exists) so readers never see
// half a file.
//
// The temporary file is ".vmmkit-partial-NAME" and the journal
// ".vmmkit-journal-NAME" in path's directory, for a path ending in NAME:
// names a DirShare on that directory hides.
// The journal names the manifest and lists the chunks written; a restart
// checks each listed chunk against m again (so that a chunk torn by a power
// loss is rewritten, not trusted) and writes the others. Two copies to the
// same path at once are refused: the temporary file is locked while a copy
// runs. Errors wrap ErrExist, ErrNoSpace, ErrPermission or ErrCorrupt where
// one applies. On failure the temporary file and journal are kept for a
// resume; a caller that gives up removes them. A nil opts means defaults.
func CopyToFile(ctx context.Context, src Share, srcName string, m *Manifest, path string, opts *CopyOptions) error {
	if err := checkManifest(m); err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if base == "" {
		return fmt.Errorf("copy to %q: not a file name", path)
	}
	t := &tempFile{
		path:      path,
		tmp:       filepath.Join(dir, ".vmmkit-partial-"+base),
		journal:   filepath.Join(dir, ".vmmkit-journal-"+base),
		header:    fmt.Sprintf("vmmkit-copy 1 %s %d %d\n", m.ID(), m.Size, m.ChunkSize),
		chunkSize: m.ChunkSize,
	}
	if err := t.checkFree(); err != nil {
		return err
	}
	f, err := openSource(ctx, src, srcName, m)
	if err != nil {
		return err
	}
	defer f.Close()
	done, err := t.open(m)
	if err != nil {
		return err
	}
	defer t.close()
	c := &chunkCopy{m: m, src: f, share: src, srcShare: src.Name(), srcName: srcName, opts: opts}
	kept, err := t.check(ctx, m, done, c.workers())
	if err != nil {
		return err
	}
	if err := t.startJournal(kept); err != nil {
		return err
	}
	var have int64
	var todo []int
	for n := range m.Chunks {
		if _, l := m.ChunkRange(n); kept[n] {
			have += l
		} else {
			todo = append(todo, n)
		}
	}
	c.write = t.writeChunk
	if err := c.run(ctx, todo, have); err != nil {
		return err
	}
	return t.commit()
}

// checkManifest rejects a manifest whose fields do not agree.
func checkManifest(m *Manifest) error {
	switch {
	case m == nil:
		return errors.New("library: nil manifest")
	case m.Size < 0 || m.ChunkSize <= 0:
		return fmt.Errorf("library: manifest of %d bytes in chunks of %d", m.Size, m.ChunkSize)
	case len(m.Chunks) != NumChunks(m.Size, m.ChunkSize):
		return fmt.Errorf("library: manifest of %d bytes in chunks of %d has %d chunk sums, want %d", m.Size, m.ChunkSize, len(m.Chunks), NumChunks(m.Size, m.ChunkSize))
	}
	if _, err := newHash(m.Algorithm); err != nil {
		return err
	}
	return nil
}

// openSource opens src:name and checks that its size is m's.
func openSource(ctx context.Context, src Share, name string, m *Manifest) (File, error) {
	f, err := src.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	if f.Size() != m.Size {
		f.Close()
		return nil, &ShareError{Op: "read", Share: src.Name(), Name: name,
			Err: fmt.Errorf("%d bytes, the manifest says %d: %w", f.Size(), m.Size, ErrCorrupt)}
	}
	return f, nil
}

// bufPools holds a *sync.Pool of chunk buffers per chunk size.
var bufPools sync.Map

// getBuf returns a buffer for the chunks of m: from the pool of its
// chunk size, or a buffer of its own for content of a single short chunk
// (profiles, scripts), so that the pools stay few.
func getBuf(m *Manifest) *[]byte {
	if m.Size < m.ChunkSize {
		b := make([]byte, m.Size)
		return &b
	}
	size := m.ChunkSize
	p, _ := bufPools.LoadOrStore(size, &sync.Pool{New: func() any {
		b := make([]byte, size)
		return &b
	}})
	return p.(*sync.Pool).Get().(*[]byte)
}

func putBuf(m *Manifest, b *[]byte) {
	if p, ok := bufPools.Load(m.ChunkSize); ok && m.Size >= m.ChunkSize {
		p.(*sync.Pool).Put(b)
	}
}

// A chunkCopy reads chunks of m from src, checks each against m and hands
// it to write, in parallel.
type chunkCopy struct {
	m                 *Manifest
	src               File
	share             Share // src's share; nil for a local file
	srcShare, srcName string
	opts              *CopyOptions
	write             func(ctx context.Context, n int, p []byte) error
	// lenient skips chunks that do not match instead of failing.
	lenient bool
}

func (c *chunkCopy) workers() int {
	if c.opts != nil && c.opts.Workers > 0 {
		return c.opts.Workers
	}
	return defaultWorkers
}

// run copies the chunks todo; done is the bytes already in place.
func (c *chunkCopy) run(ctx context.Context, todo []int, done int64) error {
	var progress func(done, total int64)
	if c.opts != nil {
		progress = c.opts.Progress
	}
	var mu sync.Mutex // serializes progress and guards firstErr
	if progress != nil {
		progress(done, c.m.Size)
	}
	if len(todo) == 0 {
		return ctx.Err()
	}
	zero := c.zeroSum()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	for range min(c.workers(), len(todo)) {
		wg.Go(func() {
			buf := getBuf(c.m)
			defer putBuf(c.m, buf)
			h, _ := newHash(c.m.Algorithm)
			var sum []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= len(todo) || ctx.Err() != nil {
					return
				}
				n := todo[i]
				off, l := c.m.ChunkRange(n)
				p := (*buf)[:l]
				if err := c.read(n, p, off); err != nil {
					fail(err)
					return
				}
				// An empty chunk (common in disk images) is checked at
				// memory speed: only zeros have its sum.
				ok := zero != nil && l == c.m.ChunkSize && bytes.Equal(c.m.Chunks[n], zero) && allZero(p)
				if !ok {
					h.Reset()
					h.Write(p)
					sum = h.Sum(sum[:0])
					ok = bytes.Equal(sum, c.m.Chunks[n])
				}
				if !ok {
					if c.lenient {
						continue
					}
					fail(&ShareError{Op: "read", Share: c.srcShare, Name: c.srcName,
						Err: fmt.Errorf("chunk %d (bytes %d-%d): sum %x, want %x: %w", n, off, off+l-1, sum, c.m.Chunks[n], ErrCorrupt)})
					return
				}
				if err := c.write(ctx, n, p); err != nil {
					fail(err)
					return
				}
				if progress != nil {
					mu.Lock()
					done += l
					progress(done, c.m.Size)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// zeroSum returns the sum of an empty chunk of m's chunk size, or nil if
// m has no chunk that long.
func (c *chunkCopy) zeroSum() []byte {
	if c.m.Size < c.m.ChunkSize {
		return nil
	}
	key := zeroKey{c.m.Algorithm, c.m.ChunkSize}
	if sum, ok := zeroSumCache.Load(key); ok {
		return sum.([]byte)
	}
	h, _ := newHash(c.m.Algorithm)
	for left := c.m.ChunkSize; left > 0; left -= int64(len(zeroBlock)) {
		h.Write(zeroBlock[:min(left, int64(len(zeroBlock)))])
	}
	sum, _ := zeroSumCache.LoadOrStore(key, h.Sum(nil))
	return sum.([]byte)
}

type zeroKey struct {
	alg       string
	chunkSize int64
}

// zeroSumCache holds the sum of an empty chunk per algorithm and chunk
// size.
var zeroSumCache sync.Map

var zeroBlock = make([]byte, 64<<10)

func allZero(p []byte) bool {
	for len(p) > 0 {
		k := min(len(p), len(zeroBlock))
		if !bytes.Equal(p[:k], zeroBlock[:k]) {
			return false
		}
		p = p[k:]
	}
	return true
}

func (c *chunkCopy) read(n int, p []byte, off int64) error {
	k, err := c.src.ReadAt(p, off)
	if k == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	var se *ShareError
	if errors.As(err, &se) {
		return err
	}
	// A File's reads may fail with the system's error alone; a share that
	// went away says so when asked.
	if c.share != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, serr := c.share.Stat(ctx, c.srcName)
		cancel()
		if errors.Is(serr, ErrOffline) {
			err = errors.Join(ErrOffline, err)
		}
	}
	return &ShareError{Op: "read", Share: c.srcShare, Name: c.srcName, Err: fmt.Errorf("chunk %d at %d: %w", n, off, err)}
}

// osFile is a File on an *os.File that the caller closes.
type osFile struct {
	f    *os.File
	size int64
}

func (f *osFile) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }
func (f *osFile) Close() error                            { return nil }
func (f *osFile) Size() int64                             { return f.size }

// A tempFile is CopyToFile's temporary file and journal beside path.
type tempFile struct {
	path, tmp, journal string
	header             string
	chunkSize          int64

	f  *os.File // the temporary file, locked
	mu sync.Mutex
	j  *os.File // the journal, open for appending

	// The file is synced in the background every flushEvery bytes, so
	// that the disk writes while the copy goes on and the sync before the
	// rename has little left to wait for (a 2 GiB copy takes about a
	// quarter less time here than with one sync at the end).
	unsynced int64 // under mu
	flushing bool  // under mu
	flusher  sync.WaitGroup
}

// flushEvery is a variable for the tests.
var flushEvery int64 = 64 << 20

// fileErr wraps err from op on name with the package error it stands for.
func fileErr(path string, err error) error {
	var kind error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
	case errors.Is(err, fs.ErrExist):
		kind = ErrExist
	case errors.Is(err, fs.ErrPermission):
		kind = ErrPermission
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		kind = ErrNoSpace
	case errors.Is(err, fs.ErrNotExist):
		kind = ErrNotFound
	}
	if kind != nil {
		err = errors.Join(kind, err)
	}
	return fmt.Errorf("copy to %s: %w", path, err)
}

// checkFree fails with ErrExist if path exists, removing first what a copy
// that was cut off between linking path and removing its temporary file
// left behind.
func (t *tempFile) checkFree() error {
	fi, err := os.Lstat(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fileErr(t.path, err)
	}
	if ti, err := os.Lstat(t.tmp); err == nil && os.SameFile(fi, ti) {
		os.Remove(t.journal)
		os.Remove(t.tmp)
	}
	return fileErr(t.path, fs.ErrExist)
}

// open opens or creates the temporary file, locks it, and returns the
// chunks the journal lists as written if the journal is for m.
func (t *tempFile) open(m *Manifest) ([]int, error) {
	f, err := openUnpublished(
		func() (*os.File, error) { return os.OpenFile(t.tmp, os.O_RDWR|os.O_CREATE, 0o644) },
		func() error {
			os.Remove(t.journal)
			if err := os.Remove(t.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			return nil
		})
	if errors.Is(err, ErrBusy) {
		return nil, fmt.Errorf("copy to %s: another copy to it is running: %w", t.path, ErrBusy)
	} else if err != nil {
		return nil, fileErr(t.path, err)
	}
	t.f = f
	done := t.readJournal(m)
	if done == nil {
		// A fresh start: nothing of an earlier, different copy is kept.
		if err := f.Truncate(0); err != nil {
			t.close()
			return nil, fileErr(t.path, err)
		}
	}
	if err := f.Truncate(m.Size); err != nil {
		t.close()
		return nil, fileErr(t.path, err)
	}
	return done, nil
}

// readJournal returns the chunks the journal lists, or nil when there is
// no journal for m.
func (t *tempFile) readJournal(m *Manifest) []int {
	b, err := os.ReadFile(t.journal)
	if err != nil || !bytes.HasPrefix(b, []byte(t.header)) {
		return nil
	}
	b = b[len(t.header):]
	seen := make([]bool, len(m.Chunks))
	done := []int{}
	// Only whole lines count: a line torn by a crash has no newline.
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		n, err := strconv.Atoi(string(b[:i]))
		b = b[i+1:]
		if err != nil || n < 0 || n >= len(m.Chunks) || seen[n] {
			continue
		}
		seen[n] = true
		done = append(done, n)
	}
	return done
}

// check reads the chunks the journal listed from the temporary file and
// reports which of them match m: those are kept.
func (t *tempFile) check(ctx context.Context, m *Manifest, listed []int, workers int) ([]bool, error) {
	kept := make([]bool, len(m.Chunks))
	if len(listed) == 0 {
		return kept, nil
	}
	c := &chunkCopy{m: m, src: &osFile{t.f, m.Size}, srcName: t.tmp, opts: &CopyOptions{Workers: workers},
		lenient: true,
		write: func(_ context.Context, n int, _ []byte) error {
			kept[n] = true // each n is handed to one worker only
			return nil
		},
	}
	if err := c.run(ctx, listed, 0); err != nil {
		return nil, fmt.Errorf("copy to %s: check partial copy: %w", t.path, err)
	}
	return kept, nil
}

// startJournal writes a new journal listing the chunks kept and opens it
// for appending.
func (t *tempFile) startJournal(kept []bool) error {
	var b bytes.Buffer
	b.WriteString(t.header)
	for n, ok := range kept {
		if ok {
			fmt.Fprintf(&b, "%d\n", n)
		}
	}
	next := t.journal + ".new"
	if err := os.WriteFile(next, b.Bytes(), 0o644); err != nil {
		os.Remove(next)
		return fileErr(t.path, err)
	}
	if err := os.Rename(next, t.journal); err != nil {
		os.Remove(next)
		return fileErr(t.path, err)
	}
	j, err := os.OpenFile(t.journal, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fileErr(t.path, err)
	}
	t.j = j
	return nil
}

// writeChunk writes chunk n and then lists it in the journal.
func (t *tempFile) writeChunk(ctx context.Context, n int, p []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := t.f.WriteAt(p, int64(n)*t.chunkSize); err != nil {
		return fileErr(t.path, err)
	}
	line := strconv.AppendInt(nil, int64(n), 10)
	line = append(line, '\n')
	t.mu.Lock()
	defer t.mu.Unlock()
	// One write with O_APPEND: a crash leaves the line whole or torn,
	// never interleaved with another.
	if _, err := t.j.Write(line); err != nil {
		return fileErr(t.path, err)
	}
	t.unsynced += int64(len(p))
	if t.unsynced >= flushEvery && !t.flushing {
		t.unsynced, t.flushing = 0, true
		t.flusher.Go(func() {
			t.f.Sync() // an error comes back from commit's sync
			t.mu.Lock()
			t.flushing = false
			t.mu.Unlock()
		})
	}
	return nil
}

// commit syncs the temporary file and links it at path, which fails if
// path exists, then removes the journal and the temporary name.
func (t *tempFile) commit() error {
	t.flusher.Wait()
	if err := t.f.Sync(); err != nil {
		return fileErr(t.path, err)
	}
	if err := os.Link(t.tmp, t.path); err != nil {
		return fileErr(t.path, err)
	}
	if d, err := os.Open(filepath.Dir(t.path)); err == nil {
		d.Sync()
		d.Close()
	}
	// The journal goes first: a temporary file left without it is the
	// same file as path, which checkFree recognizes and removes.
	os.Remove(t.journal)
	os.Remove(t.tmp)
	t.close()
	return nil
}

func (t *tempFile) close() {
	t.flusher.Wait()
	if t.j != nil {
		t.j.Close()
		t.j = nil
	}
	if t.f != nil {
		t.f.Close() // releases the lock
		t.f = nil
	}
}
