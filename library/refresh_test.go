package library

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmmkit/vmmkit/vhd"
)

type libShare struct {
	*DirShare
	dir string
}

func newLibShare(t *testing.T, name, site string) libShare {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	s, err := NewDirShare(name, site, dir)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return libShare{s, dir}
}

func writeLibFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, data, 0o644))
}

// makeLibVHD returns the bytes of a dynamic VHD of 8 MiB holding seed.
func makeLibVHD(t *testing.T, seed string, opts *vhd.CreateOptions) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.vhd")
	d, err := vhd.Create(p, 8<<20, opts)
	require.NoError(t, err)
	_, err = d.WriteAt(bytes.Repeat([]byte(seed), 1000), 1<<20)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	return data
}

func newLib(t *testing.T, opts Options, shares ...libShare) *Library {
	t.Helper()
	for _, s := range shares {
		opts.Shares = append(opts.Shares, s.DirShare)
	}
	l, err := New(opts)
	require.NoError(t, err)
	return l
}

func mustRefresh(t *testing.T, l *Library) RefreshStats {
	t.Helper()
	st, err := l.Refresh(t.Context())
	require.NoError(t, err)
	return st
}

func find1(t *testing.T, l *Library, ref string) *Object {
	t.Helper()
	objs := l.Find(ref)
	require.Len(t, objs, 1, "objects found by %q", ref)
	return objs[0]
}

func replicaPlaces(o *Object) []string {
	var out []string
	for _, r := range o.Replicas {
		out = append(out, r.Share+":"+r.Path)
	}
	return out
}

const (
	hwJSON   = `{"kind": "hardware-profile", "name": "small", "vcpu": 2, "memoryMiB": 4096, "nics": [{"network": "prod"}], "disks": [{"bus": "ide", "sizeGiB": 40}], "bootOrder": ["disk", "cdrom"], "owner": "infra"}`
	osJSON   = `{"kind": "guest-os-profile", "name": "w2k3", "os": "Windows Server 2003", "timeZone": "UTC"}`
	tmplJSON = `{"kind": "template", "name": "win2003-std", "hardwareProfile": "small.json", "disks": ["../disks/win2003.vhd"], "guestOSProfile": "w2k3"}`
)

