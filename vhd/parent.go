package vhd

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf16"
)

// maxLocatorBytes bounds the parent locator data read from an image.
const maxLocatorBytes = 64 << 10

// readLocators decodes the parent locators of a differencing image. Entries
// that are empty, unreadable or of an unknown platform are left out.
func readLocators(st storage, h *dynHeader, fileSize int64) []Locator {
	var out []Locator
	for _, l := range h.Locators {
		if l.Code == platNone || l.DataLength == 0 || l.DataLength > maxLocatorBytes ||
			l.DataOffset > uint64(fileSize) || int64(l.DataOffset)+int64(l.DataLength) > fileSize {
			continue
		}
		b := make([]byte, l.DataLength)
		if readFull(st, b, int64(l.DataOffset)) != nil {
			continue
		}
		var path string
		switch l.Code {
		case platW2ru, platW2ku:
			u := make([]uint16, len(b)/2)
			for i := range u {
				u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
			}
			path = string(utf16.Decode(u))
		case platWi2r, platWi2k, platMacX:
			path = string(b)
		default:
			continue
		}
		out = append(out, Locator{Platform: platformName(l.Code), Path: strings.TrimRight(path, "\x00")})
	}
	return out
}

// candidates lists the paths where the parent of the image named child may
// be, in the order to try them: relative locators first (they survive moving
// a whole chain), then absolute ones, then the recorded parent name.
func candidates(child string, locs []Locator, parentName string) []ParentTry {
	dir := filepath.Dir(child)
	if child == "" {
		dir = ""
	}
	var out []ParentTry
	add := func(p, from string) {
		if p == "" {
			return
		}
		for _, c := range out {
			if c.Path == p {
				return
			}
		}
		out = append(out, ParentTry{Path: p, From: from})
	}
	winPath := func(p string) string { return filepath.FromSlash(strings.ReplaceAll(p, `\`, "/")) }
	rel := func(p string) string {
		p = winPath(p)
		if filepath.IsAbs(p) || dir == "" {
			return p
		}
		return filepath.Join(dir, p)
	}
	for _, pass := range []string{"rel", "abs"} {
		for _, l := range locs {
			switch {
			case pass == "rel" && (l.Platform == "W2ru" || l.Platform == "Wi2r" || l.Platform == "relative_path"):
				add(rel(l.Path), l.Platform)
			case pass == "abs" && (l.Platform == "W2ku" || l.Platform == "Wi2k" || l.Platform == "absolute_win32_path" || l.Platform == "volume_path"):
				add(winPath(l.Path), l.Platform)
			case pass == "abs" && l.Platform == "MacX":
				if u, err := url.Parse(l.Path); err == nil && u.Scheme == "file" {
					add(u.Path, l.Platform)
				} else if strings.HasPrefix(l.Path, "/") {
					add(l.Path, l.Platform)
				}
			}
		}
	}
	if parentName != "" {
		add(rel(parentName), "name")
		base := winPath(parentName)
		if i := strings.LastIndexAny(base, `/\:`); i >= 0 {
			base = base[i+1:]
		}
		add(rel(base), "name")
	}
	return out
}

// openParent finds, opens and checks the parent of a differencing image.
func (d *Disk) openParent(opts *OpenOptions, seen map[UUID]bool) error {
	perr := &ParentError{Child: d.name, ParentUUID: d.parentWant, Err: ErrParent}
	if seen[d.parentWant] {
		perr.Err = detail(ErrFormat, "parent chain loops back to %s", d.parentWant)
		return perr
	}
	open := opts.OpenParent
	if open == nil {
		open = openRegular
	}
	for _, c := range candidates(d.name, d.info.ParentLocators, d.info.ParentName) {
		// Each candidate opens its chain with its own record of the disks
		// seen, so that a rejected one leaves nothing behind.
		p, err := openParentAt(open, c.Path, opts, maps.Clone(seen), d.parentWant)
		if err == nil {
			if d.dyn != nil { // VHD: the time stamp too
				err = checkParent(d.dyn.header, p, opts)
			}
			if err == nil {
				d.parent = p
				return nil
			}
			p.Close()
		}
		c.Err = err
		perr.Tried = append(perr.Tried, c)
		var pe *ParentError
		if errors.As(err, &pe) {
			// This is the parent, but its own chain is broken: say so
			// rather than keep looking.
			perr.Err = err
			return perr
		}
	}
	return perr
}

// openRegular opens name read-only if it is a regular file. Checking first
// keeps a FIFO from blocking the open.
func openRegular(name string) (File, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	return os.Open(name)
}

func openParentAt(open func(string) (File, error), name string, opts *OpenOptions, seen map[UUID]bool, want UUID) (*Disk, error) {
	f, err := open(name)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() && fi.Mode()&fs.ModeDevice == 0 {
		f.Close()
		return nil, fmt.Errorf("not a regular file")
	}
	p, err := newDisk(readOnly{f}, fi.Size(), name, false, opts, seen, &want)
	if err != nil {
		f.Close()
		return nil, err
	}
	p.closer = f
	if ft := fi.ModTime(); !ft.IsZero() {
		p.mtime = toVHDTime(ft)
	}
	return p, nil
}

// checkParent verifies that p is the parent the child header names.
func checkParent(h *dynHeader, p *Disk, opts *OpenOptions) error {
	if opts.IgnoreParentTimestamp || h.ParentTimestamp == 0 {
		return nil
	}
	if h.ParentTimestamp != toVHDTime(p.info.Created) && h.ParentTimestamp != p.mtime {
		return fmt.Errorf("%w: child records parent time %s, parent has %s (modified %s); the parent may have changed since the child was made (OpenOptions.IgnoreParentTimestamp accepts it)",
			ErrParent, fromVHDTime(h.ParentTimestamp).Format("2006-01-02 15:04:05"), p.info.Created.Format("2006-01-02 15:04:05"), fromVHDTime(p.mtime).Format("2006-01-02 15:04:05"))
	}
	return nil
}
