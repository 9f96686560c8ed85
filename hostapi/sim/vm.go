package sim

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
)

// vm is a VM of a host; its host's mu guards it.
type vm struct {
	info        hostapi.VMInfo
	op          string // operation in progress, "" when none
	prev        hostapi.State
	shutdowns   int           // counts Shutdown calls, to tell whose ends
	cpuTime     time.Duration // CPU time until since
	since       time.Time     // when it last started running
	started     time.Time
	checkpoints []checkpoint
	gone        bool
	display     int // VNC display number while active (port 5900+display)
}

type checkpoint struct {
	hostapi.Checkpoint
	state hostapi.State
}

// active says whether the VM holds host memory.
func (v *vm) active() bool {
	switch v.info.State {
	case hostapi.StateRunning, hostapi.StatePaused, hostapi.StateShutdown:
		return true
	}
	return false
}

func (v *vm) running() bool {
	return v.info.State == hostapi.StateRunning || v.info.State == hostapi.StateShutdown
}

type stateSet uint

func states(ss ...hostapi.State) stateSet {
	var set stateSet
	for _, s := range ss {
		set |= 1 << uint(s)
	}
	return set
}

func (set stateSet) has(s hostapi.State) bool { return set&(1<<uint(s)) != 0 }

// check refuses a busy VM or one in a state outside from.
func (v *vm) check(from stateSet) error {
	if v.op != "" {
		return fmt.Errorf("%w: %s in progress", hostapi.ErrInvalidState, v.op)
	}
	if !from.has(v.info.State) {
		return fmt.Errorf("%w: VM is %v", hostapi.ErrInvalidState, v.info.State)
	}
	return nil
}

// lookup finds a VM by ID or name; h.mu is held.
func (h *host) lookup(id string) (*vm, error) {
	if v := h.vms[id]; v != nil {
		return v, nil
	}
	if v := h.names[id]; v != nil {
		return v, nil
	}
	return nil, hostapi.ErrNotFound
}

// setState changes v's state at now, keeping its CPU time, and gives it
// a console while it is active; h.mu is held.
func (h *host) setState(v *vm, s hostapi.State, now time.Time) {
	if v.running() {
		v.cpuTime += time.Duration(h.fleet.load(&v.info, now) * float64(v.info.VCPUs) * float64(now.Sub(v.since)))
	}
	was := v.active()
	if !was && s != hostapi.StateStopped {
		v.started = now
		v.cpuTime = 0
	}
	v.info.State = s
	v.since = now
	switch {
	case !was && v.active():
		h.openConsole(v)
	case was && !v.active():
		h.closeConsole(v)
	}
}

// openConsole gives v the lowest VNC display free on h, as libvirt's
// autoport does, and sets its Console; h.mu is held.
func (h *host) openConsole(v *vm) {
	if h.displays == nil {
		h.displays = make(map[int]*vm)
	}
	n := 0
	for h.displays[n] != nil {
		n++
	}
	h.displays[n] = v
	v.display = n
	v.info.Console = "vnc://" + net.JoinHostPort(h.name, strconv.Itoa(5900+n))
}

// closeConsole frees v's display; h.mu is held.
func (h *host) closeConsole(v *vm) {
	if v.info.Console == "" {
		return
	}
	if h.displays[v.display] == v {
		delete(h.displays, v.display)
	}
	v.info.Console = ""
}

func copyInfo(in *hostapi.VMInfo) hostapi.VMInfo {
	out := *in
	out.Disks = slices.Clone(in.Disks)
	out.NICs = slices.Clone(in.NICs)
	out.Labels = maps.Clone(in.Labels)
	return out
}

// VMs returns every VM of the host.
func (c *Host) VMs(ctx context.Context) ([]hostapi.VMInfo, error) {
	if err := c.enter(ctx); err != nil {
		return nil, c.err("list VMs", "", err)
	}
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]hostapi.VMInfo, 0, len(h.vms))
	for _, v := range h.vms {
		out = append(out, copyInfo(&v.info))
	}
	return out, nil
}

