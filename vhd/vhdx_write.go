package vhd

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf16"
)

// Defaults of VHDX images this package creates, as Hyper-V makes them.
const (
	// DefaultVHDXBlockSize is the block size of dynamic and fixed VHDX
	// images made with a zero CreateOptions.BlockSize.
	DefaultVHDXBlockSize = 32 << 20
	// DefaultVHDXDiffBlockSize is that of differencing VHDX images.
	DefaultVHDXDiffBlockSize = 2 << 20

	vhdxLogSize      = 1 << 20
	vhdxLogOff       = 1 << 20
	vhdxMetadataOff  = 2 << 20
	vhdxMetadataSize = 1 << 20
	vhdxBATOff       = 3 << 20
	vhdxCreator      = "vmmkit"
	maxDirtyPages    = 128 // metadata pages held before a flush through the log
)

func putHeader(h *vhdxHeaderInfo) []byte {
	b := make([]byte, vhdxHeaderSize)
	le := binary.LittleEndian
	copy(b[0:4], "head")
	le.PutUint64(b[8:], h.seq)
	copy(b[16:32], h.fileWriteGUID[:])
	copy(b[32:48], h.dataWriteGUID[:])
	copy(b[48:64], h.logGUID[:])
	le.PutUint16(b[64:], h.logVersion)
	le.PutUint16(b[66:], 1)
	le.PutUint32(b[68:], h.logLength)
	le.PutUint64(b[72:], h.logOffset)
	le.PutUint32(b[4:], vhdxChecksum(b, 4))
	return b
}

