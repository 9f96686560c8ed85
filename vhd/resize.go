package vhd

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
)

// Resize changes the virtual size of the image in the file name. Growing
// adds space that reads as zeros (for a differencing image, as zeros
// beyond the parent's end). Shrinking is refused with ErrOutOfRange unless
// nothing past the new size holds data (no allocated block, for a fixed
// image no data in the file). The size is rounded up to a whole sector (a
// logical sector for VHDX). A VHD's BAT that has no room for a larger size
// is moved to the end of the file; a VHDX's BAT region must have room.
//
// Each step keeps the image valid: new structures are written and synced
// before the one-sector (VHD) or logged (VHDX) change that makes them
// count, and the size changes last.
func Resize(ctx context.Context, name string, size int64, opts *OpenOptions) (err error) {
	d, err := OpenFile(name, os.O_RDWR, opts)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	ss := d.info.LogicalSectorSize
	size = alignUp(size, ss)
	limit := int64(MaxVHDSize)
	if d.vhdx != nil {
		limit = vhdxMaxSize
	}
	if size <= 0 || size > limit {
		return fmt.Errorf("resize %s: %w", name, detail(ErrOutOfRange, "size %d is not between 1 byte and %d", size, limit))
	}
	if size == d.size {
		return nil
	}
	if size < d.size {
		if err := d.checkTailFree(size); err != nil {
			return fmt.Errorf("resize %s: %w", name, err)
		}
	}
	switch {
	case d.vhdx != nil:
		err = d.resizeVHDX(size)
	case d.dyn != nil:
		err = d.resizeDynamic(size)
	default:
		err = d.resizeFixed(size)
	}
	if err != nil {
		return fmt.Errorf("resize %s: %w", name, err)
	}
	return nil
}

// checkTailFree refuses a shrink that would drop data.
func (d *Disk) checkTailFree(size int64) error {
	var own []Extent
	switch {
	case d.vhdx != nil:
		for _, b := range d.vhdx.blocks(d.size) {
			own = append(own, b.disk)
		}
	case d.dyn != nil:
		for _, b := range d.dyn.blocks(d.size) {
			own = append(own, b.disk)
		}
	default:
		own = d.extents()
	}
	for _, e := range own {
		if e.End() > size {
			return detail(ErrOutOfRange, "data at %d lies past the new size %d", max(e.Offset, size), size)
		}
	}
	return nil
}

// setFooterSize records size in a VHD footer and its copy; the copy at
// offset 0 (which readers trust first) goes first.
func (d *Disk) setFooterSize(size int64, at int64) error {
	f, err := parseFooter(d.footer, at)
	if err != nil {
		return err
	}
	f.CurrentSize = uint64(size)
	_, f.Geometry = vhdSize(size, false)
	d.footer = f.marshal()
	if f.DiskType != diskTypeFixed {
		if err := writeFull(d.st, d.footer, 0); err != nil {
			return err
		}
	}
	if err := writeFull(d.st, d.footer, at); err != nil {
		return err
	}
	d.size, d.info.Size = size, size
	return d.st.Sync()
}

// resizeFixed moves the footer of a fixed VHD. Growing writes the new
// footer first, then clears the old one, which is now disk data.
func (d *Disk) resizeFixed(size int64) error {
	old := d.size
	if size > old {
		if err := d.setFooterSize(size, size); err != nil {
			return err
		}
		if err := writeFull(d.st, make([]byte, footerSize), old); err != nil {
			return err
		}
		return d.st.Sync()
	}
	if err := d.setFooterSize(size, size); err != nil {
		return err
	}
	if err := d.st.Truncate(size + footerSize); err != nil {
		return err
	}
	return d.st.Sync()
}

