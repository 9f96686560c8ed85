package libvirt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmkit/vmmkit/hostapi"
)

// pollInterval is how often Shutdown looks whether the guest is off.
const pollInterval = 200 * time.Millisecond

// CreateVM defines a stopped VM from spec. The hypervisor's refusal of the
// domain XML comes back as hostapi.ErrInvalidSpec with libvirt's message in
// the chain; memory beyond the host's is hostapi.ErrCapacity.
func (d *Driver) CreateVM(ctx context.Context, spec hostapi.VMSpec) (*hostapi.VMInfo, error) {
	var vm *hostapi.VMInfo
	err := d.c.write(ctx, func(l *golibvirt.Libvirt) error {
		if _, err := l.DomainLookupByName(spec.Name); err == nil {
			return fmt.Errorf("%w: a VM named %q", hostapi.ErrExists, spec.Name)
		} else if !notFound(err) {
			return err
		}
		if _, mem, _, _, _, _, _, _, err := l.NodeGetInfo(); err == nil && spec.Memory > int64(mem)<<10 {
			return fmt.Errorf("%w: %d bytes of memory, the host has %d", hostapi.ErrCapacity, spec.Memory, int64(mem)<<10)
		}
		for i, n := range spec.NICs {
			if n.Network == "" {
				continue // domainXML refuses it
			}
			if _, err := l.NetworkLookupByName(n.Network); err != nil {
				if notFound(err) || errors.As(err, new(golibvirt.Error)) {
					return fmt.Errorf("%w: NIC %d: %w", hostapi.ErrInvalidSpec, i, err)
				}
				return err
			}
		}
		disks := make([]resolvedDisk, len(spec.Disks))
		for i, ref := range spec.Disks {
			f, err := d.formatOf(l, ref)
			if err != nil {
				return fmt.Errorf("disk %d: %w", i, err)
			}
			disks[i] = resolvedDisk{DiskRef: ref, format: f}
		}
		doc, err := d.domainXML(spec, disks)
		if err != nil {
			return err
		}
		dom, err := l.DomainDefineXMLFlags(doc, golibvirt.DomainDefineValidate)
		if err != nil {
			var le golibvirt.Error
			if errors.As(err, &le) && strings.Contains(le.Message, "already exists") {
				return fmt.Errorf("%w: %w", hostapi.ErrExists, err)
			}
			return classify(err, true)
		}
		vm, err = d.info(l, dom)
		return err
	})
	if err != nil {
		return nil, d.opError(ctx, "create", spec.Name, err, true)
	}
	return vm, nil
}

// formatOf returns the QEMU driver type of a disk: the volume's format when
// the host's pools know it, else the format its name suggests.
func (d *Driver) formatOf(l *golibvirt.Libvirt, ref hostapi.DiskRef) (string, error) {
	var (
		vol golibvirt.StorageVol
		err error
	)
	switch {
	case ref.Pool != "" && ref.Name != "":
		var pool golibvirt.StoragePool
		if pool, err = l.StoragePoolLookupByName(ref.Pool); err != nil {
			return "", classify(err, false)
		}
		if vol, err = l.StorageVolLookupByName(pool, ref.Name); err != nil {
			return "", classify(err, false)
		}
	case ref.Path != "":
		if vol, err = l.StorageVolLookupByPath(ref.Path); err != nil {
			return formatOfPath(ref.Path), nil
		}
	default:
		return "", fmt.Errorf("%w: give Pool and Name, or Path", hostapi.ErrInvalidSpec)
	}
	doc, err := l.StorageVolGetXMLDesc(vol, 0)
	if err != nil {
		return "", err
	}
	var v libvirtxml.StorageVolume
	if err := v.Unmarshal(doc); err != nil {
		return "", fmt.Errorf("volume XML: %w", err)
	}
	if v.Target != nil && v.Target.Format != nil && v.Target.Format.Type != "" {
		return v.Target.Format.Type, nil
	}
	return "raw", nil
}

// transition runs op on VM id once its state is one of from;
// hostapi.ErrInvalidState otherwise.
func (d *Driver) transition(ctx context.Context, name, id string, from []hostapi.State, op func(l *golibvirt.Libvirt, dom golibvirt.Domain) error) error {
	err := d.c.write(ctx, func(l *golibvirt.Libvirt) error {
		dom, err := lookup(l, id)
		if err != nil {
			return err
		}
		st, reason, err := l.DomainGetState(dom, 0)
		if err != nil {
			return err
		}
		s := apiState(st, reason)
		ok := false
		for _, f := range from {
			ok = ok || s == f
		}
		if !ok {
			return fmt.Errorf("%w: VM is %s", hostapi.ErrInvalidState, s)
		}
		return op(l, dom)
	})
	return d.opError(ctx, name, id, err, false)
}

