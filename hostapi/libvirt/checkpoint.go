package libvirt

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmkit/vmmkit/hostapi"
)

// CreateCheckpoint records the VM as a libvirt internal snapshot named
// name: disks and memory when the VM runs or is paused, disks only when it
// is stopped. Every disk must be qcow2; libvirt's refusal otherwise comes
// back as hostapi.ErrInvalidState or ErrUnsupported with its message.
func (d *Driver) CreateCheckpoint(ctx context.Context, id, name string) (*hostapi.Checkpoint, error) {
	if name == "" {
		return nil, hostapi.NewOpError("create checkpoint", d.t.name, id, fmt.Errorf("%w: empty checkpoint name", hostapi.ErrInvalidSpec))
	}
	var cp *hostapi.Checkpoint
	err := d.c.write(ctx, func(l *golibvirt.Libvirt) error {
		dom, err := lookup(l, id)
		if err != nil {
			return err
		}
		if _, err := l.DomainSnapshotLookupByName(dom, name, 0); err == nil {
			return fmt.Errorf("%w: checkpoint %q", hostapi.ErrExists, name)
		}
		doc, err := (&libvirtxml.DomainSnapshot{Name: name}).Marshal()
		if err != nil {
			return err
		}
		snap, err := l.DomainSnapshotCreateXML(dom, doc, 0)
		if err != nil {
			return classify(err, false)
		}
		cp, err = checkpoint(l, snap)
		return err
	})
	if err != nil {
		return nil, d.opError(ctx, "create checkpoint", id, err, false)
	}
	return cp, nil
}

func checkpoint(l *golibvirt.Libvirt, snap golibvirt.DomainSnapshot) (*hostapi.Checkpoint, error) {
	doc, err := l.DomainSnapshotGetXMLDesc(snap, 0)
	if err != nil {
		return nil, err
	}
	var s libvirtxml.DomainSnapshot
	if err := s.Unmarshal(doc); err != nil {
		return nil, fmt.Errorf("snapshot XML: %w", err)
	}
	cp := &hostapi.Checkpoint{Name: s.Name, Memory: s.State == "running" || s.State == "paused"}
	if sec, err := strconv.ParseInt(s.CreationTime, 10, 64); err == nil {
		cp.Created = time.Unix(sec, 0)
	}
	return cp, nil
}

// Checkpoints lists the VM's checkpoints, oldest first.
func (d *Driver) Checkpoints(ctx context.Context, id string) ([]hostapi.Checkpoint, error) {
	var cps []hostapi.Checkpoint
	err := d.c.read(ctx, func(l *golibvirt.Libvirt) error {
		cps = cps[:0]
		dom, err := lookup(l, id)
		if err != nil {
			return err
		}
		snaps, _, err := l.DomainListAllSnapshots(dom, 1, uint32(golibvirt.DomainSnapshotListTopological))
		if err != nil {
			return err
		}
		for _, s := range snaps {
			cp, err := checkpoint(l, s)
			if err != nil {
				if notFound(err) {
					continue
				}
				return err
			}
			cps = append(cps, *cp)
		}
		return nil
	})
	if err != nil {
		return nil, d.opError(ctx, "list checkpoints", id, err, false)
	}
	// Topological order puts parents first; creation time settles siblings
	// (the sort is stable, and times have one-second resolution).
	slices.SortStableFunc(cps, func(a, b hostapi.Checkpoint) int { return a.Created.Compare(b.Created) })
	return cps, nil
}

// RevertCheckpoint returns the VM to checkpoint name: running (or paused)
// with its memory when the checkpoint holds memory, stopped otherwise.
func (d *Driver) RevertCheckpoint(ctx context.Context, id, name string) error {
	err := d.c.write(ctx, func(l *golibvirt.Libvirt) error {
		snap, err := lookupSnapshot(l, id, name)
		if err != nil {
			return err
		}
		return classify(l.DomainRevertToSnapshot(snap, 0), false)
	})
	return d.opError(ctx, "revert checkpoint", id, err, false)
}

// DeleteCheckpoint removes checkpoint name; the VM stays as it is.
func (d *Driver) DeleteCheckpoint(ctx context.Context, id, name string) error {
	err := d.c.write(ctx, func(l *golibvirt.Libvirt) error {
		snap, err := lookupSnapshot(l, id, name)
		if err != nil {
			return err
		}
		return l.DomainSnapshotDelete(snap, 0)
	})
	return d.opError(ctx, "delete checkpoint", id, err, false)
}

// lookupSnapshot finds checkpoint name of VM id.
func lookupSnapshot(l *golibvirt.Libvirt, id, name string) (golibvirt.DomainSnapshot, error) {
	dom, err := lookup(l, id)
	if err != nil {
		return golibvirt.DomainSnapshot{}, err
	}
	return l.DomainSnapshotLookupByName(dom, name, 0)
}
