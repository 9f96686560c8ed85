package vhd_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/vmmkit/vmmkit/vhd"
)

func Example() {
	dir, err := os.MkdirTemp("", "vhd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// A 10 GiB dynamic image: the file holds only what is written.
	d, err := vhd.Create(filepath.Join(dir, "disk.vhd"), 10<<30, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	if _, err := d.WriteAt([]byte("hello, disk"), 5<<30); err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 11)
	if _, err := d.ReadAt(buf, 5<<30); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %s of %d GiB: %q\n", d.Type(), d.Format(), d.Size()>>30, buf)
	for e := range d.Extents() {
		// Only the ranges that hold data: a copy skips the rest.
		fmt.Printf("first data at %d MiB\n", e.Offset>>20)
		break
	}
	// Output:
	// dynamic VHD of 10 GiB: "hello, disk"
	// first data at 5120 MiB
}

func ExampleCreate_differencing() {
	dir, err := os.MkdirTemp("", "vhd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	base, err := vhd.Create(filepath.Join(dir, "base.vhd"), 1<<30, nil)
	if err != nil {
		log.Fatal(err)
	}
	base.WriteAt([]byte("base data"), 0)
	base.Close()

	child, err := vhd.Create(filepath.Join(dir, "child.vhd"), 0, &vhd.CreateOptions{Parent: filepath.Join(dir, "base.vhd")})
	if err != nil {
		log.Fatal(err)
	}
	defer child.Close()
	child.WriteAt([]byte("CHILD"), 0)

	buf := make([]byte, 9)
	child.ReadAt(buf, 0)
	fmt.Printf("child reads %q\n", buf)
	child.Parent().ReadAt(buf, 0)
	fmt.Printf("parent still reads %q\n", buf)
	fmt.Println("locators:", child.Info().ParentLocators[0].Platform, child.Info().ParentLocators[0].Path)
	// Output:
	// child reads "CHILDdata"
	// parent still reads "base data"
	// locators: W2ru .\base.vhd
}

func ExampleOpen() {
	d, err := vhd.Open("testdata/qemu-dynamic.vhd")
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	i := d.Info()
	fmt.Printf("%s %s, %d bytes, creator %q, geometry %d/%d/%d\n", i.Type, i.Format, i.Size,
		i.CreatorApp, i.Geometry.Cylinders, i.Geometry.Heads, i.Geometry.SectorsPerTrack)
	// Output:
	// dynamic VHD, 3168256 bytes, creator "qemu", geometry 91/4/17
}
