package vmm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/libvirt"
	"github.com/vmmkit/vmmkit/internal/demolib"
	"github.com/vmmkit/vmmkit/internal/pgtest"
	"github.com/vmmkit/vmmkit/internal/testenv"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
	"github.com/vmmkit/vmmkit/vmm/store/postgres"
	"github.com/vmmkit/vmmkit/vmm/store/sqlite"
)

// crashLib builds the library of TestCrashMidCreateVM in dir: a small
// guest without a NIC (the test daemon has no network), with enough data
// in its disk for the copy to take a moment.
func crashLib(t testing.TB, dir string) *library.Library {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "templates")); errors.Is(err, os.ErrNotExist) {
		require.NoError(t, demolib.Build(dir, demolib.Options{
			Template: "crash-tiny", DiskSize: 64 << 20, Data: 16 << 20, VCPU: 1, MemoryMiB: 128, Network: "none",
		}))
	}
	share, err := library.NewDirShare("central", "paris", dir)
	require.NoError(t, err)
	lib, err := library.New(library.Options{Shares: []library.Share{share}})
	require.NoError(t, err)
	_, err = lib.Refresh(context.Background())
	require.NoError(t, err)
	return lib
}

// stallingDriver is the libvirt driver of the crashing child: at its
// point it writes the marker file and stalls, for the parent to kill the
// child there.
type stallingDriver struct {
	hostapi.Driver
	point, marker string
	armed         *atomic.Bool // set once the host is added: Host is then called by the job
}

// Host stalls at point "place": the place step of the job, the first that
// calls the host, right after the job was claimed and the name reserved.
func (d *stallingDriver) Host(ctx context.Context) (*hostapi.HostInfo, error) {
	if d.point == "place" && d.armed.Load() {
		d.stall(ctx)
	}
	return d.Driver.Host(ctx)
}

func (d *stallingDriver) stall(ctx context.Context) {
	_ = os.WriteFile(d.marker, nil, 0o644)
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
}

func (d *stallingDriver) CopyImage(ctx context.Context, src hostapi.Image, dst hostapi.DiskSpec, progress hostapi.Progress) (*hostapi.DiskInfo, error) {
	if d.point == "disks" {
		// Stall half-way through the upload.
		open := src.Open
		src.Open = func() (io.ReadCloser, error) {
			rc, err := open()
			if err != nil {
				return nil, err
			}
			return &stallingReader{ReadCloser: rc, left: src.Size / 2, stall: func() { d.stall(ctx) }}, nil
		}
	}
	di, err := d.Driver.CopyImage(ctx, src, dst, progress)
	if d.point == "disks-copied" && err == nil {
		d.stall(ctx)
	}
	return di, err
}

func (d *stallingDriver) CreateVM(ctx context.Context, spec hostapi.VMSpec) (*hostapi.VMInfo, error) {
	v, err := d.Driver.CreateVM(ctx, spec)
	if d.point == "define" && err == nil {
		d.stall(ctx)
	}
	return v, err
}

func (d *stallingDriver) Start(ctx context.Context, id string) error {
	err := d.Driver.Start(ctx, id)
	if d.point == "start" && err == nil {
		d.stall(ctx)
	}
	return err
}

type stallingReader struct {
	io.ReadCloser
	left  int64
	stall func()
}

func (r *stallingReader) Read(b []byte) (int, error) {
	if r.left <= 0 {
		r.stall()
		r.left = 1 << 62
	}
	if int64(len(b)) > r.left {
		b = b[:r.left]
	}
	n, err := r.ReadCloser.Read(b)
	r.left -= int64(n)
	return n, err
}

// runCrashChild is the manager of TestCrashMidCreateVM that dies: it adds
// the libvirt host to a group, queues CreateVM and runs it until killed.
func runCrashChild(t *testing.T) {
	get := func(name string) string {
		v := os.Getenv(helperEnv + "_" + name)
		require.NotEmpty(t, v, name)
		return v
	}
	dir, uri, name, domainType := get("DIR"), get("URI"), get("NAME"), get("DOMAIN_TYPE")
	point, marker := os.Getenv(helperEnv+"_POINT"), get("MARKER")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // in case the parent is gone
	defer cancel()
	armed := new(atomic.Bool)
	connect := vmm.LibvirtConnector(&libvirt.Options{DomainType: domainType})
	m, err := vmm.New(vmm.Config{
		StorePath: filepath.Join(dir, "vmm.db"), PostgresDSN: os.Getenv(helperEnv + "_PG"), Instance: "child",
		Connectors: map[string]vmm.Connector{"libvirt": func(ctx context.Context, uri string) (hostapi.Driver, error) {
			d, err := connect(ctx, uri)
			if err != nil {
				return nil, err
			}
			return &stallingDriver{Driver: d, point: point, marker: marker, armed: armed}, nil
		}},
		Library: crashLib(t, filepath.Join(dir, "library")),
		Lease:   2 * time.Second, Poll: 100 * time.Millisecond,
		Logger: childLogger(),
	})
	require.NoError(t, err)
	defer m.Close()
	g, err := m.CreateGroup(ctx, store.HostGroup{Name: "crash"})
	require.NoError(t, err)
	_, err = m.AddHost(ctx, g.ID, uri, &vmm.HostOptions{Site: "paris"})
	require.NoError(t, err)
	armed.Store(true)
	j, err := m.CreateVM(ctx, vmm.VMSpec{Name: name, Group: g.ID, Template: "crash-tiny", Owner: "crash"})
	require.NoError(t, err)
	_, err = m.Wait(ctx, j.ID)
	t.Errorf("the job ended before the child was killed: %v", err)
}

