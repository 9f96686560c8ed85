package library

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
)

// DeployOptions tune Deploy.
type DeployOptions struct {
	// Differencing makes the disk a differencing disk over a copy of the
	// object that the host keeps in the pool under CachedParentName, so
	// that the object crosses the network once per host and pool however
	// many VMs are made from it. Without it the object is copied whole.
	Differencing bool
	// Progress, when set, is called with the bytes of the object copied
	// to the host.
	Progress hostapi.Progress
}

// CachedParentName is the disk name under which Deploy keeps obj in a
// host's pool as the parent of differencing disks: "vmmkit-parent-" and
// the first 16 hex digits of the content hash, with the object's format
// as extension. Equal content has the same name on every host.
func CachedParentName(obj *Object) string {
	id := obj.ID
	if i := strings.IndexByte(id, ':'); i >= 0 {
		id = id[i+1:]
	}
	return "vmmkit-parent-" + id[:min(16, len(id))] + "." + string(obj.Kind)
}

// Deploy puts the disk object obj (a VHD, VHDX or raw image) on host,
// which runs at site: as disk dst.Name of pool dst.Pool, copied through
// the host's CopyImage (which converts it to a format the host runs), or,
// with opts.Differencing, as a differencing disk over the object's cached
// copy on the host, copied there first if the host does not have it yet.
//
// The bytes come from the replica nearest site (see Nearest) and are
// checked chunk by chunk against the object's manifest as they stream; a
// replica that does not match, or whose share goes offline, is marked and
// the next one is tried, and the host is left without the disk (CopyImage
// creates it only when complete). Errors of the host are *hostapi.OpError.
func (l *Library) Deploy(ctx context.Context, obj *Object, host hostapi.Driver, site string, dst hostapi.DiskSpec, opts *DeployOptions) (*hostapi.DiskInfo, error) {
	var o DeployOptions
	if opts != nil {
		o = *opts
	}
	format := ""
	switch obj.Kind {
	case KindVHD, KindVHDX, KindRaw:
		format = string(obj.Kind)
	default:
		return nil, fmt.Errorf("library: deploy %s: a %s is not a disk image", obj.Name, obj.Kind)
	}
	if obj.Problem != "" {
		return nil, fmt.Errorf("library: deploy %s: %w: %s", obj.Name, ErrCorrupt, obj.Problem)
	}
	if !o.Differencing {
		return l.copyImage(ctx, obj, format, host, site, dst, o.Progress)
	}
	child := hostapi.DiskSpec{Pool: dst.Pool, Name: dst.Name, Format: dst.Format, Parent: CachedParentName(obj)}
	d, err := host.CreateDisk(ctx, child)
	if err == nil || !errors.Is(err, hostapi.ErrNotFound) {
		return d, err
	}
	// The host does not have the parent (or the pool is missing, which
	// the copy will say): copy it, then make the child. Deploys of this
	// Library copy one parent to one host one at a time; the others wait
	// and find it there.
	parent := hostapi.DiskSpec{Pool: dst.Pool, Name: child.Parent}
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		unlock := l.lockParent(host, dst.Pool, child.Parent)
		d, err = host.CreateDisk(ctx, child)
		if err == nil || !errors.Is(err, hostapi.ErrNotFound) {
			unlock()
			return d, err
		}
		_, err = l.copyImage(ctx, obj, format, host, site, parent, o.Progress)
		unlock()
		if err == nil {
			return host.CreateDisk(ctx, child)
		}
		if !errors.Is(err, hostapi.ErrExists) {
			return nil, err
		}
		// Another process is copying the parent, and a disk appears only
		// once complete: wait, then look again (and copy it if that copy
		// failed).
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("library: deploy %s: waiting for parent %s on the host: %w", obj.Name, child.Parent, context.Cause(ctx))
		case <-time.After(wait):
		}
	}
}

type parentKey struct {
	host       hostapi.Driver
	pool, name string
}

// lockParent serializes Deploy's copies of one cached parent to one host.
func (l *Library) lockParent(host hostapi.Driver, pool, name string) (unlock func()) {
	return l.parents.Lock(parentKey{host, pool, name})
}

func (l *Library) copyImage(ctx context.Context, obj *Object, format string, host hostapi.Driver, site string, dst hostapi.DiskSpec, progress hostapi.Progress) (*hostapi.DiskInfo, error) {
	m, err := l.Manifest(obj.ID)
	if err != nil {
		return nil, err
	}
	if err := checkManifest(m); err != nil {
		return nil, err
	}
	var d *hostapi.DiskInfo
	err = l.fromNearest(ctx, l.ranked(obj, site), "deploy "+obj.Name, func(r Replica) error {
		share := l.byName[r.Share]
		img := hostapi.Image{
			Name: obj.Name, Format: format, Size: m.Size,
			Open: func() (io.ReadCloser, error) {
				f, err := share.Open(ctx, r.Path)
				if err != nil {
					return nil, err
				}
				return &verifiedReader{f: f, m: m, share: r.Share, name: r.Path}, nil
			},
		}
		var err error
		d, err = host.CopyImage(ctx, img, dst, progress)
		return err
	})
	return d, err
}

// A verifiedReader streams a file of a share, checking each chunk against
// its manifest before handing out any of its bytes.
type verifiedReader struct {
	f           File
	m           *Manifest
	share, name string
	n           int    // next chunk to read
	buf         []byte // rest of the current chunk
	chunk       []byte
}

func (r *verifiedReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		if off, _ := r.m.ChunkRange(r.n); off >= r.m.Size {
			return 0, io.EOF
		}
		off, length := r.m.ChunkRange(r.n)
		if int64(cap(r.chunk)) < length {
			// One chunk, or the whole of a small image: not 8 MiB of
			// zeroed memory for each copy of a 1 MiB image.
			r.chunk = make([]byte, min(r.m.ChunkSize, r.m.Size))
		}
		c := r.chunk[:length]
		if k, err := r.f.ReadAt(c, off); k < len(c) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, r.fail(err)
		}
		if err := r.m.Verify(r.n, c); err != nil {
			return 0, r.fail(err)
		}
		r.n++
		r.buf = c
	}
	k := copy(p, r.buf)
	r.buf = r.buf[k:]
	return k, nil
}

func (r *verifiedReader) fail(err error) error {
	var se *ShareError
	if errors.As(err, &se) {
		return err
	}
	return &ShareError{Op: "read", Share: r.share, Name: r.name, Err: err}
}

func (r *verifiedReader) Close() error { return r.f.Close() }
