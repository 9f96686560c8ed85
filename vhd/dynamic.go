package vhd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// dynamic is the block layer of dynamic and differencing images.
type dynamic struct {
	header    *dynHeader
	hOff      int64    // where the dynamic header is
	bat       []uint32 // sector offset of each block, or unusedEntry
	batOff    int64
	blockSize int64
	bmSize    int64 // bytes of sector bitmap in front of each block
	next      int64 // offset of the trailing footer: where a new block goes
	shortOK   bool  // blocks may reach past the end of the file (read as zeros)
}

// readBlockData reads the bitmap or data of an allocated block. Bytes past
// the end of the file read as zeros when a cut-short append is known.
func (d *Disk) readBlockData(p []byte, off int64) error {
	if !d.dyn.shortOK {
		return readFull(d.st, p, off)
	}
	n, err := d.st.ReadAt(p, off)
	if n < len(p) && err != nil && err != io.EOF {
		return fmt.Errorf("vhd: read %d bytes at %#x: %w", len(p), off, err)
	}
	clear(p[n:])
	return nil
}

func (dy *dynamic) blockEnd(e uint32) int64 {
	return int64(e)*SectorSize + dy.bmSize + dy.blockSize
}

// openDynamic reads the dynamic header and the BAT and checks that every
// block lies inside the file and clear of the metadata. tailOK tells whether
// the trailing footer is intact; if not and the disk is writable, it is
// rewritten.
func (d *Disk) openDynamic(foot *footer, fileSize int64, tailOK bool) error {
	hOff := int64(foot.DataOffset)
	if foot.DataOffset > uint64(fileSize) || hOff < footerSize || hOff+dynHeaderSize > fileSize || hOff%SectorSize != 0 {
		return formatErr(16, "footer data offset", detail(ErrFormat, "dynamic header offset %#x is not a sector inside a %d-byte file", foot.DataOffset, fileSize))
	}
	var hb [dynHeaderSize]byte
	if err := readFull(d.st, hb[:], hOff); err != nil {
		return err
	}
	h, err := parseDynHeader(hb[:], hOff)
	if err != nil {
		return err
	}
	bs := int64(h.BlockSize)
	need := (d.size + bs - 1) / bs
	if int64(h.MaxTableEntries) < need {
		return formatErr(hOff+28, "dynamic header", detail(ErrFormat, "%d BAT entries of %d bytes cannot hold %d bytes", h.MaxTableEntries, bs, d.size))
	}
	batOff := int64(h.TableOffset)
	if h.TableOffset > uint64(fileSize) || batOff%SectorSize != 0 || batOff < footerSize || batOff+need*4 > fileSize {
		return formatErr(hOff+16, "dynamic header", detail(ErrFormat, "BAT of %d entries at %#x outside a %d-byte file", need, h.TableOffset, fileSize))
	}
	if batOff < hOff+dynHeaderSize && batOff+need*4 > hOff {
		return formatErr(hOff+16, "dynamic header", detail(ErrFormat, "BAT at %#x overlaps the dynamic header at %#x", batOff, hOff))
	}
	dy := &dynamic{header: h, hOff: hOff, batOff: batOff, blockSize: bs, bmSize: bitmapBytes(bs)}
	if err := dy.readBAT(d.st, need); err != nil {
		return err
	}

	// Blocks must lie past the headers and the BAT; new blocks also go
	// past the parent locators' data.
	batEnd := batOff + alignUp(int64(h.MaxTableEntries)*4, SectorSize)
	meta := max(hOff+dynHeaderSize, batEnd)
	end := meta
	var pastEOF []int64 // starts of blocks that reach past the end of the file
	if d.info.Type == Differencing {
		for _, l := range h.Locators {
			if l.Code != platNone && l.DataLength > 0 && l.DataLength <= maxLocatorBytes && l.DataOffset < uint64(fileSize) {
				end = max(end, alignUp(int64(l.DataOffset)+int64(l.DataLength), SectorSize))
			}
		}
	}
	for i, e := range dy.bat {
		if e == unusedEntry {
			continue
		}
		start, stop := int64(e)*SectorSize, dy.blockEnd(e)
		// Blocks lie clear of the footer copy, the dynamic header and the
		// BAT (which Resize may have moved after the blocks).
		if start < footerSize || (start < hOff+dynHeaderSize && stop > hOff) || (start < batEnd && stop > batOff) {
			return formatErr(batOff+int64(i)*4, "BAT entry "+strconv.Itoa(i), detail(ErrFormat, "block at %#x-%#x overlaps metadata or lies past the end of a %d-byte file", start, stop, fileSize))
		}
		if stop > fileSize {
			pastEOF = append(pastEOF, start)
		}
		end = max(end, stop)
	}
	if len(pastEOF) > 0 {
		// Blocks past the end of the file are appends that a power loss cut
		// short: the BAT entry reached the disk, the new file size (and
		// perhaps other BAT entries) did not. Their missing bytes were
		// never synced and read as zeros. Each append adds at most one
		// block (and a footer) per BAT entry, which bounds how far past the
		// end such a block may start.
		limit := fileSize + int64(len(dy.bat))*(dy.bmSize+dy.blockSize+footerSize)
		for _, start := range pastEOF {
			if start > limit {
				return formatErr(batOff, "BAT", detail(ErrFormat, "block at %#x lies past the end of a %d-byte file", start, fileSize))
			}
		}
		dy.shortOK = true
		d.note(pastEOF[0], fmt.Sprintf("%d blocks reach past the end of the file (an append cut short); their missing bytes read as zeros", len(pastEOF)))
	}
	if d.writable {
		if err := dy.checkOverlaps(); err != nil {
			return err
		}
	}
	dy.next = end
	if tailOK {
		dy.next = max(end, alignUp(fileSize-footerSize, SectorSize))
	} else if d.writable {
		// A crash while a block was being added left no footer at the end:
		// put it back after the last block the BAT references.
		if err := writeFull(d.st, d.footer, end); err != nil {
			return err
		}
		if err := d.st.Truncate(end + footerSize); err != nil {
			return err
		}
		if err := d.st.Sync(); err != nil {
			return err
		}
		dy.shortOK = false
	}
	d.dyn = dy
	d.info.BlockSize = bs
	d.info.MaxTableEntries = int(h.MaxTableEntries)
	if d.info.Type == Differencing {
		d.info.ParentUUID = h.ParentUUID
		d.info.ParentTime = fromVHDTime(h.ParentTimestamp)
		d.info.ParentName = h.ParentName
		d.info.ParentLocators = readLocators(d.st, h, fileSize)
	}
	return nil
}

