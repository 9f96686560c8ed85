//go:build !linux

package p2v

import (
	"fmt"
	"os"
	"unsafe"
)

func openSource(path string) (*os.File, bool, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, false, fmt.Errorf("p2v: %w", err)
	}
	return f, false, false, nil
}

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func addrAligned(b []byte) bool { return addrOf(b)%directAlign == 0 }

// lockFile does nothing where flock is not available.
func lockFile(*os.File) error { return nil }
