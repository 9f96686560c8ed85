package library

import (
	"errors"
	"path"
	"strconv"
	"strings"
)

// The errors a *ShareError wraps; branch with errors.Is.
var (
	// ErrNotFound: no file, object or share of that name.
	ErrNotFound = errors.New("not found")
	// ErrExist: the name is taken.
	ErrExist = errors.New("already exists")
	// ErrInvalidName: the name is not a clean relative path (see CheckName).
	ErrInvalidName = errors.New("invalid name")
	// ErrOffline: the share does not answer (directory gone or unmounted,
	// object store unreachable).
	ErrOffline = errors.New("share offline")
	// ErrPermission: the share refused access.
	ErrPermission = errors.New("permission denied")
	// ErrNoSpace: the share is full or over quota.
	ErrNoSpace = errors.New("no space left")
	// ErrBusy: another writer holds the upload.
	ErrBusy = errors.New("in use by another writer")
	// ErrCorrupt: content does not match its recorded hash, or a file is
	// not what its name says (a truncated ISO, a VHD with a bad footer).
	ErrCorrupt = errors.New("content corrupt")
)

// A ShareError is how a share operation fails: what was done, on which
// share and name, and why. It has the shape of *fs.PathError.
type ShareError struct {
	Op    string // "list", "stat", "open", "read", "create", "write", "commit", "rename", "remove"
	Share string
	Name  string
	Err   error
}

func (e *ShareError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	b.WriteString(" ")
	b.WriteString(e.Share)
	if e.Name != "" {
		if e.Share != "" {
			b.WriteString(":")
		}
		b.WriteString(strconv.Quote(e.Name))
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ShareError) Unwrap() error { return e.Err }

// CheckName reports whether name is a valid file name within a share: a
// non-empty, slash-separated relative path in clean form, with no "." or
// ".." element, no backslash, no NUL, and no element starting with
// ".vmmkit" (reserved for the share's own bookkeeping). The error wraps
// ErrInvalidName.
func CheckName(name string) error {
	bad := func(why string) error {
		return &ShareError{Op: "check name", Name: name, Err: errors.Join(ErrInvalidName, errors.New(why))}
	}
	switch {
	case name == "":
		return bad("empty")
	case strings.ContainsAny(name, "\\\x00"):
		return bad("contains a backslash or NUL")
	case path.IsAbs(name):
		return bad("absolute")
	case path.Clean(name) != name:
		return bad("not in clean form")
	}
	for el := range strings.SplitSeq(name, "/") {
		if el == "." || el == ".." {
			return bad("has a . or .. element")
		}
		if strings.HasPrefix(el, ".vmmkit") {
			return bad("uses the reserved prefix .vmmkit")
		}
	}
	return nil
}
