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
	return fileRuns(f, 0, size)
}

// fileRuns returns the ranges of f within [from, to) that the file system
// stores, in whole sectors, or the whole range when it cannot tell.
func fileRuns(f *os.File, from, to int64) []Extent {
	if to <= from {
		return nil
	}
	all := []Extent{{from, to - from}}
	fd := int(f.Fd())
	var out []Extent
	for off := from; off < to; {
		data, err := syscall.Seek(fd, off, seekData)
		if err == syscall.ENXIO {
			break // no data past off
		}
		if err != nil {
			return all
		}
		if data >= to {
			break
		}
		hole, err := syscall.Seek(fd, data, seekHole)
		if err != nil {
			return all
		}
		hole = min(hole, to)
		start := max(from, data&^(SectorSize-1))
		end := min(alignUp(hole, SectorSize), to)
		if n := len(out); n > 0 && start <= out[n-1].End() {
			out[n-1].Length = end - out[n-1].Offset
		} else {
			out = append(out, Extent{start, end - start})
		}
		off = hole
	}
	return out
}
