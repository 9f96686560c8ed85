package libvirt_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/hostapitest"
	"github.com/vmmkit/vmmkit/hostapi/libvirt"
	"github.com/vmmkit/vmmkit/internal/testenv"
)

// env is the test environment of scripts/testenv.sh (scripts/libvirtd.sh).
type env struct {
	socket, peerSocket string
	domainType, pool   string
	imageDir           string // seen by both daemons at the same path
}

func newEnv(t testing.TB, peer bool) *env {
	t.Helper()
	e := &env{
		socket:     testenv.Var(t, "VMM_TEST_LIBVIRT_SOCKET"),
		domainType: testenv.Var(t, "VMM_TEST_LIBVIRT_DOMAIN_TYPE"),
		pool:       testenv.Var(t, "VMM_TEST_LIBVIRT_POOL"),
		imageDir:   testenv.Var(t, "VMM_TEST_LIBVIRT_IMAGE_DIR"),
	}
	if peer {
		e.peerSocket = testenv.Var(t, "VMM_TEST_LIBVIRT_PEER_SOCKET")
	}
	return e
}

func (e *env) dial(t testing.TB, socket string, opts *libvirt.Options) *libvirt.Driver {
	t.Helper()
	var o libvirt.Options
	if opts != nil {
		o = *opts
	}
	o.DomainType = e.domainType
	d, err := libvirt.Dial(context.Background(), socket, &o)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// spec returns a tiny guest: 64 MiB, one vCPU and a 16 MiB qcow2 disk in
// the image folder both daemons see (shared storage, so that migration
// needs no copy and checkpoints have a qcow2 disk). With no operating
// system the guest waits in its firmware, which is all lifecycle, stats,
// checkpoint and migration tests need.
func (e *env) spec(t testing.TB) func(name string) hostapi.VMSpec {
	qemuImg := testenv.Tool(t, "VMM_TEST_QEMU_IMG", "qemu-img")
	return func(name string) hostapi.VMSpec {
		path := filepath.Join(e.imageDir, name+".qcow2")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", path, "16M").CombinedOutput(); err != nil {
				t.Errorf("qemu-img create %s: %v\n%s", path, err, out)
			}
			t.Cleanup(func() { os.Remove(path) })
		}
		return hostapi.VMSpec{Name: name, VCPUs: 1, Memory: 64 << 20, Disks: []hostapi.DiskRef{{Path: path}}}
	}
}

// rawImage is a 1 MiB raw image with a pattern in it.
func rawImage(name string, size int) *hostapi.Image {
	data := bytes.Repeat([]byte("vmmkit"), size/6+1)[:size]
	return &hostapi.Image{Name: name, Format: "raw", Size: int64(size),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

func TestConformance(t *testing.T) {
	e := newEnv(t, true)
	d := e.dial(t, e.socket, nil)
	peer := e.dial(t, e.peerSocket, nil)
	hostapitest.Run(t, func(t *testing.T) *hostapitest.Setup {
		return &hostapitest.Setup{
			Driver: d, Peer: peer, Spec: e.spec(t), Pool: e.pool, Image: rawImage("hostapitest.raw", 1<<20),
			// Free memory is the real host's, which other processes move,
			// and a TCG guest in its firmware touches little of its memory.
			MemorySlack: 1 << 30,
			// A guest without an OS ignores ACPI: don't wait long for it.
			ShutdownTimeout: 2 * time.Second,
		}
	})
}