// Start starts a stopped VM, or restores one saved with its memory.
func (d *Driver) Start(ctx context.Context, id string) error {
	return d.transition(ctx, "start", id, []hostapi.State{hostapi.StateStopped, hostapi.StateCrashed},
		func(l *golibvirt.Libvirt, dom golibvirt.Domain) error {
			_, err := l.DomainCreateWithFlags(dom, 0)
			return classify(err, true)
		})
}

// Shutdown asks the guest to shut down (ACPI) and waits until it is off or
// ctx is done; a guest that ignores the request keeps running.
func (d *Driver) Shutdown(ctx context.Context, id string) error {
	err := d.transition(ctx, "shutdown", id, []hostapi.State{hostapi.StateRunning, hostapi.StateShutdown},
		func(l *golibvirt.Libvirt, dom golibvirt.Domain) error {
			return l.DomainShutdownFlags(dom, 0)
		})
	if err != nil {
		return err
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		vm, err := d.VM(ctx, id)
		switch {
		case err != nil:
			if errors.Is(err, hostapi.ErrNotFound) {
				return nil // a transient domain is gone once off
			}
			return hostapi.NewOpError("shutdown", d.t.name, id, errors.Unwrap(err))
		case vm.State == hostapi.StateStopped:
			return nil
		}
		select {
		case <-ctx.Done():
			return d.opError(ctx, "shutdown", id, ctx.Err(), false)
		case <-t.C:
		}
	}
}

// PowerOff stops a running, paused or shutting-down VM at once.
func (d *Driver) PowerOff(ctx context.Context, id string) error {
	return d.transition(ctx, "power off", id, []hostapi.State{hostapi.StateRunning, hostapi.StatePaused, hostapi.StateShutdown},
		func(l *golibvirt.Libvirt, dom golibvirt.Domain) error {
			return l.DomainDestroyFlags(dom, 0)
		})
}

// Pause freezes a running VM.
func (d *Driver) Pause(ctx context.Context, id string) error {
	return d.transition(ctx, "pause", id, []hostapi.State{hostapi.StateRunning},
		func(l *golibvirt.Libvirt, dom golibvirt.Domain) error { return l.DomainSuspend(dom) })
}

// Resume lets a paused VM run again.
func (d *Driver) Resume(ctx context.Context, id string) error {
	return d.transition(ctx, "resume", id, []hostapi.State{hostapi.StatePaused},
		func(l *golibvirt.Libvirt, dom golibvirt.Domain) error { return l.DomainResume(dom) })
}

// Reboot resets a running VM (a hardware reset, which needs no help from
// the guest); it stays running.
func (d *Driver) Reboot(ctx context.Context, id string) error {
	return d.transition(ctx, "reboot", id, []hostapi.State{hostapi.StateRunning},
		func(l *golibvirt.Libvirt, dom golibvirt.Domain) error { return l.DomainReset(dom, 0) })
}

// DeleteVM undefines a stopped VM with its saved state and checkpoint
// records and, unless opts.KeepDisks, deletes its writable disks that are
// volumes of a pool (disks by a path outside any pool are kept).
func (d *Driver) DeleteVM(ctx context.Context, id string, opts *hostapi.DeleteOptions) error {
	return d.transition(ctx, "delete", id, []hostapi.State{hostapi.StateStopped, hostapi.StateCrashed},
		func(l *golibvirt.Libvirt, dom golibvirt.Domain) error {
			var vols []golibvirt.StorageVol
			if opts == nil || !opts.KeepDisks {
				doc, err := l.DomainGetXMLDesc(dom, 0)
				if err != nil {
					return err
				}
				vm, err := vmInfo(doc, hostapi.StateStopped, d.t.remote)
				if err != nil {
					return err
				}
				for _, ref := range vm.Disks {
					if ref.ReadOnly {
						continue
					}
					if v, err := volumeOf(l, ref); err == nil {
						vols = append(vols, v)
					}
				}
			}
			err := l.DomainUndefineFlags(dom, golibvirt.DomainUndefineManagedSave|golibvirt.DomainUndefineSnapshotsMetadata|
				golibvirt.DomainUndefineNvram|golibvirt.DomainUndefineCheckpointsMetadata)
			if err != nil {
				return err
			}
			var errs []error
			for _, v := range vols {
				if err := l.StorageVolDelete(v, 0); err != nil && !notFound(err) {
					errs = append(errs, fmt.Errorf("delete disk %s: %w", v.Name, err))
				}
			}
			return errors.Join(errs...)
		})
}

