package p2v

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// Offsets of the boot-sector fields that parseFAT reads (Microsoft FAT
// specification, "BPB" and "FAT32 extended BPB").
const (
	fatOffJump     = 0  // jump instruction, 3 bytes
	fatOffOEM      = 3  // OEM name, 8 bytes
	fatOffBytsSec  = 11 // bytes per sector, uint16
	fatOffSecClus  = 13 // sectors per cluster, uint8
	fatOffRsvd     = 14 // reserved sectors, uint16
	fatOffNumFATs  = 16 // number of FATs, uint8
	fatOffRootEnt  = 17 // root directory entries (FAT12/16), uint16
	fatOffTotSec16 = 19 // total sectors, uint16
	fatOffMedia    = 21 // media descriptor, uint8
	fatOffFATSz16  = 22 // sectors per FAT (FAT12/16), uint16
	fatOffTotSec32 = 32 // total sectors, uint32
	fatOffFATSz32  = 36 // sectors per FAT (FAT32), uint32
	fatOffFSVer    = 42 // FAT32 version, uint16
	fatOffRootClus = 44 // FAT32 root directory cluster, uint32
	fatOffSig      = 510
)

// Cluster counts that separate the FAT types: the type of a FAT volume is
// decided by its count of data clusters alone.
const (
	fat12MaxClusters = 4084
	fat16MaxClusters = 65524
	fat32MaxClusters = 0x0FFFFFF5 // cluster numbers end at 0x0FFFFFF6, below the bad-cluster mark
)

// fatChunkEntries is how many FAT entries parseFAT reads at a time. It is
// even, so that every chunk of a FAT12 starts on a byte boundary.
const fatChunkEntries = 1 << 16

// fatBPB holds the BIOS parameter block fields of a FAT boot sector.
type fatBPB struct {
	bytesPerSector    int64
	sectorsPerCluster int64
	reservedSectors   int64
	numFATs           int64
	rootEntries       int64
	totalSectors      int64
	fatSz16           int64
	fatSectors        int64 // fatSz16, or the FAT32 field when fatSz16 is 0
	fsVersion         uint16
	rootCluster       int64
}

// fatVolume is the geometry of a FAT volume, in bytes from its start.
type fatVolume struct {
	name        string // "fat12", "fat16" or "fat32"
	entryBits   int64  // 12, 16 or 32
	clusterSize int64
	fatOff      int64 // first FAT
	fatSize     int64 // size of one FAT copy
	numFATs     int64
	dataOff     int64 // cluster 2
	clusters    int64 // count of data clusters, numbered 2 to clusters+1
	rootCluster int64 // first cluster of the FAT32 root directory, else 0
}

// parseFAT reads the FAT12, FAT16 or FAT32 file system at the start of r and
// reports as free the data clusters whose FAT entry is zero in every copy of
// the FAT; reserved sectors, FATs, the FAT12/16 root directory and the tail
// past the last whole cluster are never free. The FAT type is decided by the count of clusters, as the Microsoft
// specification says, not by the label in the boot sector. A boot sector
// whose BIOS parameter block is not plausible (an MBR, NTFS, exFAT) gives
// errNotFS; a plausible one whose geometry does not fit the volume or size
// gives a *FSError.
func parseFAT(r io.ReaderAt, size int64) (*fsUsage, error) {
	if size < 512 {
		return nil, fmt.Errorf("%w: %d bytes are too few for a FAT boot sector", errNotFS, size)
	}
	bs := make([]byte, 512)
	if err := fatReadAt(r, bs, 0); err != nil {
		return nil, err
	}
	b, err := fatDecodeBPB(bs)
	if err != nil {
		return nil, err
	}
	v, err := b.volume(size)
	if err != nil {
		return nil, err
	}
	free, err := v.free(r)
	if err != nil {
		return nil, err
	}
	return &fsUsage{Type: v.name, BlockSize: v.clusterSize, Free: free}, nil
}

