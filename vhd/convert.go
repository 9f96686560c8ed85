package vhd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ConvertOptions control Convert.
type ConvertOptions struct {
	// Create describes the new image: format, type, block size. Its Parent
	// field must be empty.
	Create CreateOptions

	// Progress, if set, is called from the copying goroutine after each
	// chunk with the bytes of source data done so far and in all (the sum
	// of the source's extents). It must return quickly.
	Progress func(done, total int64)
}

// Convert reads in chunks that stay in a core's cache, and writes only the
// pages of each chunk that are not all zero.
const (
	convertChunk = 256 << 10
	zeroPage     = 4096
)

// Convert copies the disk in the file src into a new file dst, reading
// only the source's extents and never writing zeros. The source is a VHD or
// VHDX image (of any type; a differencing chain is flattened) or, when it is
// neither, a raw disk image. The target's format is opts.Create.Format, or
// else the one dst's extension names: VHDX for ".vhdx", VHD for ".vhd", and
// raw (a sparse file) for anything else. VHD and VHDX targets are made by
// Create with opts.Create. Convert checks ctx between chunks; on any error,
// dst is removed. The new file is synced before Convert returns.
func Convert(ctx context.Context, dst, src string, opts *ConvertOptions) error {
	return convertOpen(ctx, dst, src, opts, nil)
}

// convertOpen is Convert with the options that open an image source.
func convertOpen(ctx context.Context, dst, src string, opts *ConvertOptions, oo *OpenOptions) (err error) {
	var o ConvertOptions
	if opts != nil {
		o = *opts
	}
	if o.Create.Parent != "" {
		return errors.New("vhd: Convert makes no differencing images; leave ConvertOptions.Create.Parent empty")
	}
	if o.Create.Format == 0 {
		switch strings.ToLower(filepath.Ext(dst)) {
		case ".vhdx":
			o.Create.Format = FormatVHDX
		case ".vhd":
			o.Create.Format = FormatVHD
		default:
			o.Create.Format = FormatRaw
		}
	}
	in, size, extents, closeIn, err := openSource(src, oo)
	if err != nil {
		return err
	}
	defer closeIn()
	var out interface {
		io.WriterAt
		Sync() error
		Close() error
	}
	if o.Create.Format == FormatRaw {
		f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if err := f.Truncate(size); err != nil {
			f.Close()
			os.Remove(dst)
			return err
		}
		out = osFile{f}
	} else {
		d, err := Create(dst, size, &o.Create)
		if err != nil {
			return err
		}
		out = d
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if err := copyExtents(ctx, out, in, extents, o.Progress); err != nil {
		return fmt.Errorf("convert %s to %s: %w", src, dst, err)
	}
	return out.Sync()
}

// openSource opens src as a VHD image when it carries a VHD (or VHDX)
// signature at its start or in its last sector, and as a raw image
// otherwise.
func openSource(src string, oo *OpenOptions) (io.ReaderAt, int64, []Extent, func() error, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, 0, nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, nil, err
	}
	var head, tail [8]byte
	f.ReadAt(head[:], 0)
	if fi.Size() >= footerSize {
		f.ReadAt(tail[:], fi.Size()-footerSize)
	}
	if head == footerCookie || tail == footerCookie || string(head[:]) == "vhdxfile" {
		f.Close()
		d, err := OpenFile(src, os.O_RDONLY, oo)
		if err != nil {
			return nil, 0, nil, nil, err
		}
		return d, d.Size(), d.extents(), d.Close, nil
	}
	return f, fi.Size(), fileExtents(f, fi.Size()), f.Close, nil
}

// copyExtents copies the extents of src to dst, a new image, which reads
// as zeros wherever nothing is written. One goroutine reads the source in
// cache-sized chunks and finds the pages that are not all zero, while the
// caller's goroutine writes those pages, so that reading and writing overlap
// and zeros are never written, not even inside an allocated block.
func copyExtents(ctx context.Context, dst io.WriterAt, src io.ReaderAt, extents []Extent, progress func(done, total int64)) error {
	return copyRanges(ctx, dst, src, extents, progress, true)
}

// copyRanges is copyExtents that, without skipZeros, also writes the
// all-zero pages: for a target that is not new.
func copyRanges(ctx context.Context, dst io.WriterAt, src io.ReaderAt, extents []Extent, progress func(done, total int64), skipZeros bool) error {
	var total int64
	for _, e := range extents {
		total += e.Length
	}
	type run struct{ from, to int } // byte range of a chunk's buffer
	type chunk struct {
		off  int64
		n    int
		runs []run // non-zero pages, merged
		buf  []byte
	}
	const inFlight = 8
	free := make(chan *chunk, inFlight)
	for range inFlight {
		free <- &chunk{buf: make([]byte, convertChunk)}
	}
	full := make(chan *chunk, inFlight)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(full)
		for _, e := range extents {
			for off := e.Offset; off < e.End(); {
				var c *chunk
				select {
				case c = <-free:
				case <-ctx.Done():
					readErr = ctx.Err()
					return
				}
				n := int(min(int64(len(c.buf)), e.End()-off))
				if err := readFull(src, c.buf[:n], off); err != nil {
					readErr = err
					return
				}
				c.off, c.n, c.runs = off, n, c.runs[:0]
				for p := 0; p < n; p += zeroPage {
					q := min(p+zeroPage, n)
					if skipZeros && allZero(c.buf[p:q]) {
						continue
					}
					if k := len(c.runs); k > 0 && c.runs[k-1].to == p {
						c.runs[k-1].to = q
					} else {
						c.runs = append(c.runs, run{p, q})
					}
				}
				full <- c
				off += int64(n)
			}
		}
	})
	var done int64
	var writeErr error
	for c := range full {
		for _, r := range c.runs {
			if writeErr != nil {
				break
			}
			if _, writeErr = dst.WriteAt(c.buf[r.from:r.to], c.off+int64(r.from)); writeErr != nil {
				cancel()
			}
		}
		done += int64(c.n)
		free <- c
		if writeErr == nil && progress != nil {
			progress(done, total)
		}
	}
	wg.Wait()
	if writeErr != nil {
		return writeErr
	}
	return readErr
}
