package library

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/zeebo/xxh3"
	"golang.org/x/sys/unix"
)

// uploadsDir holds a DirShare's uploads in progress, hidden from List.
const uploadsDir = ".vmmkit-uploads"

// A DirShare is a Share on a directory of a file system, local or a
// network mount. All access goes through an os.Root, so no name (nor a
// symbolic link inside the share) reaches outside the directory.
//
// Uploads in progress live in the hidden folder .vmmkit-uploads of the
// share: the file being written and a journal of its stored parts. A part
// is journaled after its bytes are written, with a checksum of its own
// that Create verifies when it resumes an upload, so that a part torn by a
// crash or a power loss is written again rather than trusted. Commit syncs
// the file and links it under its name, which fails if the name exists.
type DirShare struct {
	name, site, dir string
	root            *os.Root
	ident           fileIdent
}

type fileIdent struct{ dev, ino uint64 }

func identOf(fi fs.FileInfo) fileIdent {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileIdent{uint64(st.Dev), uint64(st.Ino)}
	}
	return fileIdent{}
}

// NewDirShare opens the directory dir as a share. The directory must
// exist.
func NewDirShare(name, site, dir string) (*DirShare, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, &ShareError{Op: "open share", Share: name, Err: errors.Join(ErrOffline, err)}
	}
	fi, err := root.Stat(".")
	if err != nil {
		root.Close()
		return nil, &ShareError{Op: "open share", Share: name, Err: errors.Join(ErrOffline, err)}
	}
	return &DirShare{name: name, site: site, dir: dir, root: root, ident: identOf(fi)}, nil
}

// Close releases the directory.
func (d *DirShare) Close() error { return d.root.Close() }

func (d *DirShare) Name() string { return d.name }
func (d *DirShare) Site() string { return d.site }

// Dir returns the share's directory.
func (d *DirShare) Dir() string { return d.dir }

// fail wraps err for op on name with the package error it stands for.
func (d *DirShare) fail(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var se *ShareError
	if errors.As(err, &se) {
		if se.Share == "" && se.Op == "check name" {
			// CheckName's error: say what was being done, and where.
			return &ShareError{Op: op, Share: d.name, Name: se.Name, Err: se.Err}
		}
		return err
	}
	kind := d.classify(err)
	if kind != nil && !errors.Is(err, kind) {
		err = errors.Join(kind, err)
	}
	return &ShareError{Op: op, Share: d.name, Name: name, Err: err}
}

// online fails with ErrOffline when the share's directory is no longer the
// one NewDirShare opened: removed, renamed, or unmounted (which shows the
// empty mount point), so that a share that went away is never mistaken for
// an empty one.
func (d *DirShare) online(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := os.Stat(d.dir)
	if err != nil {
		return errors.Join(ErrOffline, err)
	}
	if identOf(fi) != d.ident {
		return fmt.Errorf("%w: %s is no longer the directory the share opened", ErrOffline, d.dir)
	}
	return nil
}

func (d *DirShare) classify(err error) error {
	// The directory itself gone, replaced or unreadable: the share is
	// offline, whatever the operation saw.
	if fi, serr := os.Stat(d.dir); serr != nil || identOf(fi) != d.ident {
		return ErrOffline
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return ErrNotFound
	case errors.Is(err, fs.ErrExist), errors.Is(err, syscall.ENOTDIR):
		// ENOTDIR: a file stands where the name needs a folder.
		return ErrExist
	case errors.Is(err, fs.ErrPermission):
		return ErrPermission
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ErrNoSpace
	case errors.Is(err, syscall.EIO), errors.Is(err, syscall.ENOTCONN), errors.Is(err, syscall.ESTALE),
		errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ETIMEDOUT):
		return ErrOffline
	}
	return nil
}

func (d *DirShare) info(name string, fi fs.FileInfo) FileInfo {
	v := ""
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		v = fmt.Sprintf("%d.%d:%d", st.Ctim.Sec, st.Ctim.Nsec, st.Ino)
	}
	return FileInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime(), Version: v}
}

func hidden(el string) bool { return strings.HasPrefix(el, ".vmmkit") }

