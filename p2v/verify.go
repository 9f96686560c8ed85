package p2v

import (
	"bytes"
	"context"
	"fmt"

	"github.com/vmmkit/vmmkit/vhd"
)

// A MismatchError reports an image that does not hold what its source does.
type MismatchError struct {
	Image  string
	Ranges []Range // byte ranges of the disk that differ, merged
}

func (e *MismatchError) Error() string {
	var n int64
	for _, r := range e.Ranges {
		n += r.Len
	}
	return fmt.Sprintf("p2v: %s differs from its source in %d bytes, first at byte %d", e.Image, n, e.Ranges[0].Off)
}

// Verify re-reads src and compares it with the image, chunk by chunk. The
// parts of the source that its file systems mark unused (by Analyze, or the
// source's own Analyzer) must read as zeros in the image, as Capture leaves
// them; everything else must be equal. A capture made with Options.Layout
// is verified against the same map only if src is an Analyzer returning it. It
// returns a *MismatchError listing the ranges that differ.
func Verify(ctx context.Context, src Source, image string) error {
	if err := checkNoJournal(image); err != nil {
		return err
	}
	img, err := vhd.Open(image)
	if err != nil {
		return fmt.Errorf("p2v: opening %s: %w", image, err)
	}
	defer img.Close()
	size := src.Size()
	if img.Size() < size {
		return fmt.Errorf("p2v: %s holds %d bytes, the source %d", image, img.Size(), size)
	}
	var layout *Layout
	if a, ok := src.(Analyzer); ok {
		layout, err = a.Analyze()
	} else {
		layout, err = Analyze(src, size)
	}
	if err != nil {
		return err
	}
	const chunk = 1 << 20
	a, b := alignedBuf(chunk), make([]byte, chunk)
	free := layout.Free
	var differ []Range
	var used []Range
	for off := int64(0); off < size; off += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(chunk, size-off)
		used, free = usedIn(free, off, n, used[:0])
		pos := int64(0)
		for _, u := range used {
			clear(a[pos:u.Off])
			if err := readFull(src, a[u.Off:u.End()], off+u.Off); err != nil {
				return &ReadError{Source: src.Name(), Range: Range{Off: off + u.Off, Len: u.Len}, Err: err}
			}
			pos = u.End()
		}
		clear(a[pos:n])
		if err := readFull(img, b[:n], off); err != nil {
			return fmt.Errorf("p2v: reading %s at byte %d: %w", image, off, err)
		}
		if bytes.Equal(a[:n], b[:n]) {
			continue
		}
		for s := int64(0); s < n; s += sector {
			e := min(s+sector, n)
			if !bytes.Equal(a[s:e], b[s:e]) {
				differ = append(differ, Range{Off: off + s, Len: e - s})
			}
		}
	}
	if len(differ) > 0 {
		return &MismatchError{Image: image, Ranges: mergeRanges(differ)}
	}
	return nil
}