func putUTF16(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// writeNewVHDX lays out a new VHDX image in f.
func writeNewVHDX(f *os.File, size int64, o *CreateOptions, parent *Disk) error {
	le := binary.LittleEndian
	bs := o.BlockSize
	ls, ps := o.LogicalSectorSize, o.PhysicalSectorSize
	payload := (size + bs - 1) / bs
	chunkRatio := chunkFactor * ls / bs
	var n int64
	if parent != nil {
		n = (payload + chunkRatio - 1) / chunkRatio * (chunkRatio + 1)
	} else {
		n = payload + max(0, payload-1)/chunkRatio
	}
	batLen := alignUp(n*8, vhdxMB)
	end := int64(vhdxBATOff) + batLen
	head := make([]byte, end)

	copy(head[0:8], "vhdxfile")
	copy(head[8:], putUTF16(vhdxCreator))
	h := &vhdxHeaderInfo{seq: 1, fileWriteGUID: NewUUID(), dataWriteGUID: NewUUID(), logLength: vhdxLogSize, logOffset: vhdxLogOff}
	copy(head[vhdxHeader1Off:], putHeader(h))
	h.seq = 2
	copy(head[vhdxHeader2Off:], putHeader(h))

	rt := make([]byte, vhdxRegionSize)
	copy(rt[0:4], "regi")
	le.PutUint32(rt[8:], 2)
	for i, r := range []struct {
		id       UUID
		off, len int64
	}{{regionBAT, vhdxBATOff, batLen}, {regionMetadata, vhdxMetadataOff, vhdxMetadataSize}} {
		e := rt[16+32*i:]
		copy(e[0:16], r.id[:])
		le.PutUint64(e[16:], uint64(r.off))
		le.PutUint32(e[24:], uint32(r.len))
		le.PutUint32(e[28:], 1) // required
	}
	le.PutUint32(rt[4:], vhdxChecksum(rt, 4))
	copy(head[vhdxRegion1Off:], rt)
	copy(head[vhdxRegion2Off:], rt)

	// Metadata: the table, then the items from 64 KiB on.
	md := head[vhdxMetadataOff : vhdxMetadataOff+vhdxMetadataSize]
	copy(md[0:8], "metadata")
	type item struct {
		id    UUID
		flags uint32 // 2: virtual disk, 4: required
		data  []byte
	}
	u32 := func(v uint32) []byte { b := make([]byte, 4); le.PutUint32(b, v); return b }
	u64 := func(v uint64) []byte { b := make([]byte, 8); le.PutUint64(b, v); return b }
	var fpFlags uint32
	if o.Type == Fixed {
		fpFlags |= 1 // leave blocks allocated
	}
	if parent != nil {
		fpFlags |= 2 // has parent
	}
	page83 := o.UUID
	items := []item{
		{metaFileParameters, 4, append(u32(uint32(bs)), u32(fpFlags)...)},
		{metaVirtualSize, 6, u64(uint64(size))},
		{metaPage83, 6, page83[:]},
		{metaLogicalSector, 6, u32(uint32(ls))},
		{metaPhysicalSector, 6, u32(uint32(ps))},
	}
	if parent != nil {
		loc, err := vhdxParentLocator(f.Name(), o.Parent, parent.linkID)
		if err != nil {
			return err
		}
		items = append(items, item{metaParentLocator, 4, loc})
	}
	le.PutUint16(md[10:], uint16(len(items)))
	at := int64(64 << 10)
	for i, it := range items {
		e := md[32+32*i:]
		copy(e[0:16], it.id[:])
		le.PutUint32(e[16:], uint32(at))
		le.PutUint32(e[20:], uint32(len(it.data)))
		le.PutUint32(e[24:], it.flags)
		copy(md[at:], it.data)
		at = alignUp(at+int64(len(it.data)), 8)
	}

	fileEnd := end
	if o.Type == Fixed {
		// Every payload block present, in order, after the BAT.
		bat := head[vhdxBATOff:]
		for blk := range payload {
			off := end + blk*bs
			le.PutUint64(bat[(blk+blk/chunkRatio)*8:], uint64(off/vhdxMB)<<20|payloadFullyPresent)
		}
		fileEnd = end + payload*bs
	}
	if _, err := f.WriteAt(head, 0); err != nil {
		return err
	}
	return f.Truncate(fileEnd)
}

// vhdxParentLocator encodes the key-value parent locator of a child at
// child whose parent is the VHDX at parentPath with data write GUID link.
func vhdxParentLocator(child, parentPath string, link UUID) ([]byte, error) {
	abs, err := filepath.Abs(parentPath)
	if err != nil {
		return nil, err
	}
	rel, err := relativeParent(child, abs)
	if err != nil {
		return nil, err
	}
	return encodeLocatorKV([][2]string{
		{"parent_linkage", "{" + guidString(link) + "}"},
		{"relative_path", strings.ReplaceAll(rel, "/", `\`)},
		{"absolute_win32_path", strings.ReplaceAll(filepath.ToSlash(abs), "/", `\`)},
	})
}

// encodeLocatorKV encodes a VHDX parent locator item of key-value pairs.
func encodeLocatorKV(kv [][2]string) ([]byte, error) {
	le := binary.LittleEndian
	b := make([]byte, 20+12*len(kv))
	copy(b[0:16], locatorTypeVHDX[:])
	le.PutUint16(b[18:], uint16(len(kv)))
	for i, p := range kv {
		k, v := putUTF16(p[0]), putUTF16(p[1])
		ko := len(b)
		b = append(b, k...)
		vo := len(b)
		b = append(b, v...)
		e := b[20+12*i:] // after the appends, which may move b
		le.PutUint32(e[0:], uint32(ko))
		le.PutUint32(e[4:], uint32(vo))
		le.PutUint16(e[8:], uint16(len(k)))
		le.PutUint16(e[10:], uint16(len(v)))
	}
	if len(b) > 64<<10 {
		return nil, fmt.Errorf("parent path too long")
	}
	return b, nil
}

// testHookAfterLog, when set by a test, runs after a log entry is durable
// and before its pages are written in place; an error stops the flush there,
// leaving a pending log as a crash would.
var testHookAfterLog func() error

// vhdxWriter is the state of a VHDX image open for writing.
type vhdxWriter struct {
	file    storage  // the image file itself
	ov      *overlay // metadata pages changed since the last flush, over file
	next    int64    // where the next block goes (1 MiB aligned)
	session bool     // headers carry this session's GUIDs
	logSeq  uint64
}

// prepareVHDXWrite sets up writing after the image has been read.
func (d *Disk) prepareVHDXWrite(fileSize int64) error {
	x := d.vhdx
	logOff, logLen := int64(x.header.logOffset), int64(x.header.logLength)
	regions := []Extent{{x.batOff, x.batLen}, {x.metaOff, x.metaLen}}
	if logLen < vhdxMB || logLen%vhdxMB != 0 || logOff%vhdxMB != 0 || logOff < vhdxMB || logOff+logLen > fileSize ||
		slices.ContainsFunc(regions, func(r Extent) bool { return logOff < r.End() && r.Offset < logOff+logLen }) {
		return formatErr(x.header.off+68, "VHDX header", detail(ErrUnsupported, "writing an image whose log (%d bytes at %#x) is empty, outside the file or over another region", logLen, logOff))
	}
	// New blocks go after everything the file holds, so that they start
	// as holes. Space a crash left unreferenced stays until Compact.
	next := alignUp(fileSize, vhdxMB)
	for _, r := range append(regions, Extent{logOff, logLen}) {
		next = max(next, alignUp(r.End(), vhdxMB))
	}
	for i, e := range x.bat {
		if e>>20 != 0 {
			span := x.blockSize
			if int64(i)%(x.chunkRatio+1) == x.chunkRatio {
				span = vhdxMB
			}
			next = max(next, int64(e>>20)*vhdxMB+span)
		}
	}
	w := &vhdxWriter{file: d.st, next: next}
	w.ov = &overlay{storage: d.st, pages: make(map[int64][]byte)}
	d.st = w.ov
	x.w = w
	return nil
}

// beginSession marks the image as being written: new file and data write
// GUIDs, and a log GUID that makes the log's entries count.
func (d *Disk) beginSession() error {
	x := d.vhdx
	w := x.w
	if w.session {
		return nil
	}
	h := x.header
	h.seq++
	h.fileWriteGUID, h.dataWriteGUID, h.logGUID = NewUUID(), NewUUID(), NewUUID()
	if err := d.writeHeader(&h); err != nil {
		return err
	}
	w.session = true
	w.logSeq = 1
	d.linkID = h.dataWriteGUID
	return nil
}

// writeHeader writes h into the header slot that is not current, and syncs.
func (d *Disk) writeHeader(h *vhdxHeaderInfo) error {
	x := d.vhdx
	h.off = vhdxHeader1Off
	if x.header.off == vhdxHeader1Off {
		h.off = vhdxHeader2Off
	}
	if err := writeFull(x.w.file, putHeader(h), h.off); err != nil {
		return err
	}
	if err := x.w.file.Sync(); err != nil {
		return err
	}
	x.header = *h
	return nil
}

// allocate reserves n bytes at the end of the file for a new block and
// extends the file over them, so that they read as zeros until written.
func (w *vhdxWriter) allocate(n int64) (int64, error) {
	pos := w.next
	if err := w.file.Truncate(pos + n); err != nil {
		return 0, err
	}
	w.next += n
	return pos, nil
}

// setBAT changes entry i and queues its BAT page for the log.
func (x *vhdxImage) setBAT(i int64, v uint64) {
	x.bat[i] = v
	page := i * 8 &^ (logSector - 1)
	b := make([]byte, logSector)
	for j := int64(0); j < logSector/8 && page/8+j < int64(len(x.bat)); j++ {
		binary.LittleEndian.PutUint64(b[j*8:], x.bat[page/8+j])
	}
	x.w.ov.pages[x.batOff+page] = b
}

// writeVHDX writes p at off into a VHDX image.
// It returns the number of bytes written before any error.
func (d *Disk) writeVHDX(p []byte, off int64) (int, error) {
	if err := d.beginSession(); err != nil {
		return 0, err
	}
	x := d.vhdx
	done, err := forBlocks(p, off, x.blockSize, d.writeVHDXBlock)
	if err != nil {
		return done, err
	}
	if len(x.w.ov.pages) > maxDirtyPages {
		return done, d.flushVHDX()
	}
	return done, nil
}

func (d *Disk) writeVHDXBlock(blk, in int64, data []byte) error {
	x := d.vhdx
	w := x.w
	idx := blk + blk/x.chunkRatio
	e := x.bat[idx]
	state := e & 7
	diff := x.hasParent
	if state == payloadFullyPresent {
		return writeFull(w.file, data, int64(e>>20)*vhdxMB+in)
	}
	whole := in == 0 && (int64(len(data)) == x.blockSize || blk*x.blockSize+int64(len(data)) == d.size)
	readsZero := !diff || state != payloadNotPresent
	if state != payloadPartiallyPresent && (readsZero || whole) {
		// The block reads as zeros now, or is overwritten whole: it becomes
		// fully present, its unwritten bytes holes that read as zeros.
		if readsZero && allZero(data) {
			return nil
		}
		pos, err := w.allocate(x.blockSize)
		if err != nil {
			return err
		}
		if err := writeFull(w.file, data, pos+in); err != nil {
			return err
		}
		x.setBAT(idx, uint64(pos/vhdxMB)<<20|payloadFullyPresent)
		return nil
	}
	// Differencing: whole logical sectors of this block become the
	// child's; partial ones are completed with what they read as now.
	ss := x.logicalSector
	a0, a1 := in&^(ss-1), alignUp(in+int64(len(data)), ss)
	if a0 != in || a1 != in+int64(len(data)) {
		buf := make([]byte, a1-a0)
		base := blk * x.blockSize
		if err := d.readVHDX(buf[:ss], base+a0); err != nil {
			return err
		}
		if int64(len(buf)) > ss {
			if err := d.readVHDX(buf[len(buf)-int(ss):], base+a1-ss); err != nil {
				return err
			}
		}
		copy(buf[in-a0:], data)
		data, in = buf, a0
	}
	if state != payloadPartiallyPresent {
		pos, err := w.allocate(x.blockSize)
		if err != nil {
			return err
		}
		x.setBAT(idx, uint64(pos/vhdxMB)<<20|payloadPartiallyPresent)
		e = x.bat[idx]
		// Bits an earlier, freed incarnation of the block left behind
		// must not claim sectors of the new one.
		if err := d.updateSectorBits(blk, 0, x.blockSize/ss, false); err != nil {
			return err
		}
	}
	if err := writeFull(w.file, data, int64(e>>20)*vhdxMB+in); err != nil {
		return err
	}
	return d.updateSectorBits(blk, in/ss, (in+int64(len(data)))/ss, true)
}

// updateSectorBits sets (or clears) the bits of sectors [s0, s1) of block
// blk in the chunk's sector bitmap, allocating the bitmap block if needed.
func (d *Disk) updateSectorBits(blk, s0, s1 int64, set bool) error {
	x := d.vhdx
	w := x.w
	chunk := blk / x.chunkRatio
	bi := chunk*(x.chunkRatio+1) + x.chunkRatio
	if x.bat[bi]&7 != bitmapPresent {
		pos, err := w.allocate(vhdxMB)
		if err != nil {
			return err
		}
		x.setBAT(bi, uint64(pos/vhdxMB)<<20|bitmapPresent)
	}
	base := int64(x.bat[bi]>>20) * vhdxMB
	first := (blk % x.chunkRatio) * (x.blockSize / x.logicalSector)
	for s := first + s0; s < first+s1; {
		page := (s / 8) &^ (logSector - 1)
		b, ok := w.ov.pages[base+page]
		if !ok {
			b = make([]byte, logSector)
			if err := readFull(w.file, b, base+page); err != nil {
				return err
			}
		}
		b = slices.Clone(b)
		for ; s < first+s1 && (s/8)&^(logSector-1) == page; s++ {
			if set {
				b[s/8-page] |= 1 << (s % 8)
			} else {
				b[s/8-page] &^= 1 << (s % 8)
			}
		}
		w.ov.pages[base+page] = b
	}
	return nil
}

// flushVHDX makes written data and metadata durable: the data is synced,
// the changed metadata pages are written to the log and synced, then
// written in place and synced. A crash before the in-place writes finish is
// repaired by replaying the log on the next open.
func (d *Disk) flushVHDX() error {
	x := d.vhdx
	w := x.w
	if err := w.file.Sync(); err != nil {
		return err
	}
	if len(w.ov.pages) == 0 {
		return nil
	}
	offs := make([]int64, 0, len(w.ov.pages))
	for off := range w.ov.pages {
		offs = append(offs, off)
	}
	slices.Sort(offs)
	// As many pages per round as the log holds in entries at its start.
	perEntry := int64(100) // one descriptor sector holds 126
	capacity := int64(x.header.logLength) / ((perEntry + 1) * logSector) * perEntry
	if capacity < 1 {
		return formatErr(x.header.off+68, "VHDX header", detail(ErrUnsupported, "log of %d bytes is too small", x.header.logLength))
	}
	for len(offs) > 0 {
		round := offs[:min(int64(len(offs)), capacity)]
		offs = offs[len(round):]
		var pos int64
		for i := 0; i < len(round); i += int(perEntry) {
			var ws []logWrite
			for _, off := range round[i:min(len(round), i+int(perEntry))] {
				ws = append(ws, logWrite{off: off, data: w.ov.pages[off]})
			}
			fileSize := uint64(w.next)
			entry := encodeLogEntry(x.header.logGUID, w.logSeq, 0, fileSize, ws)
			w.logSeq++
			if err := writeFull(w.file, entry, int64(x.header.logOffset)+pos); err != nil {
				return err
			}
			pos += int64(len(entry))
		}
		if err := w.file.Sync(); err != nil {
			return err
		}
		if testHookAfterLog != nil {
			if err := testHookAfterLog(); err != nil {
				return err
			}
		}
		for _, off := range round {
			if err := writeFull(w.file, w.ov.pages[off], off); err != nil {
				return err
			}
		}
		if err := w.file.Sync(); err != nil {
			return err
		}
		for _, off := range round {
			delete(w.ov.pages, off)
		}
		// The round is in place: blank its entries, so that no reader
		// (qemu does not check tails) can replay them after newer ones.
		// The next flush's first sync makes this durable before new
		// entries go into the log.
		if err := writeFull(w.file, make([]byte, pos), int64(x.header.logOffset)); err != nil {
			return err
		}
	}
	return nil
}

// closeVHDX flushes and, when the image was written, marks the log empty.
func (d *Disk) closeVHDX() error {
	x := d.vhdx
	if x.w == nil || !x.w.session {
		return nil
	}
	if err := d.flushVHDX(); err != nil {
		return err
	}
	h := x.header
	h.seq++
	h.logGUID = UUID{}
	return d.writeHeader(&h)
}