// fatDecodeBPB decodes the boot sector bs and checks that it is plausibly a
// FAT boot sector, returning an error wrapping errNotFS when it is not.
func fatDecodeBPB(bs []byte) (*fatBPB, error) {
	le := binary.LittleEndian
	if bs[fatOffSig] != 0x55 || bs[fatOffSig+1] != 0xAA {
		return nil, fmt.Errorf("%w: no 0x55AA boot-sector signature", errNotFS)
	}
	oem := bs[fatOffOEM : fatOffOEM+8]
	if bytes.Equal(oem, []byte("NTFS    ")) || bytes.Equal(oem, []byte("EXFAT   ")) {
		return nil, fmt.Errorf("%w: boot sector is %q, not FAT", errNotFS, bytes.TrimSpace(oem))
	}
	if !(bs[fatOffJump] == 0xEB && bs[fatOffJump+2] == 0x90) && bs[fatOffJump] != 0xE9 {
		return nil, fmt.Errorf("%w: boot sector starts with no x86 jump", errNotFS)
	}
	b := &fatBPB{
		bytesPerSector:    int64(le.Uint16(bs[fatOffBytsSec:])),
		sectorsPerCluster: int64(bs[fatOffSecClus]),
		reservedSectors:   int64(le.Uint16(bs[fatOffRsvd:])),
		numFATs:           int64(bs[fatOffNumFATs]),
		rootEntries:       int64(le.Uint16(bs[fatOffRootEnt:])),
		totalSectors:      int64(le.Uint16(bs[fatOffTotSec16:])),
		fatSz16:           int64(le.Uint16(bs[fatOffFATSz16:])),
	}
	if b.totalSectors == 0 {
		b.totalSectors = int64(le.Uint32(bs[fatOffTotSec32:]))
	}
	b.fatSectors = b.fatSz16
	if b.fatSz16 == 0 {
		b.fatSectors = int64(le.Uint32(bs[fatOffFATSz32:]))
		b.fsVersion = le.Uint16(bs[fatOffFSVer:])
		b.rootCluster = int64(le.Uint32(bs[fatOffRootClus:]))
	}
	media := bs[fatOffMedia]
	switch {
	case b.bytesPerSector < 512 || b.bytesPerSector > 4096 || bits.OnesCount64(uint64(b.bytesPerSector)) != 1:
		return nil, fmt.Errorf("%w: %d bytes per sector", errNotFS, b.bytesPerSector)
	case b.sectorsPerCluster == 0 || bits.OnesCount64(uint64(b.sectorsPerCluster)) != 1:
		return nil, fmt.Errorf("%w: %d sectors per cluster", errNotFS, b.sectorsPerCluster)
	case b.reservedSectors == 0:
		return nil, fmt.Errorf("%w: no reserved sectors", errNotFS)
	case b.numFATs == 0:
		return nil, fmt.Errorf("%w: no FATs", errNotFS)
	case media != 0xF0 && media < 0xF8:
		return nil, fmt.Errorf("%w: media descriptor %#x", errNotFS, media)
	case b.totalSectors == 0:
		return nil, fmt.Errorf("%w: no total sector count", errNotFS)
	case b.fatSectors == 0:
		return nil, fmt.Errorf("%w: no FAT size", errNotFS)
	}
	return b, nil
}

