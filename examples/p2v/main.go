// P2v captures a physical disk (or a raw image of one) into a VHD or VHDX
// image, reading only the blocks its file systems use, and re-captures it
// incrementally.
//
//	p2v -src DEV|FILE -dst OUT.vhdx [-previous OUT.vhdx] [-in-place] [-json]
//	    [-freeze MOUNTPOINT] [-max-freeze 10s] [-zero-bad-sectors]
//	    [-format vhd|vhdx] [-fixed] [-block-size N] [-chunk-size N]
//
// With -previous, only the chunks that changed since that capture are
// written: into -dst as a differencing child of the previous image, or with
// -in-place into the previous image itself. With -freeze, the capture runs
// live until it converges and then freezes the file system mounted there
// (FIFREEZE) for one short final pass; the freeze time is reported. An
// interrupted capture (Ctrl-C, a crash) continues when the same command is
// run again. A progress bar is drawn on a terminal; the summary goes to
// standard output, as JSON with -json. Exit status: 0 success, 1 an error,
// 2 the verification after the capture (-verify) found differences.
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
	"strings"
	"syscall"
	"time"

	"github.com/vmmkit/vmmkit/internal/termbar"
	"github.com/vmmkit/vmmkit/p2v"
	"github.com/vmmkit/vmmkit/vhd"
)

