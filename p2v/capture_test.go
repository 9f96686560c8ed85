package p2v

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
	"github.com/vmmkit/vmmkit/vhd"
)

const MiB = 1 << 20

var errNoSpace = syscall.ENOSPC

// fsSizes are the files of the test file systems: about half of 64 MiB.
var fsSizes = []int{5 * MiB, 3 * MiB, 7*MiB + 123, 1 * MiB, 9 * MiB, 4096, 6 * MiB, 100}

func openDevice(t testing.TB, path string) *Device {
	t.Helper()
	d, err := OpenDevice(path)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func TestCaptureFullExt4(t *testing.T) {
	for _, tc := range []struct {
		ext string
		typ vhd.Type
	}{{"vhdx", vhd.Dynamic}, {"vhd", vhd.Dynamic}, {"vhd", vhd.Fixed}, {"vhdx", vhd.Fixed}} {
		ext := tc.ext
		t.Run(tc.typ.String()+" "+ext, func(t *testing.T) {
			dir := t.TempDir()
			src, files := ext4Image(t, dir, 64*MiB, 1, fsSizes...)
			dev := openDevice(t, src)
			dst := filepath.Join(dir, "disk."+ext)

			var reports []Progress
			res, err := Capture(context.Background(), dev, dst, &Options{Type: tc.typ, Progress: func(p Progress) { reports = append(reports, p) }})
			require.NoError(t, err)

			layout := res.Layout
			require.Len(t, layout.Partitions, 1)
			assert.Equal(t, "ext4", layout.Partitions[0].FS)
			used := layout.Used()
			assert.Less(t, used, int64(50*MiB), "the file system is about half used")
			assert.Equal(t, used, res.Read, "read exactly the used bytes")
			assert.Equal(t, 64*MiB-used, res.Skipped)
			assert.LessOrEqual(t, res.Written, used)
			assert.FileExists(t, ManifestPath(dst))
			assert.NoFileExists(t, journalPath(dst))
			require.NotEmpty(t, reports)
			last := reports[len(reports)-1]
			assert.Equal(t, last.Done, last.Total)
			assert.Equal(t, int64(64*MiB), last.Total)
			d, err := vhd.Open(dst)
			require.NoError(t, err)
			assert.Equal(t, tc.typ, d.Type())
			d.Close()

			// The image is no bigger than the used data plus 5 %.
			assert.LessOrEqual(t, allocated(t, dst), used+used/20, "image size")

			require.NoError(t, Verify(context.Background(), dev, dst))
			raw := filepath.Join(dir, "qemu.raw")
			qemuRaw(t, dst, raw)
			compareUsed(t, src, raw, layout)
			checkExt4(t, raw, files)
			assert.Equal(t, fileSHA256(t, raw, 64*MiB), pyvhdiSHA256(t, dst), "libvhdi reads what qemu-img reads")
		})
	}
}

func TestCaptureRefusesExistingImage(t *testing.T) {
	dir := t.TempDir()
	src, _ := ext4Image(t, dir, 16*MiB, 2, MiB)
	dst := filepath.Join(dir, "disk.vhdx")
	require.NoError(t, os.WriteFile(dst, []byte("precious"), 0o644))
	_, err := Capture(context.Background(), openDevice(t, src), dst, nil)
	require.ErrorIs(t, err, fs.ErrExist)
	b, _ := os.ReadFile(dst)
	assert.Equal(t, "precious", string(b))
	assert.NoFileExists(t, journalPath(dst))
}

// debugfsWrite changes an ext4 image without mounting it: new files, removed
// files, and one file rewritten.
func debugfsWrite(t testing.TB, img string, files map[string][]byte, seed uint64) {
	t.Helper()
	debugfs := testenv.Tool(t, "VMM_TEST_DEBUGFS", "debugfs")
	dir := t.TempDir()
	add := randomFiles(t, dir, seed, 2*MiB+77, 300*1024)
	for name, b := range add {
		n := fmt.Sprintf("new%d_%s", seed, filepath.Base(name))
		run(t, debugfs, "-w", "-R", fmt.Sprintf("write %s %s", filepath.Join(dir, name), n), img)
		files[n] = b
	}
	run(t, debugfs, "-w", "-R", "rm f01.bin", img)
	delete(files, "f01.bin")
}

func TestCaptureIncremental(t *testing.T) {
	for _, ext := range []string{"vhdx", "vhd"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			src, files := ext4Image(t, dir, 64*MiB, 3, fsSizes...)
			dev := openDevice(t, src)
			base := filepath.Join(dir, "base."+ext)
			full, err := Capture(context.Background(), dev, base, nil)
			require.NoError(t, err)

			debugfsWrite(t, src, files, 4)
			dev = openDevice(t, src)

			// A child keeps the previous image as it was.
			before := fileSHA256(t, base, 1<<40)
			child := filepath.Join(dir, "child."+ext)
			res, err := Capture(context.Background(), dev, child, &Options{Previous: base})
			require.NoError(t, err)
			assert.Equal(t, "child", res.Mode)
			assert.Equal(t, before, fileSHA256(t, base, 1<<40), "the previous image was modified")
			assert.Positive(t, res.Changed)
			assert.Less(t, res.Written, full.Written/4, "an incremental pass writes only the changed chunks")
			d, err := vhd.Open(child)
			require.NoError(t, err)
			assert.Equal(t, vhd.Differencing, d.Type())
			d.Close()
			require.NoError(t, Verify(context.Background(), dev, child))
			raw := filepath.Join(dir, "child.raw")
			rawOf(t, child, raw)
			compareUsed(t, src, raw, res.Layout)
			checkExt4(t, raw, files)

			// Nothing changed: nothing is written.
			again := filepath.Join(dir, "again."+ext)
			res, err = Capture(context.Background(), dev, again, &Options{Previous: child})
			require.NoError(t, err)
			assert.Zero(t, res.Written)
			assert.Zero(t, res.Changed)
			require.NoError(t, Verify(context.Background(), dev, again))

			// In place: one image, brought up to date.
			debugfsWrite(t, src, files, 5)
			dev = openDevice(t, src)
			res, err = Capture(context.Background(), dev, "", &Options{Previous: base, InPlace: true})
			require.NoError(t, err)
			assert.Equal(t, "in-place", res.Mode)
			assert.Positive(t, res.Changed)
			require.NoError(t, Verify(context.Background(), dev, base))
			raw = filepath.Join(dir, "inplace.raw")
			qemuRaw(t, base, raw)
			checkExt4(t, raw, files)
			assert.Equal(t, fileSHA256(t, raw, 64*MiB), pyvhdiSHA256(t, base))

			// The in-place manifest now describes the updated base, so the
			// old child (made from the base's earlier state) opens no more.
			_, err = Capture(context.Background(), dev, filepath.Join(dir, "x."+ext), &Options{Previous: child})
			require.Error(t, err)
			if ext == "vhd" {
				var me *ManifestError
				require.ErrorAs(t, err, &me)
				assert.Contains(t, err.Error(), "was recaptured after")
			}
		})
	}
}

