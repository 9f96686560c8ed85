package p2v

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
)

// fsImages builds one file-system image of each kind, over garbage, with
// random files, and returns their paths.
func fsImages(t *testing.T, dir string) (ext4, fat, ntfs string) {
	t.Helper()
	mkfat := testenv.Tool(t, "VMM_TEST_MKFS_VFAT", "mkfs.vfat")
	mcopy := testenv.Tool(t, "VMM_TEST_MCOPY", "mcopy")
	mkntfs := testenv.Tool(t, "VMM_TEST_MKFS_NTFS", "mkfs.ntfs")
	ntfscp := testenv.Tool(t, "VMM_TEST_NTFSCP", "ntfscp")

	e := filepath.Join(dir, "e")
	require.NoError(t, os.Mkdir(e, 0o755))
	ext4, _ = ext4Image(t, e, 24*MiB, 31, 3*MiB, 2*MiB)

	fat = filepath.Join(dir, "fat.img")
	garbageFile(t, fat, 20*MiB, 32)
	run(t, mkfat, "-F", "16", fat)
	for name := range randomFiles(t, filepath.Join(dir, "fatfiles"), 33, 2*MiB, 100000) {
		run(t, mcopy, "-i", fat, filepath.Join(dir, "fatfiles", name), "::/"+filepath.Base(name))
	}

	ntfs = filepath.Join(dir, "ntfs.img")
	garbageFile(t, ntfs, 24*MiB, 34)
	run(t, mkntfs, "-F", "-Q", "-q", ntfs)
	for name := range randomFiles(t, filepath.Join(dir, "ntfsfiles"), 35, 3*MiB) {
		run(t, ntfscp, "-q", ntfs, filepath.Join(dir, "ntfsfiles", name), "/"+filepath.Base(name))
	}
	return ext4, fat, ntfs
}

// place copies a file-system image into the disk at byte off.
func place(t *testing.T, disk, image string, off int64) {
	t.Helper()
	b, err := os.ReadFile(image)
	require.NoError(t, err)
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

// extract copies [off, off+n) of src into a new file.
func extract(t *testing.T, src string, off, n int64, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b[off:off+n], 0o644))
}

// checkPartitions captures disk, reads the image back with qemu-img and
// checks every partition's file system with its own checker.
func checkPartitions(t *testing.T, disk string, want map[int64]string) *Layout {
	t.Helper()
	dir := t.TempDir()
	dev := openDevice(t, disk)
	dst := filepath.Join(dir, "disk.vhdx")
	res, err := Capture(context.Background(), dev, dst, nil)
	require.NoError(t, err)
	require.Empty(t, res.Layout.Warnings)
	got := map[int64]string{}
	for _, p := range res.Layout.Partitions {
		got[p.Start] = p.FS
		if p.FS != "" {
			assert.Positive(t, p.Free, "partition %d", p.Index)
		}
	}
	assert.Equal(t, want, got)
	require.NoError(t, Verify(context.Background(), dev, dst))
	raw := filepath.Join(dir, "disk.raw")
	qemuRaw(t, dst, raw)
	compareUsed(t, disk, raw, res.Layout)
	for _, p := range res.Layout.Partitions {
		part := filepath.Join(dir, fmt.Sprintf("p%d", p.Index))
		extract(t, raw, p.Start, p.Size, part)
		switch {
		case strings.HasPrefix(p.FS, "ext"):
			run(t, testenv.Tool(t, "VMM_TEST_E2FSCK", "e2fsck"), "-fn", part)
		case strings.HasPrefix(p.FS, "fat"):
			run(t, testenv.Tool(t, "VMM_TEST_FSCK_VFAT", "fsck.vfat"), "-n", part)
		case p.FS == "ntfs":
			run(t, testenv.Tool(t, "VMM_TEST_NTFSFIX", "ntfsfix"), "-n", part)
		}
	}
	return res.Layout
}

