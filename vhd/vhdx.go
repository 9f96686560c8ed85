package vhd

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf16"
)

// VHDX layout constants, from the VHDX specification.
const (
	vhdxHeader1Off  = 64 << 10
	vhdxHeader2Off  = 128 << 10
	vhdxHeaderSize  = 4 << 10
	vhdxRegion1Off  = 192 << 10
	vhdxRegion2Off  = 256 << 10
	vhdxRegionSize  = 64 << 10
	vhdxMaxEntries  = 2047
	vhdxMB          = 1 << 20
	vhdxMaxSize     = 64 << 40 // 64 TiB
	vhdxMaxMetadata = 64 << 20
	chunkFactor     = 1 << 23 // sectors described by one sector bitmap block

	// Payload block states.
	payloadNotPresent       = 0
	payloadUndefined        = 1
	payloadZero             = 2
	payloadUnmapped         = 3
	payloadFullyPresent     = 6
	payloadPartiallyPresent = 7
	// Sector bitmap block states.
	bitmapPresent = 6
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// vhdxChecksum is the CRC-32C of b with its four checksum bytes at ck
// counted as zero.
func vhdxChecksum(b []byte, ck int) uint32 {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, b[:ck])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, b[ck+4:])
}

// guid parses a GUID in its text form into the byte order VHDX stores:
// the first three fields little-endian, the rest as written.
func guid(s string) UUID {
	h := strings.ReplaceAll(s, "-", "")
	var u UUID
	for i := range u {
		v, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			panic("bad GUID literal " + s)
		}
		u[i] = byte(v)
	}
	u[0], u[1], u[2], u[3] = u[3], u[2], u[1], u[0]
	u[4], u[5] = u[5], u[4]
	u[6], u[7] = u[7], u[6]
	return u
}

// guidString formats a GUID stored in VHDX byte order, as Windows prints it.
func guidString(u UUID) string {
	v := u
	v[0], v[1], v[2], v[3] = u[3], u[2], u[1], u[0]
	v[4], v[5] = u[5], u[4]
	v[6], v[7] = u[7], u[6]
	return v.String()
}

var (
	regionBAT      = guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
	regionMetadata = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")

	metaFileParameters = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	metaVirtualSize    = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	metaPage83         = guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
	metaLogicalSector  = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	metaPhysicalSector = guid("CDA348C7-445D-4471-9CC9-E9885251C556")
	metaParentLocator  = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")

	locatorTypeVHDX = guid("B04AEFB7-D19E-4A81-B789-25B8E9445913")
)

// vhdxHeaderInfo is the current one of the two VHDX headers.
type vhdxHeaderInfo struct {
	off           int64
	seq           uint64
	fileWriteGUID UUID
	dataWriteGUID UUID
	logGUID       UUID
	logVersion    uint16
	version       uint16
	logLength     uint32
	logOffset     uint64
}

// vhdxImage is the block layer of a VHDX image.
type vhdxImage struct {
	header        vhdxHeaderInfo
	batOff        int64
	bat           []uint64
	blockSize     int64
	logicalSector int64
	chunkRatio    int64
	hasParent     bool
	leaveAlloc    bool
	metaOff       int64
	metaLen       int64
	batLen        int64       // bytes of the BAT region
	w             *vhdxWriter // nil unless open for writing
	parentKeys    map[string]string
}

func parseVHDXHeader(b []byte, off int64) (*vhdxHeaderInfo, error) {
	if string(b[0:4]) != "head" {
		return nil, formatErr(off, "VHDX header", ErrFormat)
	}
	le := binary.LittleEndian
	if sum, stored := vhdxChecksum(b[:vhdxHeaderSize], 4), le.Uint32(b[4:]); sum != stored {
		return nil, formatErr(off, "VHDX header", detail(ErrChecksum, "stored %#08x, computed %#08x", stored, sum))
	}
	h := &vhdxHeaderInfo{
		off:           off,
		seq:           le.Uint64(b[8:]),
		fileWriteGUID: UUID(b[16:32]),
		dataWriteGUID: UUID(b[32:48]),
		logGUID:       UUID(b[48:64]),
		logVersion:    le.Uint16(b[64:]),
		version:       le.Uint16(b[66:]),
		logLength:     le.Uint32(b[68:]),
		logOffset:     le.Uint64(b[72:]),
	}
	if h.version != 1 {
		return nil, formatErr(off+66, "VHDX header", detail(ErrUnsupported, "version %d", h.version))
	}
	return h, nil
}

