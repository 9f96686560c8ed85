package library

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmmkit/vmmkit/internal/benchkit"
)

// BenchmarkCopy2GiB copies a 2 GiB file of VHD-like content between two
// DirShares in one directory tree (and with CopyToFile to a path beside
// them), and times cp of the same file on the same file system in the
// same run, the source warm in page cache and a fresh destination each
// time. Copy checks every chunk against the manifest and syncs the file
// before it appears, so cp is timed both alone and followed by an fsync of
// its copy. It then interrupts a Copy
// at 50 % of the bytes, resumes it, and reports the bytes the resumed run
// wrote, and those written over both runs, against the file's size.
//
// The files go to VMM_BENCH_DIR, or to the test's temporary directory;
// VMM_BENCH_SIZE changes the size.
//
//	VMM_BENCH_DIR=/var/tmp go test ./library -run '^$' -bench Copy2GiB -benchtime 1x
func BenchmarkCopy2GiB(b *testing.B) {
	ctx := context.Background()
	size := benchkit.Size(b, 2<<30)
	base := b.TempDir()
	if d := os.Getenv("VMM_BENCH_DIR"); d != "" {
		var err error
		if base, err = os.MkdirTemp(d, "vmmkit-bench-copy-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(base) })
	}
	srcDir, dstDir := filepath.Join(base, "src"), filepath.Join(base, "dst")
	for _, d := range []string{srcDir, dstDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	srcPath := filepath.Join(srcDir, "disk.vhd")
	vhdLike(b, srcPath, size)
	f, err := os.Open(srcPath)
	if err != nil {
		b.Fatal(err)
	}
	m, err := Hash(ctx, f, size, nil)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	benchkit.Warm(b, srcPath)
	src, err := NewDirShare("src", "a", srcDir)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	ds, err := NewDirShare("dst", "a", dstDir)
	if err != nil {
		b.Fatal(err)
	}
	defer ds.Close()
	dst := &countingShare{Share: ds}

	cpPath := filepath.Join(dstDir, "cp.vhd")
	dstPath := filepath.Join(dstDir, "disk.vhd")
	// Each run starts with no destination and no dirty pages of the run
	// before, untimed.
	fresh := func() {
		os.Remove(cpPath)
		os.Remove(dstPath)
		os.RemoveAll(filepath.Join(dstDir, uploadsDir))
		exec.Command("sync").Run()
	}
	cp := benchkit.Command("cp", srcPath, cpPath)
	cpSync := func() error {
		if err := cp(); err != nil {
			return err
		}
		f, err := os.OpenFile(cpPath, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	}
	copyShare := func() error { return Copy(ctx, src, "disk.vhd", m, dst, "disk.vhd", nil) }
	copyFile := func() error { return CopyToFile(ctx, src, "disk.vhd", m, dstPath, nil) }

	for b.Loop() {
		h := &benchkit.Harness{TB: b, Reps: 3, Size: size}
		c := h.Run("cp", fresh, cp)
		cs := h.Run("cp, then fsync of the copy", fresh, cpSync)
		v := h.Run("vmmkit Copy (verified, synced, 4 workers)", fresh, copyShare)
		vf := h.Run("vmmkit CopyToFile (verified, synced, 4 workers)", fresh, copyFile)
		h.Table(fmt.Sprintf("%d MiB of VHD-like content in %s, warm in page cache", size>>20, base))
		b.ReportMetric(h.Ratio("cp / vmmkit Copy", c, v, ">= 0.8"), "cp/copy")
		b.ReportMetric(h.Ratio("cp+fsync / vmmkit Copy", cs, v, ">= 0.8"), "cpsync/copy")
		h.Ratio("cp+fsync / vmmkit CopyToFile", cs, vf, ">= 0.8")

		// Resume: cancel once half the bytes are in place, then restart.
		fresh()
		var written atomic.Int64
		dst.beforeWrite = nil
		dst.written = &written
		cctx, cancel := context.WithCancel(ctx)
		start := time.Now()
		err := Copy(cctx, src, "disk.vhd", m, dst, "disk.vhd", cancelAtHalf(cancel, size, 0))
		cancel()
		if !errors.Is(err, context.Canceled) {
			b.Fatalf("interrupted copy: %v", err)
		}
		first := written.Load()
		if err := Copy(ctx, src, "disk.vhd", m, dst, "disk.vhd", nil); err != nil {
			b.Fatal(err)
		}
		total := written.Load()
		dst.written = nil
		resumed := float64(total-first) / float64(size)
		fmt.Printf("resume after an interruption at 50 %%: %d MiB then %d MiB written, %v in all\n", first>>20, (total-first)>>20, time.Since(start).Round(time.Millisecond))
		fmt.Printf("ratio %-48s %.2f  (target <= 0.55)\n", "bytes the resumed run wrote / file size", resumed)
		fmt.Printf("ratio %-48s %.2f  (1 when nothing is written twice)\n", "bytes written over both runs / file size", float64(total)/float64(size))
		b.ReportMetric(resumed, "resumed-bytes/size")
	}
	fresh()
}

// vhdLike writes size bytes that look like a used virtual disk: 2 MiB
// blocks that are empty, full of random data, or random sectors among
// zeros.
func vhdLike(tb testing.TB, name string, size int64) {
	tb.Helper()
	f, err := os.Create(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(11, 13))
	rnd := rand.NewChaCha8([32]byte{5})
	buf := make([]byte, 2<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		clear(buf)
		switch k := r.IntN(10); {
		case k < 3: // empty
		case k < 8:
			rnd.Read(buf)
		default:
			for s := 0; s < len(buf); s += 4096 {
				if r.IntN(4) == 0 {
					rnd.Read(buf[s : s+4096])
				}
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