// List yields the share's regular files; symbolic links and the share's
// hidden bookkeeping are skipped. A folder it cannot read is yielded as an
// error and skipped, and the listing goes on.
func (d *DirShare) List(ctx context.Context) iter.Seq2[FileInfo, error] {
	return func(yield func(FileInfo, error) bool) {
		if err := d.online(ctx); err != nil {
			yield(FileInfo{}, d.fail("list", "", err))
			return
		}
		err := fs.WalkDir(d.root.FS(), ".", func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if p == "." {
					return err
				}
				if errors.Is(err, fs.ErrNotExist) {
					return nil // removed while listing
				}
				// A folder it cannot read: say so and go on with the rest.
				if !yield(FileInfo{}, d.fail("list", p, err)) {
					return fs.SkipAll
				}
				if e != nil && e.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if p != "." && hidden(e.Name()) {
				if e.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if !e.Type().IsRegular() {
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // removed while listing
				}
				return err
			}
			if !yield(d.info(p, fi), nil) {
				return fs.SkipAll
			}
			return nil
		})
		if err != nil {
			yield(FileInfo{}, d.fail("list", "", err))
		}
	}
}

func (d *DirShare) Stat(ctx context.Context, name string) (FileInfo, error) {
	if err := CheckName(name); err != nil {
		return FileInfo{}, d.fail("stat", name, err)
	}
	if err := d.online(ctx); err != nil {
		return FileInfo{}, d.fail("stat", name, err)
	}
	fi, err := d.root.Lstat(name)
	if err != nil {
		return FileInfo{}, d.fail("stat", name, err)
	}
	if !fi.Mode().IsRegular() {
		return FileInfo{}, d.fail("stat", name, fmt.Errorf("%w: not a regular file", ErrNotFound))
	}
	return d.info(name, fi), nil
}

type dirFile struct {
	d    *DirShare
	name string
	f    *os.File
	size int64
}

func (f *dirFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.f.ReadAt(p, off)
	if err != nil && err != io.EOF {
		err = f.d.fail("read", f.name, err)
	}
	return n, err
}
func (f *dirFile) Close() error { return f.f.Close() }
func (f *dirFile) Size() int64  { return f.size }

func (d *DirShare) Open(ctx context.Context, name string) (File, error) {
	if err := CheckName(name); err != nil {
		return nil, d.fail("open", name, err)
	}
	if err := d.online(ctx); err != nil {
		return nil, d.fail("open", name, err)
	}
	f, err := d.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, d.fail("open", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, d.fail("open", name, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, d.fail("open", name, fmt.Errorf("%w: not a regular file", ErrNotFound))
	}
	return &dirFile{d: d, name: name, f: f, size: fi.Size()}, nil
}

func (d *DirShare) Rename(ctx context.Context, oldName, newName string) error {
	for _, n := range []string{oldName, newName} {
		if err := CheckName(n); err != nil {
			return d.fail("rename", n, err)
		}
	}
	if err := d.online(ctx); err != nil {
		return d.fail("rename", oldName, err)
	}
	if err := d.mkParent(newName); err != nil {
		return d.fail("rename", newName, err)
	}
	// A hard link fails when newName exists, so no file is replaced.
	if err := d.root.Link(oldName, newName); err != nil {
		return d.fail("rename", newName, err)
	}
	if err := d.root.Remove(oldName); err != nil {
		d.root.Remove(newName)
		return d.fail("rename", oldName, err)
	}
	return nil
}

func (d *DirShare) Remove(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return d.fail("remove", name, err)
	}
	if err := d.online(ctx); err != nil {
		return d.fail("remove", name, err)
	}
	if fi, err := d.root.Lstat(name); err != nil {
		return d.fail("remove", name, err)
	} else if fi.IsDir() {
		return d.fail("remove", name, fmt.Errorf("%w: a directory", ErrNotFound))
	}
	return d.fail("remove", name, d.root.Remove(name))
}

func (d *DirShare) mkParent(name string) error {
	if dir := path.Dir(name); dir != "." {
		return d.root.MkdirAll(dir, 0o755)
	}
	return nil
}

