package p2v

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// On-disk constants of NTFS.
const (
	ntfsOEMID = "NTFS    " // OEM ID at byte 3 of the boot sector

	ntfsMFTRecord    = 0 // MFT record of $MFT
	ntfsBitmapRecord = 6 // MFT record of $Bitmap

	ntfsAttrList = 0x20       // $ATTRIBUTE_LIST
	ntfsAttrData = 0x80       // $DATA
	ntfsAttrEnd  = 0xffffffff // marks the end of a record's attributes

	ntfsRecordInUse    = 0x0001 // MFT record header flag
	ntfsAttrCompressed = 0x00ff // attribute flags: compression method
	ntfsAttrEncrypted  = 0x4000

	ntfsStride = 512 // update sequence stride of multi-sector records

	ntfsMaxClusterSize = 2 << 20   // largest cluster size Windows formats
	ntfsMaxRecordSize  = 64 << 10  // largest MFT record size accepted
	ntfsMaxAttrList    = 256 << 10 // largest $ATTRIBUTE_LIST value accepted
	ntfsMaxExtents     = 4096      // most extents accepted for one attribute
	ntfsMaxRuns        = 1 << 16   // most data runs accepted for one attribute
	ntfsBitmapChunk    = 64 << 10  // bytes of $Bitmap read at a time
	ntfsRefMask        = 1<<48 - 1
)

// parseNTFS reads the NTFS file system at the start of r, size bytes long,
// and returns its free clusters as given by the $Bitmap file. It locates
// $MFT from the boot sector, reads MFT record 6 ($Bitmap) through the data
// runs of record 0, verifying the update sequence of every record it reads,
// and follows an attribute list of $Bitmap to extents in other records.
// Clusters past the volume's cluster count, and the backup boot sector in
// the last sector, are never free. A bitmap that marks free the clusters of
// $Boot, $MFT or $Bitmap itself is reported as damage. It satisfies
// fsParser.
func parseNTFS(r io.ReaderAt, size int64) (*fsUsage, error) {
	v, err := readNTFSBoot(r, size)
	if err != nil {
		return nil, err
	}
	if err := v.loadMFT(); err != nil {
		return nil, err
	}
	bm, err := v.bitmap()
	if err != nil {
		return nil, err
	}
	free, err := v.scanBitmap(bm)
	if err != nil {
		return nil, err
	}
	if err := v.checkStructures(free, bm); err != nil {
		return nil, err
	}
	return &fsUsage{Type: "ntfs", BlockSize: v.clusterSize, Free: free, Stale: v.dirty()}, nil
}

// volumeDirty is the VOLUME_IS_DIRTY flag of $VOLUME_INFORMATION.
const volumeDirty = 0x0001

// dirty reports why $Bitmap may lag behind the volume: the dirty flag of
// $Volume (MFT record 3), which Windows and ntfs-3g set while the volume is
// mounted and clear at a clean unmount. A volume whose flag cannot be read
// is taken as dirty.
func (v *ntfsVolume) dirty() string {
	_, _, attrs, err := v.readRecord(3)
	if err != nil {
		return "the $Volume record cannot be read (" + err.Error() + ")"
	}
	for _, a := range attrs {
		if a.typ != 0x70 || a.nonResident {
			continue
		}
		if len(a.value) < 12 {
			break
		}
		if binary.LittleEndian.Uint16(a.value[10:])&volumeDirty != 0 {
			return "the volume is marked dirty (mounted, or not shut down cleanly)"
		}
		return ""
	}
	return "$Volume has no volume information"
}

// ntfsVolume holds what parseNTFS knows about a volume so far.
type ntfsVolume struct {
	r    io.ReaderAt
	size int64

	sectorSize  int64
	clusterSize int64
	recordSize  int64 // bytes per MFT record
	clusters    int64 // clusters in the volume
	mftLCN      int64 // first cluster of $MFT, from the boot sector

	mft     ntfsRunList // data runs of $MFT mapped by record 0
	mftInit int64       // initialized size of $MFT's data
}

// ntfsError returns a *FSError for damage at byte off of the volume.
func ntfsError(off int64, format string, args ...any) *FSError {
	return &FSError{FS: "ntfs", Off: off, Reason: fmt.Sprintf(format, args...)}
}

