package p2v

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// openSource opens path read-only, with O_DIRECT when it is a block device.
func openSource(path string) (*os.File, bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("p2v: %w", err)
	}
	if fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
		if err == nil {
			return f, true, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, false, fmt.Errorf("p2v: %w", err)
	}
	return f, false, nil
}

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func addrAligned(b []byte) bool { return addrOf(b)%directAlign == 0 }