// openVHDX decodes a VHDX image. It reads; writing VHDX is not implemented
// yet.
func (d *Disk) openVHDX(fileSize int64) error {
	if fileSize < vhdxRegion2Off+vhdxRegionSize {
		return formatErr(0, "file identifier", detail(ErrFormat, "VHDX file of %d bytes is too short", fileSize))
	}
	d.info.Format = FormatVHDX
	ident := make([]byte, 520)
	if err := readFull(d.st, ident, 0); err != nil {
		return err
	}
	d.info.CreatorApp = utf16z(ident[8:520])

	// The current header is the valid one with the higher sequence number.
	var cur *vhdxHeaderInfo
	var firstErr error
	for _, off := range []int64{vhdxHeader1Off, vhdxHeader2Off} {
		b := make([]byte, vhdxHeaderSize)
		if err := readFull(d.st, b, off); err != nil {
			return err
		}
		h, err := parseVHDXHeader(b, off)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			d.note(off, "header damaged: "+trimPrefix(err))
			continue
		}
		if cur == nil || h.seq > cur.seq {
			cur = h
		}
	}
	if cur == nil {
		return firstErr
	}
	x := &vhdxImage{header: *cur}
	if !cur.logGUID.IsZero() {
		// Not closed cleanly: replay the log, into the file if writable,
		// else into an overlay that leaves the file as it is.
		st, size, err := replayLog(d.st, d.writable, fileSize, cur)
		if err != nil {
			return err
		}
		if _, ok := st.(*overlay); ok {
			d.note(int64(cur.logOffset), "the log holds changes not yet in place (the image was not closed cleanly); replayed in memory")
		}
		d.st, fileSize = st, size
	}

	// Region table: the first copy, or the second if the first is damaged.
	var regions map[UUID][2]int64
	var rerr error
	for _, off := range []int64{vhdxRegion1Off, vhdxRegion2Off} {
		if regions, rerr = readRegionTable(d.st, off, fileSize); rerr == nil {
			break
		}
		d.note(off, "region table damaged: "+trimPrefix(rerr))
	}
	if rerr != nil {
		return rerr
	}
	bat, okB := regions[regionBAT]
	meta, okM := regions[regionMetadata]
	if !okB || !okM {
		return formatErr(vhdxRegion1Off, "region table", detail(ErrFormat, "no BAT or metadata region"))
	}
	if bat[0] < meta[0]+meta[1] && meta[0] < bat[0]+bat[1] {
		return formatErr(vhdxRegion1Off, "region table", detail(ErrFormat, "the BAT and metadata regions overlap"))
	}
	x.batLen = bat[1]
	x.metaOff, x.metaLen = meta[0], meta[1]
	if err := x.readMetadata(d, meta[0], meta[1]); err != nil {
		return err
	}

	// BAT: payload entries, with a sector bitmap entry after every
	// chunkRatio of them.
	payload := (d.size + x.blockSize - 1) / x.blockSize
	var n int64
	if x.hasParent {
		n = (payload + x.chunkRatio - 1) / x.chunkRatio * (x.chunkRatio + 1)
	} else {
		n = payload + max(0, payload-1)/x.chunkRatio
	}
	if n*8 > bat[1] {
		return formatErr(bat[0], "BAT region", detail(ErrFormat, "%d bytes cannot hold %d entries", bat[1], n))
	}
	x.batOff = bat[0]
	x.bat = make([]uint64, 0, min(n, 1<<20))
	buf := make([]byte, min(n*8, 1<<20))
	for off := int64(0); off < n*8; {
		chunk := buf[:min(int64(len(buf)), n*8-off)]
		if err := readFull(d.st, chunk, x.batOff+off); err != nil {
			return err
		}
		for i := 0; i < len(chunk); i += 8 {
			x.bat = append(x.bat, binary.LittleEndian.Uint64(chunk[i:]))
		}
		off += int64(len(chunk))
	}
	for i, e := range x.bat {
		state, foff := e&7, int64(e>>20)*vhdxMB
		isBitmap := int64(i)%(x.chunkRatio+1) == x.chunkRatio
		span := x.blockSize
		if isBitmap {
			span = vhdxMB
		}
		present := state == payloadFullyPresent || state == payloadPartiallyPresent
		if isBitmap {
			present = state == bitmapPresent
		}
		if !present {
			continue
		}
		if foff < vhdxMB || e>>20 > uint64(fileSize-span)/vhdxMB {
			return formatErr(x.batOff+int64(i)*8, "BAT entry "+strconv.Itoa(i), detail(ErrFormat, "block at %#x lies outside a %d-byte file", foff, fileSize))
		}
		if state == payloadPartiallyPresent && !x.hasParent {
			return formatErr(x.batOff+int64(i)*8, "BAT entry "+strconv.Itoa(i), detail(ErrFormat, "partially present block in an image without a parent"))
		}
	}
	d.vhdx = x
	d.linkID = cur.dataWriteGUID
	if d.writable {
		if !cur.logGUID.IsZero() {
			// The log is replayed: say so in the headers.
			x.w = &vhdxWriter{file: d.st}
			h := x.header
			h.seq++
			h.logGUID = UUID{}
			if err := d.writeHeader(&h); err != nil {
				return err
			}
		}
		if err := d.prepareVHDXWrite(fileSize); err != nil {
			return err
		}
	}
	d.info.BlockSize = x.blockSize
	d.info.MaxTableEntries = len(x.bat)
	d.info.LogicalSectorSize = x.logicalSector
	d.info.Type = Dynamic
	if x.hasParent {
		d.info.Type = Differencing
	} else if x.leaveAlloc {
		d.info.Type = Fixed
	}
	return nil
}

