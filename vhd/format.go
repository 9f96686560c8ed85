package vhd

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"math/bits"
	"time"
	"unicode/utf16"
)

// Sizes and limits of the VHD format.
const (
	SectorSize = 512 // bytes in a VHD sector

	footerSize    = 512
	dynHeaderSize = 1024

	// DefaultBlockSize is the block size of dynamic and differencing images
	// made with a zero CreateOptions.BlockSize, as Hyper-V and qemu-img use.
	DefaultBlockSize = 2 << 20

	minBlockSize = SectorSize
	maxBlockSize = 256 << 20

	// MaxVHDSize is the largest virtual size of a VHD image: 2040 GiB, the
	// limit Hyper-V and qemu-img enforce (the format's CHS fields and 32-bit
	// BAT sector offsets cannot address much more).
	MaxVHDSize = 0xff000000 * SectorSize

	unusedEntry = 0xffffffff
	noOffset    = 0xffffffffffffffff

	diskTypeFixed        = 2
	diskTypeDynamic      = 3
	diskTypeDifferencing = 4

	formatVersion = 0x00010000

	// maxCHSSectors is the largest disk a CHS geometry describes:
	// 65535 cylinders × 16 heads × 255 sectors per track (about 127.5 GiB).
	maxCHSSectors = 65535 * 16 * 255
)

