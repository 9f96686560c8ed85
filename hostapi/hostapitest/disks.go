package hostapitest

import (
	"slices"
	"sync"
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
)

// testDisks creates an empty disk and a differencing disk over it, and
// deletes them.
func testDisks(t *testing.T, s *Setup) {
	d := s.Driver
	if s.Pool == "" {
		t.Skip("no Setup.Pool")
	}
	h, err := d.Host(testCtx(t))
	must(t, "Host", err)
	const size = 8 << 20
	base := newName("disk")
	cleanupDisk(t, d, s.Pool, base)

	t.Run("Empty", func(t *testing.T) {
		di, err := d.CreateDisk(testCtx(t), hostapi.DiskSpec{Pool: s.Pool, Name: base, Size: size})
		must(t, "CreateDisk", err)
		if di.Pool != s.Pool || di.Name != base || di.Size != size || di.Parent != "" || !slices.Contains(h.Formats, di.Format) {
			t.Errorf("CreateDisk: got %+v, want pool %s, name %s, %d bytes, no parent, a format of %v", di, s.Pool, base, size, h.Formats)
		}
		_, err = d.CreateDisk(testCtx(t), hostapi.DiskSpec{Pool: s.Pool, Name: base, Size: size})
		wantErr(t, "CreateDisk of a taken name", err, hostapi.ErrExists)
	})
	t.Run("NoSize", func(t *testing.T) {
		name := newName("nosize")
		cleanupDisk(t, d, s.Pool, name)
		_, err := d.CreateDisk(testCtx(t), hostapi.DiskSpec{Pool: s.Pool, Name: name})
		wantErr(t, "CreateDisk without a size", err, hostapi.ErrInvalidSpec)
	})
	t.Run("Differencing", func(t *testing.T) {
		if !d.Supports(hostapi.DifferencingDisks) {
			t.Skip("no differencing disks")
		}
		child := newName("child")
		cleanupDisk(t, d, s.Pool, child)
		di, err := d.CreateDisk(testCtx(t), hostapi.DiskSpec{Pool: s.Pool, Name: child, Parent: base})
		must(t, "CreateDisk over a parent", err)
		if di.Parent != base || di.Size != size || di.Name != child {
			t.Errorf("CreateDisk over a parent: got %+v, want name %s, parent %s, its %d bytes", di, child, base, size)
		}
		must(t, "DeleteDisk of the child", d.DeleteDisk(testCtx(t), s.Pool, child))
	})
	t.Run("Delete", func(t *testing.T) {
		must(t, "DeleteDisk", d.DeleteDisk(testCtx(t), s.Pool, base))
		wantErr(t, "DeleteDisk again", d.DeleteDisk(testCtx(t), s.Pool, base), hostapi.ErrNotFound)
	})
}

// testCopyImage copies Setup.Image into the pool with progress.
func testCopyImage(t *testing.T, s *Setup) {
	d := s.Driver
	if s.Image == nil || s.Pool == "" {
		t.Skip("no Setup.Image or Setup.Pool")
	}
	h, err := d.Host(testCtx(t))
	must(t, "Host", err)
	name := newName("copy")
	cleanupDisk(t, d, s.Pool, name)
	var p progress
	di, err := d.CopyImage(testCtx(t), *s.Image, hostapi.DiskSpec{Pool: s.Pool, Name: name}, p.record)
	must(t, "CopyImage", err)
	if di.Pool != s.Pool || di.Name != name || di.Size <= 0 || !slices.Contains(h.Formats, di.Format) {
		t.Errorf("CopyImage: got %+v, want pool %s, name %s, a size, a format of %v", di, s.Pool, name, h.Formats)
	}
	p.check(t, "CopyImage")

	_, err = d.CopyImage(testCtx(t), *s.Image, hostapi.DiskSpec{Pool: s.Pool, Name: name}, nil)
	wantErr(t, "CopyImage to a taken name", err, hostapi.ErrExists)
	missing := newName("nopool")
	_, err = d.CopyImage(testCtx(t), *s.Image, hostapi.DiskSpec{Pool: missing, Name: missing}, nil)
	wantErr(t, "CopyImage to a missing pool", err, hostapi.ErrNotFound)
}

// progress records the calls of a hostapi.Progress.
type progress struct {
	mu    sync.Mutex
	calls [][2]int64
}

func (p *progress) record(done, total int64) {
	p.mu.Lock()
	p.calls = append(p.calls, [2]int64{done, total})
	p.mu.Unlock()
}

// check checks the calls: at least one, done never falling and never
// above a known total, and the last at the total.
func (p *progress) check(t *testing.T, what string) {
	t.Helper()
	p.mu.Lock()
	calls := p.calls
	p.mu.Unlock()
	if len(calls) == 0 {
		t.Errorf("%s: progress was never called", what)
		return
	}
	for i, c := range calls {
		done, total := c[0], c[1]
		if done < 0 || total >= 0 && done > total || i > 0 && done < calls[i-1][0] {
			t.Errorf("%s: progress calls %v: want done rising, within the total", what, calls)
			return
		}
	}
	if last := calls[len(calls)-1]; last[1] >= 0 && last[0] != last[1] {
		t.Errorf("%s: last progress call %v, want done equal to the total", what, last)
	}
}
