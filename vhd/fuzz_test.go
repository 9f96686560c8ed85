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

// FuzzLog feeds arbitrary bytes to the VHDX log parser as a log region,
// seeded with real entries, a sequence of two and a torn one.
func FuzzLog(f *testing.F) {
	guid := UUID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	page := func(c byte) []byte { return bytes.Repeat([]byte{c}, logSector) }
	e1 := encodeLogEntry(guid, 1, 0, 8<<20, []logWrite{{off: 3 << 20, data: page(1)}, {off: 3<<20 + logSector, data: page(2)}})
	e2 := encodeLogEntry(guid, 2, 0, 8<<20, []logWrite{{off: 2 << 20, data: page(3)}})
	log := make([]byte, 64<<10)
	copy(log, e1)
	copy(log[len(e1):], e2)
	f.Add(bytes.Clone(log))
	torn := bytes.Clone(log)
	torn[len(e1)+100] ^= 0xff
	f.Add(torn)
	f.Add(make([]byte, 64<<10))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || len(b)%logSector != 0 {
			b = append(b, make([]byte, logSector-len(b)%logSector)...)
		}
		for _, e := range activeSequence(b, guid) {
			for _, w := range e.writes {
				if w.off%logSector != 0 || (w.data != nil && len(w.data) != logSector) || w.length < 0 {
					t.Fatalf("bad write %+v", w)
				}
			}
		}
	})
}
