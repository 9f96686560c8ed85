package p2v

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// A Partition is one entry of a disk's partition table, with what Analyze
// learned of the file system inside it.
type Partition struct {
	// Index numbers partitions as Linux does: MBR primaries 1-4, logical
	// partitions from 5 in chain order; GPT entries from 1 in table order.
	Index int
	Start int64  // byte offset in the source
	Size  int64  // bytes
	Type  string // MBR: the type byte as "0x83"; GPT: the type GUID
	Name  string // GPT partition name; empty for MBR

	// FS names the file system found inside ("ext4", "ntfs", "fat32"), or
	// is empty when none was recognised.
	FS string
	// Free is how many bytes of the partition the file system marks unused;
	// Capture does not read them.
	Free int64
	// Stale reports a file system in use whose allocation map was taken as
	// a hint for a live pass (see Options.Snapshotter).
	Stale bool
	// Err says why the partition's allocation map was not used: an *FSError
	// for a damaged file system. Nil for a file system that was used and for
	// a partition whose file system is unknown.
	Err error
}

// sector is the unit of MBR and GPT addresses. Disks with 4096-byte logical
// sectors are recognised by looking for the GPT header at both 512 and 4096.
const sector = 512

// partTable reads the partition table at the start of r, if any. It returns
// scheme "" and no partitions when sector 0 holds no valid MBR.
func partTable(r io.ReaderAt, size int64) (scheme string, parts []Partition, err error) {
	if size < sector {
		return "", nil, nil
	}
	mbr := make([]byte, sector)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return "", nil, fmt.Errorf("p2v: reading sector 0: %w", err)
	}
	ents, ok := mbrEntries(mbr)
	if !ok {
		return "", nil, nil
	}
	for _, e := range ents {
		if e.typ == 0xEE {
			for _, lba := range []int64{512, 4096} {
				parts, err := readGPT(r, size, lba)
				if err == nil {
					return "gpt", parts, nil
				}
				if !errors.Is(err, errNoGPT) {
					return "gpt", nil, err
				}
			}
			return "", nil, &FSError{FS: "gpt", Off: sector, Reason: "protective MBR but no valid GPT header (primary or backup)"}
		}
	}
	parts, err = mbrPartitions(r, size, ents)
	return "mbr", parts, err
}

type mbrEntry struct {
	status     byte
	typ        byte
	start, len uint32 // in sectors
}

// isExtended reports whether an MBR type byte names an extended partition.
func isExtended(t byte) bool { return t == 0x05 || t == 0x0F || t == 0x85 }

// mbrEntries decodes the four entries of an MBR or EBR sector. It reports
// false when the sector has no boot signature or an entry is implausible,
// which is how a volume boot record or blank sector is told from an MBR.
func mbrEntries(b []byte) ([]mbrEntry, bool) {
	if b[510] != 0x55 || b[511] != 0xAA {
		return nil, false
	}
	var ents []mbrEntry
	for i := range 4 {
		p := b[446+16*i : 446+16*(i+1)]
		e := mbrEntry{status: p[0], typ: p[4],
			start: binary.LittleEndian.Uint32(p[8:]), len: binary.LittleEndian.Uint32(p[12:])}
		if e.status != 0 && e.status != 0x80 {
			return nil, false
		}
		if e.typ == 0 {
			continue
		}
		if e.len == 0 {
			return nil, false
		}
		ents = append(ents, e)
	}
	return ents, len(ents) > 0
}

// mbrPartitions turns MBR entries into partitions, following the chain of
// extended boot records for logical partitions.
func mbrPartitions(r io.ReaderAt, size int64, ents []mbrEntry) ([]Partition, error) {
	var parts []Partition
	for i, e := range ents {
		start, n := int64(e.start)*sector, int64(e.len)*sector
		if start+n > size || e.start == 0 {
			return nil, &FSError{FS: "mbr", Off: int64(446 + 16*i), Reason: fmt.Sprintf("partition %d (%d+%d sectors) lies outside the %d-byte disk", i+1, e.start, e.len, size)}
		}
		if isExtended(e.typ) {
			logical, err := ebrChain(r, size, start, n)
			if err != nil {
				return nil, err
			}
			parts = append(parts, logical...)
			continue
		}
		parts = append(parts, Partition{Index: i + 1, Start: start, Size: n, Type: fmt.Sprintf("0x%02x", e.typ)})
	}
	// Number logical partitions from 5 in chain order, as Linux does; the
	// primaries keep their slot numbers.
	next := 5
	for i := range parts {
		if parts[i].Index == 0 {
			parts[i].Index = next
			next++
		}
	}
	return parts, checkOverlap("mbr", parts)
}