func TestGPT(t *testing.T) {
	sgdisk := testenv.Tool(t, "VMM_TEST_SGDISK", "sgdisk")
	dir := t.TempDir()
	ext4, fat, ntfs := fsImages(t, dir)
	disk := filepath.Join(dir, "gpt.img")
	garbageFile(t, disk, 96*MiB, 36)
	run(t, sgdisk, "-Z", disk)
	run(t, sgdisk, "-n", "1:2048:+24M", "-t", "1:8300", "-c", "1:linux",
		"-n", "2:0:+20M", "-t", "2:0700", "-c", "2:fat",
		"-n", "3:0:+24M", "-t", "3:0700", "-c", "3:windows", disk)
	l, err := Analyze(openDevice(t, disk), 96*MiB)
	require.NoError(t, err)
	require.Equal(t, "gpt", l.Scheme)
	require.Len(t, l.Partitions, 3)
	p := l.Partitions
	assert.Equal(t, int64(2048*512), p[0].Start)
	assert.Equal(t, int64(24*MiB), p[0].Size)
	assert.Equal(t, "linux", p[0].Name)
	assert.Equal(t, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", p[0].Type)
	place(t, disk, ext4, p[0].Start)
	place(t, disk, fat, p[1].Start)
	place(t, disk, ntfs, p[2].Start)
	l = checkPartitions(t, disk, map[int64]string{p[0].Start: "ext4", p[1].Start: "fat16", p[2].Start: "ntfs"})
	for _, f := range l.Free {
		assert.True(t, f.Off >= p[0].Start && f.End() <= p[2].Start+p[2].Size, "free range %v outside the partitions", f)
	}

	// A damaged primary header: the backup at the end of the disk serves.
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("XXXX"), 512+24)
	require.NoError(t, err)
	l2, err := Analyze(openDevice(t, disk), 96*MiB)
	require.NoError(t, err)
	assert.Equal(t, l.Free, l2.Free)
	assert.Len(t, l2.Partitions, 3)
	// Both damaged: a warning, and nothing is taken as free.
	_, err = f.WriteAt([]byte("XXXX"), 96*MiB-512+24)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	l3, err := Analyze(openDevice(t, disk), 96*MiB)
	require.NoError(t, err)
	assert.Empty(t, l3.Free)
	require.Len(t, l3.Warnings, 1)
	var fe *FSError
	assert.ErrorAs(t, l3.Warnings[0], &fe)
}

func TestMBRExtended(t *testing.T) {
	sfdisk := testenv.Tool(t, "VMM_TEST_SFDISK", "sfdisk")
	dir := t.TempDir()
	ext4, fat, ntfs := fsImages(t, dir)
	disk := filepath.Join(dir, "mbr.img")
	garbageFile(t, disk, 100*MiB, 37)
	// Wipe the first sector so sfdisk sees no old table in the garbage.
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(make([]byte, 512), 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	script := "label: dos\n" +
		disk + "1 : start=2048, size=24MiB, type=83\n" +
		disk + "2 : size=70MiB, type=5\n" +
		disk + "5 : size=20MiB, type=b\n" +
		disk + "6 : size=24MiB, type=7\n"
	cmd := exec.Command(sfdisk, "--no-reread", "--no-tell-kernel", "-q", disk)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	l, err := Analyze(openDevice(t, disk), 100*MiB)
	require.NoError(t, err)
	require.Equal(t, "mbr", l.Scheme)
	require.Len(t, l.Partitions, 3)
	idx := []int{l.Partitions[0].Index, l.Partitions[1].Index, l.Partitions[2].Index}
	assert.Equal(t, []int{1, 5, 6}, idx, "logical partitions are numbered from 5")
	assert.Equal(t, "0x0b", l.Partitions[1].Type)
	p := l.Partitions
	place(t, disk, ext4, p[0].Start)
	place(t, disk, fat, p[1].Start)
	place(t, disk, ntfs, p[2].Start)
	checkPartitions(t, disk, map[int64]string{p[0].Start: "ext4", p[1].Start: "fat16", p[2].Start: "ntfs"})
}

func TestWholeDiskFileSystem(t *testing.T) {
	dir := t.TempDir()
	ext4, fat, ntfs := fsImages(t, dir)
	for _, tc := range []struct{ img, fs string }{{ext4, "ext4"}, {fat, "fat16"}, {ntfs, "ntfs"}} {
		t.Run(tc.fs, func(t *testing.T) {
			checkPartitions(t, tc.img, map[int64]string{0: tc.fs})
		})
	}
}

func TestAnalyzeNothingKnown(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "junk")
	garbageFile(t, disk, 8*MiB, 38)
	l, err := Analyze(openDevice(t, disk), 8*MiB)
	require.NoError(t, err)
	assert.Empty(t, l.Partitions)
	assert.Empty(t, l.Free)
	assert.Equal(t, int64(8*MiB), l.Used())
}

