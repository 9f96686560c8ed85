package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
)

// pool is a storage pool of a host; its host's mu guards it.
type pool struct {
	name     string
	capacity int64
	used     int64 // by disks and copies in progress
	disks    map[string]*hostapi.DiskInfo
	pending  map[string]int64 // disks being copied in, and the bytes they hold
}

func (p *pool) free() int64 { return p.capacity - p.used }

func (p *pool) remove(name string) {
	if d := p.disks[name]; d != nil {
		p.used -= d.Allocated
		delete(p.disks, name)
	}
}

func (p *pool) add(d *hostapi.DiskInfo) {
	if p.disks == nil {
		p.disks = make(map[string]*hostapi.DiskInfo)
	}
	p.disks[d.Name] = d
	p.used += d.Allocated
}

func (p *pool) taken(name string) bool {
	_, copying := p.pending[name]
	return p.disks[name] != nil || copying
}

func (h *host) pool(name string) *pool {
	for _, p := range h.pools {
		if p.name == name {
			return p
		}
	}
	return nil
}

func (h *host) disk(pool, name string) *hostapi.DiskInfo {
	if p := h.pool(pool); p != nil {
		return p.disks[name]
	}
	return nil
}

// room checks that p can take n more bytes; h.mu is held.
func (h *host) room(p *pool, n int64) error {
	if slices.Contains(h.faults.FullPools, p.name) {
		return fmt.Errorf("%w: pool %s is full", hostapi.ErrCapacity, p.name)
	}
	if n > p.free() {
		return fmt.Errorf("%w: %d bytes in pool %s with %d free", hostapi.ErrCapacity, n, p.name, p.free())
	}
	return nil
}

// diskBusy says why disk pool/name cannot go: a VM uses it or it is a
// parent; h.mu is held.
func (h *host) diskBusy(pool, name string) error {
	for _, v := range h.vms {
		for _, d := range v.info.Disks {
			if d.Pool == pool && d.Name == name {
				return fmt.Errorf("%w: VM %s uses disk %s", hostapi.ErrInvalidState, v.info.Name, name)
			}
		}
	}
	if p := h.pool(pool); p != nil {
		for _, d := range p.disks {
			if d.Parent == name {
				return fmt.Errorf("%w: disk %s is the parent of %s", hostapi.ErrInvalidState, name, d.Name)
			}
		}
	}
	return nil
}

// diffAllocated is what a new differencing disk holds: its metadata.
const diffAllocated = 1 << 20

// format picks the format of a new disk; h.mu need not be held.
func (h *host) format(f string) (string, error) {
	if f == "" {
		if len(h.formats) == 0 {
			return "raw", nil
		}
		return h.formats[0], nil
	}
	if !slices.Contains(h.formats, f) {
		return "", fmt.Errorf("%w: format %q (the host runs %v)", hostapi.ErrInvalidSpec, f, h.formats)
	}
	return f, nil
}