// A manager killed while it creates a VM on a libvirt host, at each step
// of the job: another manager resumes the job after the lease and makes
// exactly one VM, running, with one record and no disk left over.
//
// The child stalls at its round's point (stallingDriver) and writes a
// marker file; the parent then kills it with SIGKILL:
//   - place: in the place step, right after the job was claimed and the
//     name reserved;
//   - disks: half-way through the upload of the disk;
//   - disks-copied: the disk copied, the step's end not recorded;
//   - define: the domain defined, the step's end not recorded;
//   - start: the domain started, the step's end not recorded.
func TestCrashMidCreateVM(t *testing.T) {
	uri := testenv.Var(t, "VMM_TEST_LIBVIRT_URI")
	domainType := testenv.Var(t, "VMM_TEST_LIBVIRT_DOMAIN_TYPE")
	virsh := testenv.Tool(t, "VMM_TEST_VIRSH", "virsh")
	libDir := filepath.Join(t.TempDir(), "library")
	crashLib(t, libDir) // built once, shared by the rounds

	host, err := libvirt.Dial(t.Context(), uri, &libvirt.Options{DomainType: domainType})
	require.NoError(t, err)
	defer host.Close()

	for _, point := range []string{"place", "disks", "disks-copied", "define", "start"} {
		t.Run(point, func(t *testing.T) {
			crashRound(t, point, uri, domainType, virsh, libDir, host, "")
		})
	}
	// The same on PostgreSQL, at the two points where most is at stake.
	for _, point := range []string{"disks", "start"} {
		t.Run("postgres/"+point, func(t *testing.T) {
			crashRound(t, point, uri, domainType, virsh, libDir, host, pgtest.FreshDB(t))
		})
	}
}

// crashStore opens the store of a crash test: PostgreSQL at dsn, else the
// SQLite file in dir.
func crashStore(t *testing.T, dir, dsn string) store.Store {
	t.Helper()
	var s store.Store
	var err error
	if dsn != "" {
		s, err = postgres.Open(t.Context(), dsn)
	} else {
		s, err = sqlite.Open(filepath.Join(dir, "vmm.db"))
	}
	require.NoError(t, err)
	return s
}

// useStore points cfg at the store of a crash test.
func useStore(cfg *vmm.Config, dir, dsn string) {
	cfg.StorePath, cfg.PostgresDSN = filepath.Join(dir, "vmm.db"), dsn
}