// readNTFSBoot reads and checks the boot sector.
func readNTFSBoot(r io.ReaderAt, size int64) (*ntfsVolume, error) {
	if size < 512 {
		return nil, fmt.Errorf("p2v: %d bytes are too few for an NTFS boot sector: %w", size, errNotFS)
	}
	b := make([]byte, 512)
	if err := ntfsReadFull(r, b, 0); err != nil {
		return nil, fmt.Errorf("p2v: reading NTFS boot sector: %w", err)
	}
	if string(b[3:11]) != ntfsOEMID {
		return nil, fmt.Errorf("p2v: no NTFS signature: %w", errNotFS)
	}
	v := &ntfsVolume{r: r, size: size}

	v.sectorSize = int64(ntfsU16(b[0x0b:]))
	if v.sectorSize < 256 || v.sectorSize > 4096 || !ntfsPow2(v.sectorSize) {
		return nil, ntfsError(0x0b, "boot sector: %d bytes per sector is not a power of two from 256 to 4096", v.sectorSize)
	}
	spc := int64(b[0x0d])
	if spc > 0x80 {
		// Clusters above 64 KiB: the byte is minus the base-2 log.
		shift := 0x100 - spc
		if shift > 21 {
			return nil, ntfsError(0x0d, "boot sector: sectors per cluster 2^%d is too large", shift)
		}
		spc = 1 << shift
	}
	if spc == 0 || !ntfsPow2(spc) {
		return nil, ntfsError(0x0d, "boot sector: %d sectors per cluster is not a power of two", spc)
	}
	v.clusterSize = v.sectorSize * spc
	if v.clusterSize > ntfsMaxClusterSize {
		return nil, ntfsError(0x0d, "boot sector: cluster size %d exceeds %d", v.clusterSize, ntfsMaxClusterSize)
	}

	total := ntfsU64(b[0x28:])
	if total == 0 || total > uint64(size/v.sectorSize) {
		return nil, ntfsError(0x28, "boot sector: %d sectors of %d bytes do not fit in %d bytes", total, v.sectorSize, size)
	}
	v.clusters = int64(total) / spc
	if v.clusters == 0 {
		return nil, ntfsError(0x28, "boot sector: %d sectors make no whole cluster of %d sectors", total, spc)
	}

	mftLCN := ntfsU64(b[0x30:])
	if mftLCN >= uint64(v.clusters) {
		return nil, ntfsError(0x30, "boot sector: $MFT cluster %d is outside the volume's %d clusters", mftLCN, v.clusters)
	}
	v.mftLCN = int64(mftLCN)

	rs, err := ntfsRecordSize(int8(b[0x40]), v.clusterSize)
	if err != nil {
		return nil, err
	}
	v.recordSize = rs
	if v.mftLCN*v.clusterSize+rs > v.clusters*v.clusterSize {
		return nil, ntfsError(0x30, "boot sector: $MFT record 0 at cluster %d runs past the volume's end", v.mftLCN)
	}
	return v, nil
}

// ntfsRecordSize decodes the boot sector's clusters per MFT record: a count
// of clusters when positive, minus the base-2 log of the byte size when
// negative.
func ntfsRecordSize(c int8, clusterSize int64) (int64, error) {
	var rs int64
	switch {
	case c > 0:
		rs = int64(c) * clusterSize
	case c < 0 && c >= -31:
		rs = 1 << -int(c)
	}
	if rs < ntfsStride || rs > ntfsMaxRecordSize || !ntfsPow2(rs) {
		return 0, ntfsError(0x40, "boot sector: clusters per MFT record %d gives a record size outside %d to %d bytes", c, ntfsStride, ntfsMaxRecordSize)
	}
	return rs, nil
}