// CreateDisk creates an empty disk of spec.Size bytes, which the pool
// debits in full (the simulator reserves, it does not thin-provision), or
// a differencing disk over spec.Parent of the same pool, which starts at
// 1 MiB. hostapi.ErrNotFound for a missing pool or parent,
// hostapi.ErrExists for a taken name, hostapi.ErrCapacity when the pool
// lacks the room, hostapi.ErrInvalidSpec for a disk without a name or
// size or of a format the host does not run.
func (c *Host) CreateDisk(ctx context.Context, spec hostapi.DiskSpec) (*hostapi.DiskInfo, error) {
	const op = "create disk"
	if err := c.enter(ctx); err != nil {
		return nil, c.err(op, "", err)
	}
	h := c.h
	if spec.Parent != "" && !h.supports(hostapi.DifferencingDisks) {
		return nil, c.err(op, "", h.unsupported(hostapi.DifferencingDisks))
	}
	format, err := h.format(spec.Format)
	if err == nil && spec.Name == "" {
		err = fmt.Errorf("%w: no disk name", hostapi.ErrInvalidSpec)
	}
	if err == nil && spec.Parent == "" && spec.Size <= 0 {
		err = fmt.Errorf("%w: size %d", hostapi.ErrInvalidSpec, spec.Size)
	}
	if err != nil {
		return nil, c.err(op, "", err)
	}
	if err := h.wait(ctx, durDisk); err != nil {
		return nil, c.err(op, "", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.newDisk(spec, format)
	if err != nil {
		return nil, c.err(op, "", err)
	}
	out := *d
	return &out, nil
}

// newDisk adds a disk to a pool; h.mu is held.
func (h *host) newDisk(spec hostapi.DiskSpec, format string) (*hostapi.DiskInfo, error) {
	if err := h.downErr(); err != nil {
		return nil, err
	}
	p := h.pool(spec.Pool)
	if p == nil {
		return nil, fmt.Errorf("%w: pool %q", hostapi.ErrNotFound, spec.Pool)
	}
	if p.taken(spec.Name) {
		return nil, fmt.Errorf("%w: disk %s in pool %s", hostapi.ErrExists, spec.Name, spec.Pool)
	}
	d := &hostapi.DiskInfo{
		Pool:      spec.Pool,
		Name:      spec.Name,
		Path:      h.diskPath(spec.Pool, spec.Name),
		Format:    format,
		Size:      spec.Size,
		Allocated: spec.Size,
	}
	if spec.Parent != "" {
		parent := p.disks[spec.Parent]
		if parent == nil {
			return nil, fmt.Errorf("%w: parent disk %s in pool %s", hostapi.ErrNotFound, spec.Parent, spec.Pool)
		}
		d.Parent = spec.Parent
		d.Size = parent.Size
		d.Allocated = min(diffAllocated, parent.Size)
	}
	if err := h.room(p, d.Allocated); err != nil {
		return nil, err
	}
	p.add(d)
	return d, nil
}

func (h *host) diskPath(pool, name string) string {
	return "/sim/" + h.name + "/" + pool + "/" + name
}

// DeleteDisk removes a disk: hostapi.ErrNotFound when there is none,
// hostapi.ErrInvalidState when a VM uses it or it is a differencing
// disk's parent.
func (c *Host) DeleteDisk(ctx context.Context, poolName, name string) error {
	const op = "delete disk"
	if err := c.enter(ctx); err != nil {
		return c.err(op, "", err)
	}
	h := c.h
	check := func() (*pool, error) {
		if err := h.downErr(); err != nil {
			return nil, err
		}
		p := h.pool(poolName)
		if p == nil {
			return nil, fmt.Errorf("%w: pool %q", hostapi.ErrNotFound, poolName)
		}
		if p.disks[name] == nil {
			return nil, fmt.Errorf("%w: disk %s in pool %s", hostapi.ErrNotFound, name, poolName)
		}
		return p, h.diskBusy(poolName, name)
	}
	h.mu.Lock()
	_, err := check()
	h.mu.Unlock()
	if err == nil {
		err = h.wait(ctx, durDisk/2)
	}
	if err != nil {
		return c.err(op, "", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p, err := check()
	if err != nil {
		return c.err(op, "", err)
	}
	p.remove(name)
	return nil
}

// copyChunk is how much CopyImage reads between progress reports.
const copyChunk = 1 << 20

// CopyImage reads src through into a new disk dst.Name of pool dst.Pool,
// at the host's disk speed, calling progress after each MiB read and at
// the end. The disk's format is dst.Format, or src.Format when the host
// runs it, or the host's first format; a conversion changes only the
// disk's metadata. Its size is the bytes read (or dst.Size, when larger),
// all allocated. The pool reserves src.Size bytes while the copy runs;
// the disk appears when the copy is complete. Errors as CreateDisk's, and
// the reader's own, and ctx's when it is done mid-copy (nothing is left
// behind).
func (c *Host) CopyImage(ctx context.Context, src hostapi.Image, dst hostapi.DiskSpec, progress hostapi.Progress) (*hostapi.DiskInfo, error) {
	const op = "copy image"
	if err := c.enter(ctx); err != nil {
		return nil, c.err(op, "", err)
	}
	h := c.h
	var format string
	var err error
	switch {
	case dst.Name == "":
		err = fmt.Errorf("%w: no disk name", hostapi.ErrInvalidSpec)
	case src.Open == nil:
		err = fmt.Errorf("%w: image %s has no Open", hostapi.ErrInvalidSpec, src.Name)
	case dst.Parent != "":
		err = fmt.Errorf("%w: a copy cannot have a parent", hostapi.ErrInvalidSpec)
	case dst.Format == "" && slices.Contains(h.formats, src.Format):
		format = src.Format
	default:
		format, err = h.format(dst.Format)
	}
	if err != nil {
		return nil, c.err(op, "", err)
	}
	reserve := max(src.Size, 0)

	h.mu.Lock()
	p, err := h.reserveCopy(dst, reserve)
	h.mu.Unlock()
	if err != nil {
		return nil, c.err(op, "", err)
	}
	done, err := c.copyBytes(ctx, src, p, dst.Name, progress)
	h.mu.Lock()
	defer h.mu.Unlock()
	p.used -= p.pending[dst.Name]
	delete(p.pending, dst.Name)
	if err == nil {
		err = h.downErr()
	}
	if err == nil {
		err = h.room(p, done)
	}
	if err != nil {
		return nil, c.err(op, "", err)
	}
	d := &hostapi.DiskInfo{
		Pool:      dst.Pool,
		Name:      dst.Name,
		Path:      h.diskPath(dst.Pool, dst.Name),
		Format:    format,
		Size:      max(done, dst.Size),
		Allocated: done,
	}
	p.add(d)
	out := *d
	return &out, nil
}

// reserveCopy takes name in dst's pool with n bytes for a copy; h.mu is
// held.
func (h *host) reserveCopy(dst hostapi.DiskSpec, n int64) (*pool, error) {
	if err := h.downErr(); err != nil {
		return nil, err
	}
	p := h.pool(dst.Pool)
	if p == nil {
		return nil, fmt.Errorf("%w: pool %q", hostapi.ErrNotFound, dst.Pool)
	}
	if p.taken(dst.Name) {
		return nil, fmt.Errorf("%w: disk %s in pool %s", hostapi.ErrExists, dst.Name, dst.Pool)
	}
	if err := h.room(p, n); err != nil {
		return nil, err
	}
	if p.pending == nil {
		p.pending = make(map[string]int64)
	}
	p.pending[dst.Name] = n
	p.used += n
	return p, nil
}

// copyBytes reads src through at the disk's speed, growing the pool's
// reservation for name when src is longer than it said.
func (c *Host) copyBytes(ctx context.Context, src hostapi.Image, p *pool, name string, progress hostapi.Progress) (int64, error) {
	h := c.h
	r, err := src.Open()
	if err != nil {
		return 0, fmt.Errorf("open image %s: %w", src.Name, err)
	}
	defer r.Close()
	total := src.Size
	if total < 0 {
		total = -1
	}
	buf := make([]byte, copyChunk)
	var done int64
	for {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		n, rerr := io.ReadFull(r, buf)
		done += int64(n)
		if n > 0 {
			if err := h.wait(ctx, h.diskTime(int64(n))); err != nil {
				return done, err
			}
			h.mu.Lock()
			err := h.downErr()
			if extra := done - p.pending[name]; err == nil && extra > 0 {
				if err = h.room(p, extra); err == nil {
					p.pending[name] += extra
					p.used += extra
				}
			}
			h.mu.Unlock()
			if err != nil {
				return done, err
			}
			if progress != nil && rerr == nil {
				progress(done, total)
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			if progress != nil {
				progress(done, total)
			}
			return done, nil
		}
		if rerr != nil {
			return done, fmt.Errorf("read image %s: %w", src.Name, rerr)
		}
	}
}

// diskTime is how long the host's disk takes to move n bytes at
// TimeScale 1.
func (h *host) diskTime(n int64) time.Duration {
	h.mu.Lock()
	speed := h.faults.DiskSpeed
	h.mu.Unlock()
	if speed <= 0 {
		speed = h.fleet.cfg.DiskSpeed
	}
	return time.Duration(float64(n) / float64(speed) * float64(time.Second))
}
