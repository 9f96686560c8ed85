package p2v

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/vmmkit/vmmkit/internal/benchkit"
	"github.com/vmmkit/vmmkit/internal/testenv"
)

// benchExt4 makes the benchmark source at path: an ext4 file system of size
// bytes whose files fill half of it, laid over random data, so that the free
// half holds what deleted files leave behind: not zeros. It returns the
// byte ranges of the files' data.
func benchExt4(b *testing.B, path string, size int64) []Range {
	mkfs := testenv.Tool(b, "VMM_TEST_MKFS_EXT4", "mkfs.ext4")
	debugfs := testenv.Tool(b, "VMM_TEST_DEBUGFS", "debugfs")
	rnd := rand.NewChaCha8([32]byte{9})
	buf := make([]byte, 4<<20)
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		rnd.Read(buf)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()

	dir := b.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	var names []string
	for used, i := int64(0), 0; used < size/2-size/50; i++ {
		n := min(int64(1+r.IntN(64))<<20, size/2-size/50-used)
		name := fmt.Sprintf("f%03d", i)
		g, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		for left := n; left > 0; left -= int64(len(buf)) {
			rnd.Read(buf)
			if _, err := g.Write(buf[:min(left, int64(len(buf)))]); err != nil {
				b.Fatal(err)
			}
		}
		g.Close()
		used += n
		names = append(names, name)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-E", "nodiscard", "-d", dir, path).CombinedOutput(); err != nil {
		b.Fatalf("mkfs: %v: %s", err, out)
	}
	// The files' blocks, from debugfs, for the incremental benchmark.
	var cmds strings.Builder
	for _, n := range names {
		fmt.Fprintf(&cmds, "blocks /%s\n", n)
	}
	cmdFile := filepath.Join(dir, "cmds")
	os.WriteFile(cmdFile, []byte(cmds.String()), 0o644)
	out, err := exec.Command(debugfs, "-f", cmdFile, path).Output()
	if err != nil {
		b.Fatalf("debugfs: %v", err)
	}
	var data []Range
	for _, w := range strings.Fields(string(out)) {
		if blk, err := strconv.ParseInt(w, 10, 64); err == nil {
			data = append(data, Range{Off: blk * 4096, Len: 4096})
		}
	}
	return mergeRanges(data)
}

// churnFiles overwrites about frac of the disk inside the files' data, in
// 1 MiB pieces, directly in the image (the file system stays consistent;
// only file contents change). It returns the bytes changed.
func churnFiles(b *testing.B, path string, data []Range, size int64, frac float64, seed uint64) int64 {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var pieces []int64
	for _, d := range data {
		for off := (d.Off + MiB - 1) &^ (MiB - 1); off+MiB <= d.End(); off += MiB {
			pieces = append(pieces, off)
		}
	}
	r := rand.New(rand.NewPCG(seed, 3))
	rnd := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, MiB)
	want := int64(float64(size) * frac)
	var done int64
	for done < want && len(pieces) > 0 {
		i := r.IntN(len(pieces))
		rnd.Read(buf)
		if _, err := f.WriteAt(buf, pieces[i]); err != nil {
			b.Fatal(err)
		}
		pieces[i] = pieces[len(pieces)-1]
		pieces = pieces[:len(pieces)-1]
		done += MiB
	}
	return done
}

func captureTo(src, dst string, o *Options) func() error {
	return func() error {
		dev, err := OpenDevice(src)
		if err != nil {
			return err
		}
		defer dev.Close()
		_, err = Capture(context.Background(), dev, dst, o)
		return err
	}
}

func removeImage(p string) func() {
	return func() {
		os.Remove(p)
		os.Remove(ManifestPath(p))
		os.Remove(journalPath(p))
	}
}

