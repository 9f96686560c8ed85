package vhd

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vmmkit/vmmkit/internal/testenv"
)

// benchSource writes the mixed source of the conversion benchmarks: every
// byte written (no holes), in 1 MiB units of random data (40 %), zeros
// (30 %) and zeros with a few small writes (30 %).
func benchSource(tb testing.TB, name string, size int64) {
	tb.Helper()
	f, err := os.Create(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(42, 42))
	rnd := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		clear(buf)
		switch k := r.IntN(10); {
		case k < 4:
			rnd.Read(buf)
		case k < 7:
		default:
			for i := 0; i < 4; i++ {
				buf[r.IntN(len(buf)-64)] = byte(r.Uint32()) | 1
			}
		}
		if _, err := f.Write(buf[:min(int64(len(buf)), size-off)]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
}

// timing runs f reps times and returns the minimum and median durations.
func timing(tb testing.TB, reps int, prepare func(), f func() error) (minD, median time.Duration) {
	tb.Helper()
	var ds []time.Duration
	for range reps {
		if prepare != nil {
			prepare()
		}
		start := time.Now()
		if err := f(); err != nil {
			tb.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[0], ds[len(ds)/2]
}

// warm reads name once so that it is in the page cache.
func warm(tb testing.TB, name string) {
	tb.Helper()
	f, err := os.Open(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Read(buf); err != nil {
			return
		}
	}
}

func benchSize(tb testing.TB) int64 {
	if s := os.Getenv("VMM_BENCH_SIZE"); s != "" {
		size, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			tb.Fatal(err)
		}
		return size
	}
	return 2 << 30
}

// BenchmarkConvert is vmmkit's raw to dynamic VHD conversion alone, for
// profiling; BenchmarkConvertVsTools compares it with other tools.
func BenchmarkConvert(b *testing.B) {
	size := benchSize(b)
	src := filepath.Join(b.TempDir(), "source.raw")
	benchSource(b, src, size)
	warm(b, src)
	out := b.TempDir()
	if _, err := os.Stat("/dev/shm"); err == nil {
		out = "/dev/shm"
	}
	dst := filepath.Join(out, fmt.Sprintf("vmmkit-bench-%d.vhd", os.Getpid()))
	defer os.Remove(dst)
	b.SetBytes(size)
	for b.Loop() {
		os.Remove(dst)
		if err := Convert(context.Background(), dst, src, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func command(name string, args ...string) func() error {
	return func() error {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", name, err, out)
		}
		return nil
	}
}

// harness runs commands several times each and compares their timings.
type harness struct {
	b    *testing.B
	reps int
	size int64 // bytes of source, for throughput
	rows []row
}

type row struct {
	name        string
	min, median time.Duration
}

// run times f (after prepare, untimed) and returns the row's index.
func (h *harness) run(name string, prepare func(), f func() error) int {
	mn, md := timing(h.b, h.reps, prepare, f)
	h.rows = append(h.rows, row{name, mn, md})
	return len(h.rows) - 1
}

func (h *harness) table(title string) {
	mbs := func(d time.Duration) float64 { return float64(h.size) / d.Seconds() / 1e6 }
	fmt.Printf("%s; %d runs each\n", title, h.reps)
	fmt.Printf("%-40s %10s %10s %12s %12s\n", "command", "min", "median", "MB/s (best)", "MB/s (med)")
	for _, r := range h.rows {
		fmt.Printf("%-40s %10v %10v %12.0f %12.0f\n", r.name, r.min.Round(time.Millisecond), r.median.Round(time.Millisecond), mbs(r.min), mbs(r.median))
	}
}

// ratio prints and returns how many times faster row x is than the anchor.
func (h *harness) ratio(label string, anchor, x int, target string) float64 {
	a, r := h.rows[anchor], h.rows[x]
	best := a.min.Seconds() / r.min.Seconds()
	fmt.Printf("ratio %-48s best %.2f  median %.2f  (target %s)\n", label, best, a.median.Seconds()/r.median.Seconds(), target)
	return best
}

// benchFiles makes the source of size bytes (by gen) warm in page cache, on
// the file system of the temporary directory unless VMM_BENCH_SRC_DIR says
// otherwise, and an output directory on tmpfs (/dev/shm) when there is one.
func benchFiles(b *testing.B, size int64, gen func(testing.TB, string, int64)) (src, outDir string) {
	out := "/dev/shm"
	if _, err := os.Stat(out); err != nil {
		out = b.TempDir()
	}
	outDir, err := os.MkdirTemp(out, "vmmkit-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(outDir) })
	srcDir := b.TempDir()
	if d := os.Getenv("VMM_BENCH_SRC_DIR"); d != "" {
		srcDir = d
	}
	src = filepath.Join(srcDir, fmt.Sprintf("vmmkit-bench-source-%d.raw", os.Getpid()))
	b.Cleanup(func() { os.Remove(src) })
	gen(b, src, size)
	warm(b, src)
	return src, outDir
}

// catTo runs cat of name into /dev/null.
func catTo(name string) func() error {
	return func() error {
		cmd := exec.Command("cat", name)
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer devnull.Close()
		cmd.Stdout = devnull
		return cmd.Run()
	}
}

// cpSparse runs cp --sparse=always and flushes the copy.
func cpSparse(src, dst string) func() error {
	return func() error {
		if err := command("cp", "--sparse=always", src, dst)(); err != nil {
			return err
		}
		return command("sync", "--data", dst)()
	}
}

func convertTo(dst, src string) func() error {
	return func() error { return Convert(context.Background(), dst, src, nil) }
}

// BenchmarkConvertVsTools measures, in one run on the same source warm in
// page cache, the throughput of reading the source (cat), qemu-img convert
// -O vpc, vmmkit's Convert to a dynamic VHD, cp --sparse=always, and
// reading the dynamic VHD back, and reports ratios to cat and qemu-img.
// Outputs go to /dev/shm and are flushed with fdatasync in the timed region.
//
//	VMM_BENCH_SIZE=2147483648 go test ./vhd -run '^$' -bench ConvertVsTools -benchtime 1x
func BenchmarkConvertVsTools(b *testing.B) {
	qemu := testenv.Tool(b, "VMM_TEST_QEMU_IMG", "qemu-img")
	size := benchSize(b)
	src, outDir := benchFiles(b, size, benchSource)
	dst := filepath.Join(outDir, "out.vhd")
	rm := func() { os.Remove(dst) }
	cpDst := filepath.Join(outDir, "cp.raw")
	for b.Loop() {
		h := &harness{b: b, reps: 5, size: size}
		cat := h.run("cat (page-cache read)", nil, catTo(src))
		q := h.run("qemu-img convert -O vpc", rm, command(qemu, "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic", src, dst))
		v := h.run("vmmkit Convert (dynamic VHD)", rm, convertTo(dst, src))
		cp := h.run("cp --sparse=always", func() { os.Remove(cpDst) }, cpSparse(src, cpDst))
		os.Remove(cpDst)
		// dst now holds vmmkit's dynamic VHD of the source.
		catVHD := h.run("cat of that VHD file", nil, catTo(dst))
		rd := h.run("vmmkit read dynamic VHD", nil, readWhole(dst))
		h.table(fmt.Sprintf("source: %d MiB mixed in %s, warm in page cache; outputs in %s", size>>20, filepath.Dir(src), outDir))
		b.ReportMetric(h.ratio("vmmkit convert / cat throughput", cat, v, ">= 0.6"), "convert/cat")
		b.ReportMetric(h.ratio("vmmkit convert / qemu-img convert", q, v, ">= 1.5"), "convert/qemu")
		h.ratio("vmmkit convert / cp --sparse=always", cp, v, "> 1")
		b.ReportMetric(h.ratio("vmmkit read dynamic VHD / cat", cat, rd, ">= 0.8"), "read/cat")
		h.ratio("vmmkit read dynamic VHD / cat of the VHD file", catVHD, rd, "(kernel cost of the same file)")
	}
}

// readWhole reads the image name from start to end, 128 KiB at a time as
// cat does.
func readWhole(name string) func() error {
	buf := make([]byte, 128<<10)
	return func() error {
		d, err := Open(name)
		if err != nil {
			return err
		}
		defer d.Close()
		for off := int64(0); off < d.Size(); off += int64(len(buf)) {
			if _, err := d.ReadAt(buf, off); err != nil && off+int64(len(buf)) < d.Size() {
				return err
			}
		}
		return nil
	}
}

// halfSource writes a source whose 2 MiB units are random or zero, half
// and half: an image of it is about 50 % allocated.
func halfSource(tb testing.TB, name string, size int64) {
	tb.Helper()
	f, err := os.Create(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(7, 7))
	rnd := rand.NewChaCha8([32]byte{2})
	buf := make([]byte, 2<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		clear(buf)
		if r.IntN(2) == 0 {
			rnd.Read(buf)
		}
		if _, err := f.Write(buf[:min(int64(len(buf)), size-off)]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkConvertVHDXVsTools measures raw to dynamic VHDX against cat,
// qemu-img and cp on the mixed source, and VHD to VHDX and VHDX to VHD of a
// 50 %-allocated image against qemu-img, all in one run.
//
//	go test ./vhd -run '^$' -bench ConvertVHDXVsTools -benchtime 1x
func BenchmarkConvertVHDXVsTools(b *testing.B) {
	qemu := testenv.Tool(b, "VMM_TEST_QEMU_IMG", "qemu-img")
	size := benchSize(b)
	src, outDir := benchFiles(b, size, benchSource)
	dst := filepath.Join(outDir, "out.vhdx")
	rm := func() { os.Remove(dst) }
	cpDst := filepath.Join(outDir, "cp.raw")

	half, _ := benchFiles(b, size, halfSource)
	halfVHD := filepath.Join(outDir, "half.vhd")
	halfVHDX := filepath.Join(outDir, "half.vhdx")
	if err := Convert(context.Background(), halfVHD, half, nil); err != nil {
		b.Fatal(err)
	}
	if err := Convert(context.Background(), halfVHDX, half, nil); err != nil {
		b.Fatal(err)
	}
	warm(b, halfVHD)
	warm(b, halfVHDX)
	out2 := filepath.Join(outDir, "conv.out")
	rm2 := func() { os.Remove(out2 + ".vhdx"); os.Remove(out2 + ".vhd") }

	for b.Loop() {
		h := &harness{b: b, reps: 5, size: size}
		cat := h.run("cat (page-cache read)", nil, catTo(src))
		q := h.run("qemu-img convert -O vhdx", rm, command(qemu, "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic", src, dst))
		v := h.run("vmmkit Convert (dynamic VHDX)", rm, convertTo(dst, src))
		cp := h.run("cp --sparse=always", func() { os.Remove(cpDst) }, cpSparse(src, cpDst))
		os.Remove(cpDst)
		qx := h.run("qemu-img convert VHD -> VHDX (50 %)", rm2, command(qemu, "convert", "-f", "vpc", "-O", "vhdx", halfVHD, out2+".vhdx"))
		vx := h.run("vmmkit Convert VHD -> VHDX (50 %)", rm2, convertTo(out2+".vhdx", halfVHD))
		qv := h.run("qemu-img convert VHDX -> VHD (50 %)", rm2, command(qemu, "convert", "-f", "vhdx", "-O", "vpc", halfVHDX, out2+".vhd"))
		vv := h.run("vmmkit Convert VHDX -> VHD (50 %)", rm2, convertTo(out2+".vhd", halfVHDX))
		h.table(fmt.Sprintf("sources: %d MiB (mixed; and 50 %% allocated) in %s, warm; outputs in %s", size>>20, filepath.Dir(src), outDir))
		b.ReportMetric(h.ratio("raw->VHDX: vmmkit / cat throughput", cat, v, ">= 0.6"), "vhdx/cat")
		b.ReportMetric(h.ratio("raw->VHDX: vmmkit / qemu-img", q, v, ">= 1.5"), "vhdx/qemu")
		h.ratio("raw->VHDX: vmmkit / cp --sparse=always", cp, v, "> 1")
		b.ReportMetric(h.ratio("VHD->VHDX: vmmkit / qemu-img", qx, vx, ">= 2"), "vhd2vhdx/qemu")
		b.ReportMetric(h.ratio("VHDX->VHD: vmmkit / qemu-img", qv, vv, ">= 2"), "vhdx2vhd/qemu")
	}
}

// BenchmarkReadDynamic reads back, 128 KiB at a time as cat does, the
// dynamic VHD that Convert makes of the mixed source.
func BenchmarkReadDynamic(b *testing.B) {
	size := benchSize(b)
	src := filepath.Join(b.TempDir(), "source.raw")
	benchSource(b, src, size)
	out := b.TempDir()
	if _, err := os.Stat("/dev/shm"); err == nil {
		out = "/dev/shm"
	}
	dst := filepath.Join(out, fmt.Sprintf("vmmkit-bench-read-%d.vhd", os.Getpid()))
	defer os.Remove(dst)
	if err := Convert(context.Background(), dst, src, nil); err != nil {
		b.Fatal(err)
	}
	os.Remove(src)
	d, err := Open(dst)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	buf := make([]byte, 128<<10)
	b.SetBytes(size)
	for b.Loop() {
		for off := int64(0); off < d.Size(); off += int64(len(buf)) {
			if _, err := d.ReadAt(buf, off); err != nil && off+int64(len(buf)) < d.Size() {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkMergeVsRead merges a child that changed 10 % of a parent made
// from the mixed source, and compares the time with reading the child's
// own data, in one run (target: merge ≤ 2× the read).
//
//	go test ./vhd -run '^$' -bench MergeVsRead -benchtime 1x
func BenchmarkMergeVsRead(b *testing.B) {
	size := benchSize(b)
	src, outDir := benchFiles(b, size, benchSource)
	for b.Loop() {
		for _, ext := range []string{".vhd", ".vhdx"} {
			mergeVsRead(b, src, outDir, ext, size)
		}
	}
}

func mergeVsRead(b *testing.B, src, outDir, ext string, size int64) {
	parent := filepath.Join(outDir, "parent"+ext)
	child := filepath.Join(outDir, "child"+ext)
	pristine := filepath.Join(outDir, "pristine"+ext)
	os.Remove(pristine)
	if err := Convert(context.Background(), pristine, src, nil); err != nil {
		b.Fatal(err)
	}
	// The child: 10 % of the disk rewritten, in 1 MiB pieces.
	prepare := func() {
		os.Remove(parent)
		os.Remove(child)
		if err := command("cp", "--sparse=always", pristine, parent)(); err != nil {
			b.Fatal(err)
		}
		c, err := Create(child, 0, &CreateOptions{Parent: parent})
		if err != nil {
			b.Fatal(err)
		}
		r := rand.New(rand.NewPCG(3, 3))
		buf := make([]byte, 1<<20)
		for range size / 10 / int64(len(buf)) {
			rand.NewChaCha8([32]byte{byte(r.Uint32())}).Read(buf)
			if _, err := c.WriteAt(buf, r.Int64N(size/int64(len(buf)))*int64(len(buf))); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		warm(b, child)
	}
	readOwn := func() error {
		c, err := Open(child)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		for _, e := range c.ownExtents() {
			for off := e.Offset; off < e.End(); off += int64(len(buf)) {
				n := min(int64(len(buf)), e.End()-off)
				if _, err := c.ReadAt(buf[:n], off); err != nil && err != io.EOF {
					return err
				}
			}
		}
		return nil
	}
	h := &harness{b: b, reps: 3, size: size / 10}
	rd := h.run("read the child's own data "+ext, prepare, readOwn)
	mg := h.run("vmmkit Merge "+ext, prepare, func() error { return Merge(context.Background(), child, nil) })
	h.table(fmt.Sprintf("%s parent of %d MiB (mixed), child changed 10 %%; in %s", ext, size>>20, outDir))
	ratio := h.rows[mg].min.Seconds() / h.rows[rd].min.Seconds()
	b.ReportMetric(ratio, "merge/read"+ext)
	fmt.Printf("ratio %-48s best %.2f  (target <= 2)\n", "merge time / read time "+ext, ratio)
}