// readBAT loads the first n entries of the BAT, in pieces so that a bogus
// table costs no more memory than the file holds.
func (dy *dynamic) readBAT(st storage, n int64) error {
	dy.bat = make([]uint32, 0, min(n, 1<<20))
	buf := make([]byte, min(n*4, 1<<20))
	for off := int64(0); off < n*4; {
		chunk := buf[:min(int64(len(buf)), n*4-off)]
		if err := readFull(st, chunk, dy.batOff+off); err != nil {
			return err
		}
		for i := 0; i < len(chunk); i += 4 {
			dy.bat = append(dy.bat, binary.BigEndian.Uint32(chunk[i:]))
		}
		off += int64(len(chunk))
	}
	return nil
}

// checkOverlaps reports two BAT entries whose blocks overlap; writing to
// either would damage the other.
func (dy *dynamic) checkOverlaps() error {
	type blk struct {
		start int64
		idx   int
	}
	var used []blk
	for i, e := range dy.bat {
		if e != unusedEntry {
			used = append(used, blk{int64(e) * SectorSize, i})
		}
	}
	slices.SortFunc(used, func(a, b blk) int { return int(min(max(a.start-b.start, -1), 1)) })
	span := dy.bmSize + dy.blockSize
	for i := 1; i < len(used); i++ {
		if used[i].start < used[i-1].start+span {
			return formatErr(dy.batOff+int64(used[i].idx)*4, "BAT entry "+strconv.Itoa(used[i].idx),
				detail(ErrFormat, "block at %#x overlaps the block of entry %d", used[i].start, used[i-1].idx))
		}
	}
	return nil
}

// blocks lists the allocated blocks, clipped to size.
func (dy *dynamic) blocks(size int64) []blockRange {
	var out []blockRange
	for i, e := range dy.bat {
		if e == unusedEntry {
			continue
		}
		off := int64(i) * dy.blockSize
		out = append(out, blockRange{Extent{off, min(dy.blockSize, size-off)}, int64(e)*SectorSize + dy.bmSize})
	}
	return out
}

