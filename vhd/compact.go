package vhd

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
)

// CompactOptions control Compact.
type CompactOptions struct {
	// Open controls how the chain is opened.
	Open *OpenOptions
	// Progress, if set, is called after each block with the blocks done so
	// far and in all, once for dropping and once for moving.
	Progress func(done, total int64)
}

// A CompactResult says what Compact did.
type CompactResult struct {
	BlocksDropped int   // blocks that read as zeros (or as the parent) and were freed
	BlocksMoved   int   // blocks moved into freed space
	SizeBefore    int64 // file size in bytes
	SizeAfter     int64
}

// Compact shrinks the dynamic or differencing image in the file name in
// place: blocks that read as all zeros (for a differencing image, the same
// as its parent) are freed — in VHDX, marked ZERO or NOT_PRESENT — blocks
// from the end of the file move into the freed space, and the file is cut
// after the last block. Gaps smaller than a block, which a differencing VHD
// keeps between the blocks it added, stay. Every step keeps the image valid: a moved block is
// copied and synced before its BAT entry (through the log, for VHDX)
// points at the copy, so an interruption at any point leaves an image that
// reads the same, and Compact can be run again. Compact checks ctx between
// blocks.
func Compact(ctx context.Context, name string, opts *CompactOptions) (res *CompactResult, err error) {
	var o CompactOptions
	if opts != nil {
		o = *opts
	}
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	d, err := OpenFile(name, os.O_RDWR, o.Open)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := d.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			if fi, serr := os.Stat(name); serr == nil {
				res.SizeAfter = fi.Size()
			}
		}
	}()
	res = &CompactResult{SizeBefore: fi.Size()}
	if d.dyn == nil && (d.vhdx == nil || d.vhdx.leaveAlloc) {
		return nil, fmt.Errorf("compact %s: %w", name, detail(ErrUnsupported, "a fixed image has no blocks to free"))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c := compactor{d: d, ctx: ctx, progress: o.Progress, res: res}
	if err := c.drop(); err != nil {
		return res, fmt.Errorf("compact %s: %w", name, err)
	}
	if err := c.move(); err != nil {
		return res, fmt.Errorf("compact %s: %w", name, err)
	}
	return res, nil
}

type compactor struct {
	d        *Disk
	ctx      context.Context
	progress func(done, total int64)
	res      *CompactResult
}

// slot is an allocated payload block: its BAT index, disk offset and file
// position.
type slot struct {
	idx  int64
	disk int64
	pos  int64
}

func (c *compactor) blocks() []slot {
	d := c.d
	var out []slot
	if d.dyn != nil {
		for i, e := range d.dyn.bat {
			if e != unusedEntry {
				out = append(out, slot{int64(i), int64(i) * d.dyn.blockSize, int64(e) * SectorSize})
			}
		}
		return out
	}
	x := d.vhdx
	payload := (d.size + x.blockSize - 1) / x.blockSize
	for blk := range payload {
		idx := blk + blk/x.chunkRatio
		if s := x.bat[idx] & 7; s == payloadFullyPresent || s == payloadPartiallyPresent {
			out = append(out, slot{idx, blk * x.blockSize, int64(x.bat[idx]>>20) * vhdxMB})
		}
	}
	return out
}

// drop frees the blocks that add nothing, and syncs.
func (c *compactor) drop() error {
	d := c.d
	bs := d.info.BlockSize
	view, under := make([]byte, bs), make([]byte, bs)
	all := c.blocks()
	for i, b := range all {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		n := min(bs, d.size-b.disk)
		if err := d.read(view[:n], b.disk); err != nil {
			return err
		}
		clear(under[:n])
		if d.parent != nil {
			if err := d.readParent(under[:n], b.disk); err != nil {
				return err
			}
		}
		if bytes.Equal(view[:n], under[:n]) {
			if err := c.setEntry(b.idx, -1); err != nil {
				return err
			}
			c.res.BlocksDropped++
		}
		if c.progress != nil {
			c.progress(int64(i+1), int64(len(all)))
		}
	}
	return c.sync()
}

// setEntry points BAT entry idx at file position pos, or frees it (pos < 0).
func (c *compactor) setEntry(idx, pos int64) error {
	d := c.d
	if d.dyn != nil {
		v := uint32(unusedEntry)
		if pos >= 0 {
			v = uint32(pos / SectorSize)
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v)
		if err := writeFull(d.st, b[:], d.dyn.batOff+idx*4); err != nil {
			return err
		}
		d.dyn.bat[idx] = v
		return nil
	}
	x := d.vhdx
	if err := d.beginSession(); err != nil {
		return err
	}
	switch {
	case pos >= 0:
		x.setBAT(idx, uint64(pos/vhdxMB)<<20|x.bat[idx]&7)
	case x.hasParent:
		x.setBAT(idx, payloadNotPresent)
	default:
		x.setBAT(idx, payloadZero)
	}
	return nil
}

