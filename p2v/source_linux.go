package p2v

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// openSource opens path read-only, with O_DIRECT when it is a block device.
// It reports whether path is a block device and whether O_DIRECT is on.
func openSource(path string) (f *os.File, block, direct bool, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, false, fmt.Errorf("p2v: %w", err)
	}
	block = fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
	if block {
		if f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0); err == nil {
			return f, true, true, nil
		}
	}
	f, err = os.Open(path)
	if err != nil {
		return nil, false, false, fmt.Errorf("p2v: %w", err)
	}
	return f, block, false, nil
}

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func addrAligned(b []byte) bool { return addrOf(b)%directAlign == 0 }

// lockFile takes an exclusive lock on f, failing at once if another process
// holds it: two captures must not write the same image.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