// loadMFT reads MFT record 0 and keeps the data runs of $MFT it holds.
// A fragmented $MFT may have further runs in extent records named by an
// attribute list; they are not needed as long as record 0's runs reach
// $Bitmap's record, which readRecord checks.
func (v *ntfsVolume) loadMFT() error {
	off := v.mftLCN * v.clusterSize
	rec := make([]byte, v.recordSize)
	if err := ntfsReadFull(v.r, rec, off); err != nil {
		return fmt.Errorf("p2v: reading NTFS $MFT record 0 at byte %d: %w", off, err)
	}
	attrs, err := v.parseRecord(rec, off, ntfsMFTRecord)
	if err != nil {
		return err
	}
	if base := ntfsU64(rec[32:]) & ntfsRefMask; base != 0 {
		return ntfsError(off, "$MFT record 0 is an extent of record %d", base)
	}
	var data *ntfsAttr
	for i := range attrs {
		a := &attrs[i]
		if a.typ == ntfsAttrData && !a.named && a.nonResident && a.lowVCN == 0 {
			data = a
			break
		}
	}
	if data == nil {
		return ntfsError(off, "$MFT record 0 has no non-resident unnamed $DATA attribute starting at VCN 0")
	}
	if err := data.checkSizes(off); err != nil {
		return err
	}
	runs, err := decodeNTFSRuns(data.pairs, data.lowVCN, data.highVCN, v.clusters)
	if err != nil {
		return ntfsError(off+int64(data.off), "$MFT $DATA: %v", err)
	}
	if runs[0].sparse() || runs[0].lcn != v.mftLCN {
		return ntfsError(off+int64(data.off), "$MFT $DATA starts at cluster %d, boot sector says %d", runs[0].lcn, v.mftLCN)
	}
	if runs[0].n*v.clusterSize < v.recordSize {
		return ntfsError(off+int64(data.off), "$MFT record 0 is split across runs")
	}
	v.mft = runs
	v.mftInit = data.initSize
	return nil
}

// readRecord reads MFT record n through the runs of $MFT, applies its update
// sequence and parses its attributes. It returns the record, its byte offset
// in the volume and its attributes.
func (v *ntfsVolume) readRecord(n int64) ([]byte, int64, []ntfsAttr, error) {
	where := v.mftLCN * v.clusterSize
	if n > v.mftInit/v.recordSize-1 {
		return nil, 0, nil, ntfsError(where, "MFT record %d lies past $MFT's initialized size %d", n, v.mftInit)
	}
	pos := n * v.recordSize
	off, ok := v.mft.physical(pos, v.clusterSize)
	if !ok {
		return nil, 0, nil, ntfsError(where, "MFT record %d lies in a sparse or unmapped part of $MFT (an attribute list of $MFT is not followed)", n)
	}
	rec := make([]byte, v.recordSize)
	if err := v.readStream(v.mft, rec, pos, where, "$MFT"); err != nil {
		return nil, 0, nil, err
	}
	attrs, err := v.parseRecord(rec, off, n)
	if err != nil {
		return nil, 0, nil, err
	}
	return rec, off, attrs, nil
}

// parseRecord applies the update sequence of the FILE record n, read into
// rec from byte off of the volume, checks its header and returns its
// attributes. Errors give offsets as if the record were contiguous.
func (v *ntfsVolume) parseRecord(rec []byte, off, n int64) ([]ntfsAttr, error) {
	if string(rec[:4]) != "FILE" {
		return nil, ntfsError(off, "MFT record %d has magic %q, want \"FILE\"", n, rec[:4])
	}
	if err := ntfsFixup(rec, off); err != nil {
		return nil, err
	}
	if ntfsU16(rec[22:])&ntfsRecordInUse == 0 {
		return nil, ntfsError(off, "MFT record %d is not in use", n)
	}
	if alloc := ntfsU32(rec[28:]); int64(alloc) != v.recordSize {
		return nil, ntfsError(off, "MFT record %d allocates %d bytes, boot sector says %d", n, alloc, v.recordSize)
	}
	used := ntfsU32(rec[24:])
	first := ntfsU16(rec[20:])
	if int64(used) > v.recordSize || first%8 != 0 || first < 24 || uint32(first) >= used {
		return nil, ntfsError(off, "MFT record %d has attributes at %d, %d bytes in use", n, first, used)
	}
	attrs, err := parseNTFSAttrs(rec[:used], int(first))
	if err != nil {
		return nil, ntfsError(off, "MFT record %d: %v", n, err)
	}
	return attrs, nil
}

// ntfsFixup checks and undoes the update sequence of a multi-sector record:
// the last two bytes of every 512-byte stride hold the update sequence
// number, and the update sequence array holds the bytes they replaced.
func ntfsFixup(rec []byte, off int64) error {
	usaOff := int(ntfsU16(rec[4:]))
	usaCount := int(ntfsU16(rec[6:]))
	strides := len(rec) / ntfsStride
	if usaCount != strides+1 {
		return ntfsError(off, "update sequence array has %d entries, want %d", usaCount, strides+1)
	}
	if usaOff%2 != 0 || usaOff < 40 || usaOff+2*usaCount > ntfsStride-2 {
		return ntfsError(off, "update sequence array at %d is misplaced", usaOff)
	}
	usn := rec[usaOff : usaOff+2]
	for i := 1; i <= strides; i++ {
		end := i*ntfsStride - 2
		if rec[end] != usn[0] || rec[end+1] != usn[1] {
			return ntfsError(off+int64(end), "update sequence number %#04x missing at the end of stride %d (torn write or damage)", ntfsU16(usn), i-1)
		}
		copy(rec[end:end+2], rec[usaOff+2*i:])
	}
	return nil
}

