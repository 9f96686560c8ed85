package s3share

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/vmmkit/vmmkit/library"
)

// hiddenKey reports whether a key (relative to the prefix) is the
// share's own bookkeeping or not a file of the library.
func hiddenKey(rel string) bool {
	for el := range strings.SplitSeq(rel, "/") {
		if strings.HasPrefix(el, ".vmmkit") {
			return true
		}
	}
	return library.CheckName(rel) != nil
}

// info describes an object. ModTime is cut to the second: a listing
// gives milliseconds, a HEAD request only seconds, and List and Stat must
// agree for Refresh to recognise an unchanged file.
func (s *Share) info(name string, oi minio.ObjectInfo) library.FileInfo {
	return library.FileInfo{Name: name, Size: oi.Size, ModTime: oi.LastModified.Truncate(time.Second), Version: oi.ETag}
}

// List yields the files under the share's prefix. A listing cut off by a
// transient failure goes on after the last key it yielded.
func (s *Share) List(ctx context.Context) iter.Seq2[library.FileInfo, error] {
	return func(yield func(library.FileInfo, error) bool) {
		after := ""
		err := s.retry(ctx, func() error {
			lctx, cancel := context.WithCancel(ctx)
			defer cancel() // ends minio-go's listing goroutine when we stop early
			opts := minio.ListObjectsOptions{Prefix: s.prefix, Recursive: true, StartAfter: after}
			for oi := range s.client.ListObjects(lctx, s.bucket, opts) {
				if oi.Err != nil {
					return oi.Err
				}
				after = oi.Key
				rel := strings.TrimPrefix(oi.Key, s.prefix)
				if strings.HasSuffix(rel, "/") || hiddenKey(rel) {
					continue
				}
				if !yield(s.info(rel, oi), nil) {
					return errStop
				}
			}
			return ctx.Err()
		})
		if err != nil && err != errStop {
			yield(library.FileInfo{}, s.fail("list", "", err))
		}
	}
}

var errStop = errors.New("stop")

func (s *Share) stat(ctx context.Context, key string) (minio.ObjectInfo, error) {
	var oi minio.ObjectInfo
	err := s.retry(ctx, func() (err error) {
		oi, err = s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
		return err
	})
	return oi, err
}

func (s *Share) Stat(ctx context.Context, name string) (library.FileInfo, error) {
	if err := library.CheckName(name); err != nil {
		return library.FileInfo{}, s.fail("stat", name, err)
	}
	oi, err := s.stat(ctx, s.key(name))
	if err != nil {
		return library.FileInfo{}, s.fail("stat", name, err)
	}
	return s.info(name, oi), nil
}

// Open opens name for range reads of the version Stat would describe now.
// The File's ReadAt retries transient failures like the share's methods,
// bounded by RetryTimeout and by Close.
func (s *Share) Open(ctx context.Context, name string) (library.File, error) {
	if err := library.CheckName(name); err != nil {
		return nil, s.fail("open", name, err)
	}
	oi, err := s.stat(ctx, s.key(name))
	if err != nil {
		return nil, s.fail("open", name, err)
	}
	fctx, cancel := context.WithCancel(context.Background())
	return &file{s: s, name: name, key: s.key(name), size: oi.Size, etag: oi.ETag, ctx: fctx, cancel: cancel}, nil
}

type file struct {
	s         *Share
	name, key string
	size      int64
	etag      string
	// ctx ends with Close, which thereby stops the retries of reads in
	// progress; it is the File's own, not a caller's.
	ctx    context.Context
	cancel context.CancelFunc
}

func (f *file) Size() int64 { return f.size }

func (f *file) Close() error {
	f.cancel()
	return nil
}

// ReadAt reads len(p) bytes at off with one ranged GET (retried when it
// fails on the way), following io.ReaderAt: io.EOF when the file ends
// before p is full.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, f.s.fail("read", f.name, fmt.Errorf("negative offset %d", off))
	}
	if off >= f.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	want := min(int64(len(p)), f.size-off)
	err := f.s.retry(f.ctx, func() error {
		opts := minio.GetObjectOptions{}
		if err := opts.SetRange(off, off+want-1); err != nil {
			return err
		}
		if err := opts.SetMatchETag(f.etag); err != nil {
			return err
		}
		body, _, _, err := f.s.core.GetObject(f.ctx, f.s.bucket, f.key, opts)
		if err != nil {
			return err
		}
		defer body.Close()
		_, err = io.ReadFull(body, p[:want])
		return err
	})
	if err != nil {
		if code(err) == "PreconditionFailed" {
			err = fmt.Errorf("%w: %s changed since it was opened: %w", library.ErrNotFound, f.name, err)
		}
		return 0, f.s.fail("read", f.name, err)
	}
	if want < int64(len(p)) {
		return int(want), io.EOF
	}
	return int(want), nil
}

// Rename copies oldName to newName on the server and removes oldName;
// see the package documentation for what is not atomic.
func (s *Share) Rename(ctx context.Context, oldName, newName string) error {
	for _, n := range []string{oldName, newName} {
		if err := library.CheckName(n); err != nil {
			return s.fail("rename", n, err)
		}
	}
	src, err := s.stat(ctx, s.key(oldName))
	if err != nil {
		return s.fail("rename", oldName, err)
	}
	if _, err := s.stat(ctx, s.key(newName)); err == nil {
		return s.fail("rename", newName, library.ErrExist)
	} else if kind, _ := classify(err); kind != library.ErrNotFound {
		return s.fail("rename", newName, err)
	}
	err = s.retry(ctx, func() error {
		_, err := s.client.ComposeObject(ctx,
			minio.CopyDestOptions{Bucket: s.bucket, Object: s.key(newName)},
			minio.CopySrcOptions{Bucket: s.bucket, Object: s.key(oldName), MatchETag: src.ETag})
		return err
	})
	if err != nil {
		if code(err) == "PreconditionFailed" {
			err = fmt.Errorf("%w: %s changed during the rename: %w", library.ErrNotFound, oldName, err)
		}
		return s.fail("rename", oldName, err)
	}
	err = s.retry(ctx, func() error {
		return s.client.RemoveObject(ctx, s.bucket, s.key(oldName), minio.RemoveObjectOptions{})
	})
	return s.fail("rename", oldName, err)
}

func (s *Share) Remove(ctx context.Context, name string) error {
	if err := library.CheckName(name); err != nil {
		return s.fail("remove", name, err)
	}
	if _, err := s.stat(ctx, s.key(name)); err != nil {
		return s.fail("remove", name, err)
	}
	err := s.retry(ctx, func() error {
		return s.client.RemoveObject(ctx, s.bucket, s.key(name), minio.RemoveObjectOptions{})
	})
	return s.fail("remove", name, err)
}
