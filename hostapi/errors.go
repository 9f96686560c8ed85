package hostapi

import (
	"errors"
	"strings"
)

// The errors a Driver's *OpError wraps; branch with errors.Is.
var (
	// ErrNotFound: no VM, disk, pool or checkpoint of that name or ID.
	ErrNotFound = errors.New("not found")
	// ErrExists: a VM, disk or checkpoint of that name exists already.
	ErrExists = errors.New("already exists")
	// ErrInvalidState: the VM is not in a state the operation applies to
	// (start a running VM, delete a running VM, pause a stopped one).
	ErrInvalidState = errors.New("invalid state for the operation")
	// ErrUnsupported: the driver or host cannot do it (see Supports).
	ErrUnsupported = errors.New("not supported")
	// ErrInvalidSpec: the spec is wrong or the hypervisor refused it; the
	// OpError's Err chain keeps the hypervisor's message.
	ErrInvalidSpec = errors.New("invalid spec")
	// ErrCapacity: the host lacks the memory, CPU or storage.
	ErrCapacity = errors.New("not enough capacity")
	// ErrHostUnreachable: the host does not answer (connection refused,
	// timed out, or lost mid-operation).
	ErrHostUnreachable = errors.New("host unreachable")
	// ErrClosed: the Driver was closed.
	ErrClosed = errors.New("driver closed")
)

// An OpError is how a Driver fails: the operation, the host and VM it was
// about, and why. It has the shape of *fs.PathError.
type OpError struct {
	Op   string // "start", "migrate", "create disk", ...
	Host string // HostInfo.Name or the connection URI
	VM   string // VM name or ID, when the operation is about one
	Err  error
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.VM != "" {
		b.WriteString(" VM ")
		b.WriteString(e.VM)
	}
	if e.Host != "" {
		b.WriteString(" on ")
		b.WriteString(e.Host)
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

// NewOpError returns an *OpError; err is kept as the chain (wrap a
// hypervisor error with one of this package's errors using
// fmt.Errorf("%w: %w", hostapi.ErrInvalidSpec, hvErr)).
func NewOpError(op, host, vm string, err error) *OpError {
	return &OpError{Op: op, Host: host, VM: vm, Err: err}
}