// volumeOf finds the pool volume of a disk reference.
func volumeOf(l *golibvirt.Libvirt, ref hostapi.DiskRef) (golibvirt.StorageVol, error) {
	if ref.Pool != "" && ref.Name != "" {
		pool, err := l.StoragePoolLookupByName(ref.Pool)
		if err != nil {
			return golibvirt.StorageVol{}, err
		}
		return l.StorageVolLookupByName(pool, ref.Name)
	}
	return l.StorageVolLookupByPath(ref.Path)
}

// Stats returns a running VM's use. CPUMHz is the CPU time used since the
// previous Stats call for the VM through this Driver, over the time
// passed, times the host's clock (0 on the first call); MemoryUsed is the
// balloon's view (current minus unused) or QEMU's resident memory, at
// most the VM's memory.
func (d *Driver) Stats(ctx context.Context, id string) (*hostapi.VMStats, error) {
	var (
		s     = &hostapi.VMStats{}
		uuid  string
		state hostapi.State
	)
	err := d.c.read(ctx, func(l *golibvirt.Libvirt) error {
		dom, err := lookup(l, id)
		if err != nil {
			return err
		}
		uuid = formatUUID(dom.UUID)
		recs, err := l.ConnectGetAllDomainStats([]golibvirt.Domain{dom},
			uint32(golibvirt.DomainStatsState|golibvirt.DomainStatsCPUTotal|golibvirt.DomainStatsBalloon|
				golibvirt.DomainStatsInterface|golibvirt.DomainStatsBlock), 0)
		if err != nil {
			return err
		}
		s.Time = time.Now()
		if len(recs) == 0 {
			return fmt.Errorf("%w: no statistics", hostapi.ErrNotFound)
		}
		state = fillStats(s, recs[0].Params)
		return nil
	})
	if err != nil {
		return nil, d.opError(ctx, "stats", id, err, false)
	}
	if state != hostapi.StateRunning && state != hostapi.StatePaused {
		return nil, hostapi.NewOpError("stats", d.t.name, id, fmt.Errorf("%w: VM is %s", hostapi.ErrInvalidState, state))
	}
	d.mu.Lock()
	prev, ok := d.samples[uuid]
	d.samples[uuid] = cpuSample{at: s.Time, cpu: s.CPUTime}
	mhz := d.mhz
	d.mu.Unlock()
	if mhz == 0 {
		if h, err := d.Host(ctx); err == nil {
			mhz = h.CPUMHz
		}
	}
	if ok && s.Time.After(prev.at) && s.CPUTime >= prev.cpu {
		s.CPUMHz = float64(s.CPUTime-prev.cpu) / float64(s.Time.Sub(prev.at)) * mhz
	}
	return s, nil
}

// fillStats reads ConnectGetAllDomainStats parameters into s and returns
// the VM's state.
func fillStats(s *hostapi.VMStats, params []golibvirt.TypedParam) hostapi.State {
	var (
		stateV, reasonV       int32
		current, unused, rss  int64
		hasUnused, hasCurrent bool
	)
	for _, p := range params {
		v, ok := number(p.Value.I)
		if !ok {
			continue
		}
		f := p.Field
		switch {
		case f == "state.state":
			stateV = int32(v)
		case f == "state.reason":
			reasonV = int32(v)
		case f == "cpu.time":
			s.CPUTime = time.Duration(v)
		case f == "balloon.current":
			current, hasCurrent = v<<10, true
		case f == "balloon.unused":
			unused, hasUnused = v<<10, true
		case f == "balloon.rss":
			rss = v << 10
		case strings.HasPrefix(f, "block.") && strings.HasSuffix(f, ".rd.bytes"):
			s.DiskReadBytes += v
		case strings.HasPrefix(f, "block.") && strings.HasSuffix(f, ".wr.bytes"):
			s.DiskWriteBytes += v
		case strings.HasPrefix(f, "net.") && strings.HasSuffix(f, ".rx.bytes"):
			s.NetRxBytes += v
		case strings.HasPrefix(f, "net.") && strings.HasSuffix(f, ".tx.bytes"):
			s.NetTxBytes += v
		}
	}
	switch {
	case hasCurrent && hasUnused:
		s.MemoryUsed = current - unused
	case rss > 0 && hasCurrent:
		s.MemoryUsed = min(rss, current) // QEMU's own memory is not the guest's
	case rss > 0:
		s.MemoryUsed = rss
	case hasCurrent:
		s.MemoryUsed = current
	}
	return apiState(stateV, reasonV)
}

func number(v any) (int64, bool) {
	switch n := v.(type) {
	case int32:
		return int64(n), true
	case uint32:
		return int64(n), true
	case int64:
		return n, true
	case uint64:
		return int64(n), true
	case float64:
		return int64(n), true
	}
	return 0, false
}
