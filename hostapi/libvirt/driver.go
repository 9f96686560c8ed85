package libvirt

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmkit/vmmkit/hostapi"
)

// A Driver is a connection to one libvirt host. It is safe for concurrent
// use; Close releases it.
type Driver struct {
	t    *target
	c    *conn
	opts Options

	mu      sync.Mutex
	hostID  string
	mhz     float64
	samples map[string]cpuSample // last CPU time per VM UUID, for Stats' CPUMHz
}

type cpuSample struct {
	at  time.Time
	cpu time.Duration
}

var _ hostapi.Driver = (*Driver)(nil)

// Dial connects to the libvirt daemon at uri (a unix socket path, or a
// qemu, qemu+unix, qemu+tcp, qemu+tls or qemu+ssh URI; see the package
// documentation) and checks that it answers. nil opts means defaults.
// Errors are *hostapi.OpError: ErrHostUnreachable when no daemon answers
// before ctx is done or Options.ReconnectTimeout passes.
func Dial(ctx context.Context, uri string, opts *Options) (*Driver, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.DomainType == "" {
		o.DomainType = "kvm"
		if strings.HasPrefix(uri, "test:") || strings.HasPrefix(uri, "test+") {
			o.DomainType = "test"
		}
	}
	if o.Machine == "" {
		o.Machine = "pc"
	}
	if o.ReconnectTimeout <= 0 {
		o.ReconnectTimeout = 30 * time.Second
	}
	if o.ConsoleListen == "" {
		o.ConsoleListen = "127.0.0.1"
	}
	if err := checkConsoleListen(o.ConsoleListen); err != nil {
		return nil, hostapi.NewOpError("dial", uri, "", err)
	}
	t, err := parseTarget(uri, &o)
	if err != nil {
		return nil, hostapi.NewOpError("dial", uri, "", err)
	}
	d := &Driver{t: t, opts: o, samples: make(map[string]cpuSample)}
	d.c = &conn{t: t, timeout: o.ReconnectTimeout}
	if _, err := d.c.client(ctx, true); err != nil {
		return nil, d.opError(ctx, "dial", "", err, false)
	}
	return d, nil
}

// URI returns the URI by which other hosts' daemons reach this one for
// migration (Options.MigrationURI, or one made from Dial's).
func (d *Driver) URI() string { return d.t.migURI }

// Close disconnects from the daemon; the host and its VMs are not
// affected. Calls after Close fail with hostapi.ErrClosed.
func (d *Driver) Close() error {
	if err := d.c.close(); err != nil && !isTransport(err) {
		return hostapi.NewOpError("close", d.t.name, "", err)
	}
	return nil
}

// Supports reports what libvirt with QEMU does. VHDDisks is false: QEMU
// cannot save or live-migrate a guest with a vpc disk, so CopyImage
// converts VHD and VHDX to qcow2. The test driver (test:///default) has
// no migration and no checkpoints of memory.
func (d *Driver) Supports(c hostapi.Capability) bool {
	test := d.opts.DomainType == "test"
	switch c {
	case hostapi.LiveMigration, hostapi.StorageMigration, hostapi.MemoryCheckpoints:
		return !test
	case hostapi.Checkpoints, hostapi.DifferencingDisks, hostapi.Pause, hostapi.GuestShutdown, hostapi.Events:
		return true
	default:
		return false
	}
}

// Host returns the host's facts: NodeGetInfo for CPUs, NodeGetMemoryStats
// over all cells for memory (NodeGetInfo's figure when the hypervisor has
// no memory stats), the capabilities' host UUID, the active storage pools
// and the networks.
func (d *Driver) Host(ctx context.Context) (*hostapi.HostInfo, error) {
	h := &hostapi.HostInfo{Hypervisor: d.opts.DomainType, Formats: []string{"qcow2", "raw"}}
	err := d.c.read(ctx, func(l *golibvirt.Libvirt) error {
		_, mem, cpus, mhz, _, _, _, _, err := l.NodeGetInfo()
		if err != nil {
			return err
		}
		h.CPUCores, h.CPUMHz = int(cpus), float64(mhz)
		h.MemoryTotal, h.MemoryFree = int64(mem)<<10, -1
		if n, err := memoryStats(l); err == nil {
			if v, ok := n["total"]; ok {
				h.MemoryTotal = int64(v) << 10
			}
			if v, ok := n["free"]; ok {
				h.MemoryFree = int64(v) << 10
				if b, ok := n["buffers"]; ok {
					h.MemoryFree += int64(b) << 10
				}
				if c, ok := n["cached"]; ok {
					h.MemoryFree += int64(c) << 10
				}
			}
		}
		if h.MemoryFree < 0 {
			if free, err := l.NodeGetFreeMemory(); err == nil {
				h.MemoryFree = int64(free)
			} else {
				h.MemoryFree = h.MemoryTotal
			}
		}
		capsXML, err := l.ConnectGetCapabilities()
		if err != nil {
			return err
		}
		var caps libvirtxml.Caps
		if err := caps.Unmarshal(capsXML); err != nil {
			return fmt.Errorf("capabilities XML: %w", err)
		}
		h.ID = caps.Host.UUID
		if h.Name, err = l.ConnectGetHostname(); err != nil {
			return err
		}
		if v, err := l.ConnectGetVersion(); err == nil {
			h.HypervisorVersion = fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
		}
		pools, _, err := l.ConnectListAllStoragePools(1, golibvirt.ConnectListStoragePoolsActive)
		if err != nil {
			return err
		}
		h.Pools = h.Pools[:0]
		for _, p := range pools {
			_, capacity, _, avail, err := l.StoragePoolGetInfo(p)
			if err != nil {
				continue // gone meanwhile
			}
			h.Pools = append(h.Pools, hostapi.Pool{Name: p.Name, Capacity: int64(capacity), Free: int64(avail)})
		}
		nets, _, err := l.ConnectListAllNetworks(1, 0)
		if err != nil && !errors.As(err, new(golibvirt.Error)) {
			return err
		}
		h.Networks = h.Networks[:0]
		for _, n := range nets {
			h.Networks = append(h.Networks, n.Name)
		}
		return nil
	})
	if err != nil {
		return nil, d.opError(ctx, "host", "", err, false)
	}
	if h.Name == "" {
		h.Name = d.t.name
	}
	d.mu.Lock()
	d.hostID, d.mhz = h.ID, h.CPUMHz
	d.mu.Unlock()
	return h, nil
}

