package vhd

import (
	"os"
	"syscall"
)

const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

// fileExtents returns the ranges of f below size that the file system stores
// (SEEK_DATA/SEEK_HOLE), or the whole range when it cannot tell.
func fileExtents(f *os.File, size int64) []Extent {
	all := []Extent{{0, size}}
	if size == 0 {
		return nil
	}
	fd := int(f.Fd())
	var out []Extent
	for off := int64(0); off < size; {
		data, err := syscall.Seek(fd, off, seekData)
		if err == syscall.ENXIO {
			break // no data past off
		}
		if err != nil {
			return all
		}
		if data >= size {
			break
		}
		hole, err := syscall.Seek(fd, data, seekHole)
		if err != nil {
			return all
		}
		hole = min(hole, size)
		// Report whole sectors.
		start := data &^ (SectorSize - 1)
		end := min(alignUp(hole, SectorSize), size)
		if n := len(out); n > 0 && start <= out[n-1].End() {
			out[n-1].Length = end - out[n-1].Offset
		} else {
			out = append(out, Extent{start, end - start})
		}
		off = hole
	}
	return out
}
