package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
)

// migrationSteps is how many times a migration reports progress and
// checks for faults.
const migrationSteps = 10

// Migrate moves VM id to dst, another host of the same fleet
// (hostapi.ErrUnsupported for any other Driver). A running VM moves live
// when opts.Live, and paused during the move otherwise; a stopped one
// moves its definition. The VM keeps its ID, checkpoints and CPU time.
//
// Without opts.WithStorage the hosts share storage: every pool disk the
// VM uses must exist on dst under the same pool and name
// (hostapi.ErrInvalidSpec otherwise). With it, the disks are copied to
// dst's pools of the same names (hostapi.ErrCapacity when they do not fit,
// hostapi.ErrExists when the names are taken there) and removed here
// after the move.
//
// The move takes 1 s plus the memory at Config.NetworkSpeed plus the
// disks at the disk speed, all at TimeScale; opts.Progress is called ten
// times with the bytes moved. It fails with hostapi.ErrHostUnreachable
// when either host goes down or Faults.FailMigrationAt is reached, and
// with ctx's error when ctx is done; the VM then keeps running here as
// before.
func (c *Host) Migrate(ctx context.Context, id string, dst hostapi.Driver, opts *hostapi.MigrateOptions) error {
	const op = "migrate"
	if err := c.enter(ctx); err != nil {
		return c.err(op, id, err)
	}
	var o hostapi.MigrateOptions
	if opts != nil {
		o = *opts
	}
	h := c.h
	d, ok := dst.(*Host)
	switch {
	case !ok || d == nil || d.h.fleet != h.fleet:
		return c.err(op, id, fmt.Errorf("%w: destination %T is not a host of this fleet", hostapi.ErrUnsupported, dst))
	case d.h == h:
		return c.err(op, id, fmt.Errorf("%w: destination is the source", hostapi.ErrInvalidSpec))
	case o.Live && !h.supports(hostapi.LiveMigration):
		return c.err(op, id, h.unsupported(hostapi.LiveMigration))
	case o.WithStorage && !h.supports(hostapi.StorageMigration):
		return c.err(op, id, h.unsupported(hostapi.StorageMigration))
	}
	if err := d.enter(ctx); err != nil {
		return c.err(op, id, fmt.Errorf("destination %s: %w", d.h.name, err))
	}

	// Claim the VM here.
	h.mu.Lock()
	v, err := h.lookup(id)
	if err == nil {
		err = v.check(states(hostapi.StateStopped, hostapi.StateRunning, hostapi.StatePaused))
	}
	if err != nil {
		h.mu.Unlock()
		return c.err(op, id, err)
	}
	v.op = op
	info := copyInfo(&v.info)
	var disks []hostapi.DiskInfo
	for _, r := range info.Disks {
		if r.Path == "" {
			if di := h.disk(r.Pool, r.Name); di != nil {
				disks = append(disks, *di)
			}
		}
	}
	paused := false
	if info.State == hostapi.StateRunning && !o.Live {
		h.setState(v, hostapi.StatePaused, h.now())
		h.emit(v, hostapi.EventPaused)
		paused = true
	}
	h.mu.Unlock()

	release := func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		v.op = ""
		if paused && v.info.State == hostapi.StatePaused {
			h.setState(v, hostapi.StateRunning, h.now())
			h.emit(v, hostapi.EventResumed)
		}
	}

	// Reserve its place there.
	mem := int64(0)
	if info.State != hostapi.StateStopped {
		mem = info.Memory
	}
	if err := d.h.reserveIncoming(&info, mem, disks, o.WithStorage); err != nil {
		release()
		return c.err(op, id, fmt.Errorf("destination %s: %w", d.h.name, err))
	}

	// Move the bytes.
	var total int64 = mem
	var diskBytes int64
	if o.WithStorage {
		for _, di := range disks {
			diskBytes += di.Allocated
		}
	}
	total += diskBytes
	dur := durMigrate + time.Duration(float64(mem)/float64(h.fleet.cfg.NetworkSpeed)*float64(time.Second)) + h.diskTime(diskBytes)
	err = nil
	for i := 1; i <= migrationSteps && err == nil; i++ {
		err = h.wait(ctx, dur/migrationSteps)
		if err == nil {
			err = h.migrationFault(d.h, float64(i)/migrationSteps)
		}
		if err == nil && o.Progress != nil {
			o.Progress(total*int64(i)/migrationSteps, total)
		}
	}
	if err != nil {
		d.h.cancelIncoming(&info, mem, disks, o.WithStorage)
		release()
		return c.err(op, id, err)
	}

	// Switch over: there, then gone from here.
	h.mu.Lock()
	now := h.now()
	h.setState(v, info.State, now) // unpause to count CPU time up to now
	moved := &vm{
		info:        copyInfo(&v.info),
		started:     v.started,
		cpuTime:     v.cpuTime,
		since:       now,
		checkpoints: v.checkpoints,
	}
	h.remove(v)
	if o.WithStorage {
		for _, di := range disks {
			if p := h.pool(di.Pool); p != nil {
				p.remove(di.Name)
			}
		}
	}
	v.op = ""
	h.emit(v, hostapi.EventMigratedOut)
	h.mu.Unlock()

	d.h.arrive(moved, mem, disks, o.WithStorage)
	return nil
}