func main() {
	// SIGTERM and SIGHUP too: a capture with -freeze must reach its thaw.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// summary is what p2v prints when it is done.
type summary struct {
	Source         string         `json:"source"`
	Image          string         `json:"image"`
	Manifest       string         `json:"manifest"`
	Mode           string         `json:"mode"`
	Resumed        bool           `json:"resumed"`
	Size           int64          `json:"size"`
	Used           int64          `json:"used"`
	Read           int64          `json:"read"`
	Written        int64          `json:"written"`
	Skipped        int64          `json:"skipped"`
	ChangedChunks  int            `json:"changed_chunks"`
	Passes         int            `json:"passes"`
	Seconds        float64        `json:"seconds"`
	ThroughputMBps float64        `json:"throughput_mb_per_s"` // source bytes per second
	FreezeSeconds  float64        `json:"freeze_seconds,omitempty"`
	BadRanges      []p2v.Range    `json:"bad_ranges,omitempty"`
	Partitions     []partitionOut `json:"partitions,omitempty"`
	Warnings       []string       `json:"warnings,omitempty"`
	Verified       *bool          `json:"verified,omitempty"`
}

type partitionOut struct {
	Index int    `json:"index"`
	Start int64  `json:"start"`
	Size  int64  `json:"size"`
	FS    string `json:"fs,omitempty"`
	Free  int64  `json:"free"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("p2v", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := fs.String("src", "", "block device or raw image to capture")
	dst := fs.String("dst", "", "image to write (.vhd or .vhdx)")
	prev := fs.String("previous", "", "image of an earlier capture: write only what changed")
	inPlace := fs.Bool("in-place", false, "with -previous: update that image instead of making a child")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	freeze := fs.String("freeze", "", "mount point of the source's file system to freeze for the final pass")
	maxFreeze := fs.Duration("max-freeze", 10*time.Second, "longest time the file system may stay frozen")
	zeroBad := fs.Bool("zero-bad-sectors", false, "capture unreadable sectors as zeros instead of failing")
	format := fs.String("format", "", "vhd or vhdx (default: from -dst's extension)")
	fixed := fs.Bool("fixed", false, "make a fixed image instead of a dynamic one")
	blockSize := fs.Int64("block-size", 0, "block size of a new image in bytes (default 2 MiB)")
	chunkSize := fs.Int64("chunk-size", 0, "hashed chunk size in bytes (default 1 MiB)")
	verify := fs.Bool("verify", false, "re-read the source afterwards and compare")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if *src == "" || (*dst == "" && !*inPlace) || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "p2v: -src and -dst are required (or -previous with -in-place)")
		fs.Usage()
		return 1
	}
	o := &p2v.Options{Previous: *prev, InPlace: *inPlace, ZeroBadSectors: *zeroBad,
		BlockSize: *blockSize, ChunkSize: *chunkSize, MaxFreeze: *maxFreeze}
	switch strings.ToLower(*format) {
	case "":
	case "vhd":
		o.Format = vhd.FormatVHD
	case "vhdx":
		o.Format = vhd.FormatVHDX
	default:
		fmt.Fprintf(stderr, "p2v: unknown format %q\n", *format)
		return 1
	}
	if *fixed {
		o.Type = vhd.Fixed
	}
	if *freeze != "" {
		o.Snapshotter = freezer(*freeze)
	}
	bar := termbar.New(stderr)
	o.Progress = func(p p2v.Progress) {
		phase := "live"
		if p.Frozen {
			phase = "frozen"
		}
		bar.Draw(p.Done, p.Total, fmt.Sprintf("  pass %d (%s) %s/s ETA %v", p.Pass, phase, termbar.Human(int64(p.Rate)), p.ETA.Round(time.Second)))
	}

	dev, err := p2v.OpenDevice(*src)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer dev.Close()
	res, err := p2v.Capture(ctx, dev, *dst, o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "p2v: interrupted; run the same command again to continue")
		}
		return 1
	}
	s := summarize(dev, res)
	code := 0
	if *verify {
		ok := true
		if err := p2v.Verify(ctx, dev, res.Image); err != nil {
			var me *p2v.MismatchError
			if !errors.As(err, &me) {
				fmt.Fprintln(stderr, err)
				return 1
			}
			fmt.Fprintln(stderr, err)
			ok, code = false, 2
		}
		s.Verified = &ok
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return code
	}
	printSummary(stdout, s)
	return code
}

func summarize(dev *p2v.Device, res *p2v.Result) *summary {
	s := &summary{Source: dev.Name(), Image: res.Image, Manifest: res.Manifest, Mode: res.Mode,
		Resumed: res.Resumed, Size: dev.Size(), Used: res.Layout.Used(), Read: res.Read, Written: res.Written,
		Skipped: res.Skipped, ChangedChunks: res.Changed, Passes: len(res.Passes),
		Seconds: res.Duration.Seconds(), FreezeSeconds: res.FreezeTime.Seconds(), BadRanges: res.BadRanges}
	if res.Duration > 0 {
		s.ThroughputMBps = float64(dev.Size()) * float64(len(res.Passes)) / res.Duration.Seconds() / 1e6
	}
	for _, p := range res.Layout.Partitions {
		s.Partitions = append(s.Partitions, partitionOut{Index: p.Index, Start: p.Start, Size: p.Size, FS: p.FS, Free: p.Free})
	}
	for _, w := range res.Layout.Warnings {
		s.Warnings = append(s.Warnings, w.Error())
	}
	return s
}

func printSummary(w io.Writer, s *summary) {
	h := termbar.Human
	fmt.Fprintf(w, "captured %s into %s (%s", s.Source, s.Image, s.Mode)
	if s.Resumed {
		fmt.Fprint(w, ", resumed")
	}
	fmt.Fprintln(w, ")")
	for _, p := range s.Partitions {
		fs := p.FS
		if fs == "" {
			fs = "unknown file system: non-zero blocks copied"
		}
		fmt.Fprintf(w, "  partition %d at %s, %s: %s, %s free\n", p.Index, h(p.Start), h(p.Size), fs, h(p.Free))
	}
	for _, x := range s.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", x)
	}
	fmt.Fprintf(w, "  disk %s, used %s; read %s, written %s, skipped %s; %d changed chunks in %d pass(es)\n",
		h(s.Size), h(s.Used), h(s.Read), h(s.Written), h(s.Skipped), s.ChangedChunks, s.Passes)
	fmt.Fprintf(w, "  %.2f s, %.0f MB/s of source", s.Seconds, s.ThroughputMBps)
	if s.FreezeSeconds > 0 {
		fmt.Fprintf(w, "; frozen %.3f s", s.FreezeSeconds)
	}
	fmt.Fprintln(w)
	for _, b := range s.BadRanges {
		fmt.Fprintf(w, "  unreadable, captured as zeros: bytes %d-%d\n", b.Off, b.End()-1)
	}
	if s.Verified != nil {
		fmt.Fprintf(w, "  verified: %v\n", *s.Verified)
	}
	fmt.Fprintf(w, "  manifest %s\n", s.Manifest)
}
