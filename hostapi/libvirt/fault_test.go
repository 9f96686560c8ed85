package libvirt_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/libvirt"
	"github.com/vmmkit/vmmkit/internal/testenv"
)

func requireOpError(t *testing.T, err error, target error) *hostapi.OpError {
	t.Helper()
	require.Error(t, err)
	var oe *hostapi.OpError
	require.True(t, errors.As(err, &oe), "got %T (%v), want an *hostapi.OpError", err, err)
	require.ErrorIs(t, err, target)
	return oe
}

// TestHostLostMidOperation loses the connection while a call is in flight
// (the proxy forwards the request to the daemon and drops the reply, as a
// daemon killed after it read the request would): a call that changes the
// host fails with ErrHostUnreachable and is not repeated, a read is
// repeated on a new connection, and a host that refuses connections makes
// calls fail with ErrHostUnreachable until it is back.
func TestHostLostMidOperation(t *testing.T) {
	e := newEnv(t, false)
	p := newProxy(t, e.socket)
	d := e.dial(t, p.path, &libvirt.Options{ReconnectTimeout: 2 * time.Second})
	ctx := t.Context()

	t.Run("Write", func(t *testing.T) {
		spec := e.spec(t)("libvirt-lost-" + randomSuffix(t))
		t.Cleanup(func() { deleteVM(d, spec.Name) })
		p.dropReply.Store(true)
		_, err := d.CreateVM(ctx, spec)
		requireOpError(t, err, hostapi.ErrHostUnreachable)
		// Whatever the daemon did, the driver reconnects and tells.
		_, err = d.VM(ctx, spec.Name)
		if err != nil {
			requireOpError(t, err, hostapi.ErrNotFound)
		}
	})
	t.Run("ReadRetried", func(t *testing.T) {
		before := p.accepted.Load()
		p.dropReply.Store(true)
		_, err := d.VMs(ctx)
		require.NoError(t, err, "a read is retried on a new connection")
		assert.Greater(t, p.accepted.Load(), before, "the driver reconnected")
	})
	t.Run("HostDown", func(t *testing.T) {
		p.refuse.Store(true)
		p.cutAll()
		_, err := d.Host(ctx)
		oe := requireOpError(t, err, hostapi.ErrHostUnreachable)
		assert.Equal(t, "host", oe.Op)
		p.refuse.Store(false)
		h, err := d.Host(ctx)
		require.NoError(t, err, "the host is back")
		assert.NotEmpty(t, h.ID)
	})
	t.Run("Unreachable", func(t *testing.T) {
		_, err := libvirt.Dial(ctx, filepath.Join(t.TempDir(), "none.sock"), &libvirt.Options{ReconnectTimeout: 200 * time.Millisecond})
		requireOpError(t, err, hostapi.ErrHostUnreachable)
	})
}

// TestSpecRejected defines a VM that QEMU cannot have: the error is
// ErrInvalidSpec, and libvirt's own error, with its message, is in the chain.
func TestSpecRejected(t *testing.T) {
	e := newEnv(t, false)
	d := e.dial(t, e.socket, nil)
	spec := e.spec(t)("libvirt-rejected-" + randomSuffix(t))
	spec.VCPUs = 4096
	t.Cleanup(func() { deleteVM(d, spec.Name) })
	_, err := d.CreateVM(t.Context(), spec)
	requireOpError(t, err, hostapi.ErrInvalidSpec)
	var le golibvirt.Error
	require.True(t, errors.As(err, &le), "libvirt's error is in the chain: %v", err)
	assert.Contains(t, le.Message, "Maximum CPUs", "libvirt's message")
	assert.Contains(t, err.Error(), le.Message)
	_, err = d.VM(t.Context(), spec.Name)
	requireOpError(t, err, hostapi.ErrNotFound)
}

// slowImage yields size bytes of zeros and calls at once it has yielded
// half of them.
type slowImage struct {
	left, half int64
	at         func()
}

func (s *slowImage) Read(b []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(b)), s.left)
	clear(b[:n])
	s.left -= n
	if s.at != nil && s.left <= s.half {
		s.at()
		s.at = nil
	}
	return int(n), nil
}

func (s *slowImage) Close() error { return nil }

// TestCopyImageCancelled cancels a 256 MiB copy half-way: CopyImage fails
// with context.Canceled and leaves no disk behind.
func TestCopyImageCancelled(t *testing.T) {
	e := newEnv(t, false)
	d := e.dial(t, e.socket, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const size = 256 << 20
	name := "libvirt-cancel-" + randomSuffix(t)
	t.Cleanup(func() { d.DeleteDisk(context.Background(), e.pool, name) })
	img := hostapi.Image{Name: "zeros", Format: "raw", Size: size, Open: func() (io.ReadCloser, error) {
		return &slowImage{left: size, half: size / 2, at: cancel}, nil
	}}
	var last int64
	_, err := d.CopyImage(ctx, img, hostapi.DiskSpec{Pool: e.pool, Name: name}, func(done, total int64) { last = done })
	requireOpError(t, err, context.Canceled)
	assert.Less(t, last, int64(size), "the copy stopped before its end")
	err = d.DeleteDisk(t.Context(), e.pool, name)
	requireOpError(t, err, hostapi.ErrNotFound)
}

// TestCopyImageVHD copies a dynamic VHD made by qemu-img: it arrives as a
// qcow2 disk of the VHD's virtual size, and the uploaded VHD is gone.
func TestCopyImageVHD(t *testing.T) {
	e := newEnv(t, false)
	qemuImg := testenv.Tool(t, "VMM_TEST_QEMU_IMG", "qemu-img")
	d := e.dial(t, e.socket, nil)
	src := filepath.Join(t.TempDir(), "src.vhd")
	out, err := exec.Command(qemuImg, "create", "-q", "-f", "vpc", src, "8M").CombinedOutput()
	require.NoError(t, err, "%s", out)
	fi, err := os.Stat(src)
	require.NoError(t, err)
	name := "libvirt-vhd-" + randomSuffix(t)
	t.Cleanup(func() { d.DeleteDisk(context.Background(), e.pool, name) })
	img := hostapi.Image{Name: "src.vhd", Format: "vhd", Size: fi.Size(), Open: func() (io.ReadCloser, error) { return os.Open(src) }}
	di, err := d.CopyImage(t.Context(), img, hostapi.DiskSpec{Pool: e.pool, Name: name}, nil)
	require.NoError(t, err)
	assert.Equal(t, "qcow2", di.Format)
	// A VHD's size is rounded to its CHS geometry: at least what was asked.
	assert.GreaterOrEqual(t, di.Size, int64(8<<20))
	err = d.DeleteDisk(t.Context(), e.pool, name+".upload")
	requireOpError(t, err, hostapi.ErrNotFound)
	assert.False(t, d.Supports(hostapi.VHDDisks))
}

func deleteVM(d hostapi.Driver, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if vm, err := d.VM(ctx, name); err == nil {
		if vm.State != hostapi.StateStopped {
			d.PowerOff(ctx, vm.ID)
		}
		d.DeleteVM(ctx, vm.ID, nil)
	}
}

func randomSuffix(testing.TB) string {
	return strconv.FormatUint(rand.Uint64()&0xffffffffff, 36)
}
