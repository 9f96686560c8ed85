package vhd

import (
	"bytes"
	"context"
	"io"
	"iter"
	"os"
	"slices"
)

// diffChunk is how much of each disk Diff reads at a time.
const diffChunk = 1 << 20

// Diff yields, in order, the byte ranges where the content of a and b
// differs, in whole sectors. Bytes past the end of the smaller disk count as
// zeros. Allocation maps are compared first: ranges that hold data in
// neither disk are equal without reading, and when one disk is a
// differencing descendant of the other (or both descend from a common
// image file, opened read-only), only the blocks written above the shared
// image are read. Diff
// checks ctx between chunks; an error ends the sequence. Both disks must
// stay open while the sequence is in use.
func Diff(ctx context.Context, a, b *Disk) iter.Seq2[Extent, error] {
	return func(yield func(Extent, error) bool) {
		size := max(a.Size(), b.Size())
		ranges := diffCandidates(a, b, size)
		bufA := make([]byte, diffChunk)
		bufB := make([]byte, diffChunk)
		var pending Extent // a difference not yet yielded, to merge with the next
		flush := func() bool {
			if pending.Length == 0 {
				return true
			}
			e := pending
			pending = Extent{}
			return yield(e, nil)
		}
		for _, r := range ranges {
			for off := r.Offset; off < r.End(); {
				if err := ctx.Err(); err != nil {
					yield(Extent{}, err)
					return
				}
				n := min(int64(diffChunk), r.End()-off)
				pa, pb := bufA[:n], bufB[:n]
				if err := readPadded(a, pa, off); err != nil {
					yield(Extent{}, err)
					return
				}
				if err := readPadded(b, pb, off); err != nil {
					yield(Extent{}, err)
					return
				}
				if !bytes.Equal(pa, pb) {
					for s := int64(0); s < n; s += SectorSize {
						t := min(s+SectorSize, n)
						if bytes.Equal(pa[s:t], pb[s:t]) {
							continue
						}
						e := Extent{off + s, t - s}
						if pending.Length > 0 && pending.End() == e.Offset {
							pending.Length += e.Length
							continue
						}
						if !flush() {
							return
						}
						pending = e
					}
				}
				off += n
			}
		}
		flush()
	}
}

// readPadded reads p at off from d, with zeros past its end.
func readPadded(d *Disk, p []byte, off int64) error {
	n, err := d.ReadAt(p, off)
	if n < len(p) {
		if err != nil && err != io.EOF {
			return err
		}
		clear(p[n:])
	}
	return nil
}

// diffCandidates returns the sorted ranges of [0, size) that may differ.
func diffCandidates(a, b *Disk, size int64) []Extent {
	// Layers of each chain, child first.
	chain := func(d *Disk) []*Disk {
		var out []*Disk
		for ; d != nil; d = d.Parent() {
			out = append(out, d)
		}
		return out
	}
	ca, cb := chain(a), chain(b)
	// The nearest image both chains share, by identity on disk.
	shared := -1
	for i, x := range ca {
		if j := slices.IndexFunc(cb, func(y *Disk) bool { return sameImage(x, y) }); j >= 0 {
			shared = i
			cb = cb[:j]
			break
		}
	}
	if shared < 0 {
		return unionExtents(collectExtents(a), collectExtents(b), size)
	}
	ca = ca[:shared]
	// Above the shared image, only what each chain's own layers hold.
	var own []Extent
	for _, d := range append(ca, cb...) {
		own = unionExtents(own, d.ownExtents(), size)
	}
	return own
}

func collectExtents(d *Disk) []Extent { return slices.Collect(d.Extents()) }

// sameImage reports whether x and y are the same image file on disk
// (opened once or twice), which no one writes through them.
func sameImage(x, y *Disk) bool {
	if x == y {
		return true
	}
	fx, fy := x.hostFile(), y.hostFile()
	if fx == nil || fy == nil || x.writable || y.writable {
		return false
	}
	sx, err1 := fx.Stat()
	sy, err2 := fy.Stat()
	return err1 == nil && err2 == nil && os.SameFile(sx, sy)
}

// ownExtents returns the ranges that this layer itself holds, without its
// parents'. A fixed image holds all of itself.
func (d *Disk) ownExtents() []Extent {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var blocks []blockRange
	switch {
	case d.closed:
		return nil
	case d.vhdx != nil:
		blocks = d.vhdx.blocks(d.size)
		if d.parent != nil {
			// Zero-state blocks of a child hide the parent too.
			blocks = append(blocks, d.vhdx.zeroBlocks(d.size)...)
			slices.SortFunc(blocks, func(a, b blockRange) int { return int(min(max(a.disk.Offset-b.disk.Offset, -1), 1)) })
		}
	case d.dyn != nil:
		blocks = d.dyn.blocks(d.size)
	default:
		return []Extent{{0, d.size}}
	}
	if d.parent != nil {
		// In a child, a hole in a block reads as zeros over the parent's
		// data: it is the child's, so it is not refined away.
		var out []Extent
		for _, b := range blocks {
			if n := len(out); n > 0 && out[n-1].End() == b.disk.Offset {
				out[n-1].Length += b.disk.Length
			} else {
				out = append(out, b.disk)
			}
		}
		return out
	}
	return d.refine(blocks)
}
