package vhd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// MergeOptions control Merge and Flatten.
type MergeOptions struct {
	// Open controls how the chain is opened.
	Open *OpenOptions
	// Progress, if set, is called after each chunk with the bytes done so
	// far and in all. It must return quickly.
	Progress func(done, total int64)
}

// Merge commits the differencing image child into its parent: the blocks
// the child holds are written into the parent, which then shows what the
// child showed. The child is left as it was; it reads the same as before,
// and can be deleted. Other children of the parent see the parent change;
// a VHDX parent gets a new data write GUID, so they refuse it from then on.
//
// Merge is safe to interrupt: the child reads the same at every point, and
// running Merge again completes the commit. A VHDX parent gets a new data
// write GUID with its first write, so after an interruption its child opens
// only with MergeOptions.Open.IgnoreParentLinkage set, which the rerun
// needs too.
func Merge(ctx context.Context, child string, opts *MergeOptions) (err error) {
	var o MergeOptions
	if opts != nil {
		o = *opts
	}
	c, err := OpenFile(child, os.O_RDONLY, o.Open)
	if err != nil {
		return err
	}
	defer c.Close()
	if c.Parent() == nil {
		return fmt.Errorf("merge %s: %w", child, detail(ErrFormat, "not a differencing image"))
	}
	// The parent, open a second time, for writing. Its own parents stay
	// read-only.
	p, err := OpenFile(c.Parent().Name(), os.O_RDWR, o.Open)
	if err != nil {
		return fmt.Errorf("merge %s: open parent for writing: %w", child, err)
	}
	defer func() {
		if cerr := p.Close(); err == nil {
			err = cerr
		}
	}()
	if p.Size() < c.Size() {
		return fmt.Errorf("merge %s: %w", child, detail(ErrUnsupported, "the child (%d bytes) is larger than its parent (%d bytes)", c.Size(), p.Size()))
	}
	// The child's own blocks, read through the child: its sectors where it
	// has them, the parent's elsewhere (which writes them back unchanged).
	// Zeros too: they may hide data in the parent.
	if err := copyRanges(ctx, p, c, c.ownExtents(), o.Progress, false); err != nil {
		return fmt.Errorf("merge %s into %s: %w", child, p.Name(), err)
	}
	return p.Sync()
}

// Flatten rewrites the differencing image name as a standalone image of
// the same format, type and block size that holds what its chain shows
// (it collapses the chain into one image). The new image is written beside
// the old one and renamed over it only when complete and synced, so an
// interruption leaves the original untouched. Images made from name (its
// children) name the old image and must be rebased or flattened first.
func Flatten(ctx context.Context, name string, opts *MergeOptions) error {
	var o MergeOptions
	if opts != nil {
		o = *opts
	}
	d, err := OpenFile(name, os.O_RDONLY, o.Open)
	if err != nil {
		return err
	}
	info := d.Info()
	d.Close()
	if info.Type != Differencing {
		return fmt.Errorf("flatten %s: %w", name, detail(ErrFormat, "not a differencing image"))
	}
	tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".flatten")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	co := &ConvertOptions{
		Create:   CreateOptions{Format: info.Format, Type: Dynamic, BlockSize: info.BlockSize, UUID: info.UUID, LogicalSectorSize: info.LogicalSectorSize, PhysicalSectorSize: info.PhysicalSectorSize},
		Progress: o.Progress,
	}
	if info.Format == FormatVHD {
		co.Create.LogicalSectorSize, co.Create.PhysicalSectorSize = 0, 0
	}
	if err := convertOpen(ctx, tmp, name, co, o.Open); err != nil {
		return fmt.Errorf("flatten %s: %w", name, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(name))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