func crashRound(t *testing.T, point, uri, domainType, virsh, libDir string, host *libvirt.Driver, dsn string) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	require.NoError(t, os.Symlink(libDir, filepath.Join(dir, "library")))
	name := fmt.Sprintf("crash-%s-%s", point, strings.ToLower(fmt.Sprintf("%06x", rand.Uint32()&0xffffff)))
	marker := filepath.Join(dir, "stalled")
	t.Cleanup(func() { cleanupVM(t, virsh, uri, host, name) })

	child := startHelper(t, "child-"+point, helperEnv+"=crash",
		helperEnv+"_DIR="+dir, helperEnv+"_URI="+uri, helperEnv+"_NAME="+name,
		helperEnv+"_DOMAIN_TYPE="+domainType, helperEnv+"_POINT="+point, helperEnv+"_MARKER="+marker, helperEnv+"_PG="+dsn)

	// Watch the job in the child's store, and kill the child at its point.
	var ro store.Store
	for ro == nil {
		require.False(t, child.exited(), "the child ended")
		require.NoError(t, ctx.Err(), "waiting for the child's store")
		if _, err := os.Stat(filepath.Join(dir, "vmm.db")); err == nil || dsn != "" {
			ro = crashStore(t, dir, dsn)
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	defer ro.Close()
	for {
		require.False(t, child.exited(), "the child ended before it was killed")
		require.NoError(t, ctx.Err(), "waiting for the child to reach %s", point)
		if _, err := os.Stat(marker); err == nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	child.kill()
	<-child.done
	killed := time.Now()
	jobs, err := ro.Jobs(ctx, store.JobFilter{Kind: vmm.KindCreateVM})
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	j := jobs[0]
	jobID := j.ID
	require.Equal(t, store.JobRunning, j.State, "the job when the child was killed")
	var steps []string
	for _, s := range j.Steps {
		steps = append(steps, fmt.Sprintf("%s:%s", s.Name, s.State))
	}
	t.Logf("child killed at %s, %v after it started; steps %v", point, killed.Sub(start).Round(time.Millisecond), steps)
	var in struct {
		VMID string `json:"vm_id"`
	}
	require.NoError(t, json.Unmarshal(j.Input, &in))

	// Another manager on the same store resumes the job after the lease.
	cfg := vmm.Config{
		Instance:   "survivor",
		Connectors: map[string]vmm.Connector{"libvirt": vmm.LibvirtConnector(&libvirt.Options{DomainType: domainType})},
		Library:    crashLib(t, libDir),
		Lease:      2 * time.Second, Poll: 100 * time.Millisecond,
	}
	useStore(&cfg, dir, dsn)
	m, err := vmm.New(cfg)
	require.NoError(t, err)
	defer m.Close()
	done, err := m.Wait(ctx, jobID)
	if !assert.NoError(t, err, "the resumed job") {
		// What the failed job left in the pool (it must take back all).
		assert.Empty(t, poolVolumes(t, virsh, uri, name), "volumes of the pool named %s* after the job failed", name)
		return
	}
	t.Logf("job resumed and ended %v after the kill", time.Since(killed).Round(time.Millisecond))
	assert.Equal(t, store.JobSucceeded, done.State)
	assert.Equal(t, 2, done.Attempts, "claims of the job")
	var res vmm.CreateResult
	require.NoError(t, json.Unmarshal(done.Result, &res))
	assert.Equal(t, in.VMID, res.VMID)

	// libvirt has one domain of that name, running, labelled with the
	// record's ID.
	all, err := host.VMs(ctx)
	require.NoError(t, err)
	var onHost []hostapi.VMInfo
	for _, v := range all {
		if v.Name == name {
			onHost = append(onHost, v)
		}
	}
	require.Len(t, onHost, 1, "domains named %s", name)
	v := onHost[0]
	assert.Equal(t, hostapi.StateRunning, v.State, "the domain's state")
	assert.Equal(t, in.VMID, v.Labels[vmm.LabelVM], "the domain's %s label", vmm.LabelVM)

	// The inventory has one record of it, running on the host.
	hosts, err := m.Hosts(ctx, "")
	require.NoError(t, err)
	require.Len(t, hosts, 1)
	vms, err := m.VMs(ctx, store.VMFilter{})
	require.NoError(t, err)
	var recs []store.VM
	for _, r := range vms {
		if r.Name == name {
			recs = append(recs, r)
		}
	}
	require.Len(t, recs, 1, "records named %s", name)
	assert.Equal(t, in.VMID, recs[0].ID)
	assert.Equal(t, "running", recs[0].State, "the record's state")
	assert.Equal(t, hosts[0].ID, recs[0].HostID, "the record's host")
	assert.Equal(t, hosts[0].ID, res.HostID, "the result's host")

	// The pool holds the VM's disks and nothing else of it.
	var used []string
	for _, d := range v.Disks {
		used = append(used, d.Name)
	}
	vols := poolVolumes(t, virsh, uri, name)
	slices.Sort(used)
	slices.Sort(vols)
	assert.Equal(t, used, vols, "volumes of the pool named %s* (the VM's disks: %v)", name, res.Disks)
	assert.Equal(t, len(res.Disks), len(used), "disks of the domain and of the result")
	t.Logf("round %s: %v", point, time.Since(start).Round(time.Millisecond))
}

// crashPool is the pool the test daemon has, where the VMs' disks go.
func crashPool() string {
	if p := os.Getenv("VMM_TEST_LIBVIRT_POOL"); p != "" {
		return p
	}
	return "default"
}

// poolVolumes lists the volumes of the test pool whose name starts with
// prefix.
func poolVolumes(t *testing.T, virsh, uri, prefix string) []string {
	t.Helper()
	out, err := exec.Command(virsh, "-c", uri, "pool-refresh", crashPool()).CombinedOutput()
	require.NoError(t, err, "virsh pool-refresh: %s", out)
	out, err = exec.Command(virsh, "-c", uri, "vol-list", "--pool", crashPool()).CombinedOutput()
	require.NoError(t, err, "virsh vol-list: %s", out)
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names
}

// cleanupVM removes the domains and volumes named name*.
func cleanupVM(t *testing.T, virsh, uri string, host *libvirt.Driver, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if all, err := host.VMs(ctx); err == nil {
		for _, v := range all {
			if v.Name != name {
				continue
			}
			if v.State != hostapi.StateStopped {
				_ = host.PowerOff(ctx, v.ID)
			}
			if err := host.DeleteVM(ctx, v.ID, &hostapi.DeleteOptions{KeepDisks: true}); err != nil {
				t.Logf("cleanup: delete VM %s: %v", name, err)
			}
		}
	}
	for _, vol := range poolVolumes(t, virsh, uri, name) {
		if err := host.DeleteDisk(ctx, crashPool(), vol); err != nil {
			t.Logf("cleanup: delete disk %s: %v", vol, err)
		}
	}
}
