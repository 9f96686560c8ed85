package vhd

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmmkit/vmmkit/internal/benchkit"
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

// BenchmarkConvert is vmmkit's raw to dynamic VHD conversion alone, for
// profiling; BenchmarkConvertVsTools compares it with other tools.
func BenchmarkConvert(b *testing.B) {
	size := benchkit.Size(b, 2<<30)
	src := filepath.Join(b.TempDir(), "source.raw")
	benchSource(b, src, size)
	benchkit.Warm(b, src)
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

// benchFiles makes the source of size bytes (by gen) warm in page cache, on
// the file system of the temporary directory unless VMM_BENCH_SRC_DIR says
// otherwise, and an output directory on tmpfs (/dev/shm) when there is one.
func benchFiles(b *testing.B, size int64, gen func(testing.TB, string, int64)) (src, outDir string) {
	outDir = benchkit.OutDir(b)
	src = benchkit.SrcPath(b, "source.raw")
	gen(b, src, size)
	benchkit.Warm(b, src)
	return src, outDir
}

// cpSparse runs cp --sparse=always and flushes the copy.
func cpSparse(src, dst string) func() error {
	return func() error {
		if err := benchkit.Command("cp", "--sparse=always", src, dst)(); err != nil {
			return err
		}
		return benchkit.Command("sync", "--data", dst)()
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
	size := benchkit.Size(b, 2<<30)
	src, outDir := benchFiles(b, size, benchSource)
	dst := filepath.Join(outDir, "out.vhd")
	rm := func() { os.Remove(dst) }
	cpDst := filepath.Join(outDir, "cp.raw")
	for b.Loop() {
		h := &benchkit.Harness{TB: b, Reps: 5, Size: size}
		cat := h.Run("cat (page-cache read)", nil, benchkit.Cat(src))
		q := h.Run("qemu-img convert -O vpc", rm, benchkit.Command(qemu, "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic", src, dst))
		v := h.Run("vmmkit Convert (dynamic VHD)", rm, convertTo(dst, src))
		cp := h.Run("cp --sparse=always", func() { os.Remove(cpDst) }, cpSparse(src, cpDst))
		os.Remove(cpDst)
		// dst now holds vmmkit's dynamic VHD of the source.
		catVHD := h.Run("cat of that VHD file", nil, benchkit.Cat(dst))
		rd := h.Run("vmmkit read dynamic VHD", nil, readWhole(dst))
		h.Table(fmt.Sprintf("source: %d MiB mixed in %s, warm in page cache; outputs in %s", size>>20, filepath.Dir(src), outDir))
		b.ReportMetric(h.Ratio("vmmkit convert / cat throughput", cat, v, ">= 0.6"), "convert/cat")
		b.ReportMetric(h.Ratio("vmmkit convert / qemu-img convert", q, v, ">= 1.5"), "convert/qemu")
		h.Ratio("vmmkit convert / cp --sparse=always", cp, v, "> 1")
		b.ReportMetric(h.Ratio("vmmkit read dynamic VHD / cat", cat, rd, ">= 0.8"), "read/cat")
		h.Ratio("vmmkit read dynamic VHD / cat of the VHD file", catVHD, rd, "(kernel cost of the same file)")
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
	size := benchkit.Size(b, 2<<30)
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
	benchkit.Warm(b, halfVHD)
	benchkit.Warm(b, halfVHDX)
	out2 := filepath.Join(outDir, "conv.out")
	rm2 := func() { os.Remove(out2 + ".vhdx"); os.Remove(out2 + ".vhd") }

	for b.Loop() {
		h := &benchkit.Harness{TB: b, Reps: 5, Size: size}
		cat := h.Run("cat (page-cache read)", nil, benchkit.Cat(src))
		q := h.Run("qemu-img convert -O vhdx", rm, benchkit.Command(qemu, "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic", src, dst))
		v := h.Run("vmmkit Convert (dynamic VHDX)", rm, convertTo(dst, src))
		cp := h.Run("cp --sparse=always", func() { os.Remove(cpDst) }, cpSparse(src, cpDst))
		os.Remove(cpDst)
		qx := h.Run("qemu-img convert VHD -> VHDX (50 %)", rm2, benchkit.Command(qemu, "convert", "-f", "vpc", "-O", "vhdx", halfVHD, out2+".vhdx"))
		vx := h.Run("vmmkit Convert VHD -> VHDX (50 %)", rm2, convertTo(out2+".vhdx", halfVHD))
		qv := h.Run("qemu-img convert VHDX -> VHD (50 %)", rm2, benchkit.Command(qemu, "convert", "-f", "vhdx", "-O", "vpc", halfVHDX, out2+".vhd"))
		vv := h.Run("vmmkit Convert VHDX -> VHD (50 %)", rm2, convertTo(out2+".vhd", halfVHDX))
		h.Table(fmt.Sprintf("sources: %d MiB (mixed; and 50 %% allocated) in %s, warm; outputs in %s", size>>20, filepath.Dir(src), outDir))
		b.ReportMetric(h.Ratio("raw->VHDX: vmmkit / cat throughput", cat, v, ">= 0.6"), "vhdx/cat")
		b.ReportMetric(h.Ratio("raw->VHDX: vmmkit / qemu-img", q, v, ">= 1.5"), "vhdx/qemu")
		h.Ratio("raw->VHDX: vmmkit / cp --sparse=always", cp, v, "> 1")
		b.ReportMetric(h.Ratio("VHD->VHDX: vmmkit / qemu-img", qx, vx, ">= 2"), "vhd2vhdx/qemu")
		b.ReportMetric(h.Ratio("VHDX->VHD: vmmkit / qemu-img", qv, vv, ">= 2"), "vhdx2vhd/qemu")
	}
}

// BenchmarkReadDynamic reads back, 128 KiB at a time as cat does, the
// dynamic VHD that Convert makes of the mixed source.
func BenchmarkReadDynamic(b *testing.B) {
	size := benchkit.Size(b, 2<<30)
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
	size := benchkit.Size(b, 2<<30)
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
		if err := benchkit.Command("cp", "--sparse=always", pristine, parent)(); err != nil {
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
		benchkit.Warm(b, child)
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
	h := &benchkit.Harness{TB: b, Reps: 3, Size: size / 10}
	rd := h.Run("read the child's own data "+ext, prepare, readOwn)
	mg := h.Run("vmmkit Merge "+ext, prepare, func() error { return Merge(context.Background(), child, nil) })
	h.Table(fmt.Sprintf("%s parent of %d MiB (mixed), child changed 10 %%; in %s", ext, size>>20, outDir))
	ratio := h.Rows[mg].Min.Seconds() / h.Rows[rd].Min.Seconds()
	b.ReportMetric(ratio, "merge/read"+ext)
	fmt.Printf("ratio %-48s best %.2f  (target <= 2)\n", "merge time / read time "+ext, ratio)
}