// VM returns the VM whose ID or name is id; hostapi.ErrNotFound when
// there is none.
func (c *Host) VM(ctx context.Context, id string) (*hostapi.VMInfo, error) {
	if err := c.enter(ctx); err != nil {
		return nil, c.err("get VM", id, err)
	}
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.lookup(id)
	if err != nil {
		return nil, c.err("get VM", id, err)
	}
	info := copyInfo(&v.info)
	return &info, nil
}

// CreateVM defines a stopped VM. Its disks must be disks of the host's
// pools or paths (which the simulator takes as they are), its NICs on the
// host's networks, its boot devices "disk", "cdrom" or "network":
// hostapi.ErrInvalidSpec otherwise, and for a VM without a name, vCPUs or
// memory. hostapi.ErrCapacity when it has more vCPUs than the host has
// cores or more memory than the host has; hostapi.ErrExists when the name
// is taken.
func (c *Host) CreateVM(ctx context.Context, spec hostapi.VMSpec) (*hostapi.VMInfo, error) {
	const op = "create VM"
	if err := c.enter(ctx); err != nil {
		return nil, c.err(op, spec.Name, err)
	}
	h := c.h
	if err := h.wait(ctx, durDefine); err != nil {
		return nil, c.err(op, spec.Name, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.downErr(); err != nil {
		return nil, c.err(op, spec.Name, err)
	}
	if err := h.checkSpec(&spec); err != nil {
		return nil, c.err(op, spec.Name, err)
	}
	v := &vm{info: hostapi.VMInfo{
		ID:     h.fleet.newID(),
		Name:   spec.Name,
		State:  hostapi.StateStopped,
		VCPUs:  spec.VCPUs,
		Memory: spec.Memory,
		Disks:  slices.Clone(spec.Disks),
		NICs:   slices.Clone(spec.NICs),
		Labels: maps.Clone(spec.Labels),
	}}
	for i := range v.info.NICs {
		if v.info.NICs[i].MAC == "" {
			n := h.fleet.seq.Add(1)
			v.info.NICs[i].MAC = fmt.Sprintf("52:54:00:%02x:%02x:%02x", byte(n>>16), byte(n>>8), byte(n))
		}
	}
	if h.vms == nil {
		h.vms = make(map[string]*vm)
		h.names = make(map[string]*vm)
	}
	h.vms[v.info.ID] = v
	h.names[v.info.Name] = v
	h.emit(v, hostapi.EventDefined)
	info := copyInfo(&v.info)
	return &info, nil
}

// checkSpec validates a spec on h; h.mu is held.
func (h *host) checkSpec(spec *hostapi.VMSpec) error {
	switch {
	case spec.Name == "":
		return fmt.Errorf("%w: no name", hostapi.ErrInvalidSpec)
	case spec.VCPUs <= 0:
		return fmt.Errorf("%w: %d vCPUs", hostapi.ErrInvalidSpec, spec.VCPUs)
	case spec.Memory <= 0:
		return fmt.Errorf("%w: %d bytes of memory", hostapi.ErrInvalidSpec, spec.Memory)
	case spec.VCPUs > h.cores:
		return fmt.Errorf("%w: %d vCPUs on %d cores", hostapi.ErrCapacity, spec.VCPUs, h.cores)
	case spec.Memory > h.memory:
		return fmt.Errorf("%w: %d bytes of memory on a host of %d", hostapi.ErrCapacity, spec.Memory, h.memory)
	}
	if h.names[spec.Name] != nil || h.incoming[spec.Name] != 0 {
		return fmt.Errorf("%w: VM %s", hostapi.ErrExists, spec.Name)
	}
	for _, d := range spec.Disks {
		switch {
		case d.Path != "":
		case d.Pool == "" || d.Name == "":
			return fmt.Errorf("%w: a disk with neither a path nor a pool and name", hostapi.ErrInvalidSpec)
		case h.disk(d.Pool, d.Name) == nil:
			return fmt.Errorf("%w: no disk %s in pool %s", hostapi.ErrInvalidSpec, d.Name, d.Pool)
		}
	}
	for _, n := range spec.NICs {
		if !slices.Contains(h.networks, n.Network) {
			return fmt.Errorf("%w: no network %q", hostapi.ErrInvalidSpec, n.Network)
		}
	}
	for _, b := range spec.Boot {
		if b != "disk" && b != "cdrom" && b != "network" {
			return fmt.Errorf("%w: boot device %q", hostapi.ErrInvalidSpec, b)
		}
	}
	return nil
}

// change runs a state change of VM id that takes d: it refuses a VM that
// is busy or not in a state of from, marks it busy with op, waits d, and
// calls apply with h.mu held. A ctx done or a host down during the wait
// changes nothing.
func (c *Host) change(ctx context.Context, op, id string, d time.Duration, from stateSet, apply func(h *host, v *vm) error) error {
	if err := c.enter(ctx); err != nil {
		return c.err(op, id, err)
	}
	h := c.h
	h.mu.Lock()
	v, err := h.lookup(id)
	if err == nil {
		err = v.check(from)
	}
	if err != nil {
		h.mu.Unlock()
		return c.err(op, id, err)
	}
	v.op = op
	h.mu.Unlock()

	err = h.wait(ctx, d)

	h.mu.Lock()
	defer h.mu.Unlock()
	v.op = ""
	if err == nil {
		err = h.downErr()
	}
	if err == nil {
		err = apply(h, v)
	}
	if err != nil {
		return c.err(op, id, err)
	}
	return nil
}

// Start starts a stopped VM: hostapi.ErrCapacity when the host's free
// memory cannot hold it.
func (c *Host) Start(ctx context.Context, id string) error {
	return c.change(ctx, "start", id, durStart, states(hostapi.StateStopped, hostapi.StateCrashed), func(h *host, v *vm) error {
		if free := h.memory - h.memUsed(); v.info.Memory > free {
			return fmt.Errorf("%w: VM needs %d bytes of memory, host has %d free", hostapi.ErrCapacity, v.info.Memory, free)
		}
		h.setState(v, hostapi.StateRunning, h.now())
		h.emit(v, hostapi.EventStarted)
		return nil
	})
}

// Shutdown asks the guest to shut down, which takes it 8 s at TimeScale
// 1, and waits until it is off. While it shuts down the VM is in
// StateShutdown and PowerOff can cut it short (Shutdown then returns
// nil). When ctx is done first, the VM returns to the state it had and
// Shutdown returns ctx.Err(); with Faults.IgnoreShutdown that is the only
// way it returns.
func (c *Host) Shutdown(ctx context.Context, id string) error {
	const op = "shutdown"
	if err := c.enter(ctx); err != nil {
		return c.err(op, id, err)
	}
	h := c.h
	if !h.supports(hostapi.GuestShutdown) {
		return c.err(op, id, h.unsupported(hostapi.GuestShutdown))
	}
	h.mu.Lock()
	v, err := h.lookup(id)
	if err == nil {
		err = v.check(states(hostapi.StateRunning, hostapi.StatePaused))
	}
	if err != nil {
		h.mu.Unlock()
		return c.err(op, id, err)
	}
	v.prev = v.info.State
	h.setState(v, hostapi.StateShutdown, h.now())
	v.shutdowns++
	mine := v.shutdowns
	ignore := h.faults.IgnoreShutdown
	h.mu.Unlock()

	if ignore {
		<-ctx.Done()
		err = ctx.Err()
	} else {
		err = h.wait(ctx, durShutdown)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		err = h.downErr()
	}
	if v.gone || v.info.State != hostapi.StateShutdown || v.shutdowns != mine {
		// Powered off (or changed otherwise) meanwhile.
		if v.info.State == hostapi.StateStopped {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("%w: VM is %v", hostapi.ErrInvalidState, v.info.State)
		}
		return c.err(op, id, err)
	}
	if err != nil {
		h.setState(v, v.prev, h.now())
		return c.err(op, id, err)
	}
	h.setState(v, hostapi.StateStopped, h.now())
	h.emit(v, hostapi.EventStopped)
	return nil
}

// PowerOff stops a running, paused or shutting-down VM at once.
func (c *Host) PowerOff(ctx context.Context, id string) error {
	from := states(hostapi.StateRunning, hostapi.StatePaused, hostapi.StateShutdown)
	return c.change(ctx, "power off", id, durPowerOff, from, func(h *host, v *vm) error {
		if !from.has(v.info.State) { // Shutdown finished meanwhile
			return fmt.Errorf("%w: VM is %v", hostapi.ErrInvalidState, v.info.State)
		}
		h.setState(v, hostapi.StateStopped, h.now())
		h.emit(v, hostapi.EventStopped)
		return nil
	})
}

// Pause freezes a running VM; it keeps its memory and uses no CPU.
func (c *Host) Pause(ctx context.Context, id string) error {
	if err := c.need(ctx, hostapi.Pause); err != nil {
		return c.err("pause", id, err)
	}
	return c.change(ctx, "pause", id, durPause, states(hostapi.StateRunning), func(h *host, v *vm) error {
		h.setState(v, hostapi.StatePaused, h.now())
		h.emit(v, hostapi.EventPaused)
		return nil
	})
}

// Resume lets a paused VM run again.
func (c *Host) Resume(ctx context.Context, id string) error {
	if err := c.need(ctx, hostapi.Pause); err != nil {
		return c.err("resume", id, err)
	}
	return c.change(ctx, "resume", id, durPause, states(hostapi.StatePaused), func(h *host, v *vm) error {
		h.setState(v, hostapi.StateRunning, h.now())
		h.emit(v, hostapi.EventResumed)
		return nil
	})
}

// Reboot restarts a running VM's guest; the VM stays running, and no
// event is sent.
func (c *Host) Reboot(ctx context.Context, id string) error {
	return c.change(ctx, "reboot", id, durReboot, states(hostapi.StateRunning), func(h *host, v *vm) error {
		return nil
	})
}

// DeleteVM removes a stopped VM and its checkpoints and, unless
// opts.KeepDisks, the pool disks it has attached writable that no other
// VM uses and that are no disk's parent. Paths are never removed.
func (c *Host) DeleteVM(ctx context.Context, id string, opts *hostapi.DeleteOptions) error {
	keep := opts != nil && opts.KeepDisks
	return c.change(ctx, "delete VM", id, durDelete, states(hostapi.StateStopped, hostapi.StateCrashed), func(h *host, v *vm) error {
		h.remove(v)
		if !keep {
			for _, d := range v.info.Disks {
				if d.Path == "" && !d.ReadOnly && h.diskBusy(d.Pool, d.Name) == nil {
					if p := h.pool(d.Pool); p != nil {
						p.remove(d.Name)
					}
				}
			}
		}
		h.emit(v, hostapi.EventDeleted)
		return nil
	})
}

// remove takes v off the host; h.mu is held.
func (h *host) remove(v *vm) {
	h.closeConsole(v)
	delete(h.vms, v.info.ID)
	delete(h.names, v.info.Name)
	v.gone = true
	v.info.State = hostapi.StateUnknown
}

// Stats returns a running (or paused, or shutting-down) VM's use:
// CPUMHz from Config.Load, CPU time accumulated from it since the VM
// started, all of its memory, and disk and network counters that grow
// with its CPU time. hostapi.ErrInvalidState for a stopped VM.
func (c *Host) Stats(ctx context.Context, id string) (*hostapi.VMStats, error) {
	const op = "stats"
	if err := c.enter(ctx); err != nil {
		return nil, c.err(op, id, err)
	}
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.lookup(id)
	if err != nil {
		return nil, c.err(op, id, err)
	}
	if !v.active() {
		return nil, c.err(op, id, fmt.Errorf("%w: VM is %v", hostapi.ErrInvalidState, v.info.State))
	}
	now := h.now()
	mhz := h.vmMHz(v, now)
	cpu := v.cpuTime
	if v.running() {
		cpu += time.Duration(mhz / h.mhz * float64(now.Sub(v.since)))
	}
	io := int64(cpu.Seconds() * 1e6) // a MB of I/O per CPU second
	return &hostapi.VMStats{
		Time:           now,
		CPUTime:        cpu,
		CPUMHz:         mhz,
		MemoryUsed:     v.info.Memory,
		DiskReadBytes:  io,
		DiskWriteBytes: io / 2,
		NetRxBytes:     io / 4,
		NetTxBytes:     io / 8,
	}, nil
}