// An ntfsAttr is an attribute header of an MFT record.
type ntfsAttr struct {
	typ         uint32
	off         int // byte offset in the record
	named       bool
	nonResident bool
	flags       uint16

	value []byte // resident value

	// Non-resident attributes only.
	lowVCN, highVCN               int64
	allocSize, dataSize, initSize int64
	pairs                         []byte // mapping pairs
}

// parseNTFSAttrs parses the attributes that start at byte first of rec,
// which holds just the record's bytes in use.
func parseNTFSAttrs(rec []byte, first int) ([]ntfsAttr, error) {
	var attrs []ntfsAttr
	for off := first; ; {
		if off+4 > len(rec) {
			return nil, fmt.Errorf("attributes run past the %d bytes in use without an end marker", len(rec))
		}
		typ := ntfsU32(rec[off:])
		if typ == ntfsAttrEnd {
			return attrs, nil
		}
		if off+16 > len(rec) {
			return nil, fmt.Errorf("attribute at %d is cut short", off)
		}
		n := int(ntfsU32(rec[off+4:]))
		if n < 24 || n%8 != 0 || n > len(rec)-off {
			return nil, fmt.Errorf("attribute at %d has length %d", off, n)
		}
		a, err := parseNTFSAttr(rec[off:off+n], off)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, a)
		off += n
	}
}

// parseNTFSAttr parses the attribute b, found at byte off of its record.
func parseNTFSAttr(b []byte, off int) (ntfsAttr, error) {
	a := ntfsAttr{
		typ:         ntfsU32(b),
		off:         off,
		nonResident: b[8] != 0,
		flags:       ntfsU16(b[12:]),
	}
	if nameLen := int(b[9]); nameLen > 0 {
		nameOff := int(ntfsU16(b[10:]))
		if nameOff+2*nameLen > len(b) {
			return a, fmt.Errorf("attribute %#x at %d: name runs past the attribute", a.typ, off)
		}
		a.named = true
	}
	if !a.nonResident {
		valLen := int64(ntfsU32(b[16:]))
		valOff := int64(ntfsU16(b[20:]))
		if valOff+valLen > int64(len(b)) {
			return a, fmt.Errorf("attribute %#x at %d: resident value runs past the attribute", a.typ, off)
		}
		a.value = b[valOff : valOff+valLen]
		return a, nil
	}
	if len(b) < 64 {
		return a, fmt.Errorf("attribute %#x at %d: %d bytes are too few for a non-resident header", a.typ, off, len(b))
	}
	a.lowVCN = int64(ntfsU64(b[16:]))
	a.highVCN = int64(ntfsU64(b[24:]))
	a.allocSize = int64(ntfsU64(b[40:]))
	a.dataSize = int64(ntfsU64(b[48:]))
	a.initSize = int64(ntfsU64(b[56:]))
	pairsOff := int(ntfsU16(b[32:]))
	if pairsOff < 64 || pairsOff > len(b) {
		return a, fmt.Errorf("attribute %#x at %d: mapping pairs at %d", a.typ, off, pairsOff)
	}
	a.pairs = b[pairsOff:]
	return a, nil
}

// checkSizes checks the sizes of a non-resident attribute's first extent,
// found in the record at byte recOff.
func (a *ntfsAttr) checkSizes(recOff int64) error {
	if a.initSize < 0 || a.initSize > a.dataSize || a.dataSize > a.allocSize {
		return ntfsError(recOff+int64(a.off), "attribute %#x: initialized size %d, data size %d, allocated size %d are inconsistent",
			a.typ, a.initSize, a.dataSize, a.allocSize)
	}
	if a.flags&(ntfsAttrCompressed|ntfsAttrEncrypted) != 0 {
		return ntfsError(recOff+int64(a.off), "attribute %#x is compressed or encrypted (flags %#04x)", a.typ, a.flags)
	}
	return nil
}

