package p2v

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// FSFreezer freezes a mounted Linux file system with the FIFREEZE ioctl, as
// fsfreeze(8) does, and thaws it with FITHAW. It needs CAP_SYS_ADMIN.
// Writers to the file system block while it is frozen, so the image Capture
// writes must live on another file system; Capture checks.
//
// Any file system that supports freezing works (ext4, XFS, btrfs, ...), but
// Capture reads the allocation maps of ext2/3/4, NTFS and FAT only; other
// file systems are read whole in every pass, the frozen one included, which
// makes the freeze longer.
//
// The kernel does not thaw a file system when the process that froze it
// dies: Capture thaws on every return and on a panic, but a process killed
// by SIGKILL while frozen leaves the file system frozen until someone runs
// fsfreeze -u on the mount point. Handle SIGTERM and SIGINT by cancelling
// the context passed to Capture.
type FSFreezer struct {
	// Mountpoint is the directory the file system is mounted on.
	Mountpoint string
}

const (
	ioctlFIFREEZE = 0xC0045877
	ioctlFITHAW   = 0xC0045878
)

// Freeze freezes the file system and returns the function that thaws it.
func (f FSFreezer) Freeze(ctx context.Context) (func() error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, err := os.Open(f.Mountpoint)
	if err != nil {
		return nil, fmt.Errorf("p2v: freeze: %w", err)
	}
	if err := ioctl(d, ioctlFIFREEZE); err != nil {
		d.Close()
		return nil, fmt.Errorf("p2v: freezing %s: %w", f.Mountpoint, err)
	}
	return func() error {
		defer d.Close()
		if err := ioctl(d, ioctlFITHAW); err != nil {
			return fmt.Errorf("p2v: thawing %s: %w", f.Mountpoint, err)
		}
		return nil
	}, nil
}

// Covers reports whether path lies on the file system f freezes.
func (f FSFreezer) Covers(path string) bool {
	var m, p syscall.Stat_t
	if syscall.Stat(f.Mountpoint, &m) != nil {
		return false
	}
	if syscall.Stat(filepath.Dir(path), &p) != nil {
		return false
	}
	return m.Dev == p.Dev
}

func ioctl(f *os.File, req uintptr) error {
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
