package vmm_test

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/internal/demolib"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/vhd"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// fixture is a manager over a simulated fleet and a one-share library.
type fixture struct {
	fleet   *sim.Fleet
	lib     *library.Library
	libDir  string
	dir     string
	m       *vmm.Manager
	group   store.HostGroup
	hostIDs map[string]string // sim name -> host ID
}

type fixtureOpts struct {
	hosts  int
	sim    sim.Config
	config func(*vmm.Config)
	goal   string
}

func newFixture(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	if o.hosts == 0 {
		o.hosts = 3
	}
	f := &fixture{dir: t.TempDir(), hostIDs: map[string]string{}}
	sc := o.sim
	sc.Count = o.hosts
	fleet, err := sim.New(sc)
	require.NoError(t, err)
	f.fleet = fleet
	f.libDir = filepath.Join(f.dir, "library")
	require.NoError(t, demolib.Build(f.libDir, demolib.Options{}))
	share, err := library.NewDirShare("central", "paris", f.libDir)
	require.NoError(t, err)
	f.lib, err = library.New(library.Options{Shares: []library.Share{share}})
	require.NoError(t, err)
	_, err = f.lib.Refresh(t.Context())
	require.NoError(t, err)
	f.m = f.open(t, o.config)
	f.group, err = f.m.CreateGroup(t.Context(), store.HostGroup{Name: "prod", Goal: o.goal})
	require.NoError(t, err)
	for _, name := range fleet.Names() {
		h, err := f.m.AddHost(t.Context(), f.group.ID, vmm.SimURI(name), &vmm.HostOptions{Site: "paris"})
		require.NoError(t, err)
		f.hostIDs[name] = h.ID
	}
	return f
}

// open opens a manager on the fixture's store file.
func (f *fixture) open(t *testing.T, config func(*vmm.Config)) *vmm.Manager {
	t.Helper()
	cfg := vmm.Config{
		StorePath: filepath.Join(f.dir, "vmm.db"),
		Sim:       f.fleet,
		Library:   f.lib,
		Lease:     2 * time.Second,
		Poll:      100 * time.Millisecond,
	}
	if config != nil {
		config(&cfg)
	}
	m, err := vmm.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

func tctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// onHosts returns every VM of the fleet by name, with the host it is on.
func (f *fixture) onHosts(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, h := range f.fleet.Hosts() {
		vms, err := h.VMs(t.Context())
		require.NoError(t, err)
		for _, v := range vms {
			out[v.Name] = append(out[v.Name], h.Name())
		}
	}
	return out
}

// disks returns the disks of every host's default pool by host name.
func (f *fixture) diskCount(t *testing.T) int {
	t.Helper()
	n := 0
	for _, h := range f.fleet.Hosts() {
		info, err := h.Host(t.Context())
		require.NoError(t, err)
		for _, p := range info.Pools {
			if p.Capacity != p.Free {
				n++
			}
		}
	}
	return n
}

func (f *fixture) vm(t *testing.T, name string) *hostapi.VMInfo {
	t.Helper()
	for _, h := range f.fleet.Hosts() {
		if v, err := h.VM(t.Context(), name); err == nil {
			return v
		}
	}
	return nil
}

// waitStep waits until step i of job id is running on m.
func waitStep(t *testing.T, m *vmm.Manager, id string, i int) {
	t.Helper()
	for cur, err := range m.Watch(tctx(t), id) {
		require.NoError(t, err)
		if len(cur.Steps) > i && cur.Steps[i].State == store.JobRunning {
			return
		}
	}
	t.Fatalf("job %s ended before step %d ran", id, i)
}

// readImage returns the first n bytes an image holds.
func readImage(t *testing.T, path string, n int) []byte {
	t.Helper()
	d, err := vhd.Open(path)
	require.NoError(t, err)
	defer d.Close()
	got := make([]byte, n)
	k, err := d.ReadAt(got, 0)
	if err == io.EOF && k == n {
		err = nil
	}
	require.NoError(t, err)
	return got
}