func (c *compactor) sync() error {
	if c.d.vhdx != nil {
		return c.d.flushVHDX()
	}
	return c.d.st.Sync()
}

// move fills the freed space with the blocks nearest the end of the file,
// then cuts the file.
func (c *compactor) move() error {
	d := c.d
	span := d.info.BlockSize // bytes a block occupies in the file
	var metaEnd, align int64
	if d.dyn != nil {
		span += d.dyn.bmSize
		dy := d.dyn
		metaEnd = max(dy.hOff+dynHeaderSize, dy.batOff+alignUp(int64(dy.header.MaxTableEntries)*4, SectorSize))
		for _, l := range dy.header.Locators {
			if l.Code != platNone && l.DataLength > 0 && l.DataLength <= maxLocatorBytes {
				metaEnd = max(metaEnd, alignUp(int64(l.DataOffset)+int64(l.DataLength), SectorSize))
			}
		}
		align = SectorSize
	} else {
		x := d.vhdx
		metaEnd = max(int64(x.header.logOffset)+int64(x.header.logLength), x.metaOff+x.metaLen, x.batOff+x.batLen)
		align = vhdxMB
	}
	// Free slots: the space between metadata and the last block that no
	// block or sector bitmap uses, in whole block spans.
	kept := c.blocks()
	used := make([]Extent, 0, len(kept))
	for _, b := range kept {
		used = append(used, Extent{b.pos, span})
	}
	var bitmaps []Extent // VHDX sector bitmaps stay where they are
	if d.vhdx != nil {
		x := d.vhdx
		for i, e := range x.bat {
			isBitmap := int64(i)%(x.chunkRatio+1) == x.chunkRatio
			switch s := e & 7; {
			case isBitmap && s == bitmapPresent:
				bitmaps = append(bitmaps, Extent{int64(e>>20) * vhdxMB, vhdxMB})
			case !isBitmap && s != payloadFullyPresent && s != payloadPartiallyPresent && e>>20 != 0:
				// A zero block that keeps its space: it stays too.
				bitmaps = append(bitmaps, Extent{int64(e>>20) * vhdxMB, x.blockSize})
			}
		}
		used = append(used, bitmaps...)
	}
	slices.SortFunc(used, func(a, b Extent) int { return int(min(max(a.Offset-b.Offset, -1), 1)) })
	var free []int64
	at := alignUp(metaEnd, align)
	for _, u := range used {
		for ; at+span <= u.Offset; at += span {
			free = append(free, at)
		}
		at = max(at, alignUp(u.End(), align))
	}
	// Move the last blocks into the first free slots.
	slices.SortFunc(kept, func(a, b slot) int { return int(min(max(b.pos-a.pos, -1), 1)) })
	buf := make([]byte, span)
	total := int64(min(len(free), len(kept)))
	for len(free) > 0 && len(kept) > 0 && free[0] < kept[0].pos {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		b, to := kept[0], free[0]
		if err := readFull(d.st, buf, b.pos); err != nil {
			return err
		}
		if err := writeFull(d.st, buf, to); err != nil {
			return err
		}
		if err := d.st.Sync(); err != nil {
			return err
		}
		if err := c.setEntry(b.idx, to); err != nil {
			return err
		}
		if err := c.sync(); err != nil {
			return err
		}
		kept, free = kept[1:], free[1:]
		c.res.BlocksMoved++
		if c.progress != nil {
			c.progress(int64(c.res.BlocksMoved), total)
		}
	}
	// Cut the file after the last thing it holds.
	end := alignUp(metaEnd, align)
	for _, b := range c.blocks() {
		end = max(end, b.pos+span)
	}
	for _, u := range bitmaps {
		end = max(end, u.End())
	}
	if d.dyn != nil {
		if err := writeFull(d.st, d.footer, end); err != nil {
			return err
		}
		if err := d.st.Truncate(end + footerSize); err != nil {
			return err
		}
		d.dyn.next = end
		return d.st.Sync()
	}
	w := d.vhdx.w
	end = alignUp(end, vhdxMB)
	if err := w.file.Truncate(end); err != nil {
		return err
	}
	w.next = end
	return w.file.Sync()
}