// resizeDynamic changes a dynamic or differencing VHD's size, moving its
// BAT to the end of the file when it has no room for the new size.
func (d *Disk) resizeDynamic(size int64) error {
	dy := d.dyn
	need := (size + dy.blockSize - 1) / dy.blockSize
	if need > int64(dy.header.MaxTableEntries) {
		room := alignUp(int64(dy.header.MaxTableEntries)*4, SectorSize) / 4
		if need <= room {
			// The padding of the BAT's last sector holds unused entries.
			if err := d.setTable(dy.batOff, need); err != nil {
				return err
			}
		} else {
			// A new BAT after the last block (and the footer after it),
			// synced before the header points at it.
			newOff := dy.next
			n := alignUp(need*4, SectorSize)
			b := make([]byte, n)
			for i := range b {
				b[i] = 0xff
			}
			for i, e := range dy.bat {
				binary.BigEndian.PutUint32(b[4*i:], e)
			}
			if err := writeFull(d.st, d.footer, newOff+n); err != nil {
				return err
			}
			if err := writeFull(d.st, b, newOff); err != nil {
				return err
			}
			if err := d.st.Sync(); err != nil {
				return err
			}
			if err := d.setTable(newOff, need); err != nil {
				return err
			}
			dy.batOff = newOff
			dy.next = newOff + n
		}
		for int64(len(dy.bat)) < need {
			dy.bat = append(dy.bat, unusedEntry)
		}
	}
	if size < d.size {
		dy.bat = dy.bat[:need]
	}
	return d.setFooterSize(size, dy.next)
}

// setTable points the dynamic header at a BAT of n entries at off. Both
// fields and the checksum sit in the header's first sector, which is
// written alone.
func (d *Disk) setTable(off, n int64) error {
	h := *d.dyn.header
	h.TableOffset, h.MaxTableEntries = uint64(off), uint32(n)
	b := h.marshal()
	if err := writeFull(d.st, b[:SectorSize], d.dyn.hOff); err != nil {
		return err
	}
	if err := d.st.Sync(); err != nil {
		return err
	}
	*d.dyn.header = h
	return nil
}

// resizeVHDX changes the virtual size item of a VHDX through the log.
func (d *Disk) resizeVHDX(size int64) error {
	x := d.vhdx
	payload := (size + x.blockSize - 1) / x.blockSize
	var n int64
	if x.hasParent {
		n = (payload + x.chunkRatio - 1) / x.chunkRatio * (x.chunkRatio + 1)
	} else {
		n = payload + max(0, payload-1)/x.chunkRatio
	}
	if n*8 > x.batLen {
		return detail(ErrUnsupported, "the BAT region (%d bytes) has no room for %d entries; convert the image instead", x.batLen, n)
	}
	// Find the virtual size item.
	table := make([]byte, 64<<10)
	if err := readFull(d.st, table, x.metaOff); err != nil {
		return err
	}
	le := binary.LittleEndian
	count := int(le.Uint16(table[10:]))
	var itemOff int64 = -1
	for i := range count {
		e := table[32+32*i:]
		if UUID(e[0:16]) == metaVirtualSize {
			itemOff = x.metaOff + int64(le.Uint32(e[16:]))
		}
	}
	if itemOff < 0 {
		return detail(ErrFormat, "no virtual size item")
	}
	if err := d.beginSession(); err != nil {
		return err
	}
	page := itemOff &^ (logSector - 1)
	b := make([]byte, logSector)
	if err := readFull(d.st, b, page); err != nil {
		return err
	}
	le.PutUint64(b[itemOff-page:], uint64(size))
	// Entries past the old end of the BAT are zero already (the region is
	// zero-filled); shrinking drops the ones past the new end, which hold
	// no data.
	for int64(len(x.bat)) < n {
		x.bat = append(x.bat, 0)
	}
	// Entries that a shrink drops are cleared on disk too, so that a later
	// grow does not find stale sector bitmaps there.
	for i := n; i < int64(len(x.bat)); i++ {
		if x.bat[i] != 0 {
			x.setBAT(i, 0)
		}
	}
	x.bat = x.bat[:n]
	x.w.ov.pages[page] = b
	if err := d.flushVHDX(); err != nil {
		return err
	}
	d.size, d.info.Size = size, size
	return nil
}
