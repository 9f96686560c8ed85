package vhd

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrFormat means the data is not a valid VHD or VHDX image.
	ErrFormat = errors.New("vhd: not a valid VHD or VHDX image")
	// ErrChecksum means a structure's checksum does not match its content.
	ErrChecksum = errors.New("vhd: checksum mismatch")
	// ErrUnsupported means the image uses a feature or version this package
	// does not implement.
	ErrUnsupported = errors.New("vhd: unsupported feature")
	// ErrReadOnly is returned by WriteAt on a disk that was not opened for
	// writing.
	ErrReadOnly = errors.New("vhd: disk is read-only")
	// ErrClosed is returned by operations on a closed disk.
	ErrClosed = errors.New("vhd: disk is closed")
	// ErrOutOfRange is returned by WriteAt for bytes past the end of the
	// disk, and by Create for a size the format cannot hold.
	ErrOutOfRange = errors.New("vhd: offset or size out of range")
	// ErrParent means the parent of a differencing disk could not be found
	// or is not the image the child was made from.
	ErrParent = errors.New("vhd: parent disk not found or does not match")
)

// A FormatError reports where an image is malformed.
type FormatError struct {
	Offset int64  // byte offset of the bad structure
	What   string // "footer", "BAT entry 17", "dynamic header"
	Err    error  // ErrFormat, ErrChecksum or ErrUnsupported
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("vhd: %s at %#x: %v", e.What, e.Offset, trimPrefix(e.Err))
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(off int64, what string, err error) error {
	return &FormatError{Offset: off, What: what, Err: err}
}

// detail wraps a sentinel error with a detail message, keeping it reachable
// through errors.Is.
func detail(sentinel error, format string, args ...any) error {
	return &detailError{msg: fmt.Sprintf(format, args...), err: sentinel}
}

type detailError struct {
	msg string
	err error
}

func (e *detailError) Error() string { return e.msg + ": " + trimPrefix(e.err) }
func (e *detailError) Unwrap() error { return e.err }

func trimPrefix(err error) string {
	return strings.TrimPrefix(err.Error(), "vhd: ")
}

// A ParentError reports that a differencing disk's parent could not be
// opened. Tried lists every path that was attempted, with why it failed.
type ParentError struct {
	Child      string      // name of the differencing image
	ParentUUID UUID        // the parent's identifier recorded in the child
	Tried      []ParentTry // each candidate path, in the order tried
	Err        error       // ErrParent, or the error that stopped the search
}

// A ParentTry is one candidate location of a parent image.
type ParentTry struct {
	Path string // path as passed to the opener
	From string // locator it came from: "W2ru", "W2ku", "MacX", "name"
	Err  error  // why it was not used
}

func (e *ParentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vhd: parent %s of %s: %s", e.ParentUUID, e.Child, trimPrefix(e.Err))
	if len(e.Tried) == 0 {
		b.WriteString(" (no usable parent locator)")
	}
	for i, t := range e.Tried {
		if i == 0 {
			b.WriteString("; tried ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s): %v", t.Path, t.From, t.Err)
	}
	return b.String()
}

func (e *ParentError) Unwrap() error { return e.Err }