func TestRefreshGroupsAcrossShares(t *testing.T) {
	a := newLibShare(t, "a", "east")
	b := newLibShare(t, "b", "east")
	c := newLibShare(t, "c", "west")
	disk := makeLibVHD(t, "win2003", nil)
	iso := makeISO("W2K3_STD", 30, true)
	for _, s := range []libShare{a, b, c} {
		writeLibFile(t, s.dir, "disks/win2003.vhd", disk)
	}
	writeLibFile(t, a.dir, "disks/win2003.vhd.meta.json", []byte(`{"family": "Windows Server", "release": "2003 R2", "tags": ["x86"], "owner": "infra", "description": "sysprepped"}`))
	writeLibFile(t, a.dir, "iso/w2k3.iso", iso)
	writeLibFile(t, c.dir, "media/w2k3-copy.iso", iso)
	writeLibFile(t, b.dir, "defs/small.json", []byte(hwJSON))
	writeLibFile(t, b.dir, "defs/w2k3.json", []byte(osJSON))
	writeLibFile(t, b.dir, "defs/win2003-std.json", []byte(tmplJSON))
	writeLibFile(t, b.dir, "disks/win2003.vhd", disk)
	writeLibFile(t, b.dir, "scripts/join.ps1", []byte("Add-Computer\n"))
	writeLibFile(t, c.dir, "notes.txt", []byte("hello"))
	writeLibFile(t, c.dir, "data.json", []byte(`{"a": 1}`))

	l := newLib(t, Options{}, a, b, c)
	st := mustRefresh(t, l)
	assert.Equal(t, 3, st.Shares)
	assert.Equal(t, 12, st.Files)
	assert.Equal(t, 11, st.Hashed, "every file but the sidecar")
	assert.Equal(t, 0, st.Problems)
	assert.Empty(t, st.Failed)

	var names []string
	for o := range l.Objects() {
		names = append(names, o.Name)
	}
	assert.Equal(t, []string{"data.json", "join.ps1", "notes.txt", "small", "w2k3", "w2k3.iso", "win2003-std", "win2003.vhd"}, names)

	d := find1(t, l, "win2003.vhd")
	assert.Equal(t, KindVHD, d.Kind)
	assert.Equal(t, []string{"a:disks/win2003.vhd", "b:disks/win2003.vhd", "c:disks/win2003.vhd"}, replicaPlaces(d))
	assert.Equal(t, int64(len(disk)), d.Size)
	require.NotNil(t, d.Disk)
	assert.Equal(t, DiskInfo{Format: "VHD", Type: "dynamic", VirtualSize: 8 << 20, UUID: d.Disk.UUID}, *d.Disk)
	assert.Equal(t, Metadata{Family: "Windows Server", Release: "2003 R2", Tags: []string{"x86"}, Owner: "infra", Description: "sysprepped"}, d.Metadata)
	assert.True(t, strings.HasPrefix(d.ID, "blake3:"), d.ID)
	got, err := l.Object(d.ID)
	require.NoError(t, err)
	assert.Same(t, d, got)
	m, err := l.Manifest(d.ID)
	require.NoError(t, err)
	assert.Equal(t, d.ID, m.ID())
	assert.Equal(t, []*Object{d}, l.Find(d.ID))
	assert.Equal(t, []*Object{d}, l.Find("c:disks/win2003.vhd"))

	i := find1(t, l, "w2k3.iso")
	assert.Equal(t, KindISO, i.Kind)
	assert.Equal(t, []string{"a:iso/w2k3.iso", "c:media/w2k3-copy.iso"}, replicaPlaces(i))
	assert.Equal(t, &ISOInfo{VolumeLabel: "W2K3_STD", SystemID: "LINUX", BlockSize: 2048, VolumeSize: 30 * 2048, Bootable: true}, i.ISO)

	hw := find1(t, l, "small")
	assert.Equal(t, KindHardwareProfile, hw.Kind)
	assert.Equal(t, 2, hw.HardwareProfile.VCPU)
	assert.Equal(t, []string{"disk", "cdrom"}, hw.HardwareProfile.BootOrder)
	assert.Equal(t, "infra", hw.Owner)
	gos := find1(t, l, "w2k3")
	assert.Equal(t, KindGuestOSProfile, gos.Kind)

	tm := find1(t, l, "win2003-std")
	assert.Equal(t, KindTemplate, tm.Kind)
	assert.Empty(t, tm.Problem)
	assert.Equal(t, hw.ID, tm.Template.HardwareProfileID)
	assert.Equal(t, []string{d.ID}, tm.Template.DiskIDs)
	assert.Equal(t, gos.ID, tm.Template.GuestOSProfileID)

	assert.Equal(t, &ScriptInfo{Language: "powershell"}, find1(t, l, "join.ps1").Script)
	assert.Equal(t, KindOther, find1(t, l, "notes.txt").Kind)
	assert.Equal(t, KindOther, find1(t, l, "data.json").Kind)
	assert.Empty(t, l.Find("nothing"))
	_, err = l.Object("blake3:00")
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestRefreshReusesUnchangedFiles(t *testing.T) {
	a := newLibShare(t, "a", "east")
	b := newLibShare(t, "b", "west")
	writeLibFile(t, a.dir, "one.bin", []byte("one"))
	writeLibFile(t, a.dir, "two.bin", []byte("two"))
	writeLibFile(t, b.dir, "three.bin", []byte("three"))
	cache := t.TempDir()
	l := newLib(t, Options{CacheDir: cache}, a, b)

	st := mustRefresh(t, l)
	assert.Equal(t, 3, st.Hashed)
	assert.Equal(t, 0, st.Reused)
	old := find1(t, l, "two.bin").ID

	st = mustRefresh(t, l)
	assert.Equal(t, 0, st.Hashed, "nothing changed")
	assert.Equal(t, 3, st.Reused)
	assert.Equal(t, 3, st.Objects)

	// A changed file is hashed again; a removed one goes.
	writeLibFile(t, a.dir, "two.bin", []byte("TWO"))
	require.NoError(t, os.Remove(filepath.Join(b.dir, "three.bin")))
	st = mustRefresh(t, l)
	assert.Equal(t, 1, st.Hashed)
	assert.Equal(t, 1, st.Reused)
	assert.Equal(t, 2, st.Objects)
	two := find1(t, l, "two.bin")
	assert.NotEqual(t, old, two.ID)
	assert.Empty(t, l.Find("three.bin"))

	// A new process reuses what the first one learned.
	l2 := newLib(t, Options{CacheDir: cache}, a, b)
	st = mustRefresh(t, l2)
	assert.Equal(t, 0, st.Hashed)
	assert.Equal(t, 2, st.Reused)
	assert.Equal(t, two.ID, find1(t, l2, "two.bin").ID)

	// A damaged cache is ignored, not trusted.
	names, _ := filepath.Glob(filepath.Join(cache, "share-*.json"))
	require.Len(t, names, 2)
	for _, n := range names {
		require.NoError(t, os.WriteFile(n, []byte("{not json"), 0o644))
	}
	l3 := newLib(t, Options{CacheDir: cache}, a, b)
	st = mustRefresh(t, l3)
	assert.Equal(t, 2, st.Hashed)
}

func TestRefreshListsBrokenFiles(t *testing.T) {
	a := newLibShare(t, "a", "east")
	// A fixed VHD has one footer, at the end: damage it.
	fixed := makeLibVHD(t, "x", &vhd.CreateOptions{Type: vhd.Fixed})
	copy(fixed[len(fixed)-512+8:], "garbage!")
	writeLibFile(t, a.dir, "bad.vhd", fixed)
	writeLibFile(t, a.dir, "notvhd.vhdx", []byte("this is not an image at all, just text"))
	writeLibFile(t, a.dir, "cut.iso", makeISO("CUT", 64, false)[:20*isoSectorSize])
	writeLibFile(t, a.dir, "bad.json", []byte(`{"kind": "template", "disks": [`))
	writeLibFile(t, a.dir, "nocpu.json", []byte(`{"kind": "hardware-profile", "memoryMiB": 1}`))
	writeLibFile(t, a.dir, "dangling.json", []byte(`{"kind": "template", "name": "dangling", "hardwareProfile": "nope.json", "disks": ["gone.vhd"]}`))
	writeLibFile(t, a.dir, "good.vhd", makeLibVHD(t, "good", nil))
	writeLibFile(t, a.dir, "good.meta.json", []byte(`{"family": `))

	l := newLib(t, Options{}, a)
	st := mustRefresh(t, l)
	assert.Equal(t, 7, st.Objects)
	assert.Equal(t, 7, st.Problems)
	for _, tc := range []struct {
		name, kind, problem string
	}{
		{"bad.vhd", "vhd", "footer"},
		{"notvhd.vhdx", "vhdx", "not a valid VHD"},
		{"cut.iso", "iso", "truncated"},
		{"bad.json", "other", "invalid JSON"},
		{"nocpu.json", "hardware-profile", "vcpu 0"},
		{"dangling", "template", `"nope.json" (hardware-profile), "gone.vhd" (vhd)`},
		{"good.vhd", "vhd", "metadata sidecar: invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := find1(t, l, tc.name)
			assert.Equal(t, Kind(tc.kind), o.Kind)
			assert.Contains(t, o.Problem, tc.problem)
		})
	}
}