// BenchmarkCaptureVsTools measures, in one run on the same source warm in
// page cache: cat of the source, qemu-img convert -O vhdx of it, a full
// vmmkit capture, and after 1 % of the disk changed, an incremental vmmkit
// pass against rsync --inplace --no-whole-file onto the previous raw copy.
// Outputs go to /dev/shm; every tool's output is flushed inside the timed
// region (qemu-img and Capture sync; rsync is followed by sync --data).
//
//	VMM_BENCH_SIZE=4294967296 go test ./p2v -run '^$' -bench CaptureVsTools -benchtime 1x
func BenchmarkCaptureVsTools(b *testing.B) {
	qemu := testenv.Tool(b, "VMM_TEST_QEMU_IMG", "qemu-img")
	rsync := testenv.Tool(b, "VMM_TEST_RSYNC", "rsync")
	size := benchkit.Size(b, 4<<30)
	src := benchkit.SrcPath(b, "ext4.raw")
	data := benchExt4(b, src, size)
	benchkit.Warm(b, src)
	out := benchkit.OutDir(b)
	dev, err := OpenDevice(src)
	if err != nil {
		b.Fatal(err)
	}
	layout, err := Analyze(dev, size)
	dev.Close()
	if err != nil {
		b.Fatal(err)
	}
	used := layout.Used()

	for b.Loop() {
		h := &benchkit.Harness{TB: b, Reps: 5, Size: size}
		qdst, vdst := filepath.Join(out, "qemu.vhdx"), filepath.Join(out, "full.vhdx")
		cat := h.Run("cat (page-cache read of the source)", nil, benchkit.Cat(src))
		v := h.Run("vmmkit Capture (full, VHDX)", removeImage(vdst), captureTo(src, vdst, nil))
		// The floor of any tool here: writing the used bytes into new
		// tmpfs pages, which dd does with nothing else to do.
		ddDst := filepath.Join(out, "dd.raw")
		floor := h.Run(fmt.Sprintf("dd of %d MiB (the used size) into a new file", used>>20), func() { os.Remove(ddDst) },
			benchkit.Command("dd", "if="+src, "of="+ddDst, "bs=1M", fmt.Sprintf("count=%d", used>>20), "conv=fdatasync", "status=none"))
		os.Remove(ddDst)
		q := h.Run("qemu-img convert -O vhdx", func() { os.Remove(qdst) },
			benchkit.Command(qemu, "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic", src, qdst))
		os.Remove(qdst)
		st, err := os.Stat(vdst)
		if err != nil {
			b.Fatal(err)
		}
		imageSize := allocatedBytes(st)

		// 1 % of the disk changes; the previous raw copy for rsync is the
		// source before the change.
		prevRaw := filepath.Join(out, "prev.raw")
		pristine := benchkit.SrcPath(b, "pristine.raw")
		if err := benchkit.Command("cp", "--sparse=never", src, pristine)(); err != nil {
			b.Fatal(err)
		}
		changed := churnFiles(b, src, data, size, 0.01, 77)
		benchkit.Warm(b, src)
		child := filepath.Join(out, "child.vhdx")
		inc := h.Run("vmmkit Capture (incremental child, 1 % changed)", removeImage(child), captureTo(src, child, &Options{Previous: vdst}))
		incTime := h.Rows[inc].Min
		rs := h.Run("rsync --inplace --no-whole-file + sync", func() {
			if err := benchkit.Command("cp", "--sparse=never", pristine, prevRaw)(); err != nil {
				b.Fatal(err)
			}
		}, func() error {
			if err := benchkit.Command(rsync, "--inplace", "--no-whole-file", src, prevRaw)(); err != nil {
				return err
			}
			return benchkit.Command("sync", "--data", prevRaw)()
		})
		os.Remove(prevRaw)

		h.Table(fmt.Sprintf("source: %d MiB ext4, %d MiB used (free space holds old data), in %s, warm; outputs in %s", size>>20, used>>20, filepath.Dir(src), out))
		b.ReportMetric(h.Ratio("full capture: vmmkit / qemu-img", q, v, ">= 3"), "full/qemu")
		h.Ratio("full capture: vmmkit / dd of the used size", floor, v, "(the write floor)")
		h.Ratio("qemu-img / dd of the used size", floor, q, "(the write floor)")
		imgRatio := float64(imageSize) / float64(used)
		fmt.Printf("ratio %-48s %.3f  (image %d MiB, used %d MiB; target <= 1.05)\n", "image size / used size", imgRatio, imageSize>>20, used>>20)
		b.ReportMetric(imgRatio, "image/used")
		fmt.Printf("changed %d MiB (%.1f %% of the disk) in 1 MiB pieces of file data\n", changed>>20, 100*float64(changed)/float64(size))
		b.ReportMetric(h.Ratio("incremental: vmmkit / cat throughput", cat, inc, ">= 0.6"), "incr/cat")
		b.ReportMetric(h.Ratio("incremental: vmmkit / rsync", rs, inc, ">= 10"), "incr/rsync")
		_ = incTime
	}
}

