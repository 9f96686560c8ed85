// Vhdtool inspects, creates, converts and compares VHD and VHDX images.
//
//	vhdtool info [-json] IMAGE
//	vhdtool create [-type dynamic|fixed] [-block-size N] [-parent IMAGE] IMAGE SIZE
//	vhdtool convert [-O vhd|vhdx|raw] [-type dynamic|fixed] [-block-size N] SRC DST
//	vhdtool diff [-json] A B
//	vhdtool check [-repair] [-json] IMAGE
//	vhdtool merge CHILD          (commit a differencing image into its parent)
//	vhdtool flatten IMAGE        (collapse a chain into one image, in place)
//	vhdtool compact IMAGE        (free zero blocks, shrink the file)
//	vhdtool resize IMAGE SIZE    (grow; shrink only over unallocated space)
//
// SIZE takes K, M, G and T suffixes (powers of 1024). convert detects the
// source format from its content (raw when it is neither VHD nor VHDX) and
// shows progress on a terminal. Exit status: 0 success (for diff: the disks
// are equal; for check: no problem left), 1 an error, 2 diff found
// differences or check found problems it did not repair.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/vmmkit/vmmkit/internal/termbar"
	"github.com/vmmkit/vmmkit/vhd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  vhdtool info [-json] IMAGE
  vhdtool create [-type dynamic|fixed] [-block-size N] [-parent IMAGE] IMAGE SIZE
  vhdtool convert [-O vhd|vhdx|raw] [-type dynamic|fixed] [-block-size N] SRC DST
  vhdtool diff [-json] A B
  vhdtool check [-repair] [-json] IMAGE
  vhdtool merge CHILD
  vhdtool flatten IMAGE
  vhdtool compact IMAGE
  vhdtool resize IMAGE SIZE