// bitSet reports whether sector s of a block's bitmap is set. VHD bitmaps
// are MSB-first: sector 0 is bit 7 of byte 0.
func bitSet(bm []byte, s int64) bool { return bm[s>>3]&(0x80>>(s&7)) != 0 }

func setBits(bm []byte, from, to int64) {
	for s := from; s < to; s++ {
		bm[s>>3] |= 0x80 >> (s & 7)
	}
}

// readBlocks fills p from the blocks of a dynamic or differencing image.
func (d *Disk) readBlocks(p []byte, off int64) error {
	dy := d.dyn
	_, err := forBlocks(p, off, dy.blockSize, func(blk, in int64, chunk []byte) error {
		switch e := dy.bat[blk]; {
		case e == unusedEntry:
			return d.readParent(chunk, blk*dy.blockSize+in)
		case d.info.Type != Differencing:
			// The bitmap of a dynamic image is all ones in practice and
			// is ignored on reads, as qemu and Hyper-V do.
			return d.readBlockData(chunk, int64(e)*SectorSize+dy.bmSize+in)
		default:
			return d.readPartial(chunk, e, in, blk*dy.blockSize+in)
		}
	})
	return err
}

// forBlocks calls f, in order, for each piece of p at disk offset off that
// lies within one block of size bs: blk is the block, in the piece's
// offset within it. It returns the bytes of the pieces done before an
// error.
func forBlocks(p []byte, off, bs int64, f func(blk, in int64, piece []byte) error) (int, error) {
	done := 0
	for len(p) > 0 {
		blk, in := off/bs, off%bs
		n := min(int64(len(p)), bs-in)
		if err := f(blk, in, p[:n]); err != nil {
			return done, err
		}
		p, off, done = p[n:], off+n, done+int(n)
	}
	return done, nil
}

// readPartial reads a range of one allocated block of a differencing image:
// sectors whose bitmap bit is set come from the block, the others from the
// parent.
func (d *Disk) readPartial(p []byte, e uint32, in, off int64) error {
	dy := d.dyn
	base := int64(e) * SectorSize
	s0, s1 := in/SectorSize, (in+int64(len(p))+SectorSize-1)/SectorSize
	bm := make([]byte, (s1+7)/8-s0/8)
	if err := d.readBlockData(bm, base+s0/8); err != nil {
		return err
	}
	bit := func(s int64) bool { return bitSet(bm, s-s0&^7) }
	return d.readRuns(p, in, off, SectorSize, bit, func(q []byte, from int64) error {
		return d.readBlockData(q, base+dy.bmSize+from)
	})
}

// readRuns fills p, the bytes from offset in of one block (off on the
// disk), run by run of sectors of size ss: where bit says a sector is the
// image's own, readOwn reads it (given its offset in the block), elsewhere
// it comes from the parent. Sector numbers count from the block's start.
func (d *Disk) readRuns(p []byte, in, off, ss int64, bit func(s int64) bool, readOwn func(q []byte, from int64) error) error {
	s0, s1 := in/ss, (in+int64(len(p))+ss-1)/ss
	for s := s0; s < s1; {
		own := bit(s)
		t := s + 1
		for t < s1 && bit(t) == own {
			t++
		}
		// Bytes of the run [s, t) that fall inside p.
		from, to := max(s*ss, in), min(t*ss, in+int64(len(p)))
		q := p[from-in : to-in]
		var err error
		if own {
			err = readOwn(q, from)
		} else {
			err = d.readParent(q, off+from-in)
		}
		if err != nil {
			return err
		}
		s = t
	}
	return nil
}

// readParent fills p with the parent's bytes at off, or zeros where there is
// no parent or it is smaller.
func (d *Disk) readParent(p []byte, off int64) error {
	if d.parent == nil {
		clear(p)
		return nil
	}
	n, err := d.parent.ReadAt(p, off)
	if err != nil && n < len(p) && err != io.EOF {
		return err
	}
	clear(p[n:])
	return nil
}

// zeroBlock is compared against to detect all-zero data.
var zeroBlock = make([]byte, 1<<20)

func allZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroBlock))
		if !bytes.Equal(p[:n], zeroBlock[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// writeBlocks writes p at off into a dynamic or differencing image,
// allocating blocks as needed. The caller holds d.mu exclusively.
// It returns the number of bytes written before any error.
func (d *Disk) writeBlocks(p []byte, off int64) (int, error) {
	return forBlocks(p, off, d.dyn.blockSize, d.writeBlock)
}

func (d *Disk) writeBlock(blk, in int64, data []byte) error {
	dy := d.dyn
	diff := d.info.Type == Differencing
	e := dy.bat[blk]
	if e == unusedEntry && !diff && allZero(data) {
		return nil // reads as zeros already
	}
	if diff {
		// A differencing image owns whole sectors: complete partial ones
		// with what they read as now.
		a0, a1 := in&^(SectorSize-1), alignUp(in+int64(len(data)), SectorSize)
		if a0 != in || a1 != in+int64(len(data)) {
			buf := make([]byte, a1-a0)
			base := blk * dy.blockSize
			if err := d.readBlocks(buf[:SectorSize], base+a0); err != nil {
				return err
			}
			if len(buf) > SectorSize {
				if err := d.readBlocks(buf[len(buf)-SectorSize:], base+a1-SectorSize); err != nil {
					return err
				}
			}
			copy(buf[in-a0:], data)
			data, in = buf, a0
		}
	}
	if e == unusedEntry {
		return d.allocate(blk, in, data)
	}
	base := int64(e) * SectorSize
	if err := writeFull(d.st, data, base+dy.bmSize+in); err != nil {
		return err
	}
	if !diff {
		return nil
	}
	// Mark the sectors as the child's, after their data is in place.
	s0, s1 := in/SectorSize, (in+int64(len(data)))/SectorSize
	b0, b1 := s0/8, (s1+7)/8
	bm := make([]byte, b1-b0)
	if err := d.readBlockData(bm, base+b0); err != nil {
		return err
	}
	before := slices.Clone(bm)
	setBits(bm, s0-b0*8, s1-b0*8)
	if bytes.Equal(bm, before) {
		return nil
	}
	return writeFull(d.st, bm, base+b0)
}

// allocate adds block blk holding data at byte in. The order of the writes
// keeps the image valid at every step of a crash: the footer goes after the
// new block, the data and the bitmap into it (the bitmap over the old
// footer, for a dynamic image), and only then does the BAT entry point at
// it. A crash before the last step leaves an unreferenced block: space that
// is lost until the image is compacted, never data.
func (d *Disk) allocate(blk, in int64, data []byte) error {
	dy := d.dyn
	pos := dy.next
	if d.info.Type == Differencing {
		// Leave the old trailing footer where it is and start the block
		// after it. Should a power loss keep the BAT entry but lose the
		// bitmap, the bitmap then reads as zeros (the parent shows through)
		// rather than as footer bytes that would hide the parent.
		pos += footerSize
	}
	if pos%SectorSize != 0 {
		return fmt.Errorf("vhd: internal error: block position %#x is not sector-aligned", pos)
	}
	if pos/SectorSize >= unusedEntry {
		return detail(ErrOutOfRange, "image file reached the VHD limit of 2 TiB")
	}
	bm := make([]byte, dy.bmSize)
	if d.info.Type == Differencing {
		setBits(bm, in/SectorSize, (in+int64(len(data)))/SectorSize)
	} else {
		for i := range bm {
			bm[i] = 0xff
		}
	}
	end := pos + dy.bmSize + dy.blockSize
	// The footer goes first, so that the last sector of the file is never
	// guest data (which could look like a footer) at any point of a crash.
	if err := writeFull(d.st, d.footer, end); err != nil {
		return err
	}
	if err := writeFull(d.st, data, pos+dy.bmSize+in); err != nil {
		return err
	}
	if err := writeFull(d.st, bm, pos); err != nil {
		return err
	}
	var entry [4]byte
	binary.BigEndian.PutUint32(entry[:], uint32(pos/SectorSize))
	if err := writeFull(d.st, entry[:], dy.batOff+blk*4); err != nil {
		return err
	}
	dy.bat[blk] = uint32(pos / SectorSize)
	dy.next = end
	return nil
}
