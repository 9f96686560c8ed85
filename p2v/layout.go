package p2v

import (
	"cmp"
	"errors"
	"io"
	"slices"
)

// A Layout is what Analyze learns of a disk from its on-disk structures,
// without mounting anything: the partition table, the file systems, and the
// byte ranges those file systems leave unused.
type Layout struct {
	Size int64
	// Scheme is "gpt", "mbr", or "" when the disk has no partition table.
	Scheme string
	// Partitions lists the partitions in table order. A file system that
	// fills a disk without a partition table appears as one partition with
	// Index 0.
	Partitions []Partition
	// Free lists the byte ranges of the disk that a recognised file system
	// marks unused: sorted, merged, whole 512-byte sectors. Everything else
	// (boot records, partition tables, the backup GPT, gaps between
	// partitions, unknown or damaged file systems, and every file-system
	// structure) is copied.
	Free []Range
	// Warnings holds an *FSError for each partition table or file system
	// whose structures were found damaged; their space is copied in full.
	Warnings []error
}

// Used returns how many bytes of the disk are not known to be free.
func (l *Layout) Used() int64 {
	used := l.Size
	for _, f := range l.Free {
		used -= f.Len
	}
	return used
}

// parsers are tried in order on every partition. Boot-sector file systems
// come first: their signature is at byte 0, where ext's is at byte 1024.
var parsers = []fsParser{parseNTFS, parseFAT, parseExt}

// Analyze reads the partition table and file systems of the size-byte disk
// r and returns its layout. Damaged structures do not make it fail: they are
// reported in Layout.Warnings and their space is treated as used, which is
// always safe. Analyze returns an error only when r cannot be read at all.
func Analyze(r io.ReaderAt, size int64) (*Layout, error) {
	return analyze(r, size, false)
}

// analyze is Analyze; with allowStale it also uses the allocation maps of
// file systems that are in use, whose maps may lag (see fsUsage.Stale): good
// enough for a live pass that a frozen one will correct.
func analyze(r io.ReaderAt, size int64, allowStale bool) (*Layout, error) {
	l := &Layout{Size: size}
	scheme, parts, err := partTable(r, size)
	var fe *FSError
	switch {
	case errors.As(err, &fe):
		l.Scheme = scheme
		l.Warnings = append(l.Warnings, err)
		return l, nil
	case err != nil:
		return nil, err
	}
	l.Scheme = scheme
	if scheme == "" {
		// No partition table: the disk may be a file system by itself (a
		// partition image, or a "superfloppy").
		parts = []Partition{{Index: 0, Start: 0, Size: size}}
	}
	for i := range parts {
		p := &parts[i]
		u, err := detectFS(r, p.Start, p.Size)
		if err != nil {
			if errors.As(err, &fe) {
				fe.Off += p.Start
			}
			p.Err = err
			l.Warnings = append(l.Warnings, err)
			continue
		}
		if u == nil {
			continue
		}
		if u.Stale != "" {
			if !allowStale {
				p.Err = &FSError{FS: u.Type, Off: p.Start, Reason: u.Stale + ", so its allocation map may be out of date"}
				l.Warnings = append(l.Warnings, p.Err)
				continue
			}
			p.Stale = true
		}
		p.FS = u.Type
		for _, f := range u.Free {
			f = clipSectors(f, p.Size)
			if f.Len > 0 {
				l.Free = append(l.Free, Range{Off: p.Start + f.Off, Len: f.Len})
				p.Free += f.Len
			}
		}
	}
	if scheme == "" && parts[0].FS == "" && parts[0].Err == nil {
		parts = nil // nothing recognised: no partition to report
	}
	l.Partitions = parts
	l.Free = mergeRanges(l.Free)
	return l, nil
}

// detectFS runs the parsers on the partition at [start, start+size). It
// returns nil, nil when no parser recognises the contents.
func detectFS(r io.ReaderAt, start, size int64) (*fsUsage, error) {
	sec := io.NewSectionReader(r, start, size)
	for _, parse := range parsers {
		u, err := parse(sec, size)
		if errors.Is(err, errNotFS) {
			continue
		}
		return u, err
	}
	return nil, nil
}

// clipSectors trims f to [0, size) and to whole sectors, inwards, so that a
// parser's mistake can never mark bytes outside its partition as free.
func clipSectors(f Range, size int64) Range {
	start := max(f.Off, 0)
	end := min(f.End(), size)
	start = (start + sector - 1) / sector * sector
	end = end / sector * sector
	if end <= start {
		return Range{}
	}
	return Range{Off: start, Len: end - start}
}

// mergeRanges sorts rs and joins ranges that touch or overlap.
func mergeRanges(rs []Range) []Range {
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Off, b.Off) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && r.Off <= out[n-1].End() {
			out[n-1].Len = max(out[n-1].End(), r.End()) - out[n-1].Off
			continue
		}
		out = append(out, r)
	}
	return out
}