// mbrSector builds an MBR with the given entries (status, type, start, len).
func mbrSector(ents ...[4]uint32) []byte {
	b := make([]byte, 512)
	for i, e := range ents {
		p := b[446+16*i:]
		p[0], p[4] = byte(e[0]), byte(e[1])
		binary.LittleEndian.PutUint32(p[8:], e[2])
		binary.LittleEndian.PutUint32(p[12:], e[3])
	}
	b[510], b[511] = 0x55, 0xAA
	return b
}

func TestMBRHostile(t *testing.T) {
	disk := func(sectors ...[]byte) *bytes.Reader {
		b := make([]byte, 4*MiB)
		for i, s := range sectors {
			copy(b[i*512:], s)
		}
		return bytes.NewReader(b)
	}
	var fe *FSError
	for name, r := range map[string]*bytes.Reader{
		"outside the disk": disk(mbrSector([4]uint32{0, 0x83, 2048, 1 << 30})),
		"overlapping":      disk(mbrSector([4]uint32{0, 0x83, 2048, 4096}, [4]uint32{0, 0x83, 4000, 100})),
		"ebr loop": disk(mbrSector([4]uint32{0, 0x05, 1, 8000}),
			mbrSector([4]uint32{0, 0x83, 10, 10}, [4]uint32{0, 0x05, 0, 10})),
	} {
		t.Run(name, func(t *testing.T) {
			l, err := Analyze(r, r.Size())
			require.NoError(t, err)
			require.Len(t, l.Warnings, 1)
			assert.True(t, errors.As(l.Warnings[0], &fe), "%v", l.Warnings[0])
			assert.Empty(t, l.Free)
		})
	}
	// A bad status byte: not an MBR at all.
	r := disk(mbrSector([4]uint32{7, 0x83, 2048, 100}))
	l, err := Analyze(r, r.Size())
	require.NoError(t, err)
	assert.Equal(t, "", l.Scheme)
	assert.Empty(t, l.Warnings)
}

// FuzzAnalyze feeds Analyze disks whose first sectors are arbitrary: it must
// not panic, and whatever it calls free must lie inside the disk, in whole
// sectors.
func FuzzAnalyze(f *testing.F) {
	f.Add(mbrSector([4]uint32{0x80, 0x83, 1, 100}), []byte{})
	f.Add(mbrSector([4]uint32{0, 0xEE, 1, 0xFFFFFFFF}), []byte("EFI PART"))
	f.Add(mbrSector([4]uint32{0, 0x05, 2, 4000}), mbrSector([4]uint32{0, 0x83, 1, 10}, [4]uint32{0, 0x05, 20, 100}))
	f.Fuzz(func(t *testing.T, s0, s1 []byte) {
		const size = 2 * MiB
		b := make([]byte, size)
		copy(b, s0)
		copy(b[512:], s1)
		l, err := Analyze(bytes.NewReader(b), size)
		if err != nil {
			return
		}
		for _, r := range l.Free {
			if r.Off < 0 || r.Len <= 0 || r.End() > size || r.Off%512 != 0 || r.Len%512 != 0 {
				t.Fatalf("bad free range %+v", r)
			}
		}
	})
}