// An ntfsRun maps n clusters of an attribute, starting at virtual cluster
// vcn, to the volume's clusters starting at lcn, or to none when sparse.
type ntfsRun struct {
	vcn, lcn, n int64
}

func (r ntfsRun) sparse() bool { return r.lcn < 0 }

// An ntfsRunList is the run list of an attribute: runs in increasing,
// contiguous VCN order.
type ntfsRunList []ntfsRun

// decodeNTFSRuns decodes the mapping pairs of an attribute extent covering
// VCNs low to high, on a volume of the given number of clusters. Each pair
// is a header byte whose low nibble gives the size of the run length and
// whose high nibble gives the size of the signed LCN delta, zero for a
// sparse run; a zero header ends the list.
func decodeNTFSRuns(pairs []byte, low, high, clusters int64) (ntfsRunList, error) {
	if low < 0 || high < low {
		return nil, fmt.Errorf("VCN range %d to %d", low, high)
	}
	var runs ntfsRunList
	vcn, lcn := low, int64(0)
	for i := 0; i < len(pairs) && pairs[i] != 0; {
		lenSize, deltaSize := int(pairs[i]&0x0f), int(pairs[i]>>4)
		i++
		if lenSize == 0 || lenSize > 8 || deltaSize > 8 || i+lenSize+deltaSize > len(pairs) {
			return nil, fmt.Errorf("bad mapping pair header %#02x at %d", pairs[i-1], i-1)
		}
		if len(runs) == ntfsMaxRuns {
			return nil, fmt.Errorf("more than %d runs", ntfsMaxRuns)
		}
		n := ntfsInt(pairs[i : i+lenSize])
		i += lenSize
		if n <= 0 || n > high-vcn+1 {
			return nil, fmt.Errorf("run of %d clusters at VCN %d leaves the range %d to %d", n, vcn, low, high)
		}
		run := ntfsRun{vcn: vcn, lcn: -1, n: n}
		if deltaSize > 0 {
			delta := ntfsInt(pairs[i : i+deltaSize])
			i += deltaSize
			if delta <= -clusters || delta >= clusters {
				return nil, fmt.Errorf("run at VCN %d: cluster delta %d leaves the volume", vcn, delta)
			}
			lcn += delta
			if lcn < 0 || lcn >= clusters || n > clusters-lcn {
				return nil, fmt.Errorf("run at VCN %d: clusters %d to %d lie outside the volume's %d", vcn, lcn, lcn+n-1, clusters)
			}
			run.lcn = lcn
		}
		runs = append(runs, run)
		vcn += n
	}
	if vcn != high+1 {
		return nil, fmt.Errorf("runs end at VCN %d, want %d", vcn, high+1)
	}
	return runs, nil
}

// physical returns the volume byte offset that byte pos of the attribute
// maps to, or false when pos is sparse or unmapped.
func (rl ntfsRunList) physical(pos, clusterSize int64) (int64, bool) {
	off, _, ok := rl.extent(pos, clusterSize)
	return off, ok
}

// extent returns the volume byte offset that byte pos of the attribute maps
// to and how many bytes from there on are contiguous, or false when pos is
// sparse or unmapped.
func (rl ntfsRunList) extent(pos, clusterSize int64) (off, n int64, ok bool) {
	if pos < 0 {
		return 0, 0, false
	}
	vcn := pos / clusterSize
	i := sort.Search(len(rl), func(i int) bool { return rl[i].vcn+rl[i].n > vcn })
	if i == len(rl) || rl[i].vcn > vcn || rl[i].sparse() {
		return 0, 0, false
	}
	within := pos - rl[i].vcn*clusterSize
	return rl[i].lcn*clusterSize + within, rl[i].n*clusterSize - within, true
}

// readStream fills p from byte pos of the attribute mapped by rl. A hole is
// reported as damage to the structure at byte where, named what.
func (v *ntfsVolume) readStream(rl ntfsRunList, p []byte, pos, where int64, what string) error {
	for len(p) > 0 {
		off, n, ok := rl.extent(pos, v.clusterSize)
		if !ok {
			return ntfsError(where, "%s: byte %d is sparse or unmapped", what, pos)
		}
		n = min(n, int64(len(p)))
		if err := ntfsReadFull(v.r, p[:n], off); err != nil {
			return fmt.Errorf("p2v: reading NTFS %s at byte %d: %w", what, off, err)
		}
		p, pos = p[n:], pos+n
	}
	return nil
}

