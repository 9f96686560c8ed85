package vhd

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A trailing footer at a file size that is not a whole number of sectors
// must not shift new blocks off their BAT entries.
func TestUnalignedTailNewBlocks(t *testing.T) {
	good, data := validImage(t, 4096)
	b := append(bytes.Clone(good[:len(good)-footerSize]), make([]byte, 100)...)
	b = append(b, good[len(good)-footerSize:]...)
	name := filepath.Join(t.TempDir(), "u.vhd")
	require.NoError(t, os.WriteFile(name, b, 0o644))
	d := mustOpen(t, name, os.O_RDWR)
	want := bytes.Clone(data)
	chunk := bytes.Repeat([]byte{0x5c}, 4096)
	_, err := d.WriteAt(chunk, 40960)
	require.NoError(t, err)
	copy(want[40960:], chunk)
	assert.Equal(t, want, readAll(t, d))
	require.NoError(t, d.Close())
	assert.Equal(t, want, readAll(t, mustOpen(t, name, os.O_RDONLY)))
}

// Guest data at the end of a dynamic image cut short by a crash may look
// like a fixed image's footer; the copy at offset 0 must win.
func TestGuestFooterAtTail(t *testing.T) {
	good, data := validImage(t, 4096)
	guest := (&footer{Version: formatVersion, DataOffset: noOffset, CurrentSize: 4096, DiskType: diskTypeFixed, UUID: NewUUID()}).marshal()
	b := append(bytes.Clone(good), guest...)
	d, err := NewDisk(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	assert.Equal(t, Dynamic, d.Type())
	assert.Equal(t, data, readAll(t, d))
}

// A parent candidate rejected after opening its own chain must not make
// the right candidate look like a loop.
func TestRejectedCandidateLeavesNoTrace(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.vhd")
	require.NoError(t, mustCreate(t, base, 1<<20, nil).Close())
	c1 := filepath.Join(dir, "c1.vhd")
	require.NoError(t, mustCreate(t, c1, 0, &CreateOptions{Parent: base}).Close())
	c2 := filepath.Join(dir, "c2.vhd")
	require.NoError(t, mustCreate(t, c2, 0, &CreateOptions{Parent: c1}).Close())
	gc := filepath.Join(dir, "gc.vhd")
	require.NoError(t, mustCreate(t, gc, 0, &CreateOptions{Parent: c2}).Close())

	// Move gc beside a copy of c2 with another time stamp and no
	// modification time to match: the relative locator finds the copy,
	// which opens its chain and is then refused; the absolute one finds c2.
	other := filepath.Join(dir, "other")
	require.NoError(t, os.Mkdir(other, 0o755))
	b, err := os.ReadFile(c2)
	require.NoError(t, err)
	copyName := filepath.Join(other, "c2.vhd")
	require.NoError(t, os.WriteFile(copyName, b, 0o644))
	patch(t, copyName, func(f *footer, _ *dynHeader) { f.Timestamp -= 7200 })
	old := time.Now().Add(-72 * time.Hour)
	require.NoError(t, os.Chtimes(copyName, old, old))
	require.NoError(t, os.Rename(gc, filepath.Join(other, "gc.vhd")))

	d, err := Open(filepath.Join(other, "gc.vhd"))
	require.NoError(t, err)
	defer d.Close()
	assert.Equal(t, c2, d.Parent().Name())
}

// A locator that names a FIFO must fail, not block.
func TestParentFIFO(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.vhd")
	require.NoError(t, mustCreate(t, base, 1<<20, nil).Close())
	child := filepath.Join(dir, "child.vhd")
	require.NoError(t, mustCreate(t, child, 0, &CreateOptions{Parent: base}).Close())
	require.NoError(t, os.Remove(base))
	require.NoError(t, syscall.Mkfifo(base, 0o644))
	done := make(chan error, 1)
	go func() {
		_, err := Open(child)
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrParent)
		assert.Contains(t, err.Error(), "not a regular file")
	case <-time.After(10 * time.Second):
		t.Fatal("Open blocked on a FIFO parent")
	}
}
