package vhd

import (
	"context"
	"fmt"
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
	reps := 5
	out := "/dev/shm"
	if _, err := os.Stat(out); err != nil {
		out = b.TempDir()
	}
	outDir, err := os.MkdirTemp(out, "vmmkit-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(outDir)
	// The source lives on the file system of the temporary directory
	// (VMM_BENCH_SRC_DIR overrides), warm in its page cache.
	srcDir := b.TempDir()
	if d := os.Getenv("VMM_BENCH_SRC_DIR"); d != "" {
		srcDir = d
	}
	src := filepath.Join(srcDir, fmt.Sprintf("vmmkit-bench-source-%d.raw", os.Getpid()))
	defer os.Remove(src)
	benchSource(b, src, size)
	warm(b, src)
	dst := filepath.Join(outDir, "out.vhd")
	rm := func() { os.Remove(dst) }

	for b.Loop() {
		type result struct {
			name        string
			min, median time.Duration
		}
		var results []result
		add := func(name string, prepare func(), f func() error) {
			mn, md := timing(b, reps, prepare, f)
			results = append(results, result{name, mn, md})
		}
		add("cat (page-cache read)", nil, func() error {
			cmd := exec.Command("cat", src)
			devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			defer devnull.Close()
			cmd.Stdout = devnull
			return cmd.Run()
		})
		add("qemu-img convert -O vpc", rm, command(qemu, "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic", src, dst))
		add("vmmkit Convert (dynamic VHD)", rm, func() error { return Convert(context.Background(), dst, src, nil) })
		cpDst := filepath.Join(outDir, "cp.raw")
		add("cp --sparse=always", func() { os.Remove(cpDst) }, func() error {
			if err := command("cp", "--sparse=always", src, cpDst)(); err != nil {
				return err
			}
			return command("sync", "--data", cpDst)()
		})
		os.Remove(cpDst)
		// dst now holds vmmkit's dynamic VHD of the source.
		add("cat of that VHD file", nil, func() error {
			cmd := exec.Command("cat", dst)
			devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			defer devnull.Close()
			cmd.Stdout = devnull
			return cmd.Run()
		})
		buf := make([]byte, 128<<10) // cat's buffer size
		add("vmmkit read dynamic VHD", nil, func() error {
			d, err := Open(dst)
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
		})

		mbs := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
		fmt.Printf("source: %d MiB mixed in %s, warm in page cache; outputs in %s; %d runs each\n", size>>20, filepath.Dir(src), out, reps)
		fmt.Printf("%-32s %10s %10s %12s %12s\n", "command", "min", "median", "MB/s (best)", "MB/s (med)")
		for _, r := range results {
			fmt.Printf("%-32s %10v %10v %12.0f %12.0f\n", r.name, r.min.Round(time.Millisecond), r.median.Round(time.Millisecond), mbs(r.min), mbs(r.median))
		}
		get := func(i int) (time.Duration, time.Duration) { return results[i].min, results[i].median }
		catMin, catMed := get(0)
		qMin, qMed := get(1)
		vMin, vMed := get(2)
		cpMin, cpMed := get(3)
		fMin, fMed := get(4)
		rMin, rMed := get(5)
		ratio := func(name string, anchor, x time.Duration, anchorMed, xMed time.Duration, target string) {
			fmt.Printf("ratio %-40s best %.2f  median %.2f  (target %s)\n", name, anchor.Seconds()/x.Seconds(), anchorMed.Seconds()/xMed.Seconds(), target)
		}
		ratio("vmmkit convert / cat throughput", catMin, vMin, catMed, vMed, ">= 0.6")
		ratio("vmmkit convert / qemu-img convert", qMin, vMin, qMed, vMed, ">= 1.5")
		ratio("vmmkit convert / cp --sparse=always", cpMin, vMin, cpMed, vMed, "> 1")
		ratio("vmmkit read dynamic VHD / cat", catMin, rMin, catMed, rMed, ">= 0.8")
		ratio("vmmkit read dynamic VHD / cat of the VHD file", fMin, rMin, fMed, rMed, "(kernel cost of the same file)")
		b.ReportMetric(catMin.Seconds()/vMin.Seconds(), "convert/cat")
		b.ReportMetric(qMin.Seconds()/vMin.Seconds(), "convert/qemu")
		b.ReportMetric(catMin.Seconds()/rMin.Seconds(), "read/cat")
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
