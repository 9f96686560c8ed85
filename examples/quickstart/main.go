// Quickstart shows the main job of vmmkit on embedded defaults, with no
// set-up: it works in a temporary directory and removes it when done.
//
// Today it exercises the virtual disk engine: it creates a dynamic VHD,
// writes and reads it back, makes a differencing child over it, writes to
// the child, and shows that the parent is untouched.
//
//	go run ./examples/quickstart [-keep]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/vmmkit/vmmkit/vhd"
)

func main() {
	keep := flag.Bool("keep", false, "keep the working directory and print its path")
	flag.Parse()
	log.SetFlags(0)
	dir, err := os.MkdirTemp("", "vmmkit-quickstart-")
	if err != nil {
		log.Fatal(err)
	}
	if *keep {
		fmt.Println("working directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if err := run(dir); err != nil {
		log.Fatal(err)
	}
}

func run(dir string) error {
	// 1. A dynamic VHD of 1 GiB: the file holds only what is written.
	baseName := filepath.Join(dir, "base.vhd")
	base, err := vhd.Create(baseName, 1<<30, nil)
	if err != nil {
		return err
	}
	boot := bytes.Repeat([]byte("vmmkit boot sector "), 27)[:512]
	if _, err := base.WriteAt(boot, 0); err != nil {
		return err
	}
	data := bytes.Repeat([]byte{0xab}, 4<<20)
	if _, err := base.WriteAt(data, 512<<20); err != nil {
		return err
	}
	if err := base.Close(); err != nil {
		return err
	}
	fmt.Printf("created %s: %s\n", filepath.Base(baseName), describe(baseName))

	// 2. Read it back.
	base, err = vhd.Open(baseName)
	if err != nil {
		return err
	}
	got := make([]byte, len(data))
	if _, err := base.ReadAt(got, 512<<20); err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("read back differs from what was written")
	}
	fmt.Printf("read back %d MiB at offset 512 MiB: identical\n", len(got)>>20)
	for e := range base.Extents() {
		fmt.Printf("  data: %d KiB at offset %d MiB\n", e.Length>>10, e.Offset>>20)
	}
	base.Close()

	// 3. A differencing child: writes go to the child, the parent stays.
	childName := filepath.Join(dir, "child.vhd")
	child, err := vhd.Create(childName, 0, &vhd.CreateOptions{Parent: baseName})
	if err != nil {
		return err
	}
	defer child.Close()
	if _, err := child.WriteAt(bytes.Repeat([]byte{0xcd}, 100), 512<<20); err != nil {
		return err
	}
	if err := child.Sync(); err != nil {
		return err
	}
	fmt.Printf("created %s over %s: %s\n", filepath.Base(childName), filepath.Base(baseName), describe(childName))
	var sector [512]byte
	if _, err := child.ReadAt(sector[:], 0); err != nil {
		return err
	}
	fmt.Printf("child sector 0 reads through to the parent: %q...\n", sector[:19])
	if _, err := child.ReadAt(sector[:], 512<<20); err != nil {
		return err
	}
	fmt.Printf("child at 512 MiB: %d bytes of 0xcd from the child, then 0x%x from the parent\n",
		run0xcd(sector[:]), sector[100])
	if _, err := child.Parent().ReadAt(sector[:], 512<<20); err != nil {
		return err
	}
	fmt.Printf("parent at 512 MiB: still 0x%x\n", sector[0])
	return nil
}

func describe(name string) string {
	d, err := vhd.Open(name)
	if err != nil {
		return err.Error()
	}
	defer d.Close()
	fi, err := os.Stat(name)
	if err != nil {
		return err.Error()
	}
	i := d.Info()
	return fmt.Sprintf("%s %s, virtual size %d MiB, file %d KiB, block size %d KiB, UUID %s",
		i.Type, i.Format, i.Size>>20, fi.Size()>>10, i.BlockSize>>10, i.UUID)
}

// run0xcd counts the leading 0xcd bytes of b.
func run0xcd(b []byte) int {
	n := 0
	for n < len(b) && b[n] == 0xcd {
		n++
	}
	return n
}