// volume works out the geometry of the volume that b describes, and checks
// that it is self-consistent and fits in size bytes.
func (b *fatBPB) volume(size int64) (*fatVolume, error) {
	bps := b.bytesPerSector
	rootDirSectors := (b.rootEntries*32 + bps - 1) / bps
	dataSector := b.reservedSectors + b.numFATs*b.fatSectors + rootDirSectors
	if dataSector >= b.totalSectors {
		return nil, &FSError{FS: "fat", Off: fatOffTotSec16,
			Reason: fmt.Sprintf("data area starts at sector %d, past the volume's %d sectors", dataSector, b.totalSectors)}
	}
	v := &fatVolume{
		clusterSize: b.sectorsPerCluster * bps,
		fatOff:      b.reservedSectors * bps,
		fatSize:     b.fatSectors * bps,
		numFATs:     b.numFATs,
		dataOff:     dataSector * bps,
		clusters:    (b.totalSectors - dataSector) / b.sectorsPerCluster,
	}
	switch {
	case v.clusters <= fat12MaxClusters:
		v.name, v.entryBits = "fat12", 12
	case v.clusters <= fat16MaxClusters:
		v.name, v.entryBits = "fat16", 16
	default:
		v.name, v.entryBits = "fat32", 32
	}
	fail := func(off int64, format string, args ...any) (*fatVolume, error) {
		return nil, &FSError{FS: v.name, Off: off, Reason: fmt.Sprintf(format, args...)}
	}
	if end := b.totalSectors * bps; end > size {
		return fail(fatOffTotSec16, "volume of %d sectors (%d bytes) exceeds the %d bytes available", b.totalSectors, end, size)
	}
	if v.clusters == 0 {
		return fail(fatOffTotSec16, "data area of %d sectors holds no whole cluster", b.totalSectors-dataSector)
	}
	if v.name == "fat32" {
		switch {
		case b.fatSz16 != 0 || b.rootEntries != 0:
			return fail(fatOffRootEnt, "%d clusters make FAT32, but the boot sector has a FAT12/16 layout", v.clusters)
		case v.clusters > fat32MaxClusters:
			return fail(fatOffTotSec32, "%d clusters are more than FAT32 can number", v.clusters)
		case b.fsVersion != 0:
			return fail(fatOffFSVer, "unknown FAT32 version %#x", b.fsVersion)
		case b.rootCluster < 2 || b.rootCluster >= v.clusters+2:
			return fail(fatOffRootClus, "root directory cluster %d is outside clusters 2 to %d", b.rootCluster, v.clusters+1)
		}
		v.rootCluster = b.rootCluster
	} else if b.fatSz16 == 0 || b.rootEntries == 0 {
		return fail(fatOffFATSz16, "%d clusters make %s, but the boot sector has a FAT32 layout", v.clusters, v.name)
	}
	if need := v.entryBytes(v.clusters + 2); need > v.fatSize {
		return fail(v.fatOff, "FAT of %d bytes is too small for %d clusters (needs %d)", v.fatSize, v.clusters, need)
	}
	return v, nil
}

// entryBytes returns how many bytes n FAT entries take, starting at an even
// entry.
func (v *fatVolume) entryBytes(n int64) int64 {
	return (n*v.entryBits + 7) / 8
}

// entry returns entry i of the FAT bytes p, which start at an even entry.
func (v *fatVolume) entry(p []byte, i int64) uint32 {
	switch v.entryBits {
	case 12:
		x := uint32(binary.LittleEndian.Uint16(p[i*3/2:]))
		if i%2 == 1 {
			return x >> 4
		}
		return x & 0xFFF
	case 16:
		return uint32(binary.LittleEndian.Uint16(p[i*2:]))
	default:
		return binary.LittleEndian.Uint32(p[i*4:])
	}
}

// free reads the FAT copies chunk by chunk and returns the byte ranges of the
// clusters that every copy marks free. A FAT32 entry counts as free only when
// all its 32 bits are zero, reserved high bits included.
func (v *fatVolume) free(r io.ReaderAt) ([]Range, error) {
	entries := v.clusters + 2
	chunk := v.entryBytes(min(entries, fatChunkEntries))
	acc := make([]byte, chunk) // the OR of all copies: an entry is zero in it only if zero in each
	buf := make([]byte, chunk)
	var free []Range
	for first := int64(0); first < entries; first += fatChunkEntries {
		n := min(entries-first, fatChunkEntries)
		off := v.entryBytes(first)
		a := acc[:v.entryBytes(n)]
		clear(a)
		for k := range v.numFATs {
			p := buf[:len(a)]
			if err := fatReadAt(r, p, v.fatOff+k*v.fatSize+off); err != nil {
				return nil, err
			}
			for j, c := range p {
				a[j] |= c
			}
		}
		for i := max(2-first, 0); i < n; i++ {
			if v.entry(a, i) != 0 {
				continue
			}
			c := first + i
			if c == v.rootCluster {
				return nil, &FSError{FS: v.name, Off: v.fatOff + v.entryBytes(c),
					Reason: fmt.Sprintf("root directory cluster %d is marked free", c)}
			}
			free = fatAddRange(free, Range{Off: v.dataOff + (c-2)*v.clusterSize, Len: v.clusterSize})
		}
	}
	return free, nil
}

// fatAddRange appends r to the sorted ranges rs, merging it into the last one
// when they touch.
func fatAddRange(rs []Range, r Range) []Range {
	if n := len(rs); n > 0 && rs[n-1].End() == r.Off {
		rs[n-1].Len += r.Len
		return rs
	}
	return append(rs, r)
}

// fatReadAt fills p from r at off, saying where a read failed.
func fatReadAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("p2v: reading FAT file system at byte %d: %w", off, err)
}