func TestCaptureManifestMismatch(t *testing.T) {
	dir := t.TempDir()
	src, files := ext4Image(t, dir, 32*MiB, 6, 3*MiB, MiB)
	dev := openDevice(t, src)
	a := filepath.Join(dir, "a.vhdx")
	b := filepath.Join(dir, "b.vhdx")
	_, err := Capture(context.Background(), dev, a, nil)
	require.NoError(t, err)
	debugfsWrite(t, src, files, 7)
	dev = openDevice(t, src)
	_, err = Capture(context.Background(), dev, b, nil)
	require.NoError(t, err)

	var me *ManifestError
	t.Run("manifest of another image", func(t *testing.T) {
		m, err := os.ReadFile(ManifestPath(b))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(ManifestPath(a), m, 0o644))
		_, err = Capture(context.Background(), dev, filepath.Join(dir, "c.vhdx"), &Options{Previous: a})
		require.ErrorAs(t, err, &me)
		assert.Contains(t, err.Error(), "describes image")
	})
	t.Run("image changed behind the manifest", func(t *testing.T) {
		// b's manifest with b's UUID, but the content of a.
		m, err := ReadManifest(ManifestPath(b))
		require.NoError(t, err)
		ma, err := ReadManifest(ManifestPath(b))
		require.NoError(t, err)
		for i := range ma.Hashes {
			ma.Hashes[i][0] ^= 1
		}
		require.NoError(t, ma.WriteFile(ManifestPath(b)))
		_, err = Capture(context.Background(), dev, filepath.Join(dir, "d.vhdx"), &Options{Previous: b})
		require.ErrorAs(t, err, &me)
		assert.Contains(t, err.Error(), "does not hold what the manifest records")
		require.NoError(t, m.WriteFile(ManifestPath(b)))
	})
	t.Run("damaged manifest", func(t *testing.T) {
		p := ManifestPath(b)
		raw, err := os.ReadFile(p)
		require.NoError(t, err)
		raw[len(raw)/2] ^= 0x40
		require.NoError(t, os.WriteFile(p, raw, 0o644))
		_, err = Capture(context.Background(), dev, filepath.Join(dir, "e.vhdx"), &Options{Previous: b})
		require.ErrorAs(t, err, &me)
		assert.Contains(t, err.Error(), "check sum")
	})
	t.Run("missing manifest", func(t *testing.T) {
		require.NoError(t, os.Remove(ManifestPath(b)))
		_, err = Capture(context.Background(), dev, filepath.Join(dir, "f.vhdx"), &Options{Previous: b})
		require.ErrorAs(t, err, &me)
		assert.ErrorIs(t, err, fs.ErrNotExist)
	})
	assert.NoFileExists(t, filepath.Join(dir, "c.vhdx"))
	assert.NoFileExists(t, filepath.Join(dir, "d.vhdx"))
}