`

// run executes one command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) (int, error){
		"info": info, "create": create, "convert": convert, "diff": diff, "check": check,
		"merge": merge, "flatten": flatten, "compact": compact, "resize": resize,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "vhdtool: unknown command %q\n%s", args[0], usage)
		return 1
	}
	code, err := cmd(ctx, args[1:], stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vhdtool %s: %v\n", args[0], err)
		return 1
	}
	return code
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	if i := strings.IndexAny(s, "KMGTkmgt"); i >= 0 && i == len(s)-1 {
		mult = map[byte]int64{'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40}[s[i]|0x20]
		s = s[:i]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func parseType(s string) (vhd.Type, error) {
	switch s {
	case "", "dynamic":
		return vhd.Dynamic, nil
	case "fixed":
		return vhd.Fixed, nil
	}
	return 0, fmt.Errorf("bad type %q: dynamic or fixed", s)
}

// sizeFlag is a flag.Value for sizes with suffixes.
type sizeFlag struct{ n *int64 }

func (f sizeFlag) String() string {
	if f.n == nil {
		return "0"
	}
	return strconv.FormatInt(*f.n, 10)
}
func (f sizeFlag) Set(s string) (err error) { *f.n, err = parseSize(s); return err }

type infoOut struct {
	File               string        `json:"file"`
	Format             string        `json:"format"`
	Type               string        `json:"type"`
	VirtualSize        int64         `json:"virtual_size"`
	FileSize           int64         `json:"file_size"`
	UUID               string        `json:"uuid"`
	Creator            string        `json:"creator"`
	BlockSize          int64         `json:"block_size,omitempty"`
	LogicalSectorSize  int64         `json:"logical_sector_size"`
	PhysicalSectorSize int64         `json:"physical_sector_size"`
	Geometry           string        `json:"geometry,omitempty"`
	DataBytes          int64         `json:"data_bytes"`
	Parent             *infoOut      `json:"parent,omitempty"`
	Locators           []vhd.Locator `json:"parent_locators,omitempty"`
}

func describe(d *vhd.Disk) *infoOut {
	i := d.Info()
	o := &infoOut{
		File: d.Name(), Format: i.Format.String(), Type: i.Type.String(), VirtualSize: i.Size,
		UUID: i.UUID.String(), Creator: strings.TrimSpace(i.CreatorApp), BlockSize: i.BlockSize,
		LogicalSectorSize: i.LogicalSectorSize, PhysicalSectorSize: i.PhysicalSectorSize,
		Locators: i.ParentLocators,
	}
	if fi, err := os.Stat(d.Name()); err == nil {
		o.FileSize = fi.Size()
	}
	if i.Format == vhd.FormatVHD {
		o.Geometry = fmt.Sprintf("%d/%d/%d", i.Geometry.Cylinders, i.Geometry.Heads, i.Geometry.SectorsPerTrack)
	}
	for e := range d.Extents() {
		o.DataBytes += e.Length
	}
	if p := d.Parent(); p != nil {
		o.Parent = describe(p)
	}
	return o
}

func info(_ context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("info", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return 1, errors.New("usage: vhdtool info [-json] IMAGE")
	}
	d, err := vhd.Open(fs.Arg(0))
	if err != nil {
		return 1, err
	}
	defer d.Close()
	o := describe(d)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return 0, enc.Encode(o)
	}
	for depth := 0; o != nil; o, depth = o.Parent, depth+1 {
		ind := strings.Repeat("  ", depth)
		if depth > 0 {
			fmt.Fprintf(stdout, "%sparent:\n", ind)
			ind += "  "
		}
		fmt.Fprintf(stdout, "%sfile:          %s\n", ind, o.File)
		fmt.Fprintf(stdout, "%sformat:        %s %s\n", ind, o.Type, o.Format)
		fmt.Fprintf(stdout, "%svirtual size:  %s (%d bytes)\n", ind, termbar.Human(o.VirtualSize), o.VirtualSize)
		fmt.Fprintf(stdout, "%sfile size:     %s\n", ind, termbar.Human(o.FileSize))
		fmt.Fprintf(stdout, "%sdata:          %s\n", ind, termbar.Human(o.DataBytes))
		if o.BlockSize > 0 {
			fmt.Fprintf(stdout, "%sblock size:    %s\n", ind, termbar.Human(o.BlockSize))
		}
		fmt.Fprintf(stdout, "%ssectors:       %d logical, %d physical\n", ind, o.LogicalSectorSize, o.PhysicalSectorSize)
		if o.Geometry != "" {
			fmt.Fprintf(stdout, "%sgeometry:      %s\n", ind, o.Geometry)
		}
		fmt.Fprintf(stdout, "%suuid:          %s\n", ind, o.UUID)
		fmt.Fprintf(stdout, "%screator:       %s\n", ind, o.Creator)
		for _, l := range o.Locators {
			fmt.Fprintf(stdout, "%slocator %s: %s\n", ind, l.Platform, l.Path)
		}
	}
	return 0, nil
}

func create(_ context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	typ := fs.String("type", "dynamic", "dynamic or fixed")
	var bs int64
	fs.Var(sizeFlag{&bs}, "block-size", "block size (default: the format's)")
	parent := fs.String("parent", "", "make a differencing image of this parent")
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 || fs.NArg() > 2 || (fs.NArg() == 1 && *parent == "") {
		return 1, errors.New("usage: vhdtool create [-type dynamic|fixed] [-block-size N] [-parent IMAGE] IMAGE [SIZE]")
	}
	t, err := parseType(*typ)
	if err != nil {
		return 1, err
	}
	var size int64
	if fs.NArg() == 2 {
		if size, err = parseSize(fs.Arg(1)); err != nil {
			return 1, err
		}
	}
	opts := &vhd.CreateOptions{Type: t, BlockSize: bs, Parent: *parent}
	if *parent != "" {
		opts.Type = 0
	}
	d, err := vhd.Create(fs.Arg(0), size, opts)
	if err != nil {
		return 1, err
	}
	if err := d.Close(); err != nil {
		return 1, err
	}
	fmt.Fprintf(stdout, "created %s: %s %s, %d bytes\n", fs.Arg(0), d.Type(), d.Format(), d.Size())
	return 0, nil
}

func convert(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("O", "", "target format: vhd, vhdx or raw (default: from DST's extension)")
	typ := fs.String("type", "dynamic", "dynamic or fixed")
	var bs int64
	fs.Var(sizeFlag{&bs}, "block-size", "block size (default: the format's)")
	quiet := fs.Bool("q", false, "no progress")
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 {
		return 1, errors.New("usage: vhdtool convert [-O vhd|vhdx|raw] [-type dynamic|fixed] [-block-size N] SRC DST")
	}
	t, err := parseType(*typ)
	if err != nil {
		return 1, err
	}
	o := &vhd.ConvertOptions{Create: vhd.CreateOptions{Type: t, BlockSize: bs}}
	switch strings.ToLower(*format) {
	case "":
	case "vhd", "vpc":
		o.Create.Format = vhd.FormatVHD
	case "vhdx":
		o.Create.Format = vhd.FormatVHDX
	case "raw":
		o.Create.Format = vhd.FormatRaw
	default:
		return 1, fmt.Errorf("bad format %q: vhd, vhdx or raw", *format)
	}
	start := time.Now()
	if !*quiet {
		o.Progress = progressBar(stderr)
	}
	if err := vhd.Convert(ctx, fs.Arg(1), fs.Arg(0), o); err != nil {
		return 1, err
	}
	fmt.Fprintf(stdout, "converted %s to %s in %v\n", fs.Arg(0), fs.Arg(1), time.Since(start).Round(time.Millisecond))
	return 0, nil
}

// progressBar returns a progress callback that draws a bar on w when w is a
// terminal, and nil otherwise.
func progressBar(w io.Writer) func(done, total int64) {
	bar := termbar.New(w)
	if bar == nil {
		return nil
	}
	return func(done, total int64) { bar.Draw(done, total, "") }
}

func diff(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("diff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 {
		return 1, errors.New("usage: vhdtool diff [-json] A B")
	}
	a, err := vhd.Open(fs.Arg(0))
	if err != nil {
		return 1, err
	}
	defer a.Close()
	b, err := vhd.Open(fs.Arg(1))
	if err != nil {
		return 1, err
	}
	defer b.Close()
	ranges := []vhd.Extent{}
	var total int64
	for e, err := range vhd.Diff(ctx, a, b) {
		if err != nil {
			return 1, err
		}
		ranges = append(ranges, e)
		total += e.Length
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"differing_bytes": total, "ranges": ranges}); err != nil {
			return 1, err
		}
	} else {
		for _, e := range ranges {
			fmt.Fprintf(stdout, "%d+%d\n", e.Offset, e.Length)
		}
		fmt.Fprintf(stdout, "%d ranges, %s differ\n", len(ranges), termbar.Human(total))
	}
	if len(ranges) > 0 {
		return 2, nil
	}
	return 0, nil
}

func check(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	repair := fs.Bool("repair", false, "repair what can be repaired without losing data")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return 1, errors.New("usage: vhdtool check [-repair] [-json] IMAGE")
	}
	r, err := vhd.Check(ctx, fs.Arg(0), &vhd.CheckOptions{Repair: *repair})
	if err != nil {
		return 1, err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"ok": r.OK(), "problems": r.Problems, "leaked_bytes": r.LeakedBytes}); err != nil {
			return 1, err
		}
	} else {
		for _, p := range r.Problems {
			fmt.Fprintln(stdout, p)
		}
		if r.LeakedBytes > 0 {
			fmt.Fprintf(stdout, "%s of file space is not used by the image (compacting reclaims it)\n", termbar.Human(r.LeakedBytes))
		}
		if r.OK() {
			fmt.Fprintln(stdout, "No errors were found.")
		}
	}
	if !r.OK() {
		return 2, nil
	}
	return 0, nil
}

func merge(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) != 1 {
		return 1, errors.New("usage: vhdtool merge CHILD")
	}
	if err := vhd.Merge(ctx, args[0], &vhd.MergeOptions{Progress: progressBar(stderr)}); err != nil {
		return 1, err
	}
	fmt.Fprintf(stdout, "merged %s into its parent\n", args[0])
	return 0, nil
}

func flatten(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) != 1 {
		return 1, errors.New("usage: vhdtool flatten IMAGE")
	}
	if err := vhd.Flatten(ctx, args[0], &vhd.MergeOptions{Progress: progressBar(stderr)}); err != nil {
		return 1, err
	}
	fmt.Fprintf(stdout, "flattened %s\n", args[0])
	return 0, nil
}

func compact(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) != 1 {
		return 1, errors.New("usage: vhdtool compact IMAGE")
	}
	r, err := vhd.Compact(ctx, args[0], &vhd.CompactOptions{Progress: progressBar(stderr)})
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(stdout, "compacted %s: %d blocks freed, %d moved, %s -> %s\n", args[0], r.BlocksDropped, r.BlocksMoved, termbar.Human(r.SizeBefore), termbar.Human(r.SizeAfter))
	return 0, nil
}

func resize(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) != 2 {
		return 1, errors.New("usage: vhdtool resize IMAGE SIZE")
	}
	size, err := parseSize(args[1])
	if err != nil {
		return 1, err
	}
	if err := vhd.Resize(ctx, args[0], size, nil); err != nil {
		return 1, err
	}
	fmt.Fprintf(stdout, "resized %s to %s\n", args[0], termbar.Human(size))
	return 0, nil
}