// ebrChain follows the linked list of extended boot records inside the
// extended partition [extStart, extStart+extLen).
func ebrChain(r io.ReaderAt, size, extStart, extLen int64) ([]Partition, error) {
	var parts []Partition
	seen := map[int64]bool{}
	b := make([]byte, sector)
	for ebr := extStart; ; {
		if seen[ebr] || len(seen) >= 256 {
			return nil, &FSError{FS: "mbr", Off: ebr, Reason: "extended partition chain loops or is longer than 256 entries"}
		}
		seen[ebr] = true
		if _, err := r.ReadAt(b, ebr); err != nil {
			return nil, fmt.Errorf("p2v: reading extended boot record at byte %d: %w", ebr, err)
		}
		if b[510] != 0x55 || b[511] != 0xAA {
			return nil, &FSError{FS: "mbr", Off: ebr, Reason: "extended boot record has no 0x55AA signature"}
		}
		e1 := b[446:462]
		e2 := b[462:478]
		if t := e1[4]; t != 0 {
			start := ebr + int64(binary.LittleEndian.Uint32(e1[8:]))*sector
			n := int64(binary.LittleEndian.Uint32(e1[12:])) * sector
			if n == 0 || start < ebr || start+n > extStart+extLen || start+n > size {
				return nil, &FSError{FS: "mbr", Off: ebr + 446, Reason: "logical partition lies outside its extended partition"}
			}
			parts = append(parts, Partition{Start: start, Size: n, Type: fmt.Sprintf("0x%02x", t)})
		}
		if !isExtended(e2[4]) {
			return parts, nil
		}
		ebr = extStart + int64(binary.LittleEndian.Uint32(e2[8:]))*sector
		if ebr <= extStart || ebr >= extStart+extLen {
			return nil, &FSError{FS: "mbr", Off: ebr, Reason: "next extended boot record lies outside the extended partition"}
		}
	}
}

// errNoGPT says no GPT header signature is at the LBA tried.
var errNoGPT = errors.New("p2v: no GPT header")

// readGPT reads the GPT of a disk with lbaSize-byte logical sectors: the
// primary header at LBA 1, or the backup at the last LBA when the primary is
// damaged.
func readGPT(r io.ReaderAt, size, lbaSize int64) ([]Partition, error) {
	parts, err := readGPTAt(r, size, lbaSize, lbaSize)
	if err == nil || size < 2*lbaSize {
		return parts, err
	}
	backup, berr := readGPTAt(r, size, lbaSize, (size/lbaSize-1)*lbaSize)
	if berr == nil {
		return backup, nil
	}
	return nil, err
}

func readGPTAt(r io.ReaderAt, size, lbaSize, off int64) ([]Partition, error) {
	h := make([]byte, lbaSize)
	if _, err := r.ReadAt(h, off); err != nil {
		return nil, errNoGPT
	}
	if !bytes.Equal(h[:8], []byte("EFI PART")) {
		return nil, errNoGPT
	}
	hsize := binary.LittleEndian.Uint32(h[12:])
	if hsize < 92 || int64(hsize) > lbaSize {
		return nil, &FSError{FS: "gpt", Off: off, Reason: fmt.Sprintf("header size %d", hsize)}
	}
	want := binary.LittleEndian.Uint32(h[16:])
	hdr := bytes.Clone(h[:hsize])
	clear(hdr[16:20])
	if crc32.ChecksumIEEE(hdr) != want {
		return nil, &FSError{FS: "gpt", Off: off, Reason: "header CRC mismatch"}
	}
	entLBA := int64(binary.LittleEndian.Uint64(h[72:]))
	count := int64(binary.LittleEndian.Uint32(h[80:]))
	esize := int64(binary.LittleEndian.Uint32(h[84:]))
	if esize < 128 || esize%8 != 0 || esize > 4096 || count > 1<<16 {
		return nil, &FSError{FS: "gpt", Off: off, Reason: fmt.Sprintf("%d entries of %d bytes", count, esize)}
	}
	tbl := count * esize
	if entLBA <= 0 || entLBA*lbaSize+tbl > size {
		return nil, &FSError{FS: "gpt", Off: off, Reason: "partition entry array lies outside the disk"}
	}
	ents := make([]byte, tbl)
	if _, err := r.ReadAt(ents, entLBA*lbaSize); err != nil {
		return nil, fmt.Errorf("p2v: reading GPT entries at byte %d: %w", entLBA*lbaSize, err)
	}
	if crc32.ChecksumIEEE(ents) != binary.LittleEndian.Uint32(h[88:]) {
		return nil, &FSError{FS: "gpt", Off: entLBA * lbaSize, Reason: "partition entry array CRC mismatch"}
	}
	var parts []Partition
	for i := range count {
		e := ents[i*esize : (i+1)*esize]
		if zeroBytes(e[:16]) {
			continue
		}
		first := int64(binary.LittleEndian.Uint64(e[32:]))
		last := int64(binary.LittleEndian.Uint64(e[40:]))
		if first <= 0 || last < first || (last+1)*lbaSize > size {
			return nil, &FSError{FS: "gpt", Off: entLBA*lbaSize + i*esize, Reason: fmt.Sprintf("entry %d spans LBA %d-%d, outside the disk", i+1, first, last)}
		}
		parts = append(parts, Partition{
			Index: int(i + 1),
			Start: first * lbaSize,
			Size:  (last - first + 1) * lbaSize,
			Type:  guidString(e[:16]),
			Name:  utf16String(e[56:128]),
		})
	}
	return parts, checkOverlap("gpt", parts)
}

// checkOverlap refuses a table whose partitions overlap: such a disk cannot
// be described by per-partition allocation maps.
func checkOverlap(scheme string, parts []Partition) error {
	for i := range parts {
		for j := i + 1; j < len(parts); j++ {
			a, b := parts[i], parts[j]
			if a.Start < b.Start+b.Size && b.Start < a.Start+a.Size {
				return &FSError{FS: scheme, Reason: fmt.Sprintf("partitions %d and %d overlap", a.Index, b.Index)}
			}
		}
	}
	return nil
}

// guidString formats a GPT GUID (mixed-endian) the way tools print it.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

func utf16String(b []byte) string {
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

func zeroBytes(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