// migrationFault says whether a migration from h to d fails at fraction
// done of its bytes.
func (h *host) migrationFault(d *host, done float64) error {
	h.mu.Lock()
	err := h.downErr()
	at := h.faults.FailMigrationAt
	h.mu.Unlock()
	if err != nil {
		return err
	}
	d.mu.Lock()
	err = d.downErr()
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("destination %s: %w", d.name, err)
	}
	if at > 0 && done >= at {
		return fmt.Errorf("%w: connection lost after %.0f%% of the migration (injected)", hostapi.ErrHostUnreachable, at*100)
	}
	return nil
}

// reserveIncoming holds the name, memory and disk space of a VM arriving
// on h.
func (h *host) reserveIncoming(info *hostapi.VMInfo, mem int64, disks []hostapi.DiskInfo, copyDisks bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.names[info.Name] != nil || h.vms[info.ID] != nil || h.incoming[info.Name] != 0 {
		return fmt.Errorf("%w: VM %s", hostapi.ErrExists, info.Name)
	}
	if mem > 0 {
		if free := h.memory - h.memUsed(); mem > free {
			return fmt.Errorf("%w: VM needs %d bytes of memory, host has %d free", hostapi.ErrCapacity, mem, free)
		}
	}
	if info.VCPUs > h.cores {
		return fmt.Errorf("%w: %d vCPUs on %d cores", hostapi.ErrCapacity, info.VCPUs, h.cores)
	}
	for _, di := range disks {
		p := h.pool(di.Pool)
		switch {
		case p == nil && copyDisks:
			return fmt.Errorf("%w: pool %q", hostapi.ErrNotFound, di.Pool)
		case p == nil || !copyDisks && p.disks[di.Name] == nil:
			return fmt.Errorf("%w: disk %s of pool %s is not on this host; migrate WithStorage", hostapi.ErrInvalidSpec, di.Name, di.Pool)
		case copyDisks && p.taken(di.Name):
			return fmt.Errorf("%w: disk %s in pool %s", hostapi.ErrExists, di.Name, di.Pool)
		}
	}
	if copyDisks {
		for i, di := range disks {
			p := h.pool(di.Pool)
			if err := h.room(p, di.Allocated); err != nil {
				for _, undo := range disks[:i] {
					q := h.pool(undo.Pool)
					q.used -= undo.Allocated
					delete(q.pending, undo.Name)
				}
				return err
			}
			if p.pending == nil {
				p.pending = make(map[string]int64)
			}
			p.pending[di.Name] = di.Allocated
			p.used += di.Allocated
		}
	}
	if h.incoming == nil {
		h.incoming = make(map[string]int64)
	}
	h.incoming[info.Name] = mem + 1 // never 0: taken
	h.reserved += mem
	return nil
}

func (h *host) cancelIncoming(info *hostapi.VMInfo, mem int64, disks []hostapi.DiskInfo, copyDisks bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unreserve(info, mem, disks, copyDisks)
}

// unreserve undoes reserveIncoming; h.mu is held.
func (h *host) unreserve(info *hostapi.VMInfo, mem int64, disks []hostapi.DiskInfo, copyDisks bool) {
	delete(h.incoming, info.Name)
	h.reserved -= mem
	if copyDisks {
		for _, di := range disks {
			if p := h.pool(di.Pool); p != nil {
				p.used -= p.pending[di.Name]
				delete(p.pending, di.Name)
			}
		}
	}
}

// arrive adds a migrated VM to h.
func (h *host) arrive(v *vm, mem int64, disks []hostapi.DiskInfo, copyDisks bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unreserve(&v.info, mem, disks, copyDisks)
	if copyDisks {
		for _, di := range disks {
			di.Path = h.diskPath(di.Pool, di.Name)
			h.pool(di.Pool).add(&di)
		}
	}
	if h.vms == nil {
		h.vms = make(map[string]*vm)
		h.names = make(map[string]*vm)
	}
	h.vms[v.info.ID] = v
	h.names[v.info.Name] = v
	v.info.Console = "" // the source's; a running VM gets one here
	if v.active() {
		h.openConsole(v)
	}
	h.emit(v, hostapi.EventMigratedIn)
}