// BenchmarkFreezeWindow captures a mounted ext4 file system (a loop device
// over the benchmark source) while a writer rewrites 1 % of the disk per
// second, converging live and freezing for the last pass, and reports how
// long the file system stayed frozen. Needs root.
//
//	VMM_BENCH_SIZE=4294967296 go test ./p2v -run '^$' -bench FreezeWindow -benchtime 1x
func BenchmarkFreezeWindow(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for a loop device and mount")
	}
	losetup := testenv.Tool(b, "VMM_TEST_LOSETUP", "losetup")
	size := benchkit.Size(b, 4<<30)
	src := benchkit.SrcPath(b, "ext4.raw")
	benchExt4(b, src, size)
	loopOut, err := exec.Command(losetup, "--find", "--show", src).CombinedOutput()
	if err != nil {
		b.Skipf("no loop device: %v: %s", err, loopOut)
	}
	loop := strings.TrimSpace(string(loopOut))
	defer exec.Command(losetup, "-d", loop).Run()
	mnt := b.TempDir()
	if out, err := exec.Command("mount", loop, mnt).CombinedOutput(); err != nil {
		b.Fatalf("mount: %v: %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	benchkit.Warm(b, loop)
	out := benchkit.OutDir(b)

	for b.Loop() {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var written atomic.Int64
		wg.Go(func() { rewriteFiles(mnt, size/100, stop, &written) })
		dst := filepath.Join(out, "live.vhdx")
		removeImage(dst)()
		dev, err := OpenDevice(loop)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res, err := Capture(context.Background(), dev, dst, &Options{Snapshotter: FSFreezer{Mountpoint: mnt}})
		close(stop)
		wg.Wait()
		dev.Close()
		if err != nil {
			b.Fatal(err)
		}
		fmt.Printf("freeze window: %v (attempts %d) in %v total; %d passes; writer rewrote %d MiB at %d MiB/s\n",
			res.FreezeTime.Round(time.Millisecond), res.FreezeAttempts, time.Since(start).Round(time.Millisecond),
			len(res.Passes), written.Load()>>20, size/100>>20)
		for i, p := range res.Passes {
			fmt.Printf("  pass %d: frozen %-5v read %5d MiB, wrote %5d MiB, %v\n", i+1, p.Frozen, p.Read>>20, p.Written>>20, p.Duration.Round(time.Millisecond))
		}
		b.ReportMetric(res.FreezeTime.Seconds(), "freeze-s")
	}
}

// rewriteFiles overwrites existing files under dir, 1 MiB at a time, at
// about rate bytes a second, syncing each write, until stop is closed.
func rewriteFiles(dir string, rate int64, stop <-chan struct{}, written *atomic.Int64) {
	entries, _ := os.ReadDir(dir)
	var files []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	if len(files) == 0 {
		return
	}
	r := rand.New(rand.NewPCG(4, 4))
	rnd := rand.NewChaCha8([32]byte{4})
	buf := make([]byte, MiB)
	tick := time.NewTicker(time.Duration(float64(time.Second) * float64(MiB) / float64(rate)))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		name := files[r.IntN(len(files))]
		f, err := os.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			continue
		}
		st, _ := f.Stat()
		if st.Size() >= MiB {
			rnd.Read(buf)
			f.WriteAt(buf, r.Int64N(st.Size()/MiB)*MiB)
			f.Sync()
			written.Add(MiB)
		}
		f.Close()
	}
}

// BenchmarkChunkHash compares hashes for the manifest on 1 MiB chunks: the
// one Capture uses (XXH3-128) against XXH3-64, CRC-32C and SHA-256.
//
//	go test ./p2v -run '^$' -bench ChunkHash
func BenchmarkChunkHash(b *testing.B) {
	buf := make([]byte, MiB)
	rand.NewChaCha8([32]byte{}).Read(buf)
	crc := crc32.MakeTable(crc32.Castagnoli)
	for _, h := range []struct {
		name string
		fn   func([]byte)
	}{
		{"xxh3-128", func(b []byte) { hashOf(b) }},
		{"xxh3-64", func(b []byte) { xxh3.Hash(b) }},
		{"crc32c", func(b []byte) { crc32.Checksum(b, crc) }},
		{"sha256", func(b []byte) { sha256.Sum256(b) }},
	} {
		b.Run(h.name, func(b *testing.B) {
			b.SetBytes(MiB)
			for b.Loop() {
				h.fn(buf)
			}
		})
	}
}
