package library

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
)

func TestDeploy(t *testing.T) {
	ctx := t.Context()
	near := newLibShare(t, "near", "east")
	far := newLibShare(t, "far", "west")
	data := makeLibVHD(t, "deploy me", nil)
	writeLibFile(t, near.dir, "base.vhd", data)
	writeLibFile(t, far.dir, "base.vhd", data)
	writeLibFile(t, near.dir, "setup.ps1", []byte("Write-Host hi\n"))
	l := newLib(t, Options{Costs: map[[2]string]float64{{"east", "west"}: 10}}, near, far)
	mustRefresh(t, l)
	obj := find1(t, l, "base.vhd")

	fleet, err := sim.New(sim.Config{Count: 1})
	require.NoError(t, err)
	host := fleet.Host("host1")
	free := func() int64 {
		h, err := host.Host(ctx)
		require.NoError(t, err)
		return h.Pools[0].Free
	}

	// Two VMs' disks over one cached parent: the image crosses once.
	var copied int64
	progress := func(done, total int64) { copied = done }
	before := free()
	d1, err := l.Deploy(ctx, obj, host, "east", hostapi.DiskSpec{Pool: "default", Name: "vm1.vhd"}, &DeployOptions{Differencing: true, Progress: progress})
	require.NoError(t, err)
	assert.Equal(t, CachedParentName(obj), d1.Parent)
	assert.Equal(t, int64(len(data)), copied, "the parent was copied")
	afterFirst := free()
	copied = 0
	d2, err := l.Deploy(ctx, obj, host, "east", hostapi.DiskSpec{Pool: "default", Name: "vm2.vhd"}, &DeployOptions{Differencing: true, Progress: progress})
	require.NoError(t, err)
	assert.Equal(t, d1.Parent, d2.Parent)
	assert.Zero(t, copied, "the cached parent was used, not copied again")
	assert.Less(t, before-afterFirst, int64(len(data))+2<<20+1, "one parent and one child in the pool")
	assert.Less(t, afterFirst-free(), int64(len(data)), "the second deploy added only a child")

	// The near copy rots: the deploy is served by the far one, and the
	// near one is marked.
	f, err := os.OpenFile(filepath.Join(near.dir, "base.vhd"), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{0xff}, int64(len(data))-600)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	d3, err := l.Deploy(ctx, obj, host, "east", hostapi.DiskSpec{Pool: "default", Name: "whole.vhd"}, nil)
	require.NoError(t, err)
	assert.Empty(t, d3.Parent)
	obj = find1(t, l, "base.vhd")
	assert.Contains(t, obj.Replicas[0].Problem, "corrupt")
	r, err := l.Nearest(obj, "east")
	require.NoError(t, err)
	assert.Equal(t, "far", r.Share)

	// With no sound copy left, nothing is served and no disk is left on
	// the host.
	f, err = os.OpenFile(filepath.Join(far.dir, "base.vhd"), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{0xff}, 10)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = l.Deploy(ctx, obj, host, "east", hostapi.DiskSpec{Pool: "default", Name: "none.vhd"}, nil)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = host.CreateDisk(ctx, hostapi.DiskSpec{Pool: "default", Name: "none.vhd", Size: 1 << 20})
	require.NoError(t, err, "the failed deploy left no disk of that name")

	// Only disks deploy.
	_, err = l.Deploy(ctx, find1(t, l, "setup.ps1"), host, "east", hostapi.DiskSpec{Pool: "default", Name: "x"}, nil)
	require.ErrorContains(t, err, "not a disk image")
}

// Deploys over one parent to one host at the same time: every one gets its
// child, and the parent crosses once (the simulator holds a disk's name
// from the start of its copy, so without the wait the others would find
// the name taken and the parent not there yet).
func TestDeployDifferencingConcurrent(t *testing.T) {
	ctx := t.Context()
	sh := newLibShare(t, "near", "east")
	data := makeLibVHD(t, "shared parent", nil)
	writeLibFile(t, sh.dir, "base.vhd", data)
	l := newLib(t, Options{}, sh)
	mustRefresh(t, l)
	obj := find1(t, l, "base.vhd")
	fleet, err := sim.New(sim.Config{Count: 1, TimeScale: 0.2, DiskSpeed: 8 << 20})
	require.NoError(t, err)
	host := fleet.Host("host1")
	var copies atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = l.Deploy(ctx, obj, host, "east", hostapi.DiskSpec{Pool: "default", Name: fmt.Sprintf("vm%d.vhd", i)},
				&DeployOptions{Differencing: true, Progress: func(done, total int64) {
					if done == total {
						copies.Add(1)
					}
				}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "deploy %d", i)
	}
	assert.Equal(t, int64(1), copies.Load(), "copies of the parent")
}