// Create starts or resumes the upload of name.
func (d *DirShare) Create(ctx context.Context, name string, size, partSize int64) (Upload, error) {
	if err := CheckName(name); err != nil {
		return nil, d.fail("create", name, err)
	}
	if size < 0 || partSize <= 0 {
		return nil, d.fail("create", name, fmt.Errorf("bad size %d or part size %d", size, partSize))
	}
	if err := d.online(ctx); err != nil {
		return nil, d.fail("create", name, err)
	}
	key := sha256.Sum256([]byte(name))
	dir := path.Join(uploadsDir, hex.EncodeToString(key[:12])+"-"+strconv.FormatInt(size, 10)+"-"+strconv.FormatInt(partSize, 10))
	if err := d.root.MkdirAll(dir, 0o755); err != nil {
		return nil, d.fail("create", name, err)
	}
	u := &dirUpload{d: d, name: name, dir: dir, size: size, partSize: partSize, parts: map[int]dirPart{}}
	f, err := d.openUpload(dir)
	if err != nil {
		return nil, d.fail("create", name, err)
	}
	u.f = f
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, d.fail("create", name, err)
	}
	if err := u.recover(); err != nil {
		f.Close()
		return nil, d.fail("create", name, err)
	}
	j, err := d.root.OpenFile(path.Join(dir, "journal"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		f.Close()
		return nil, d.fail("create", name, err)
	}
	u.journal = j
	return u, nil
}

// openUpload opens and locks the data file of the upload in dir. A data
// file that has more than one link was published by a Commit that was cut
// off before it removed the upload: it is the visible file now, so the
// upload is dropped and started afresh rather than written into.
func (d *DirShare) openUpload(dir string) (*os.File, error) {
	return openUnpublished(
		func() (*os.File, error) {
			return d.root.OpenFile(path.Join(dir, "data"), os.O_RDWR|os.O_CREATE, 0o644)
		},
		func() error {
			if err := d.root.RemoveAll(dir); err != nil {
				return err
			}
			return d.root.MkdirAll(dir, 0o755)
		})
}

// openUnpublished opens the file of a resumable write with open and locks
// it (ErrBusy when another writer holds it). A file with more than one link
// was published by a commit cut off before it removed its temporary name,
// and may since have been renamed: it is someone's file now, so it is let
// go with discard and the file opened afresh, once.
func openUnpublished(open func() (*os.File, error), discard func() error) (*os.File, error) {
	for range 2 {
		f, err := open()
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, ErrBusy
			}
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Nlink <= 1 {
			return f, nil
		}
		f.Close()
		if err := discard(); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("the file is still linked elsewhere")
}

type dirPart struct {
	Part
	check uint64 // xxh3 of the bytes, the share's own check
}

type dirUpload struct {
	d              *DirShare
	name, dir      string
	size, partSize int64
	f, journal     *os.File

	mu       sync.Mutex
	parts    map[int]dirPart
	done     bool
	unsynced int64 // bytes written since the last background sync began
	flushing atomic.Bool
	flusher  sync.WaitGroup
}

func (u *dirUpload) numParts() int { return NumChunks(u.size, u.partSize) }

func (u *dirUpload) partLen(n int) int64 {
	return min(u.partSize, u.size-int64(n)*u.partSize)
}