// utf16z decodes NUL-terminated UTF-16LE.
func utf16z(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// readRegionTable returns the regions of the table at off, by GUID, as
// offset and length.
func readRegionTable(st storage, off, fileSize int64) (map[UUID][2]int64, error) {
	b := make([]byte, vhdxRegionSize)
	if err := readFull(st, b, off); err != nil {
		return nil, err
	}
	if string(b[0:4]) != "regi" {
		return nil, formatErr(off, "region table", ErrFormat)
	}
	le := binary.LittleEndian
	if sum, stored := vhdxChecksum(b, 4), le.Uint32(b[4:]); sum != stored {
		return nil, formatErr(off, "region table", detail(ErrChecksum, "stored %#08x, computed %#08x", stored, sum))
	}
	count := le.Uint32(b[8:])
	if count > vhdxMaxEntries {
		return nil, formatErr(off+8, "region table", detail(ErrFormat, "%d entries", count))
	}
	out := make(map[UUID][2]int64)
	for i := range int(count) {
		e := b[16+32*i:]
		id := UUID(e[0:16])
		foff, length, required := le.Uint64(e[16:]), le.Uint32(e[24:]), le.Uint32(e[28:])&1 != 0
		if id != regionBAT && id != regionMetadata {
			if required {
				return nil, formatErr(off+16+32*int64(i), "region table entry "+strconv.Itoa(i), detail(ErrUnsupported, "required region %s", guidString(id)))
			}
			continue
		}
		if foff%vhdxMB != 0 || foff < vhdxMB || foff > uint64(fileSize) || int64(foff)+int64(length) > fileSize || length%vhdxMB != 0 || length == 0 {
			return nil, formatErr(off+16+32*int64(i), "region table entry "+strconv.Itoa(i), detail(ErrFormat, "region at %#x of %d bytes outside a %d-byte file", foff, length, fileSize))
		}
		out[id] = [2]int64{int64(foff), int64(length)}
	}
	return out, nil
}

// readMetadata decodes the metadata region.
func (x *vhdxImage) readMetadata(d *Disk, off, length int64) error {
	if length > vhdxMaxMetadata {
		return formatErr(off, "metadata region", detail(ErrUnsupported, "%d bytes", length))
	}
	b := make([]byte, length)
	if err := readFull(d.st, b, off); err != nil {
		return err
	}
	if string(b[0:8]) != "metadata" {
		return formatErr(off, "metadata table", ErrFormat)
	}
	le := binary.LittleEndian
	count := int(le.Uint16(b[10:]))
	if count > vhdxMaxEntries || 32+32*count > len(b) {
		return formatErr(off+10, "metadata table", detail(ErrFormat, "%d entries", count))
	}
	items := make(map[UUID][]byte)
	for i := range count {
		e := b[32+32*i:]
		id := UUID(e[0:16])
		ioff, ilen, flags := le.Uint32(e[16:]), le.Uint32(e[20:]), le.Uint32(e[24:])
		what := "metadata entry " + strconv.Itoa(i)
		if ilen == 0 {
			continue
		}
		if ioff < 64<<10 || int64(ioff)+int64(ilen) > length {
			return formatErr(off+32+32*int64(i), what, detail(ErrFormat, "item at %#x of %d bytes outside the %d-byte region", ioff, ilen, length))
		}
		known := id == metaFileParameters || id == metaVirtualSize || id == metaPage83 ||
			id == metaLogicalSector || id == metaPhysicalSector || id == metaParentLocator
		if !known {
			if flags&4 != 0 {
				return formatErr(off+32+32*int64(i), what, detail(ErrUnsupported, "required metadata item %s", guidString(id)))
			}
			continue
		}
		items[id] = b[ioff : ioff+ilen]
	}
	need := func(id UUID, n int, name string) ([]byte, error) {
		v, ok := items[id]
		if !ok || len(v) < n {
			return nil, formatErr(off, "metadata", detail(ErrFormat, "missing or short %s item", name))
		}
		return v, nil
	}
	fp, err := need(metaFileParameters, 8, "file parameters")
	if err != nil {
		return err
	}
	x.blockSize = int64(le.Uint32(fp))
	flags := le.Uint32(fp[4:])
	x.leaveAlloc, x.hasParent = flags&1 != 0, flags&2 != 0
	if x.blockSize < vhdxMB || x.blockSize > maxBlockSize || bits.OnesCount64(uint64(x.blockSize)) != 1 {
		return formatErr(off, "file parameters", detail(ErrFormat, "block size %d is not a power of two from 1 MiB to 256 MiB", x.blockSize))
	}
	ls, err := need(metaLogicalSector, 4, "logical sector size")
	if err != nil {
		return err
	}
	x.logicalSector = int64(le.Uint32(ls))
	if x.logicalSector != 512 && x.logicalSector != 4096 {
		return formatErr(off, "logical sector size", detail(ErrFormat, "%d bytes", x.logicalSector))
	}
	ps, err := need(metaPhysicalSector, 4, "physical sector size")
	if err != nil {
		return err
	}
	if p := le.Uint32(ps); p != 512 && p != 4096 {
		return formatErr(off, "physical sector size", detail(ErrFormat, "%d bytes", p))
	}
	d.info.PhysicalSectorSize = int64(le.Uint32(ps))
	vs, err := need(metaVirtualSize, 8, "virtual disk size")
	if err != nil {
		return err
	}
	size := le.Uint64(vs)
	if size == 0 || size > vhdxMaxSize || size%uint64(x.logicalSector) != 0 {
		return formatErr(off, "virtual disk size", detail(ErrFormat, "%d bytes (at most 64 TiB, whole logical sectors)", size))
	}
	d.size = int64(size)
	d.info.Size = d.size
	d.info.OriginalSize = d.size
	if id, err := need(metaPage83, 16, "virtual disk ID"); err == nil {
		d.info.UUID = UUID(id)
	} else {
		return err
	}
	x.chunkRatio = chunkFactor * x.logicalSector / x.blockSize
	if x.hasParent {
		pl, err := need(metaParentLocator, 20, "parent locator")
		if err != nil {
			return err
		}
		if err := x.readParentLocator(d, pl, off); err != nil {
			return err
		}
	}
	return nil
}

// readParentLocator decodes the key-value parent locator of a differencing
// VHDX.
func (x *vhdxImage) readParentLocator(d *Disk, b []byte, regionOff int64) error {
	le := binary.LittleEndian
	if UUID(b[0:16]) != locatorTypeVHDX {
		return formatErr(regionOff, "parent locator", detail(ErrUnsupported, "locator type %s", guidString(UUID(b[0:16]))))
	}
	count := int(le.Uint16(b[18:]))
	if 20+12*count > len(b) {
		return formatErr(regionOff, "parent locator", detail(ErrFormat, "%d entries in %d bytes", count, len(b)))
	}
	x.parentKeys = make(map[string]string)
	str := func(o uint32, n uint16) (string, bool) {
		if int64(o)+int64(n) > int64(len(b)) || n%2 != 0 {
			return "", false
		}
		return utf16z(append(b[o:o+uint32(n):o+uint32(n)], 0, 0)), true
	}
	for i := range count {
		e := b[20+12*i:]
		k, ok1 := str(le.Uint32(e[0:]), le.Uint16(e[8:]))
		v, ok2 := str(le.Uint32(e[4:]), le.Uint16(e[10:]))
		if !ok1 || !ok2 {
			return formatErr(regionOff, "parent locator entry "+strconv.Itoa(i), detail(ErrFormat, "key or value outside the item"))
		}
		x.parentKeys[k] = v
	}
	for _, k := range []string{"relative_path", "absolute_win32_path", "volume_path"} {
		if v, ok := x.parentKeys[k]; ok {
			d.info.ParentLocators = append(d.info.ParentLocators, Locator{Platform: k, Path: v})
			if d.info.ParentName == "" {
				d.info.ParentName = v // its base name is also looked for beside the child
			}
		}
	}
	link, ok := x.parentKeys["parent_linkage"]
	if !ok {
		return formatErr(regionOff, "parent locator", detail(ErrFormat, "no parent_linkage"))
	}
	id, err := parseGUIDText(link)
	if err != nil {
		return formatErr(regionOff, "parent locator", detail(ErrFormat, "parent_linkage %q", link))
	}
	d.parentWant = id
	d.info.ParentUUID = id
	return nil
}

// readVHDX fills p from a VHDX image's payload blocks.
func (d *Disk) readVHDX(p []byte, off int64) error {
	x := d.vhdx
	_, err := forBlocks(p, off, x.blockSize, func(blk, in int64, chunk []byte) error {
		e := x.bat[blk+blk/x.chunkRatio]
		switch e & 7 {
		case payloadFullyPresent:
			return readFull(d.st, chunk, int64(e>>20)*vhdxMB+in)
		case payloadPartiallyPresent:
			return d.readVHDXPartial(chunk, blk, int64(e>>20)*vhdxMB, in, blk*x.blockSize+in)
		case payloadNotPresent:
			return d.readParent(chunk, blk*x.blockSize+in)
		default: // undefined, zero, unmapped
			clear(chunk)
			return nil
		}
	})
	return err
}

// readVHDXPartial reads a partially present block of a differencing VHDX:
// sectors whose bit is set in the chunk's sector bitmap (LSB-first) come
// from the block, the others from the parent.
func (d *Disk) readVHDXPartial(p []byte, blk, base, in, off int64) error {
	x := d.vhdx
	ss := x.logicalSector
	chunk := blk / x.chunkRatio
	be := x.bat[chunk*(x.chunkRatio+1)+x.chunkRatio]
	if be&7 != bitmapPresent {
		return d.readParent(p, off)
	}
	// The bitmap bits of this block's sectors that p covers.
	first := (blk%x.chunkRatio)*(x.blockSize/ss) + in/ss
	last := (blk%x.chunkRatio)*(x.blockSize/ss) + (in+int64(len(p))-1)/ss
	bm := make([]byte, last/8-first/8+1)
	if err := readFull(d.st, bm, int64(be>>20)*vhdxMB+first/8); err != nil {
		return err
	}
	blockFirst := (blk % x.chunkRatio) * (x.blockSize / ss)
	bit := func(s int64) bool { // s counts from the block's first sector
		s += blockFirst
		return bm[s/8-first/8]&(1<<(s%8)) != 0
	}
	return d.readRuns(p, in, off, ss, bit, func(q []byte, from int64) error {
		return readFull(d.st, q, base+from)
	})
}

// blocks lists the payload blocks that hold data, clipped to size.
func (x *vhdxImage) blocks(size int64) []blockRange {
	var out []blockRange
	payload := (size + x.blockSize - 1) / x.blockSize
	for blk := range payload {
		e := x.bat[blk+blk/x.chunkRatio]
		if s := e & 7; s != payloadFullyPresent && s != payloadPartiallyPresent {
			continue
		}
		off := blk * x.blockSize
		out = append(out, blockRange{Extent{off, min(x.blockSize, size-off)}, int64(e>>20) * vhdxMB})
	}
	return out
}

// zeroBlocks lists the payload blocks in the ZERO, UNMAPPED or UNDEFINED
// state, which read as zeros, clipped to size.
func (x *vhdxImage) zeroBlocks(size int64) []blockRange {
	var out []blockRange
	payload := (size + x.blockSize - 1) / x.blockSize
	for blk := range payload {
		if s := x.bat[blk+blk/x.chunkRatio] & 7; s == payloadZero || s == payloadUnmapped || s == payloadUndefined {
			off := blk * x.blockSize
			out = append(out, blockRange{Extent{off, min(x.blockSize, size-off)}, -1})
		}
	}
	return out
}

func (x *vhdxImage) String() string {
	return fmt.Sprintf("VHDX block size %d, chunk ratio %d", x.blockSize, x.chunkRatio)
}

// parseGUIDText parses "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}" (braces
// optional) into VHDX byte order.
func parseGUIDText(s string) (u UUID, err error) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, ErrFormat
	}
	for _, c := range strings.ReplaceAll(s, "-", "") {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return u, ErrFormat
		}
	}
	return guid(s), nil
}
