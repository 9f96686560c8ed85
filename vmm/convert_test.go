package vmm_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// writeRawDisk writes a raw disk of size bytes with random data in a few
// places and zeros elsewhere, and returns its content.
func writeRawDisk(t *testing.T, path string, size int64) []byte {
	t.Helper()
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(7, 11))
	for _, off := range []int64{0, size / 3, size - 3<<20} {
		for i := off; i < off+2<<20; i++ {
			data[i] = byte(rng.Uint32())
		}
	}
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return data
}

func TestConvertPhysical(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 2})
	c := tctx(t)
	src := filepath.Join(t.TempDir(), "sda.raw")
	want := writeRawDisk(t, src, 48<<20)

	j, err := f.m.ConvertPhysical(c, vmm.ConvertSpec{Source: src, Name: "legacy01", Share: "central",
		Deploy: &vmm.VMSpec{Name: "legacy01", Group: f.group.ID, VCPUs: 1, MemoryMiB: 1024}})
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	require.NoError(t, err)
	var res vmm.ConvertResult
	require.NoError(t, json.Unmarshal(j.Result, &res))
	assert.Equal(t, "central:p2v/legacy01.vhdx", res.Path)
	assert.Less(t, res.Size, int64(len(want))/2, "a dynamic image holds the data, not the zeros")

	// The image in the share holds the disk.
	got := readImage(t, filepath.Join(f.libDir, "p2v", "legacy01.vhdx"), len(want))
	assert.True(t, bytes.Equal(want, got), "image content equals the source")
	obj, err := f.lib.Object(res.Object)
	require.NoError(t, err)
	assert.Equal(t, "vhdx", string(obj.Kind))

	// The deploy job makes a VM of it.
	require.NotEmpty(t, res.DeployJob)
	dj, err := f.m.Wait(c, res.DeployJob)
	require.NoError(t, err)
	assert.Equal(t, j.User, dj.User)
	assert.Len(t, f.onHosts(t)["legacy01"], 1)
	// Nothing is left in the work folder.
	left, _ := filepath.Glob(filepath.Join(f.dir, "vmmkit-work", "p2v-*"))
	assert.Empty(t, left, "work folders left")

	// A second conversion to the same name is refused by its upload,
	// with the reason, and leaves the first image as it was.
	other := filepath.Join(t.TempDir(), "sdb.raw")
	writeRawDisk(t, other, 40<<20)
	j2, err := f.m.ConvertPhysical(c, vmm.ConvertSpec{Source: other, Name: "legacy01", Share: "central"})
	require.NoError(t, err)
	j2, err = f.m.Wait(c, j2.ID)
	require.Error(t, err)
	assert.Contains(t, j2.Error, "exists and is another image")

	for _, tc := range []struct {
		name string
		spec vmm.ConvertSpec
	}{
		{"no source", vmm.ConvertSpec{Name: "x", Share: "central"}},
		{"missing source", vmm.ConvertSpec{Source: "/nonexistent/disk", Name: "x", Share: "central"}},
		{"bad name", vmm.ConvertSpec{Source: src, Name: "../x", Share: "central"}},
		{"no share", vmm.ConvertSpec{Source: src, Name: "x", Share: "nosuch"}},
		{"deploy without size", vmm.ConvertSpec{Source: src, Name: "x", Share: "central", Deploy: &vmm.VMSpec{Name: "x", Group: f.group.ID}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.m.ConvertPhysical(c, tc.spec)
			assert.ErrorIs(t, err, store.ErrInvalid)
		})
	}
}
