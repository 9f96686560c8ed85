package store

import (
	"errors"
	"strings"
)

// The errors an *OpError wraps; branch with errors.Is.
var (
	// ErrNotFound: no record with that ID (or no job to claim).
	ErrNotFound = errors.New("not found")
	// ErrExists: a record with that ID exists, or a VM of that name
	// exists in the host group.
	ErrExists = errors.New("already exists")
	// ErrConflict: the record changed since it was read (stale Version),
	// the job is held by another owner, or a record still refers to the
	// one being deleted or a referenced record is missing.
	ErrConflict = errors.New("conflict")
	// ErrQuota: CreateVMWithinQuota would take the owner past the limit.
	ErrQuota = errors.New("quota exceeded")
	// ErrInvalid: a required field is missing.
	ErrInvalid = errors.New("invalid record")
	// ErrReadOnly: the store cannot write (read-only file, file system or
	// server, or the disk is full).
	ErrReadOnly = errors.New("store is read-only or full")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store closed")
)

// An OpError is how a Store fails: the operation, the record it was about,
// and why. A cancelled or expired ctx gives an OpError wrapping ctx.Err().
type OpError struct {
	Op  string // "create vm", "claim job", ...
	ID  string // record ID or name, when the operation is about one
	Err error
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString("store: ")
	b.WriteString(e.Op)
	if e.ID != "" {
		b.WriteString(" ")
		b.WriteString(e.ID)
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("unknown error")
	}
	return b.String()
}

func (e *OpError) Unwrap() error { return e.Err }
