package hostapi

import (
	"context"
	"io"
	"iter"
)

// A Driver is a connection to one virtualization host: what vmmkit does to
// a host, it does through a Driver. Drivers exist for a simulated host
// (package hostapi/sim) and for real hosts through libvirt (package
// hostapi/libvirt); a product adds its own by implementing this interface
// and passing hostapitest.Run.
//
// Every method takes a ctx first and returns when the operation is done
// (a started VM runs, a deleted VM is gone), when it fails, or when ctx is
// done; a method cut short by ctx returns ctx.Err() (wrapped) and leaves
// the host in a state Host and VM report truthfully. Errors are
// *OpError values wrapping one of this package's errors (ErrNotFound,
// ErrInvalidState, ErrUnsupported, ErrHostUnreachable, ErrExists,
// ErrInvalidSpec, ErrCapacity) or the hypervisor's own, so callers branch
// with errors.Is. A Driver is safe for concurrent use; operations on
// different VMs may run in parallel, and operations on one VM are
// serialized by the driver or refused with ErrInvalidState.
//
// Transport retries belong to the driver and happen in one place: a
// driver retries only what is idempotent (reads, lookups, reconnecting)
// with backoff bound to ctx, and never blindly repeats an operation that
// changes the host.
type Driver interface {
	// Host returns the host's facts and its capacity and use now.
	Host(ctx context.Context) (*HostInfo, error)
	// Supports reports whether the driver and its host can do c.
	Supports(c Capability) bool

	// VMs returns every VM defined on the host, in no particular order.
	VMs(ctx context.Context) ([]VMInfo, error)
	// VM returns one VM by ID or name; ErrNotFound when there is none.
	VM(ctx context.Context, id string) (*VMInfo, error)
	// CreateVM defines a VM from spec, stopped; ErrExists when a VM of
	// that name exists, ErrInvalidSpec (with the reason, the hypervisor's
	// message kept) when the spec cannot run there, ErrCapacity when
	// the host cannot hold it.
	CreateVM(ctx context.Context, spec VMSpec) (*VMInfo, error)
	// Start starts a stopped VM (or resumes a saved one); ErrInvalidState
	// when it runs already.
	Start(ctx context.Context, id string) error
	// Shutdown asks the guest to shut down and waits until it is off
	// or ctx is done (the VM may still be running then).
	Shutdown(ctx context.Context, id string) error
	// PowerOff stops the VM at once, as pulling the plug would.
	PowerOff(ctx context.Context, id string) error
	// Pause freezes a running VM in memory; Resume lets it run again.
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	// Reboot restarts the guest; the VM stays running.
	Reboot(ctx context.Context, id string) error
	// DeleteVM removes a stopped VM's definition and, unless KeepDisks,
	// the disks it created; ErrInvalidState when it runs.
	DeleteVM(ctx context.Context, id string, opts *DeleteOptions) error
	// Stats returns a running VM's use now.
	Stats(ctx context.Context, id string) (*VMStats, error)

	// CreateCheckpoint records the VM's disks (and memory when it runs and
	// the driver supports it) under name; Checkpoints lists them, oldest
	// first; RevertCheckpoint returns the VM to one; DeleteCheckpoint
	// removes one and keeps the VM as it is. ErrUnsupported without
	// Checkpoints.
	CreateCheckpoint(ctx context.Context, id, name string) (*Checkpoint, error)
	Checkpoints(ctx context.Context, id string) ([]Checkpoint, error)
	RevertCheckpoint(ctx context.Context, id, name string) error
	DeleteCheckpoint(ctx context.Context, id, name string) error

	// CreateDisk creates an empty disk, or a differencing disk over
	// spec.Parent, in a storage pool of the host.
	CreateDisk(ctx context.Context, spec DiskSpec) (*DiskInfo, error)
	// CopyImage copies an image into a pool as a new disk of the host,
	// converting it to a format the host runs when needed, and reports
	// progress. A copy that fails or is cancelled leaves nothing; one that
	// returns has made the whole disk. A caller killed mid-copy may leave
	// a partial disk, or the copy's own leftovers, under dst.Name: a caller
	// resuming such a copy deletes dst.Name with DeleteDisk first.
	CopyImage(ctx context.Context, src Image, dst DiskSpec, progress Progress) (*DiskInfo, error)
	// DeleteDisk removes a disk no VM uses, with what an interrupted
	// CopyImage to that name left behind.
	DeleteDisk(ctx context.Context, pool, name string) error

	// Migrate moves VM id to the host of dst, a Driver of the same kind
	// (ErrUnsupported otherwise), live when opts.Live and the VM runs.
	// The VM keeps running on this host if the migration fails or ctx is
	// done before it completes.
	Migrate(ctx context.Context, id string, dst Driver, opts *MigrateOptions) error

	// Events yields the host's VM state changes from the call on, until
	// ctx is done (then the sequence ends without an error) or the
	// connection fails (the last pair carries the error). Each call is an
	// independent subscription.
	Events(ctx context.Context) iter.Seq2[Event, error]

	// Close releases the connection; the host and its VMs are not
	// affected. Calls after Close fail with ErrClosed.
	Close() error
}

// Image is the source of CopyImage: a reader of the image's bytes and what
// it is.
type Image struct {
	// Name is the image's name, for messages and progress.
	Name string
	// Format is the image's format ("raw", "vhd", "vhdx", "qcow2").
	Format string
	// Size is the number of bytes Open's reader yields, for progress; -1
	// when unknown.
	Size int64
	// Open returns a reader of the image from its start; CopyImage may
	// call it again to retry, and closes each reader it opens.
	Open func() (io.ReadCloser, error)
}

// Progress is called by long operations with the work done and the total
// (bytes, or a percentage as done of 100); total is -1 when unknown. It is
// called from the operation's goroutine and must not block.
type Progress func(done, total int64)

// DeleteOptions tune DeleteVM; nil means delete the disks too.
type DeleteOptions struct {
	KeepDisks bool
}

// MigrateOptions tune Migrate; nil means an offline migration with shared
// storage.
type MigrateOptions struct {
	// Live keeps a running VM running during the move.
	Live bool
	// WithStorage copies the VM's disks to the destination's pools
	// (needed when the hosts do not share storage).
	WithStorage bool
	// Progress, when set, is called with the bytes (or percent) moved.
	Progress Progress
}