func TestCaptureBadSectors(t *testing.T) {
	dir := t.TempDir()
	src, _ := ext4Image(t, dir, 16*MiB, 8, 6*MiB)
	bad := []Range{{Off: 4*MiB + 512, Len: 1024}, {Off: 5 * MiB, Len: 512}}

	_, err := Capture(context.Background(), &faultySource{Source: openDevice(t, src), bad: bad}, filepath.Join(dir, "a.vhdx"), nil)
	var re *ReadError
	require.ErrorAs(t, err, &re)
	assert.ErrorIs(t, err, errInjected)
	assert.LessOrEqual(t, re.Range.Off, bad[0].Off)
	assert.GreaterOrEqual(t, re.Range.End(), bad[0].End())
	assert.Contains(t, err.Error(), fmt.Sprint(re.Range.Off))

	dst := filepath.Join(dir, "b.vhdx")
	res, err := Capture(context.Background(), &faultySource{Source: openDevice(t, src), bad: bad}, dst, &Options{ZeroBadSectors: true})
	require.NoError(t, err)
	assert.Equal(t, bad, res.BadRanges)
	d, err := vhd.Open(dst)
	require.NoError(t, err)
	defer d.Close()
	want, err := os.ReadFile(src)
	require.NoError(t, err)
	for _, b := range bad {
		clear(want[b.Off:b.End()])
	}
	got := make([]byte, 2*MiB)
	_, err = d.ReadAt(got, 4*MiB)
	require.NoError(t, err)
	assert.Equal(t, want[4*MiB:6*MiB], got)
}

func TestCaptureSourceShrinks(t *testing.T) {
	dir := t.TempDir()
	src, _ := ext4Image(t, dir, 16*MiB, 9, 6*MiB)
	dst := filepath.Join(dir, "a.vhdx")
	_, err := Capture(context.Background(), &faultySource{Source: openDevice(t, src), end: 9 * MiB}, dst, nil)
	require.ErrorIs(t, err, ErrSourceChanged)

	// A device whose file shrinks between passes is noticed too.
	dev := openDevice(t, src)
	require.NoError(t, os.Truncate(src, 8*MiB))
	_, err = Capture(context.Background(), dev, filepath.Join(dir, "b.vhdx"), nil)
	require.ErrorIs(t, err, ErrSourceChanged)
	require.NoError(t, os.Remove(src))
	_, err = Capture(context.Background(), dev, filepath.Join(dir, "c.vhdx"), nil)
	require.ErrorIs(t, err, ErrSourceChanged)
}

