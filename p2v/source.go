package p2v

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// A Source is a disk to capture: a block device, a raw image, or anything
// else that reads like one. Capture calls ReadAt from several goroutines at
// once.
type Source interface {
	io.ReaderAt
	// Size is the disk's size in bytes.
	Size() int64
	// Name identifies the source in errors, progress and manifests.
	Name() string
}

// An Analyzer is a Source that knows its own allocation map, such as a
// snapshot provider with changed-block tracking. Capture calls Analyze on it
// at the start of every pass instead of reading the disk's file systems.
type Analyzer interface {
	Analyze() (*Layout, error)
}

// A Sizer is a Source that can tell its size now. Capture checks it before
// and after every pass and fails with ErrSourceChanged when the source has
// shrunk or vanished. Device is one.
type Sizer interface {
	CurrentSize() (int64, error)
}

// ErrSourceChanged reports a source that shrank, vanished or returned a
// short read while it was being captured.
var ErrSourceChanged = errors.New("p2v: source changed size or disappeared during capture")

// A Device is a block device or raw image file opened read-only by
// OpenDevice.
type Device struct {
	f      *os.File
	name   string
	size   int64
	direct bool // reads bypass the page cache (O_DIRECT)
	block  bool // a block device

	bounce sync.Pool // aligned buffers for unaligned reads in direct mode
}

// directAlign is the alignment of offsets, lengths and buffers for direct
// reads: 4096 covers 512-byte and 4K-native devices alike.
const directAlign = 4096

// OpenDevice opens a block device or raw image file read-only. A block device
// is read with O_DIRECT, so every pass sees what the file system has written
// to the device rather than pages the device's cache kept from an earlier
// pass (a mounted file system writes file data around that cache); a regular
// file is read through the page cache, which is coherent with writers.
func OpenDevice(path string) (*Device, error) {
	f, block, direct, err := openSource(path)
	if err != nil {
		return nil, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("p2v: size of %s: %w", path, err)
	}
	d := &Device{f: f, name: path, size: size, direct: direct, block: block}
	d.bounce.New = func() any { b := alignedBuf(1 << 20); return &b }
	return d, nil
}

// Size returns the size the device had when it was opened.
func (d *Device) Size() int64 { return d.size }

// Name returns the path the device was opened with.
func (d *Device) Name() string { return d.name }

// Direct reports whether reads bypass the page cache.
func (d *Device) Direct() bool { return d.direct }

// CurrentSize returns the device's size now; Capture checks it between
// passes to notice a source that shrank or vanished.
func (d *Device) CurrentSize() (int64, error) {
	if _, err := os.Stat(d.name); err != nil {
		return 0, err
	}
	return d.f.Seek(0, io.SeekEnd)
}

// Close closes the device.
func (d *Device) Close() error { return d.f.Close() }

// ReadAt reads len(p) bytes at off. In direct mode, requests that are not
// aligned go through an aligned buffer, so callers need not care.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("p2v: %s: negative offset %d", d.name, off)
	}
	if off >= d.size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := d.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	var n int
	var err error
	if !d.direct || aligned(p, off) {
		n, err = d.f.ReadAt(p, off)
	} else {
		n, err = d.readBounced(p, off)
	}
	if err == nil && n < want {
		err = io.EOF
	}
	return n, err
}

func (d *Device) readBounced(p []byte, off int64) (int, error) {
	bp := d.bounce.Get().(*[]byte)
	defer d.bounce.Put(bp)
	buf := *bp
	done := 0
	for done < len(p) {
		o := off + int64(done)
		base := o &^ (directAlign - 1)
		skip := int(o - base)
		n := min(len(buf), int(alignUp(int64(skip+len(p)-done))))
		got, err := d.f.ReadAt(buf[:n], base)
		c := 0
		if got > skip {
			c = copy(p[done:], buf[skip:got])
		}
		done += c
		switch {
		case done == len(p):
			return done, nil
		case err != nil:
			return done, err
		case c == 0:
			return done, io.ErrUnexpectedEOF
		}
	}
	return done, nil
}

func alignUp(n int64) int64 { return (n + directAlign - 1) &^ (directAlign - 1) }

// aligned reports whether a read of p at off can go to the device directly.
func aligned(p []byte, off int64) bool {
	return off%directAlign == 0 && len(p)%directAlign == 0 && len(p) > 0 && addrAligned(p)
}

// alignedBuf returns a buffer of n bytes whose address is a multiple of
// directAlign, as O_DIRECT requires.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	shift := (directAlign - int(addrOf(b)%directAlign)) % directAlign
	return b[shift : shift+n : shift+n]
}