func TestRefreshDifferencingDisk(t *testing.T) {
	a := newLibShare(t, "a", "east")
	parent := filepath.Join(a.dir, "base", "parent.vhd")
	require.NoError(t, os.MkdirAll(filepath.Dir(parent), 0o755))
	d, err := vhd.Create(parent, 8<<20, nil)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	child := filepath.Join(a.dir, "base", "child.vhd")
	d, err = vhd.Create(child, 0, &vhd.CreateOptions{Parent: parent})
	require.NoError(t, err)
	require.NoError(t, d.Close())
	var orphan []byte // a child whose parent is not in the library
	{
		dir := t.TempDir()
		p := filepath.Join(dir, "p.vhd")
		d, err := vhd.Create(p, 4<<20, nil)
		require.NoError(t, err)
		require.NoError(t, d.Close())
		d, err = vhd.Create(filepath.Join(dir, "orphan.vhd"), 0, &vhd.CreateOptions{Parent: p})
		require.NoError(t, err)
		require.NoError(t, d.Close())
		orphan, err = os.ReadFile(filepath.Join(dir, "orphan.vhd"))
		require.NoError(t, err)
		require.NoError(t, os.Remove(p))
	}
	writeLibFile(t, a.dir, "orphan.vhd", orphan)

	l := newLib(t, Options{}, a)
	mustRefresh(t, l)
	p := find1(t, l, "parent.vhd")
	c := find1(t, l, "child.vhd")
	require.NotNil(t, c.Disk)
	assert.Equal(t, "differencing", c.Disk.Type)
	assert.Equal(t, int64(8<<20), c.Disk.VirtualSize)
	assert.Equal(t, p.Disk.UUID, c.Disk.ParentUUID)
	assert.Equal(t, p.ID, c.Disk.ParentID)
	assert.Empty(t, c.Problem)

	o := find1(t, l, "orphan.vhd")
	assert.Equal(t, "differencing", o.Disk.Type)
	assert.Equal(t, int64(4<<20), o.Disk.VirtualSize)
	assert.Equal(t, "p.vhd", o.Disk.ParentPath)
	assert.Contains(t, o.Problem, "not in the library")
}

