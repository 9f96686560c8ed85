package library

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// ISO 9660 layout: the volume descriptor set starts at sector 16 of 2048
// bytes and ends with a set terminator.
const (
	isoSectorSize     = 2048
	isoFirstVD        = 16
	isoMaxDescriptors = 64 // a real set has a handful; stop looking after this many
)

// ISOInfo is what the primary volume descriptor of an ISO 9660 image says.
type ISOInfo struct {
	VolumeLabel string `json:"volumeLabel"` // volume identifier, trailing spaces removed
	SystemID    string `json:"systemID,omitempty"`
	BlockSize   int    `json:"blockSize"`  // logical block size in bytes, usually 2048
	VolumeSize  int64  `json:"volumeSize"` // volume space size in bytes (blocks × block size)
	Bootable    bool   `json:"bootable"`   // an El Torito boot record is present
}

// ReadISO reads the volume descriptor set of the ISO 9660 image of size
// bytes in r and returns what its primary volume descriptor says. It fails
// with an error wrapping ErrCorrupt when there is no primary volume
// descriptor, when its fields contradict each other, or when the image is
// shorter than the volume it describes (a truncated download or copy).
// ReadISO reads at most isoMaxDescriptors sectors.
func ReadISO(r io.ReaderAt, size int64) (*ISOInfo, error) {
	var (
		info     *ISOInfo
		bootable bool
	)
	sec := make([]byte, isoSectorSize)
scan:
	for i := range isoMaxDescriptors {
		off := int64(isoFirstVD+i) * isoSectorSize
		if off+isoSectorSize > size {
			break
		}
		if n, err := r.ReadAt(sec, off); n < len(sec) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("iso: read volume descriptor at %#x: %w", off, err)
		}
		if string(sec[1:6]) != "CD001" {
			break
		}
		switch sec[0] {
		case 0: // boot record
			if bytes.HasPrefix(sec[7:39], []byte("EL TORITO SPECIFICATION")) {
				bootable = true
			}
		case 1: // primary volume descriptor; the first one counts
			if info == nil {
				pvd, err := parsePVD(sec, off)
				if err != nil {
					return nil, err
				}
				info = pvd
			}
		case 255: // set terminator
			break scan
		}
	}
	if info == nil {
		return nil, fmt.Errorf("iso: no primary volume descriptor at sector 16: %w", ErrCorrupt)
	}
	if info.VolumeSize > size {
		return nil, fmt.Errorf("iso: image of %d bytes is shorter than its volume of %d bytes (truncated): %w", size, info.VolumeSize, ErrCorrupt)
	}
	info.Bootable = bootable
	return info, nil
}

// parsePVD decodes the primary volume descriptor in sec, read at off.
func parsePVD(sec []byte, off int64) (*ISOInfo, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("iso: primary volume descriptor at %#x: %s: %w", off, fmt.Sprintf(format, args...), ErrCorrupt)
	}
	if sec[6] != 1 {
		return nil, bad("version %d", sec[6])
	}
	// Both-endian fields: little endian, then the same value big endian.
	blocksLE, blocksBE := binary.LittleEndian.Uint32(sec[80:84]), binary.BigEndian.Uint32(sec[84:88])
	if blocksLE != blocksBE {
		return nil, bad("volume space size %d (LE) and %d (BE) differ", blocksLE, blocksBE)
	}
	bsLE, bsBE := binary.LittleEndian.Uint16(sec[128:130]), binary.BigEndian.Uint16(sec[130:132])
	if bsLE != bsBE {
		return nil, bad("logical block size %d (LE) and %d (BE) differ", bsLE, bsBE)
	}
	if bsLE != 512 && bsLE != 1024 && bsLE != 2048 {
		return nil, bad("logical block size %d", bsLE)
	}
	return &ISOInfo{
		VolumeLabel: isoString(sec[40:72]),
		SystemID:    isoString(sec[8:40]),
		BlockSize:   int(bsLE),
		VolumeSize:  int64(blocksLE) * int64(bsLE),
	}, nil
}

// isoString decodes a space-padded a- or d-character field.
func isoString(b []byte) string {
	s := strings.TrimRight(string(b), " \x00")
	return strings.ToValidUTF8(s, "?")
}