// An ntfsStream is the contents of an attribute: resident bytes or runs.
type ntfsStream struct {
	resident []byte
	runs     ntfsRunList
	where    int64 // byte offset of the base record, for errors
	size     int64 // bytes that may be read
}

// readAt fills p from byte pos of the stream.
func (v *ntfsVolume) readAt(s *ntfsStream, p []byte, pos int64, what string) error {
	if pos < 0 || int64(len(p)) > s.size-pos {
		return ntfsError(s.where, "%s: bytes %d to %d lie past its %d bytes", what, pos, pos+int64(len(p)), s.size)
	}
	if s.runs == nil {
		copy(p, s.resident[pos:])
		return nil
	}
	return v.readStream(s.runs, p, pos, s.where, what)
}

// bitmap locates the unnamed $DATA attribute of $Bitmap, following its
// attribute list if it has one, and checks it holds a bit for every cluster.
func (v *ntfsVolume) bitmap() (*ntfsStream, error) {
	_, off, attrs, err := v.readRecord(ntfsBitmapRecord)
	if err != nil {
		return nil, err
	}
	s, err := v.dataStream(ntfsBitmapRecord, off, attrs)
	if err != nil {
		return nil, err
	}
	if need := (v.clusters + 7) / 8; s.size < need {
		return nil, ntfsError(off, "$Bitmap holds %d initialized bytes, %d clusters need %d", s.size, v.clusters, need)
	}
	return s, nil
}

// dataStream returns the unnamed $DATA attribute of base record n, found at
// byte off with the given attributes. Its readable size is its initialized
// size.
func (v *ntfsVolume) dataStream(n, off int64, attrs []ntfsAttr) (*ntfsStream, error) {
	var (
		resident []byte
		runs     ntfsRunList
		next     int64 // VCN the next extent must start at
		initSize int64
		count    int
	)
	err := v.eachDataExtent(n, off, attrs, func(a *ntfsAttr, recOff int64) error {
		where := recOff + int64(a.off)
		count++
		if !a.nonResident {
			if count > 1 {
				return ntfsError(where, "MFT record %d: resident $DATA among several extents", n)
			}
			resident = a.value
			return nil
		}
		if a.lowVCN != next || resident != nil {
			return ntfsError(where, "MFT record %d: $DATA extent at VCN %d, want %d", n, a.lowVCN, next)
		}
		if next == 0 {
			if err := a.checkSizes(recOff); err != nil {
				return err
			}
			initSize = a.initSize
		}
		rl, err := decodeNTFSRuns(a.pairs, a.lowVCN, a.highVCN, v.clusters)
		if err != nil {
			return ntfsError(where, "MFT record %d: $DATA extent at VCN %d: %v", n, a.lowVCN, err)
		}
		if len(runs)+len(rl) > ntfsMaxRuns {
			return ntfsError(where, "MFT record %d: $DATA has more than %d runs", n, ntfsMaxRuns)
		}
		runs = append(runs, rl...)
		next = a.highVCN + 1
		return nil
	})
	if err != nil {
		return nil, err
	}
	if runs == nil {
		return &ntfsStream{resident: resident, where: off, size: int64(len(resident))}, nil
	}
	return &ntfsStream{runs: runs, where: off, size: initSize}, nil
}

// eachDataExtent calls fn, in VCN order, for each extent of the unnamed
// $DATA attribute of base record n, found at byte off with the given
// attributes, and for the byte offset of the record holding the extent. The
// extents are those in the record itself or, when it has an attribute list,
// those the list names, which may lie in other records.
func (v *ntfsVolume) eachDataExtent(n, off int64, attrs []ntfsAttr, fn func(a *ntfsAttr, recOff int64) error) error {
	var list *ntfsAttr
	var exts []ntfsAttr
	for i := range attrs {
		switch a := &attrs[i]; {
		case a.typ == ntfsAttrList:
			list = a
		case a.typ == ntfsAttrData && !a.named:
			exts = append(exts, *a)
		}
	}
	if list == nil {
		if len(exts) == 0 {
			return ntfsError(off, "MFT record %d has no unnamed $DATA attribute", n)
		}
		sort.SliceStable(exts, func(i, j int) bool { return exts[i].lowVCN < exts[j].lowVCN })
		for i := range exts {
			if err := fn(&exts[i], off); err != nil {
				return err
			}
		}
		return nil
	}

	where := off + int64(list.off)
	value, err := v.attrListValue(list, where)
	if err != nil {
		return err
	}
	entries, err := parseNTFSAttrList(value)
	if err != nil {
		return ntfsError(where, "MFT record %d: attribute list: %v", n, err)
	}
	if len(entries) == 0 || len(entries) > ntfsMaxExtents {
		return ntfsError(where, "MFT record %d: attribute list names %d unnamed $DATA extents", n, len(entries))
	}
	for _, e := range entries {
		a, recOff, err := v.listedExtent(n, off, attrs, e)
		if err != nil {
			return err
		}
		if err := fn(a, recOff); err != nil {
			return err
		}
	}
	return nil
}

// An ntfsListEntry is an entry of an attribute list naming an unnamed $DATA
// extent.
type ntfsListEntry struct {
	lowVCN int64
	record int64
	seq    uint16
}

// listedExtent returns the extent named by entry e of the attribute list of
// base record n, found at byte off with the given attributes, and the byte
// offset of the record holding the extent.
func (v *ntfsVolume) listedExtent(n, off int64, attrs []ntfsAttr, e ntfsListEntry) (*ntfsAttr, int64, error) {
	recOff := off
	if e.record != n {
		rec, o, a, err := v.readRecord(e.record)
		if err != nil {
			return nil, 0, err
		}
		if base := int64(ntfsU64(rec[32:]) & ntfsRefMask); base != n {
			return nil, 0, ntfsError(o, "MFT record %d, listed as an extent of record %d, names base record %d", e.record, n, base)
		}
		if seq := ntfsU16(rec[16:]); e.seq != 0 && seq != e.seq {
			return nil, 0, ntfsError(o, "MFT record %d has sequence number %d, the attribute list of record %d wants %d", e.record, seq, n, e.seq)
		}
		recOff, attrs = o, a
	}
	for i := range attrs {
		if a := &attrs[i]; a.typ == ntfsAttrData && !a.named && a.lowVCN == e.lowVCN {
			return a, recOff, nil
		}
	}
	return nil, 0, ntfsError(recOff, "MFT record %d holds no $DATA extent at VCN %d, which the attribute list of record %d names", e.record, e.lowVCN, n)
}

// attrListValue returns the value of the $ATTRIBUTE_LIST attribute list,
// found at byte where, reading it from its clusters when it is non-resident.
func (v *ntfsVolume) attrListValue(list *ntfsAttr, where int64) ([]byte, error) {
	if !list.nonResident {
		return list.value, nil
	}
	if err := list.checkSizes(where - int64(list.off)); err != nil {
		return nil, err
	}
	if list.lowVCN != 0 || list.initSize != list.dataSize || list.dataSize > ntfsMaxAttrList {
		return nil, ntfsError(where, "attribute list of %d bytes (%d initialized) starting at VCN %d", list.dataSize, list.initSize, list.lowVCN)
	}
	runs, err := decodeNTFSRuns(list.pairs, list.lowVCN, list.highVCN, v.clusters)
	if err != nil {
		return nil, ntfsError(where, "attribute list: %v", err)
	}
	value := make([]byte, list.dataSize)
	if err := v.readStream(runs, value, 0, where, "attribute list"); err != nil {
		return nil, err
	}
	return value, nil
}

// parseNTFSAttrList returns the entries of an attribute list value that name
// unnamed $DATA extents, in list order.
func parseNTFSAttrList(b []byte) ([]ntfsListEntry, error) {
	var entries []ntfsListEntry
	for off := 0; off < len(b); {
		if len(b)-off < 26 {
			return nil, fmt.Errorf("entry at %d is cut short", off)
		}
		e := b[off:]
		n := int(ntfsU16(e[4:]))
		if n < 26 || n > len(e) {
			return nil, fmt.Errorf("entry at %d has length %d", off, n)
		}
		if ntfsU32(e) == ntfsAttrData && e[6] == 0 {
			ref := ntfsU64(e[16:])
			entries = append(entries, ntfsListEntry{
				lowVCN: int64(ntfsU64(e[8:])),
				record: int64(ref & ntfsRefMask),
				seq:    uint16(ref >> 48),
			})
			if len(entries) > ntfsMaxExtents {
				return nil, fmt.Errorf("more than %d $DATA entries", ntfsMaxExtents)
			}
		}
		off += n
	}
	return entries, nil
}

