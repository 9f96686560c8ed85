//go:build !linux

package vhd

import "os"

func datasync(f *os.File) error { return f.Sync() }
