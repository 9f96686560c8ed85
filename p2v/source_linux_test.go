package p2v

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDeviceDirectReads reads a file opened with O_DIRECT through Device at
// unaligned offsets, lengths and buffers (the bounce path), and aligned ones
// (straight to the file), and compares with the file's content.
func TestDeviceDirectReads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk")
	want := make([]byte, 3*MiB+1536) // a tail shorter than the alignment
	rand.NewChaCha8([32]byte{7}).Read(want)
	require.NoError(t, os.WriteFile(p, want, 0o644))
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Skipf("the temporary directory's file system refuses O_DIRECT: %v", err)
	}
	d := &Device{f: f, name: p, size: int64(len(want)), direct: true}
	d.bounce.New = func() any { b := alignedBuf(1 << 20); return &b }
	defer d.Close()

	r := rand.New(rand.NewPCG(7, 7))
	for i := range 2000 {
		off := r.Int64N(int64(len(want)))
		n := r.IntN(3 << 20)
		var buf []byte
		if i%3 == 0 { // aligned: the direct path
			off &^= directAlign - 1
			n = (n + directAlign - 1) &^ (directAlign - 1)
			buf = alignedBuf(max(n, directAlign))[:max(n, directAlign)]
		} else {
			buf = make([]byte, n+1)[1:] // an unaligned address
		}
		got, err := d.ReadAt(buf, off)
		end := min(off+int64(len(buf)), int64(len(want)))
		require.Equal(t, int(end-off), got, "read %d at %d", len(buf), off)
		if end < off+int64(len(buf)) {
			require.Error(t, err)
		} else {
			require.NoError(t, err)
		}
		require.True(t, bytes.Equal(want[off:end], buf[:got]), "read %d at %d", len(buf), off)
	}
}
