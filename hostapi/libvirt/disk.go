package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmmkit/vmmkit/hostapi"
)

// CreateDisk creates an empty volume in spec.Pool (qcow2 unless
// spec.Format says otherwise), or, with spec.Parent, a qcow2 volume over
// that volume of the same pool as its backing store.
func (d *Driver) CreateDisk(ctx context.Context, spec hostapi.DiskSpec) (*hostapi.DiskInfo, error) {
	var di *hostapi.DiskInfo
	err := d.c.write(ctx, func(l *golibvirt.Libvirt) error {
		pool, err := l.StoragePoolLookupByName(spec.Pool)
		if err != nil {
			return err
		}
		if _, err := l.StorageVolLookupByName(pool, spec.Name); err == nil {
			return fmt.Errorf("%w: disk %q in pool %q", hostapi.ErrExists, spec.Name, spec.Pool)
		}
		v := libvirtxml.StorageVolume{
			Name:   spec.Name,
			Target: &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: diskFormat(spec.Format)}},
		}
		if spec.Parent != "" {
			pv, err := l.StorageVolLookupByName(pool, spec.Parent)
			if err != nil {
				return fmt.Errorf("parent: %w", err)
			}
			parent, err := volume(l, pv)
			if err != nil {
				return err
			}
			if v.Target.Format.Type != "qcow2" {
				return fmt.Errorf("%w: a differencing disk is qcow2, not %s", hostapi.ErrInvalidSpec, spec.Format)
			}
			v.Capacity = &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: uint64(parent.Size)}
			v.BackingStore = &libvirtxml.StorageVolumeBackingStore{
				Path:   parent.Path,
				Format: &libvirtxml.StorageVolumeTargetFormat{Type: diskFormat(parent.Format)},
			}
		} else {
			if spec.Size <= 0 {
				return fmt.Errorf("%w: disk size %d", hostapi.ErrInvalidSpec, spec.Size)
			}
			v.Capacity = &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: uint64(spec.Size)}
		}
		doc, err := v.Marshal()
		if err != nil {
			return err
		}
		vol, err := l.StorageVolCreateXML(pool, doc, 0)
		if err != nil {
			return classify(err, true)
		}
		di, err = volume(l, vol)
		return err
	})
	if err != nil {
		return nil, d.opError(ctx, "create disk", "", err, true)
	}
	return di, nil
}

// volume reads a volume's record.
func volume(l *golibvirt.Libvirt, vol golibvirt.StorageVol) (*hostapi.DiskInfo, error) {
	doc, err := l.StorageVolGetXMLDesc(vol, 0)
	if err != nil {
		return nil, err
	}
	var v libvirtxml.StorageVolume
	if err := v.Unmarshal(doc); err != nil {
		return nil, fmt.Errorf("volume XML: %w", err)
	}
	di := &hostapi.DiskInfo{Pool: vol.Pool, Name: v.Name, Format: "raw"}
	if v.Target != nil {
		di.Path = v.Target.Path
		if v.Target.Format != nil && v.Target.Format.Type != "" {
			di.Format = apiFormat(v.Target.Format.Type)
		}
	}
	if v.Capacity != nil {
		di.Size = int64(sizeBytes(v.Capacity))
	}
	if v.Allocation != nil {
		di.Allocated = int64(sizeBytes(v.Allocation))
	}
	if v.BackingStore != nil && v.BackingStore.Path != "" {
		di.Parent = v.BackingStore.Path
		if pv, err := l.StorageVolLookupByPath(v.BackingStore.Path); err == nil && pv.Pool == vol.Pool {
			di.Parent = pv.Name
		}
	}
	return di, nil
}

func sizeBytes(s *libvirtxml.StorageVolumeSize) uint64 {
	switch strings.ToLower(s.Unit) {
	case "", "b", "bytes":
		return s.Value
	default:
		return uint64(memBytes(uint(s.Value), s.Unit))
	}
}

// DeleteDisk deletes volume name of pool, and the upload volume an
// interrupted CopyImage to name left (NAME.upload); hostapi.ErrInvalidState
// when a VM of the host has the disk attached.
func (d *Driver) DeleteDisk(ctx context.Context, pool, name string) error {
	err := d.c.write(ctx, func(l *golibvirt.Libvirt) error {
		p, err := l.StoragePoolLookupByName(pool)
		if err != nil {
			return err
		}
		leftover := false
		if up, err := l.StorageVolLookupByName(p, name+".upload"); err == nil {
			if err := l.StorageVolDelete(up, 0); err != nil && !notFound(err) {
				return err
			}
			leftover = true
		} else if !notFound(err) {
			return err
		}
		vol, err := l.StorageVolLookupByName(p, name)
		if err != nil {
			if leftover && notFound(err) {
				return nil
			}
			return err
		}
		path, err := l.StorageVolGetPath(vol)
		if err != nil {
			return err
		}
		doms, _, err := l.ConnectListAllDomains(1, 0)
		if err != nil {
			return err
		}
		for _, dom := range doms {
			doc, err := l.DomainGetXMLDesc(dom, 0)
			if err != nil {
				continue
			}
			vm, err := vmInfo(doc, hostapi.StateUnknown, d.t.remote)
			if err != nil {
				continue
			}
			for _, ref := range vm.Disks {
				if ref.Path == path || ref.Pool == pool && ref.Name == name {
					return fmt.Errorf("%w: disk is attached to VM %s", hostapi.ErrInvalidState, vm.Name)
				}
			}
		}
		return l.StorageVolDelete(vol, 0)
	})
	return d.opError(ctx, "delete disk", "", err, false)
}