// hookShare runs hook before its share lists its first file.
type hookShare struct {
	Share
	hook func()
}

func (h hookShare) List(ctx context.Context) iter.Seq2[FileInfo, error] {
	return func(yield func(FileInfo, error) bool) {
		first := true
		for fi, err := range h.Share.List(ctx) {
			if first && h.hook != nil {
				h.hook()
			}
			first = false
			if !yield(fi, err) {
				return
			}
		}
	}
}

func TestRefreshKeepsOfflineShares(t *testing.T) {
	a := newLibShare(t, "a", "east")
	b := newLibShare(t, "b", "west")
	disk := makeLibVHD(t, "d", nil)
	writeLibFile(t, a.dir, "d.vhd", disk)
	writeLibFile(t, b.dir, "d.vhd", disk)
	writeLibFile(t, b.dir, "only-b.iso", makeISO("B", 20, false))
	writeLibFile(t, b.dir, "z.txt", []byte("z"))

	hooked := hookShare{Share: b.DirShare}
	l, err := New(Options{Shares: []Share{a.DirShare, &hooked}})
	require.NoError(t, err)
	mustRefresh(t, l)
	require.Equal(t, 3, len(slices.Collect(l.Objects())))

	// b goes away in the middle of the scan, with a new file to read.
	writeLibFile(t, b.dir, "new.txt", []byte("new"))
	hooked.hook = func() { require.NoError(t, os.Rename(b.dir, b.dir+".gone")) }
	st := mustRefresh(t, l)
	assert.Equal(t, []string{"b"}, st.Offline)
	assert.ErrorIs(t, st.Failed["b"], ErrOffline)
	assert.Equal(t, 3, st.Objects, "no object lost")
	d := find1(t, l, "d.vhd")
	require.Len(t, d.Replicas, 2)
	assert.False(t, d.Replicas[0].Offline)
	assert.True(t, d.Replicas[1].Offline)
	iso := find1(t, l, "only-b.iso")
	assert.True(t, iso.Replicas[0].Offline)
	_, err = l.Nearest(iso, "west")
	assert.ErrorIs(t, err, ErrNotFound, "an offline replica does not serve")
	r, err := l.Nearest(d, "west")
	require.NoError(t, err)
	assert.Equal(t, "a", r.Share)

	// Still gone at the start of the next scan; then back.
	hooked.hook = nil
	st = mustRefresh(t, l)
	assert.Equal(t, []string{"b"}, st.Offline)
	assert.Equal(t, 3, st.Objects)
	require.NoError(t, os.Rename(b.dir+".gone", b.dir))
	st = mustRefresh(t, l)
	assert.Empty(t, st.Offline)
	assert.Equal(t, 4, st.Objects)
	assert.False(t, find1(t, l, "only-b.iso").Replicas[0].Offline)
}

