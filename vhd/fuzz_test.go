package vhd

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzNewDisk feeds arbitrary bytes to the image parser and, when they
// parse, reads the disk around its extents. Any input must give a typed
// error or a disk that reads without panicking.
func FuzzNewDisk(f *testing.F) {
	images, _ := filepath.Glob("testdata/*.vhd*")
	for _, name := range images {
		if strings.HasSuffix(name, ".golden") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		if strings.HasSuffix(name, ".vhdx") {
			// VHDX structures sit at 1 MiB boundaries: keep headers, log,
			// metadata and BAT.
			b = b[:min(len(b), 4<<20)]
		} else if len(b) > 256<<10 {
			// Keep seeds small: the head (footer copy, headers, BAT, first
			// blocks) and the footer.
			b = append(b[:64<<10:64<<10], b[len(b)-footerSize:]...)
		}
		f.Add(b)
	}
	noParent := &OpenOptions{OpenParent: func(string) (File, error) { return nil, fs.ErrNotExist }}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := newDisk(readOnly{bytes.NewReader(b)}, int64(len(b)), "fuzz.vhd", false, noParent, nil, nil)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrUnsupported) &&
				!errors.Is(err, ErrParent) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		defer d.Close()
		buf := make([]byte, 64<<10)
		read := func(off int64) {
			if _, err := d.ReadAt(buf, off); err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadAt(%d): %v", off, err)
			}
		}
		read(0)
		read(max(0, d.Size()-int64(len(buf))))
		n := 0
		for e := range d.Extents() {
			if e.Offset < 0 || e.Length <= 0 || e.End() > d.Size() {
				t.Fatalf("bad extent %+v of a %d-byte disk", e, d.Size())
			}
			read(e.Offset)
			if n++; n > 32 {
				break
			}
		}
		_ = d.Info()
	})
}