// TestCaptureResume interrupts a capture at every checkpoint (with a read
// failure standing in for the process dying) and checks that resuming gives
// the image and manifest an uninterrupted capture gives.
func TestCaptureResume(t *testing.T) {
	defer func(n int64) { checkpointBytes = n }(checkpointBytes)
	checkpointBytes = 2 * MiB
	dir := t.TempDir()
	src, _ := ext4Image(t, dir, 48*MiB, 10, 9*MiB, 8*MiB, 7*MiB)
	want := filepath.Join(dir, "want.vhdx")
	_, err := Capture(context.Background(), openDevice(t, src), want, &Options{ChunkSize: 64 << 10})
	require.NoError(t, err)
	wantM, err := ReadManifest(ManifestPath(want))
	require.NoError(t, err)

	for _, after := range []int64{1, 40, 200, 500} {
		t.Run(fmt.Sprint(after), func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "disk.vhdx")
			fs := &faultySource{Source: openDevice(t, src), failAfter: after}
			_, err := Capture(context.Background(), fs, dst, &Options{ChunkSize: 64 << 10, Parallel: 1})
			require.ErrorIs(t, err, errInjected)
			assert.FileExists(t, journalPath(dst))

			var readOnResume int64
			res, err := Capture(context.Background(), openDevice(t, src), dst, &Options{ChunkSize: 64 << 10})
			require.NoError(t, err)
			assert.True(t, res.Resumed)
			readOnResume = res.Read
			assert.NoFileExists(t, journalPath(dst))
			m, err := ReadManifest(ManifestPath(dst))
			require.NoError(t, err)
			assert.Equal(t, wantM.Hashes, m.Hashes)
			require.NoError(t, Verify(context.Background(), openDevice(t, src), dst))
			if after == 500 { // 500 reads of at most 64 KiB are past several checkpoints
				assert.Less(t, readOnResume, wantM.DiskSize-8*MiB, "a resumed capture rereads what was done")
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "disk.vhdx")
		ctx, cancel := context.WithCancel(context.Background())
		src := &cancelSource{Source: openDevice(t, src), after: 100, cancel: cancel}
		_, err := Capture(ctx, src, dst, &Options{ChunkSize: 64 << 10, Parallel: 1})
		require.ErrorIs(t, err, context.Canceled)
		assert.FileExists(t, journalPath(dst))
		res, err := Capture(context.Background(), openDevice(t, src.Source.Name()), dst, &Options{ChunkSize: 64 << 10})
		require.NoError(t, err)
		assert.True(t, res.Resumed)
		require.NoError(t, Verify(context.Background(), openDevice(t, src.Source.Name()), dst))
	})
}

// cancelSource cancels a context after a number of reads, as a user
// pressing Ctrl-C in the middle of a capture.
type cancelSource struct {
	Source
	after  int64
	n      atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelSource) ReadAt(p []byte, off int64) (int, error) {
	if c.n.Add(1) == c.after {
		c.cancel()
	}
	return c.Source.ReadAt(p, off)
}

// TestCaptureInterruptedInPlace is the case the journal's intent records
// exist for: an in-place pass wrote a chunk and died before recording it,
// then the source went back to what the manifest records. Without the
// intent, the resume would skip the chunk and keep the dead pass's data.
func TestCaptureInterruptedInPlace(t *testing.T) {
	dir := t.TempDir()
	src, files := ext4Image(t, dir, 32*MiB, 12, 4*MiB, 4*MiB)
	orig := filepath.Join(dir, "orig.img")
	run(t, "cp", src, orig)
	img := filepath.Join(dir, "disk.vhdx")
	_, err := Capture(context.Background(), openDevice(t, src), img, &Options{ChunkSize: 64 << 10})
	require.NoError(t, err)

	debugfsWrite(t, src, files, 13)
	fs := &faultySource{Source: openDevice(t, src), failAfter: 40}
	_, err = Capture(context.Background(), fs, "", &Options{Previous: img, InPlace: true, Parallel: 1})
	require.ErrorIs(t, err, errInjected)
	require.FileExists(t, journalPath(img))
	require.Error(t, Verify(context.Background(), openDevice(t, orig), img), "the interrupted pass changed the image")

	// The source returns to the state the manifest records.
	res, err := Capture(context.Background(), openDevice(t, orig), "", &Options{Previous: img, InPlace: true})
	require.NoError(t, err)
	assert.True(t, res.Resumed)
	require.NoError(t, Verify(context.Background(), openDevice(t, orig), img))
}

func TestCaptureFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	src, _ := ext4Image(t, dir, 48*MiB, 14, 9*MiB, 8*MiB, 7*MiB)
	small := filepath.Join(dir, "small")
	require.NoError(t, os.Mkdir(small, 0o755))
	run(t, "mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", small)
	t.Cleanup(func() { run(t, "umount", small) })

	// A full capture fails with ENOSPC and can be resumed elsewhere.
	dst := filepath.Join(small, "disk.vhdx")
	_, err := Capture(context.Background(), openDevice(t, src), dst, nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, errNoSpace)
	assert.Contains(t, err.Error(), dst)

	// An incremental capture into a child that does not fit leaves the
	// previous image as it was.
	base := filepath.Join(dir, "base.vhdx")
	_, err = Capture(context.Background(), openDevice(t, src), base, nil)
	require.NoError(t, err)
	before := fileSHA256(t, base, 1<<40)
	f, err := os.OpenFile(src, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(make([]byte, 20*MiB), 20*MiB) // inside files: used blocks change
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = Capture(context.Background(), openDevice(t, src), filepath.Join(small, "child.vhdx"), &Options{Previous: base})
	if err == nil {
		t.Fatal("the child fit in 12 MiB; make the change bigger")
	}
	assert.ErrorIs(t, err, errNoSpace)
	assert.Equal(t, before, fileSHA256(t, base, 1<<40))
	_, err = ReadManifest(ManifestPath(base))
	require.NoError(t, err, "the previous manifest is intact")
}

func TestCaptureDamagedFileSystem(t *testing.T) {
	dir := t.TempDir()
	src, _ := ext4Image(t, dir, 32*MiB, 15, 4*MiB)
	// Damage the group descriptor table (block 1): its checksums fail.
	f, err := os.OpenFile(src, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, 4096+8)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	dst := filepath.Join(dir, "disk.vhdx")
	res, err := Capture(context.Background(), openDevice(t, src), dst, nil)
	require.NoError(t, err)
	require.NotEmpty(t, res.Layout.Warnings)
	var fe *FSError
	require.ErrorAs(t, res.Layout.Warnings[0], &fe)
	assert.Empty(t, res.Layout.Free, "a damaged file system is copied whole")
	assert.Equal(t, int64(32*MiB), res.Read)
	raw := filepath.Join(dir, "raw")
	rawOf(t, dst, raw)
	assert.Equal(t, fileSHA256(t, src, 32*MiB), fileSHA256(t, raw, 32*MiB))
}

// TestCaptureTornStart: a capture killed while creating its journal, or
// while creating its image, is started over by the next run.
func TestCaptureTornStart(t *testing.T) {
	dir := t.TempDir()
	src, _ := ext4Image(t, dir, 16*MiB, 42, 3*MiB)

	dst := filepath.Join(dir, "a.vhdx")
	require.NoError(t, os.WriteFile(journalPath(dst), []byte("VMMKP2"), 0o644))
	res, err := Capture(context.Background(), openDevice(t, src), dst, nil)
	require.NoError(t, err)
	assert.False(t, res.Resumed)
	require.NoError(t, Verify(context.Background(), openDevice(t, src), dst))

	dst = filepath.Join(dir, "b.vhdx")
	uuid := vhd.NewUUID()
	j, err := createJournal(journalPath(dst), journalHeader{Mode: captureFull, ChunkSize: MiB, DiskSize: 16 * MiB, Chunks: 16, Image: uuid})
	require.NoError(t, err)
	j.close()
	require.NoError(t, os.WriteFile(dst, make([]byte, 4096), 0o644)) // Create cut short
	res, err = Capture(context.Background(), openDevice(t, src), dst, nil)
	require.NoError(t, err)
	assert.True(t, res.Resumed)
	d, err := vhd.Open(dst)
	require.NoError(t, err)
	assert.Equal(t, uuid, d.Info().UUID)
	d.Close()
	require.NoError(t, Verify(context.Background(), openDevice(t, src), dst))

	// Once something was written through the journal, a damaged image is
	// not thrown away: that is for a person to decide.
	dst = filepath.Join(dir, "c.vhdx")
	j, err = createJournal(journalPath(dst), journalHeader{Mode: captureFull, ChunkSize: MiB, DiskSize: 16 * MiB, Chunks: 16, Image: uuid})
	require.NoError(t, err)
	require.NoError(t, j.intent(0, 4))
	j.close()
	require.NoError(t, os.WriteFile(dst, make([]byte, 4096), 0o644))
	_, err = Capture(context.Background(), openDevice(t, src), dst, nil)
	require.Error(t, err)
	assert.FileExists(t, dst)
}
