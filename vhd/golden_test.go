package vhd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	update       = flag.Bool("update", false, "rewrite the .golden dumps of testdata images")
	makeTestdata = flag.Bool("maketestdata", false, "rewrite the vmmk-* images in testdata")
)

// dump describes an image's metadata and content as stable text.
func dump(d *Disk) string {
	var b strings.Builder
	i := d.Info()
	fmt.Fprintf(&b, "format: %s\ntype: %s\nsize: %d\n", i.Format, i.Type, i.Size)
	fmt.Fprintf(&b, "uuid: %s\n", i.UUID)
	if i.Format == FormatVHD {
		fmt.Fprintf(&b, "created: %s\n", i.Created.UTC().Format("2006-01-02T15:04:05Z"))
		fmt.Fprintf(&b, "creator: %q %d.%d %q\n", i.CreatorApp, i.CreatorVersion>>16, i.CreatorVersion&0xffff, i.CreatorOS)
		fmt.Fprintf(&b, "original size: %d\n", i.OriginalSize)
		fmt.Fprintf(&b, "geometry: %d/%d/%d (%d bytes)\n", i.Geometry.Cylinders, i.Geometry.Heads, i.Geometry.SectorsPerTrack, i.Geometry.Size())
	} else {
		fmt.Fprintf(&b, "creator: %q\n", i.CreatorApp)
		fmt.Fprintf(&b, "sectors: %d logical, %d physical\n", i.LogicalSectorSize, i.PhysicalSectorSize)
	}
	if i.Type != Fixed || i.Format == FormatVHDX {
		fmt.Fprintf(&b, "block size: %d\nmax table entries: %d\n", i.BlockSize, i.MaxTableEntries)
	}
	if i.Type == Differencing {
		fmt.Fprintf(&b, "parent uuid: %s\n", i.ParentUUID)
		if i.Format == FormatVHD {
			fmt.Fprintf(&b, "parent time: %s\n", i.ParentTime.UTC().Format("2006-01-02T15:04:05Z"))
		}
		fmt.Fprintf(&b, "parent name: %q\n", i.ParentName)
		for _, l := range i.ParentLocators {
			p := l.Path
			if l.Platform != "W2ru" && l.Platform != "relative_path" {
				p = "(absolute) " + filepath.Base(strings.ReplaceAll(p, `\`, "/"))
			}
			fmt.Fprintf(&b, "locator %s: %q\n", l.Platform, p)
		}
	}
	// Allocated blocks, not Extents: those follow the file system's holes,
	// which depend on how the file was written (a git checkout writes every
	// byte).
	var blocks []blockRange
	switch {
	case d.vhdx != nil:
		blocks = d.vhdx.blocks(d.Size())
	case d.dyn != nil:
		blocks = d.dyn.blocks(d.Size())
	}
	for _, r := range blocks {
		fmt.Fprintf(&b, "block: %d+%d at file offset %d\n", r.disk.Offset, r.disk.Length, r.file)
	}
	content := make([]byte, d.Size())
	_, _ = d.ReadAt(content, 0)
	fmt.Fprintf(&b, "sha256: %s\n", sha(content))
	return b.String()
}

// TestGolden opens every image in testdata, made by qemu-img and by this
// package, and compares its dump with the .golden file beside it.
func TestGolden(t *testing.T) {
	if *makeTestdata {
		writeTestdata(t)
	}
	images, err := filepath.Glob("testdata/*.vhd*")
	require.NoError(t, err)
	images = slices.DeleteFunc(images, func(n string) bool { return strings.HasSuffix(n, ".golden") })
	require.NotEmpty(t, images)
	for _, img := range images {
		t.Run(filepath.Base(img), func(t *testing.T) {
			d := mustOpen(t, img, os.O_RDONLY)
			got := dump(d)
			golden := img + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./vhd -run TestGolden -update")
			require.Equal(t, string(want), got)
		})
	}
}

// writeTestdata makes the vmmk-* images: small, with 4 KiB blocks, so that
// they also serve as fuzz seeds.
func writeTestdata(t *testing.T) {
	for _, n := range []string{"vmmk-dynamic.vhd", "vmmk-fixed.vhd", "vmmk-parent.vhd", "vmmk-child.vhd", "vmmk-dynamic.vhdx", "vmmk-parent.vhdx", "vmmk-child.vhdx"} {
		if err := os.Remove(filepath.Join("testdata", n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	pattern := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	d, err := Create("testdata/vmmk-dynamic.vhd", 1<<20+512, &CreateOptions{BlockSize: 4096})
	require.NoError(t, err)
	d.WriteAt(pattern(5000, 0x5a), 1000)
	d.WriteAt(pattern(512, 0xa5), 1<<20)
	require.NoError(t, d.Close())

	d, err = Create("testdata/vmmk-fixed.vhd", 128<<10, &CreateOptions{Type: Fixed})
	require.NoError(t, err)
	d.WriteAt(pattern(3000, 0x77), 70000)
	require.NoError(t, d.Close())

	d, err = Create("testdata/vmmk-parent.vhd", 256<<10, &CreateOptions{BlockSize: 4096})
	require.NoError(t, err)
	d.WriteAt(pattern(20000, 0x11), 0)
	require.NoError(t, d.Close())
	d, err = Create("testdata/vmmk-child.vhd", 0, &CreateOptions{Parent: "testdata/vmmk-parent.vhd", BlockSize: 4096})
	require.NoError(t, err)
	d.WriteAt(pattern(100, 0x22), 700)        // sub-sector, over parent data
	d.WriteAt(pattern(4096*3, 0x33), 100<<10) // whole blocks, over a hole
	require.NoError(t, d.Close())
	// Absolute locators as a Windows host would write them, so that the
	// file names no path of the machine that made it.
	rewriteLocators(t, "testdata/vmmk-child.vhd", []locatorData{
		{platW2ru, utf16le(`.\vmmk-parent.vhd`)},
		{platW2ku, utf16le(`C:\VMs\vmmk-parent.vhd`)},
	}, `C:\VMs\vmmk-parent.vhd`)

	// VHDX: 1 MiB blocks, the smallest the format allows.
	d, err = Create("testdata/vmmk-dynamic.vhdx", 3<<20+4096, &CreateOptions{BlockSize: 1 << 20})
	require.NoError(t, err)
	d.WriteAt(pattern(5000, 0x5a), 1000)
	d.WriteAt(pattern(4096, 0xa5), 3<<20)
	require.NoError(t, d.Close())
	d, err = Create("testdata/vmmk-parent.vhdx", 2<<20, &CreateOptions{BlockSize: 1 << 20})
	require.NoError(t, err)
	d.WriteAt(pattern(20000, 0x11), 0)
	require.NoError(t, d.Close())
	d, err = Create("testdata/vmmk-child.vhdx", 0, &CreateOptions{Parent: "testdata/vmmk-parent.vhdx", BlockSize: 1 << 20})
	require.NoError(t, err)
	d.WriteAt(pattern(100, 0x22), 700)     // sub-sector, over parent data
	d.WriteAt(pattern(1<<20, 0x33), 1<<20) // a whole block
	link := "{" + guidString(d.Parent().linkID) + "}"
	require.NoError(t, d.Close())
	rewriteVHDXLocator(t, "testdata/vmmk-child.vhdx", [][2]string{
		{"parent_linkage", link},
		{"relative_path", `.\vmmk-parent.vhdx`},
		{"absolute_win32_path", `C:\VMs\vmmk-parent.vhdx`},
	})
}

// rewriteVHDXLocator replaces the parent locator item of a VHDX file in
// place (the new one must not be longer).
func rewriteVHDXLocator(t *testing.T, name string, kv [][2]string) {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	loc, err := encodeLocatorKV(kv)
	require.NoError(t, err)
	regions, err := readRegionTable(readOnly{bytes.NewReader(b)}, vhdxRegion1Off, int64(len(b)))
	require.NoError(t, err)
	md := b[regions[regionMetadata][0]:]
	le := binary.LittleEndian
	for i := range int(le.Uint16(md[10:])) {
		e := md[32+32*i:]
		if UUID(e[0:16]) != metaParentLocator {
			continue
		}
		off, n := le.Uint32(e[16:]), le.Uint32(e[20:])
		require.LessOrEqual(t, len(loc), int(n))
		clear(md[off : off+n])
		copy(md[off:], loc)
		le.PutUint32(e[20:], uint32(len(loc)))
		require.NoError(t, os.WriteFile(name, b, 0o644))
		return
	}
	t.Fatal("no parent locator")
}