// recover reads the journal of a resumed upload and keeps the parts whose
// bytes still match their check.
func (u *dirUpload) recover() error {
	j, err := u.d.root.Open(path.Join(u.dir, "journal"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer j.Close()
	sc := bufio.NewScanner(j)
	for sc.Scan() {
		// "n check sum\n"; a torn last line does not parse and is ignored.
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		n, err1 := strconv.Atoi(f[0])
		check, err2 := strconv.ParseUint(f[1], 16, 64)
		sum, err3 := hex.DecodeString(f[2])
		if err1 != nil || err2 != nil || err3 != nil || n < 0 || n >= u.numParts() {
			continue
		}
		u.parts[n] = dirPart{Part{Size: u.partLen(n), Sum: sum}, check}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	buf := make([]byte, u.partSize)
	for n, p := range u.parts {
		b := buf[:p.Size]
		if _, err := u.f.ReadAt(b, int64(n)*u.partSize); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if xxh3.Hash(b) != p.check {
			delete(u.parts, n)
		}
	}
	return nil
}

func (u *dirUpload) Parts(ctx context.Context) (map[int]Part, error) {
	if err := ctx.Err(); err != nil {
		return nil, u.d.fail("parts", u.name, err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[int]Part, len(u.parts))
	for n, p := range u.parts {
		out[n] = p.Part
	}
	return out, nil
}

func (u *dirUpload) WritePart(ctx context.Context, n int, p []byte, sum []byte) error {
	if n < 0 || n >= u.numParts() || int64(len(p)) != u.partLen(n) {
		return u.d.fail("write", u.name, fmt.Errorf("part %d of %d bytes does not fit an upload of %d bytes in parts of %d", n, len(p), u.size, u.partSize))
	}
	// The file is open, so writes would go on while the share is away;
	// a share that went offline is reported as such.
	if err := u.d.online(ctx); err != nil {
		return u.d.fail("write", u.name, err)
	}
	off := int64(n) * u.partSize
	if _, err := u.f.WriteAt(p, off); err != nil {
		return u.d.fail("write", u.name, err)
	}
	check := xxh3.Hash(p)
	line := fmt.Sprintf("%d %x %x\n", n, check, sum)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return u.d.fail("write", u.name, errors.New("upload already committed, aborted or closed"))
	}
	if _, err := u.journal.WriteString(line); err != nil {
		return u.d.fail("write", u.name, err)
	}
	u.parts[n] = dirPart{Part{Size: int64(len(p)), Sum: append([]byte(nil), sum...)}, check}
	// Sync in the background every dirFlushEvery bytes, so that the disk
	// writes while the upload goes on and the sync in Commit has little
	// left to wait for.
	u.unsynced += int64(len(p))
	// (flusher.Go is called with mu held only, and Commit, Close and
	// cleanup wait for it with mu held, so no sync outlives the file.)
	if u.unsynced >= dirFlushEvery && u.flushing.CompareAndSwap(false, true) {
		u.unsynced = 0
		u.flusher.Go(func() {
			u.f.Sync() // an error comes back from Commit's sync
			u.flushing.Store(false)
		})
	}
	return nil
}

// dirFlushEvery is how many bytes an upload writes between background syncs.
const dirFlushEvery = 64 << 20

func (u *dirUpload) Commit(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return u.d.fail("commit", u.name, errors.New("upload already committed, aborted or closed"))
	}
	if err := u.d.online(ctx); err != nil {
		return u.d.fail("commit", u.name, err)
	}
	if len(u.parts) != u.numParts() {
		return u.d.fail("commit", u.name, fmt.Errorf("%d of %d parts stored", len(u.parts), u.numParts()))
	}
	u.flusher.Wait()
	if err := u.f.Sync(); err != nil {
		return u.d.fail("commit", u.name, err)
	}
	if err := u.d.mkParent(u.name); err != nil {
		return u.d.fail("commit", u.name, err)
	}
	if err := u.d.root.Link(path.Join(u.dir, "data"), u.name); err != nil {
		return u.d.fail("commit", u.name, err)
	}
	syncDir(u.d.root, path.Dir(u.name))
	u.done = true
	u.cleanup()
	return nil
}

func (u *dirUpload) Abort(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return u.d.fail("abort", u.name, err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil
	}
	u.done = true
	return u.d.fail("abort", u.name, u.cleanup())
}

func (u *dirUpload) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil
	}
	u.done = true
	u.flusher.Wait()
	return errors.Join(u.f.Close(), u.journal.Close())
}

// cleanup closes the upload's files and removes it; mu is held.
func (u *dirUpload) cleanup() error {
	u.flusher.Wait()
	// Remove before closing: while the data file is locked no other
	// Create can open it, and once its name is gone none can find it. (The
	// other order lets a Create lock the committed file in between, and
	// write into it.)
	err := u.d.root.RemoveAll(u.dir)
	u.f.Close()
	u.journal.Close()
	return err
}

func syncDir(root *os.Root, dir string) {
	if f, err := root.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}