// memoryStats returns the host's memory counters in KiB over all cells.
func memoryStats(l *golibvirt.Libvirt) (map[string]uint64, error) {
	_, n, err := l.NodeGetMemoryStats(0, -1, 0)
	if err != nil {
		return nil, err
	}
	params, _, err := l.NodeGetMemoryStats(n, -1, 0)
	if err != nil {
		return nil, err
	}
	m := make(map[string]uint64, len(params))
	for _, p := range params {
		m[p.Field] = p.Value
	}
	return m, nil
}

// parseUUID reads a UUID in its text form.
func parseUUID(s string) (golibvirt.UUID, bool) {
	var u golibvirt.UUID
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || len(h) != 32 {
		return u, false
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, false
	}
	return u, true
}

func formatUUID(u golibvirt.UUID) string {
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// lookup finds a domain by UUID or name.
func lookup(l *golibvirt.Libvirt, id string) (golibvirt.Domain, error) {
	if u, ok := parseUUID(id); ok {
		dom, err := l.DomainLookupByUUID(u)
		if err == nil || !notFound(err) {
			return dom, err
		}
	}
	return l.DomainLookupByName(id)
}

// apiState maps a libvirt domain state and reason to a hostapi.State.
func apiState(state, reason int32) hostapi.State {
	switch golibvirt.DomainState(state) {
	case golibvirt.DomainRunning, golibvirt.DomainBlocked:
		return hostapi.StateRunning
	case golibvirt.DomainPaused, golibvirt.DomainPmsuspended:
		return hostapi.StatePaused
	case golibvirt.DomainShutdown:
		return hostapi.StateShutdown
	case golibvirt.DomainShutoff:
		if golibvirt.DomainShutoffReason(reason) == golibvirt.DomainShutoffCrashed {
			return hostapi.StateCrashed
		}
		return hostapi.StateStopped
	case golibvirt.DomainCrashed:
		return hostapi.StateCrashed
	default:
		return hostapi.StateUnknown
	}
}

// info reads one domain's record.
func (d *Driver) info(l *golibvirt.Libvirt, dom golibvirt.Domain) (*hostapi.VMInfo, error) {
	state, reason, err := l.DomainGetState(dom, 0)
	if err != nil {
		return nil, err
	}
	doc, err := l.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return nil, err
	}
	return vmInfo(doc, apiState(state, reason), d.t.remote)
}

// VMs returns every VM defined on the host (and the transient ones
// running there).
func (d *Driver) VMs(ctx context.Context) ([]hostapi.VMInfo, error) {
	var vms []hostapi.VMInfo
	err := d.c.read(ctx, func(l *golibvirt.Libvirt) error {
		vms = vms[:0]
		// One call for every domain's state, then each one's XML.
		recs, err := l.ConnectGetAllDomainStats(nil, uint32(golibvirt.DomainStatsState), 0)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := ctx.Err(); err != nil {
				return err
			}
			var st hostapi.VMStats
			state := fillStats(&st, rec.Params)
			doc, err := l.DomainGetXMLDesc(rec.Dom, 0)
			if notFound(err) {
				continue // undefined meanwhile
			}
			if err != nil {
				return err
			}
			vm, err := vmInfo(doc, state, d.t.remote)
			if err != nil {
				return err
			}
			vms = append(vms, *vm)
		}
		return nil
	})
	if err != nil {
		return nil, d.opError(ctx, "list VMs", "", err, false)
	}
	return vms, nil
}

// VM returns the VM whose UUID or name is id; hostapi.ErrNotFound when
// there is none.
func (d *Driver) VM(ctx context.Context, id string) (*hostapi.VMInfo, error) {
	var vm *hostapi.VMInfo
	err := d.c.read(ctx, func(l *golibvirt.Libvirt) error {
		dom, err := lookup(l, id)
		if err != nil {
			return err
		}
		vm, err = d.info(l, dom)
		return err
	})
	if err != nil {
		return nil, d.opError(ctx, "get VM", id, err, false)
	}
	return vm, nil
}
