package vhd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
)

// A Problem is one thing Check found wrong with an image.
type Problem struct {
	Image      string // file name of the image in the chain
	Offset     int64  // byte offset in the file of the damaged structure, or -1
	What       string
	Repairable bool // Check with Repair can fix it without losing data
	Repaired   bool
}

func (p Problem) String() string {
	s := p.What
	if p.Offset >= 0 {
		s = fmt.Sprintf("at %#x: %s", p.Offset, s)
	}
	switch {
	case p.Repaired:
		s += " (repaired)"
	case p.Repairable:
		s += " (repairable)"
	}
	return p.Image + ": " + s
}

// A CheckReport is what Check found.
type CheckReport struct {
	Problems    []Problem
	LeakedBytes int64 // file space that nothing references, in all images of the chain
}

// OK reports whether no problem remains unrepaired.
func (r *CheckReport) OK() bool {
	return !slices.ContainsFunc(r.Problems, func(p Problem) bool { return !p.Repaired })
}

// CheckOptions control Check.
type CheckOptions struct {
	// Repair fixes what can be fixed without losing data: a missing or
	// damaged footer or footer copy, a damaged VHDX header or region table
	// (from its twin), a pending VHDX log (replayed), blocks cut short at the
	// end of the file. Only the named image is repaired, never its parents.
	Repair bool
	// Open controls how the chain is opened.
	Open *OpenOptions
}