var (
	footerCookie    = [8]byte{'c', 'o', 'n', 'e', 'c', 't', 'i', 'x'}
	dynHeaderCookie = [8]byte{'c', 'x', 's', 'p', 'a', 'r', 's', 'e'}

	// vhdEpoch is the origin of VHD time stamps.
	vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// A UUID is a 128-bit identifier as stored in an image, byte for byte.
type UUID [16]byte

// String formats u as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx from its bytes in
// stored order.
func (u UUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// IsZero reports whether u is all zeros.
func (u UUID) IsZero() bool { return u == UUID{} }

// NewUUID returns a random (version 4) UUID.
func NewUUID() UUID {
	var u UUID
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// Geometry is the cylinder/head/sector geometry recorded in a VHD footer,
// which BIOS-era hypervisors use to size the disk.
type Geometry struct {
	Cylinders       uint16
	Heads           uint8
	SectorsPerTrack uint8
}

// Sectors returns the number of sectors the geometry addresses.
func (g Geometry) Sectors() int64 {
	return int64(g.Cylinders) * int64(g.Heads) * int64(g.SectorsPerTrack)
}

// Size returns the size in bytes that the geometry addresses.
func (g Geometry) Size() int64 { return g.Sectors() * SectorSize }

// maxGeometry is 65535/16/255, the value that tells qemu and Virtual PC to
// use the footer's current size instead of the geometry.
var maxGeometry = Geometry{Cylinders: 65535, Heads: 16, SectorsPerTrack: 255}

// GeometryFor returns the geometry the VHD specification computes for a
// disk of size bytes: the largest geometry that does not exceed the size,
// capped at 65535/16/255.
func GeometryFor(size int64) Geometry {
	total := min(size/SectorSize, maxCHSSectors)
	var spt, heads, cth int64
	if total >= 65535*16*63 {
		spt, heads = 255, 16
		cth = total / spt
	} else {
		spt = 17
		cth = total / spt
		heads = max((cth+1023)/1024, 4)
		if cth >= heads*1024 || heads > 16 {
			spt, heads = 31, 16
			cth = total / spt
		}
		if cth >= heads*1024 {
			spt, heads = 63, 16
			cth = total / spt
		}
	}
	return Geometry{Cylinders: uint16(cth / heads), Heads: uint8(heads), SectorsPerTrack: uint8(spt)}
}

// footer is the 512-byte structure at the end of every VHD image (and, for
// dynamic and differencing images, copied at offset 0).
type footer struct {
	Features       uint32
	Version        uint32
	DataOffset     uint64
	Timestamp      uint32
	CreatorApp     [4]byte
	CreatorVersion uint32
	CreatorOS      [4]byte
	OriginalSize   uint64
	CurrentSize    uint64
	Geometry       Geometry
	DiskType       uint32
	Checksum       uint32
	UUID           UUID
	SavedState     uint8
}

// vhdChecksum is the one's complement of the byte sum of b, where the four
// checksum bytes at ck are counted as zero.
func vhdChecksum(b []byte, ck int) uint32 {
	var sum uint32
	for i, c := range b {
		if i >= ck && i < ck+4 {
			continue
		}
		sum += uint32(c)
	}
	return ^sum
}

func (f *footer) marshal() []byte {
	b := make([]byte, footerSize)
	be := binary.BigEndian
	copy(b[0:8], footerCookie[:])
	be.PutUint32(b[8:], f.Features)
	be.PutUint32(b[12:], f.Version)
	be.PutUint64(b[16:], f.DataOffset)
	be.PutUint32(b[24:], f.Timestamp)
	copy(b[28:32], f.CreatorApp[:])
	be.PutUint32(b[32:], f.CreatorVersion)
	copy(b[36:40], f.CreatorOS[:])
	be.PutUint64(b[40:], f.OriginalSize)
	be.PutUint64(b[48:], f.CurrentSize)
	be.PutUint16(b[56:], f.Geometry.Cylinders)
	b[58] = f.Geometry.Heads
	b[59] = f.Geometry.SectorsPerTrack
	be.PutUint32(b[60:], f.DiskType)
	copy(b[68:84], f.UUID[:])
	b[84] = f.SavedState
	f.Checksum = vhdChecksum(b, 64)
	be.PutUint32(b[64:], f.Checksum)
	return b
}

// parseFooter decodes a footer found at off. It checks the cookie, the
// checksum, the version and the disk type.
func parseFooter(b []byte, off int64) (*footer, error) {
	if len(b) < footerSize || [8]byte(b[0:8]) != footerCookie {
		return nil, formatErr(off, "footer", ErrFormat)
	}
	be := binary.BigEndian
	f := &footer{
		Features:       be.Uint32(b[8:]),
		Version:        be.Uint32(b[12:]),
		DataOffset:     be.Uint64(b[16:]),
		Timestamp:      be.Uint32(b[24:]),
		CreatorApp:     [4]byte(b[28:32]),
		CreatorVersion: be.Uint32(b[32:]),
		CreatorOS:      [4]byte(b[36:40]),
		OriginalSize:   be.Uint64(b[40:]),
		CurrentSize:    be.Uint64(b[48:]),
		Geometry:       Geometry{be.Uint16(b[56:]), b[58], b[59]},
		DiskType:       be.Uint32(b[60:]),
		Checksum:       be.Uint32(b[64:]),
		UUID:           UUID(b[68:84]),
		SavedState:     b[84],
	}
	if sum := vhdChecksum(b[:footerSize], 64); sum != f.Checksum {
		return nil, formatErr(off, "footer", detail(ErrChecksum, "stored %#08x, computed %#08x", f.Checksum, sum))
	}
	if f.Version>>16 != 1 {
		return nil, formatErr(off, "footer", detail(ErrUnsupported, "format version %#08x", f.Version))
	}
	switch f.DiskType {
	case diskTypeFixed, diskTypeDynamic, diskTypeDifferencing:
	default:
		return nil, formatErr(off, "footer", detail(ErrUnsupported, "disk type %d", f.DiskType))
	}
	if f.CurrentSize > MaxVHDSize+maxCHSSectors*SectorSize {
		// Far beyond what any creator writes; refuse before sizing tables.
		return nil, formatErr(off, "footer", detail(ErrUnsupported, "current size %d", f.CurrentSize))
	}
	return f, nil
}

// Platform codes of parent locators.
const (
	platNone = 0
	platWi2r = 0x57693272 // deprecated: relative path, ANSI
	platWi2k = 0x5769326b // deprecated: absolute path, ANSI
	platW2ru = 0x57327275 // relative path, UTF-16LE
	platW2ku = 0x57326b75 // absolute path, UTF-16LE
	platMac  = 0x4d616320 // Mac OS alias (not supported)
	platMacX = 0x4d616358 // file URL, UTF-8
)

func platformName(code uint32) string {
	switch code {
	case platWi2r:
		return "Wi2r"
	case platWi2k:
		return "Wi2k"
	case platW2ru:
		return "W2ru"
	case platW2ku:
		return "W2ku"
	case platMac:
		return "Mac"
	case platMacX:
		return "MacX"
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], code)
	return hex.EncodeToString(b[:])
}

// locatorEntry is one of the eight parent locator entries of a dynamic
// header.
type locatorEntry struct {
	Code       uint32
	DataSpace  uint32 // bytes (Hyper-V) or sectors (the specification)
	DataLength uint32 // bytes
	DataOffset uint64
}

// dynHeader is the 1024-byte header of dynamic and differencing images.
type dynHeader struct {
	DataOffset      uint64
	TableOffset     uint64
	Version         uint32
	MaxTableEntries uint32
	BlockSize       uint32
	Checksum        uint32
	ParentUUID      UUID
	ParentTimestamp uint32
	ParentName      string
	Locators        [8]locatorEntry
}

func (h *dynHeader) marshal() []byte {
	b := make([]byte, dynHeaderSize)
	be := binary.BigEndian
	copy(b[0:8], dynHeaderCookie[:])
	be.PutUint64(b[8:], h.DataOffset)
	be.PutUint64(b[16:], h.TableOffset)
	be.PutUint32(b[24:], h.Version)
	be.PutUint32(b[28:], h.MaxTableEntries)
	be.PutUint32(b[32:], h.BlockSize)
	copy(b[40:56], h.ParentUUID[:])
	be.PutUint32(b[56:], h.ParentTimestamp)
	name := utf16.Encode([]rune(h.ParentName))
	for i, c := range name[:min(len(name), 256)] {
		be.PutUint16(b[64+2*i:], c)
	}
	for i, l := range h.Locators {
		e := b[576+24*i:]
		be.PutUint32(e[0:], l.Code)
		be.PutUint32(e[4:], l.DataSpace)
		be.PutUint32(e[8:], l.DataLength)
		be.PutUint64(e[16:], l.DataOffset)
	}
	h.Checksum = vhdChecksum(b, 36)
	be.PutUint32(b[36:], h.Checksum)
	return b
}

func parseDynHeader(b []byte, off int64) (*dynHeader, error) {
	if len(b) < dynHeaderSize || [8]byte(b[0:8]) != dynHeaderCookie {
		return nil, formatErr(off, "dynamic header", ErrFormat)
	}
	be := binary.BigEndian
	h := &dynHeader{
		DataOffset:      be.Uint64(b[8:]),
		TableOffset:     be.Uint64(b[16:]),
		Version:         be.Uint32(b[24:]),
		MaxTableEntries: be.Uint32(b[28:]),
		BlockSize:       be.Uint32(b[32:]),
		Checksum:        be.Uint32(b[36:]),
		ParentUUID:      UUID(b[40:56]),
		ParentTimestamp: be.Uint32(b[56:]),
	}
	if sum := vhdChecksum(b[:dynHeaderSize], 36); sum != h.Checksum {
		return nil, formatErr(off, "dynamic header", detail(ErrChecksum, "stored %#08x, computed %#08x", h.Checksum, sum))
	}
	if h.Version>>16 != 1 {
		return nil, formatErr(off, "dynamic header", detail(ErrUnsupported, "header version %#08x", h.Version))
	}
	if h.BlockSize < minBlockSize || h.BlockSize > maxBlockSize || bits.OnesCount32(h.BlockSize) != 1 {
		return nil, formatErr(off+32, "dynamic header", detail(ErrFormat, "block size %d is not a power of two between %d and %d", h.BlockSize, minBlockSize, maxBlockSize))
	}
	name := make([]uint16, 0, 256)
	for i := 0; i < 256; i++ {
		c := be.Uint16(b[64+2*i:])
		if c == 0 {
			break
		}
		name = append(name, c)
	}
	h.ParentName = string(utf16.Decode(name))
	for i := range h.Locators {
		e := b[576+24*i:]
		h.Locators[i] = locatorEntry{
			Code:       be.Uint32(e[0:]),
			DataSpace:  be.Uint32(e[4:]),
			DataLength: be.Uint32(e[8:]),
			DataOffset: be.Uint64(e[16:]),
		}
	}
	return h, nil
}

func toVHDTime(t time.Time) uint32 {
	s := t.Sub(vhdEpoch) / time.Second
	return uint32(max(0, min(s, 1<<32-1)))
}

func fromVHDTime(s uint32) time.Time {
	return vhdEpoch.Add(time.Duration(s) * time.Second)
}

// bitmapBytes returns the size of the sector bitmap in front of each block:
// one bit per sector, padded to a whole sector.
func bitmapBytes(blockSize int64) int64 {
	return alignUp((blockSize/SectorSize+7)/8, SectorSize)
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }
