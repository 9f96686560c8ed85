//go:build !linux

package vhd

import "os"

func fileExtents(f *os.File, size int64) []Extent {
	if size == 0 {
		return nil
	}
	return []Extent{{0, size}}
}

func fileRuns(f *os.File, from, to int64) []Extent {
	if to <= from {
		return nil
	}
	return []Extent{{from, to - from}}
}
