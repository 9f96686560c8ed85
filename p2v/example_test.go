package p2v_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/vmmkit/vmmkit/p2v"
)

// Capture a disk, then capture it again after a change: the second capture
// writes only the changed chunk, into a differencing child of the first.
func Example() {
	dir, err := os.MkdirTemp("", "p2v-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// A raw disk image stands in for /dev/sdb: 8 MiB with some data.
	disk := filepath.Join(dir, "disk.raw")
	data := make([]byte, 8<<20)
	copy(data[3<<20:], "a boot loader, a file system, files...")
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	capture := func(dst, previous string) *p2v.Result {
		dev, err := p2v.OpenDevice(disk)
		if err != nil {
			log.Fatal(err)
		}
		defer dev.Close()
		res, err := p2v.Capture(ctx, dev, dst, &p2v.Options{Previous: previous})
		if err != nil {
			log.Fatal(err)
		}
		return res
	}

	full := capture(filepath.Join(dir, "server.vhdx"), "")
	fmt.Printf("%s: read %d MiB, wrote %d KiB\n", full.Mode, full.Read>>20, full.Written>>10)

	copy(data[6<<20:], "a change")
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		log.Fatal(err)
	}
	incr := capture(filepath.Join(dir, "server-2.vhdx"), filepath.Join(dir, "server.vhdx"))
	fmt.Printf("%s: %d changed chunk, wrote %d KiB\n", incr.Mode, incr.Changed, incr.Written>>10)
	// Output:
	// full: read 8 MiB, wrote 4 KiB
	// child: 1 changed chunk, wrote 1024 KiB
}