// Check examines the image in the file name and the images of its chain,
// like qemu-img check: checksums, headers, BAT entries out of range or
// overlapping, leaked space, footer and header copies, the log, parent
// links. Damage is reported in the CheckReport; the error is for a check
// that could not run (the file cannot be read). With opts.Repair, Check
// fixes what it can and says so in each Problem.
func Check(ctx context.Context, name string, opts *CheckOptions) (*CheckReport, error) {
	var o CheckOptions
	if opts != nil {
		o = *opts
	}
	r, err := check(name, o.Open)
	if err != nil || !o.Repair || r.OK() {
		return r, err
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if !slices.ContainsFunc(r.Problems, func(p Problem) bool { return p.Repairable && p.Image == name }) {
		return r, nil
	}
	if err := repair(name, o.Open); err != nil {
		return r, fmt.Errorf("repair %s: %w", name, err)
	}
	after, err := check(name, o.Open)
	if err != nil {
		return r, err
	}
	for i, p := range r.Problems {
		if p.Repairable && p.Image == name {
			r.Problems[i].Repaired = !slices.ContainsFunc(after.Problems, func(q Problem) bool { return q.Offset == p.Offset && q.What == p.What })
		}
	}
	return r, nil
}

// check opens the chain read-only and collects its problems.
func check(name string, oo *OpenOptions) (*CheckReport, error) {
	r := &CheckReport{}
	if _, err := os.Stat(name); err != nil {
		return nil, err
	}
	d, err := OpenFile(name, os.O_RDONLY, oo)
	if err != nil {
		var fe *FormatError
		var pe *ParentError
		switch {
		case errors.As(err, &pe):
			r.Problems = append(r.Problems, Problem{Image: name, Offset: -1, What: "parent link: " + trimPrefix(err)})
		case errors.As(err, &fe):
			r.Problems = append(r.Problems, Problem{Image: name, Offset: fe.Offset, What: fe.What + ": " + trimPrefix(fe.Err)})
		default:
			return nil, err
		}
		return r, nil
	}
	defer d.Close()
	for l := d; l != nil; l = l.Parent() {
		r.Problems = append(r.Problems, l.notes...)
		leaked, overlaps := l.layout()
		r.LeakedBytes += leaked
		r.Problems = append(r.Problems, overlaps...)
	}
	return r, nil
}

// layout finds the file space that nothing references, and blocks that
// overlap one another.
func (d *Disk) layout() (leaked int64, problems []Problem) {
	fi, err := d.hostFileStat()
	if err != nil {
		return 0, nil
	}
	var used []Extent // in the file
	switch {
	case d.dyn != nil:
		dy := d.dyn
		used = append(used, Extent{0, footerSize}, Extent{dy.hOff, dynHeaderSize},
			Extent{dy.batOff, alignUp(int64(dy.header.MaxTableEntries)*4, SectorSize)})
		for _, l := range dy.header.Locators {
			if l.Code != platNone && l.DataLength > 0 && l.DataLength <= maxLocatorBytes {
				used = append(used, Extent{int64(l.DataOffset), alignUp(int64(l.DataLength), SectorSize)})
			}
		}
		for _, e := range dy.bat {
			if e == unusedEntry {
				continue
			}
			used = append(used, Extent{int64(e) * SectorSize, dy.bmSize + dy.blockSize})
		}
		var tail [footerSize]byte
		if readFull(d.st, tail[:], fi-footerSize) == nil && bytes.Equal(tail[:], d.footer) {
			used = append(used, Extent{fi - footerSize, footerSize})
		}
	case d.vhdx != nil:
		x := d.vhdx
		used = append(used, Extent{0, vhdxMB}, Extent{int64(x.header.logOffset), int64(x.header.logLength)},
			Extent{x.metaOff, x.metaLen}, Extent{x.batOff, x.batLen})
		for i, e := range x.bat {
			s := e & 7
			isBitmap := int64(i)%(x.chunkRatio+1) == x.chunkRatio
			switch {
			case isBitmap && s == bitmapPresent:
				used = append(used, Extent{int64(e>>20) * vhdxMB, vhdxMB})
			case !isBitmap && (s == payloadFullyPresent || s == payloadPartiallyPresent):
				used = append(used, Extent{int64(e>>20) * vhdxMB, x.blockSize})
			case !isBitmap && e>>20 != 0:
				// A zero or unmapped block that keeps its space (fixed
				// images made by qemu-img, for one).
				used = append(used, Extent{int64(e>>20) * vhdxMB, x.blockSize})
			}
		}
	default:
		return 0, nil
	}
	slices.SortFunc(used, func(a, b Extent) int { return int(min(max(a.Offset-b.Offset, -1), 1)) })
	var end int64
	var endOf int64 // start of the structure that reaches furthest so far
	for i, u := range used {
		if i > 0 && u.Offset < end {
			problems = append(problems, Problem{Image: d.name, Offset: u.Offset, What: fmt.Sprintf("structures at %#x and %#x overlap", endOf, u.Offset)})
		}
		if u.End() > end {
			endOf = u.Offset
		}
		// A differencing VHD leaves the old footer before each new block.
		if gap := u.Offset - end; gap > 0 && !(gap == footerSize && d.dyn != nil && d.info.Type == Differencing) {
			leaked += gap
		}
		end = max(end, u.End())
	}
	if fi > end {
		leaked += fi - end
	}
	return leaked, problems
}

func (d *Disk) hostFileStat() (int64, error) {
	f := d.hostFile()
	if f == nil {
		if o, ok := d.st.(*overlay); ok {
			if of, ok := o.storage.(readOnly); ok {
				f, _ = of.ReaderAt.(*os.File)
			}
		}
	}
	if f == nil {
		return 0, errors.New("no file")
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// repair opens name for writing, which rewrites a missing trailing footer
// and replays a pending log, then mends the copies the open read around.
func repair(name string, oo *OpenOptions) error {
	d, err := OpenFile(name, os.O_RDWR, oo)
	if err != nil {
		return err
	}
	var errs []error
	switch {
	case d.dyn != nil:
		// The footer copy at offset 0 from the footer.
		errs = append(errs, writeFull(d.st, d.footer, 0))
	case d.vhdx != nil:
		x := d.vhdx
		// Both headers: rewriting the current one into the other slot
		// makes both valid.
		h := x.header
		h.seq++
		errs = append(errs, d.writeHeader(&h))
		// Both region tables from the good one.
		for _, off := range []int64{vhdxRegion1Off, vhdxRegion2Off} {
			if _, err := readRegionTable(x.w.file, off, 1<<62); err == nil {
				b := make([]byte, vhdxRegionSize)
				if err := readFull(x.w.file, b, off); err == nil {
					errs = append(errs, writeFull(x.w.file, b, vhdxRegion1Off), writeFull(x.w.file, b, vhdxRegion2Off))
				}
				break
			}
		}
	}
	errs = append(errs, d.Sync(), d.Close())
	return errors.Join(errs...)
}