func TestRefreshCancel(t *testing.T) {
	a := newLibShare(t, "a", "east")
	writeLibFile(t, a.dir, "small.txt", []byte("x"))
	l := newLib(t, Options{}, a)
	mustRefresh(t, l)

	big := make([]byte, 5*ChunkSize)
	writeLibFile(t, a.dir, "big.raw", big)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := l.Refresh(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Len(t, slices.Collect(l.Objects()), 1, "what was known stays")

	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	hooked := hookShare{Share: a.DirShare, hook: cancel}
	l2, err := New(Options{Shares: []Share{hooked}})
	require.NoError(t, err)
	_, err = l2.Refresh(ctx)
	assert.ErrorIs(t, err, context.Canceled)

	st := mustRefresh(t, l)
	assert.Equal(t, 2, st.Objects)
	assert.Equal(t, KindRaw, find1(t, l, "big.raw").Kind)
}

func TestNew(t *testing.T) {
	a := newLibShare(t, "a", "east")
	_, err := New(Options{Shares: []Share{a.DirShare, a.DirShare}})
	assert.ErrorContains(t, err, "two shares")
	_, err = New(Options{Shares: []Share{nil}})
	assert.Error(t, err)
}

func TestRefreshConcurrentReaders(t *testing.T) {
	a := newLibShare(t, "a", "east")
	for i := range 50 {
		writeLibFile(t, a.dir, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))+".txt", []byte{byte(i)})
	}
	l := newLib(t, Options{Workers: 3}, a)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			for o := range l.Objects() {
				_ = o.Replicas[0].Path
				l.Find(o.Name)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for range 3 {
		mustRefresh(t, l)
	}
	<-done
	assert.Len(t, slices.Collect(l.Objects()), 50)
}

func TestHashFileMatchesHash(t *testing.T) {
	for _, size := range []int{0, 1, 4096, ChunkSize - 1, ChunkSize, ChunkSize + 1} {
		data := bytes.Repeat([]byte{byte(size)}, size)
		got, err := hashFile(t.Context(), bytes.NewReader(data), int64(size), 2)
		require.NoError(t, err)
		want, err := Hash(t.Context(), bytes.NewReader(data), int64(size), nil)
		require.NoError(t, err)
		assert.Equal(t, want, got, "size %d", size)
		assert.Equal(t, want.ID(), got.ID())
	}
	_, err := hashFile(t.Context(), bytes.NewReader(make([]byte, 10)), 20, 2)
	assert.Error(t, err, "short file")
}

// unreadableShare hides its files under "locked/" and yields a permission
// error for that folder instead, as a DirShare does for a folder it may
// not read.
type unreadableShare struct {
	Share
	locked *atomic.Bool
}

func (u unreadableShare) List(ctx context.Context) iter.Seq2[FileInfo, error] {
	return func(yield func(FileInfo, error) bool) {
		reported := false
		for fi, err := range u.Share.List(ctx) {
			if err == nil && u.locked.Load() && strings.HasPrefix(fi.Name, "locked/") {
				if reported {
					continue
				}
				reported = true
				fi, err = FileInfo{}, &ShareError{Op: "list", Share: u.Name(), Name: "locked", Err: errors.Join(ErrPermission, fs.ErrPermission)}
			}
			if !yield(fi, err) {
				return
			}
		}
	}
}

func TestRefreshPartlyUnreadableShare(t *testing.T) {
	a := newLibShare(t, "a", "east")
	writeLibFile(t, a.dir, "locked/secret.vhd", makeLibVHD(t, "s", nil))
	writeLibFile(t, a.dir, "open.iso", makeISO("OPEN", 20, false))
	locked := &atomic.Bool{}
	l, err := New(Options{Shares: []Share{unreadableShare{a.DirShare, locked}}})
	require.NoError(t, err)
	mustRefresh(t, l)
	require.Len(t, l.Find("secret.vhd"), 1)

	locked.Store(true)
	writeLibFile(t, a.dir, "new.iso", makeISO("NEW", 20, false))
	st := mustRefresh(t, l)
	require.ErrorIs(t, st.Failed["a"], ErrPermission, "the unreadable folder is reported")
	assert.Empty(t, st.Offline, "a share read in part is not offline")
	secret := find1(t, l, "secret.vhd")
	assert.True(t, secret.Replicas[0].Usable(), "what was known of the folder is kept, usable")
	find1(t, l, "new.iso") // the rest of the share was scanned
	_, err = l.Nearest(find1(t, l, "open.iso"), "east")
	require.NoError(t, err)
}
