package p2v

import (
	"errors"
	"fmt"
	"io"
)

// A Range is the byte range [Off, Off+Len) of a source.
type Range struct {
	Off, Len int64
}

// End returns the offset just past the range.
func (r Range) End() int64 { return r.Off + r.Len }

// fsUsage is what a file-system parser learns from the on-disk structures of
// one file system, without mounting it.
type fsUsage struct {
	// Type names the file system: "ext2", "ext3", "ext4", "ntfs", "fat12",
	// "fat16", "fat32".
	Type string
	// BlockSize is the allocation unit in bytes (block or cluster).
	BlockSize int64
	// Free lists the byte ranges, relative to the start of the file system,
	// that the file system's allocation bitmap (or FAT) marks free and that
	// hold no file-system structure. Sorted, non-overlapping, merged, each a
	// whole number of 512-byte sectors. Everything not listed is copied.
	Free []Range
	// Stale, when not empty, says why the map may lag behind the file
	// system: it is in use or was not shut down cleanly (a journal that
	// needs recovery, a dirty volume). Such a map is a hint for a live pass
	// and is not trusted otherwise.
	Stale string
}

// A fsParser reads the file system that starts at offset 0 of r and is size
// bytes long. It returns an error wrapping errNotFS when the signature of its
// file system is absent, and a *FSError when the signature is present but the
// structures are inconsistent. It never panics, whatever r holds, and its
// memory use is bounded by size, not by counts read from r.
type fsParser func(r io.ReaderAt, size int64) (*fsUsage, error)

// errNotFS says a parser found no signature of its file system.
var errNotFS = errors.New("p2v: not this file system")

// An FSError reports a file system whose signature was found but whose
// structures are damaged or inconsistent, so its allocation map cannot be
// trusted. Capture then copies the file system's every non-zero block.
type FSError struct {
	FS     string // "ext4", "ntfs", "fat32", ...
	Off    int64  // byte offset of the damaged structure in the source (parsers give it relative to the file system; Analyze rebases it)
	Reason string
}

func (e *FSError) Error() string {
	return fmt.Sprintf("p2v: damaged %s file system structure at byte %d: %s", e.FS, e.Off, e.Reason)
}