// scanBitmap reads the cluster bitmap in chunks and returns the byte ranges
// of the clusters whose bits are clear, clipped to the volume's clusters and
// to before the last sector, which holds the backup boot sector.
func (v *ntfsVolume) scanBitmap(bm *ntfsStream) ([]Range, error) {
	limit := min(v.clusters*v.clusterSize, v.size-max(v.sectorSize, 512))
	sc := ntfsFreeScanner{clusterSize: v.clusterSize, limit: limit, start: -1}
	need := (v.clusters + 7) / 8
	buf := make([]byte, min(need, ntfsBitmapChunk))
	for pos := int64(0); pos < need; pos += int64(len(buf)) {
		chunk := buf[:min(int64(len(buf)), need-pos)]
		if err := v.readAt(bm, chunk, pos, "$Bitmap"); err != nil {
			return nil, err
		}
		sc.scan(chunk, pos*8, v.clusters)
	}
	sc.flush(v.clusters)
	return sc.free, nil
}

// ntfsBootSize is the size of $Boot, the boot sector and its loader.
const ntfsBootSize = 8192

// checkStructures checks that the clusters parseNTFS read its structures
// from are not free: $Boot, the runs of $MFT it used, and the runs of
// $Bitmap. A bitmap that marks them free cannot be trusted.
func (v *ntfsVolume) checkStructures(free []Range, bm *ntfsStream) error {
	check := func(what string, r Range) error {
		i := sort.Search(len(free), func(i int) bool { return free[i].End() > r.Off })
		if i < len(free) && free[i].Off < r.End() {
			return ntfsError(r.Off, "$Bitmap marks bytes %d to %d of %s free", max(r.Off, free[i].Off), min(r.End(), free[i].End()), what)
		}
		return nil
	}
	if err := check("$Boot", Range{Off: 0, Len: min(ntfsBootSize, v.clusters*v.clusterSize)}); err != nil {
		return err
	}
	for _, s := range []struct {
		what string
		runs ntfsRunList
	}{{"$MFT", v.mft}, {"$Bitmap", bm.runs}} {
		for _, run := range s.runs {
			if run.sparse() {
				continue
			}
			if err := check(s.what, Range{Off: run.lcn * v.clusterSize, Len: run.n * v.clusterSize}); err != nil {
				return err
			}
		}
	}
	return nil
}

// ntfsFreeScanner turns the clear bits of a cluster bitmap into byte ranges.
type ntfsFreeScanner struct {
	clusterSize int64
	limit       int64 // byte offset no free range reaches past
	start       int64 // first cluster of the free run in progress, or -1
	free        []Range
}

// scan processes bitmap bytes whose first bit is cluster c, ignoring bits
// of clusters at or past count.
func (s *ntfsFreeScanner) scan(b []byte, c, count int64) {
	for _, x := range b {
		switch {
		case x == 0xff:
			s.flush(c)
		case x == 0 && c+8 <= count:
			if s.start < 0 {
				s.start = c
			}
		default:
			for i := int64(0); i < 8 && c+i < count; i++ {
				if x&(1<<i) != 0 {
					s.flush(c + i)
				} else if s.start < 0 {
					s.start = c + i
				}
			}
		}
		c += 8
		if c >= count {
			return
		}
	}
}

// flush ends the free run in progress, if any, before cluster end and
// records it, trimmed to whole 512-byte sectors below the limit.
func (s *ntfsFreeScanner) flush(end int64) {
	if s.start < 0 {
		return
	}
	off := (s.start*s.clusterSize + 511) &^ 511
	stop := min(end*s.clusterSize, s.limit) &^ 511
	s.start = -1
	if stop <= off {
		return
	}
	if k := len(s.free); k > 0 && s.free[k-1].End() == off {
		s.free[k-1].Len += stop - off
		return
	}
	s.free = append(s.free, Range{Off: off, Len: stop - off})
}

// ntfsReadFull reads len(p) bytes at off, reporting a short read as
// io.ErrUnexpectedEOF.
func ntfsReadFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func ntfsPow2(x int64) bool { return x > 0 && x&(x-1) == 0 }

func ntfsU16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
func ntfsU32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func ntfsU64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// ntfsInt decodes a little-endian two's-complement integer of 1 to 8 bytes.
func ntfsInt(b []byte) int64 {
	var x uint64
	for i := len(b) - 1; i >= 0; i-- {
		x = x<<8 | uint64(b[i])
	}
	shift := 64 - 8*uint(len(b))
	return int64(x<<shift) >> shift
}