// CopyImage uploads src into dst.Pool as volume dst.Name through a
// storage-volume upload stream, calling progress with the bytes sent and
// src.Size. Images in another format than the disk's (qcow2 unless
// dst.Format names raw; VHD and VHDX always become qcow2, see the package
// documentation) are uploaded under a temporary name and converted on the
// host. A copy that fails or is cancelled through ctx leaves no volume
// behind.
func (d *Driver) CopyImage(ctx context.Context, src hostapi.Image, dst hostapi.DiskSpec, progress hostapi.Progress) (*hostapi.DiskInfo, error) {
	di, err := d.copyImage(ctx, src, dst, progress)
	if err != nil {
		return nil, d.opError(ctx, "copy image", "", err, true)
	}
	return di, nil
}

func (d *Driver) copyImage(ctx context.Context, src hostapi.Image, dst hostapi.DiskSpec, progress hostapi.Progress) (*hostapi.DiskInfo, error) {
	if src.Open == nil {
		return nil, fmt.Errorf("%w: image %q has no Open", hostapi.ErrInvalidSpec, src.Name)
	}
	srcFmt := diskFormat(src.Format)
	if src.Format == "" {
		srcFmt = "raw"
	}
	switch srcFmt {
	case "raw", "qcow2", "vpc", "vhdx":
	default:
		return nil, fmt.Errorf("%w: image format %q", hostapi.ErrInvalidSpec, src.Format)
	}
	dstFmt := diskFormat(dst.Format)
	if dstFmt == "vpc" || dstFmt == "vhdx" {
		dstFmt = "qcow2" // QEMU cannot save or live-migrate those: convert
	}
	convert := srcFmt != dstFmt
	uploadName := dst.Name
	if convert {
		uploadName = dst.Name + ".upload"
	}

	var pool golibvirt.StoragePool
	err := d.c.read(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		if pool, err = l.StoragePoolLookupByName(dst.Pool); err != nil {
			return err
		}
		for _, n := range []string{dst.Name, uploadName} {
			if _, err := l.StorageVolLookupByName(pool, n); err == nil {
				return fmt.Errorf("%w: disk %q in pool %q", hostapi.ErrExists, n, dst.Pool)
			} else if !notFound(err) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	capacity := src.Size
	if capacity <= 0 {
		capacity = 1 // the upload sets the size of a file volume
	}
	doc, err := (&libvirtxml.StorageVolume{
		Name:     uploadName,
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: uint64(capacity)},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: srcFmt}},
	}).Marshal()
	if err != nil {
		return nil, err
	}
	var created []golibvirt.StorageVol
	cleanup := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, v := range created {
			_ = d.c.write(cctx, func(l *golibvirt.Libvirt) error { return l.StorageVolDelete(v, 0) })
		}
	}
	var up golibvirt.StorageVol
	err = d.c.write(ctx, func(l *golibvirt.Libvirt) error {
		var err error
		up, err = l.StorageVolCreateXML(pool, doc, 0)
		return classify(err, true)
	})
	if err != nil {
		return nil, err
	}
	created = append(created, up)

	rc, err := src.Open()
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("open image %s: %w", src.Name, err)
	}
	r := &progressReader{ctx: ctx, r: rc, total: src.Size, progress: progress}
	err = d.c.write(ctx, func(l *golibvirt.Libvirt) error {
		return l.StorageVolUpload(up, r, 0, 0, 0)
	})
	rc.Close()
	if err == nil && r.err != nil {
		err = r.err
	}
	if err != nil {
		cleanup()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("upload %s: %w", src.Name, ctx.Err())
		}
		if r.err != nil && !errors.Is(err, r.err) {
			err = fmt.Errorf("%w (reading the image: %w)", err, r.err)
		}
		return nil, fmt.Errorf("upload %s: %w", src.Name, err)
	}

	var di *hostapi.DiskInfo
	err = d.c.write(ctx, func(l *golibvirt.Libvirt) error {
		if err := l.StoragePoolRefresh(pool, 0); err != nil {
			return err
		}
		vol := up
		if convert {
			_, size, _, err := l.StorageVolGetInfo(up)
			if err != nil {
				return err
			}
			doc, err := (&libvirtxml.StorageVolume{
				Name:     dst.Name,
				Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: size},
				Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: dstFmt}},
			}).Marshal()
			if err != nil {
				return err
			}
			if vol, err = l.StorageVolCreateXMLFrom(pool, doc, up, 0); err != nil {
				return fmt.Errorf("convert %s to %s: %w", srcFmt, dstFmt, classify(err, true))
			}
			created = append(created, vol)
		}
		var err error
		di, err = volume(l, vol)
		return err
	})
	if err != nil {
		cleanup()
		return nil, err
	}
	if convert {
		created = created[:1] // the upload goes, the converted disk stays
		cleanup()
	}
	return di, nil
}

// progressReader reports bytes read and ends the upload when ctx is done.
type progressReader struct {
	ctx      context.Context
	r        io.Reader
	done     int64
	total    int64
	progress hostapi.Progress
	err      error // the error that ended reading, other than io.EOF
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		p.err = err
		return 0, err
	}
	n, err := p.r.Read(b)
	p.done += int64(n)
	if n > 0 && p.progress != nil {
		p.progress(p.done, p.total)
	}
	if err != nil && err != io.EOF {
		p.err = err
	}
	return n, err
}
