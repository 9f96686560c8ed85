package library

import (
	"context"
	"io"
	"iter"
	"time"
)

// A Share is a place that holds library files: a directory on a file
// system (DirShare) or a bucket prefix in an S3-compatible object store
// (package library/s3share). Names are slash-separated paths relative to
// the share's root, checked by CheckName: no "..", no absolute paths, no
// empty elements.
//
// Every method fails with a *ShareError wrapping one of the package's
// errors (ErrNotFound, ErrExist, ErrInvalidName, ErrOffline, ErrPermission,
// ErrNoSpace) and, where there is one, the backend's own error. A Share is
// safe for concurrent use. Retrying transient failures is the backend's
// job, bounded by ctx; callers do not retry.
type Share interface {
	// Name identifies the share in the library (unique within it).
	Name() string
	// Site is the location label used by Nearest.
	Site() string

	// List yields every file of the share, in no particular order. It
	// does not yield the hidden names the share keeps for itself (those
	// whose last element starts with ".vmmkit"), nor uploads in progress.
	// A part of the share it cannot read (a folder without permission) is
	// yielded as an error and the listing goes on; after an error wrapping
	// ErrOffline, or ctx's, it ends.
	List(ctx context.Context) iter.Seq2[FileInfo, error]
	// Stat describes one file.
	Stat(ctx context.Context, name string) (FileInfo, error)
	// Open opens a file for random-access reads.
	Open(ctx context.Context, name string) (File, error)

	// Create starts, or resumes, a resumable write of a file of exactly
	// size bytes in parts of partSize bytes (the last may be shorter).
	// An upload for the same name, size and partSize that was cut off
	// (crash, cancel, lost connection) is resumed: its Parts are kept.
	// Nothing is visible under name until Commit. A backend that can lock
	// (DirShare) fails a second Create of an upload that is open with
	// ErrBusy; one that cannot (S3) documents it.
	Create(ctx context.Context, name string, size, partSize int64) (Upload, error)
	// Rename moves a file; it fails with ErrExist if newName exists.
	Rename(ctx context.Context, oldName, newName string) error
	// Remove deletes a file.
	Remove(ctx context.Context, name string) error
}

// FileInfo describes a file of a share.
type FileInfo struct {
	Name    string    // slash-separated, relative to the share
	Size    int64     // bytes
	ModTime time.Time // last modification
	// Version changes whenever the content may have changed: an inode
	// change time and size for a directory, the ETag for S3. Refresh
	// reuses what it knew of a file while Size, ModTime and Version stay.
	Version string
}

// A File is an open file of a share.
type File interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// An Upload is a resumable write of one file, in numbered parts of the
// size given to Create: part n covers bytes [n*partSize, min((n+1)*partSize,
// size)). Parts may be written in any order and concurrently. Nothing is
// visible under the file's name until Commit, which makes it appear whole
// (atomically, for readers of the share) or fails and changes nothing.
type Upload interface {
	// Parts reports the parts already stored, with the sum given when each
	// was written; after a resume these are the parts that survived.
	Parts(ctx context.Context) (map[int]Part, error)
	// WritePart stores part n (len(p) must be the part's size) and records
	// sum with it. Writing a part again replaces it. When WritePart
	// returns nil the part survives a crash of the process; one torn by a
	// power loss is no longer among Parts after the resume.
	WritePart(ctx context.Context, n int, p []byte, sum []byte) error
	// Commit makes the file appear under its name once every part is
	// stored. It fails with ErrExist if the name is taken (the upload is
	// then kept, so that the caller can remove the other file and retry).
	Commit(ctx context.Context) error
	// Abort discards the upload and its parts.
	Abort(ctx context.Context) error
	// Close releases what the Upload holds (open files, the lock that
	// keeps a second writer out) and keeps the upload for a later Create
	// to resume. After Commit or Abort it does nothing. Every Upload is
	// ended by one of Commit, Abort or Close.
	Close() error
}

// Part describes a stored part of an Upload.
type Part struct {
	Size int64
	Sum  []byte // as given to WritePart
}
