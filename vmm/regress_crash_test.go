package vmm_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
	"github.com/vmmkit/vmmkit/vmm/store/sqlite"
)

// deadStore stands for a store whose manager died: once dead, nothing the
// manager does is written.
type deadStore struct {
	store.Store
	dead *atomic.Bool
}

var errDead = errors.New("manager is dead")

func (s deadStore) UpdateJob(ctx context.Context, j store.Job) (store.Job, error) {
	if s.dead.Load() {
		return j, errDead
	}
	return s.Store.UpdateJob(ctx, j)
}
func (s deadStore) ClaimJob(ctx context.Context, owner string, d time.Duration, kinds ...string) (store.Job, error) {
	if s.dead.Load() {
		return store.Job{}, errDead
	}
	return s.Store.ClaimJob(ctx, owner, d, kinds...)
}
func (s deadStore) TryLead(ctx context.Context, name, owner string, d time.Duration) (bool, error) {
	if s.dead.Load() {
		return false, errDead
	}
	return s.Store.TryLead(ctx, name, owner, d)
}
func (s deadStore) RenewLease(ctx context.Context, id, owner string, d time.Duration) (time.Time, error) {
	if s.dead.Load() {
		return time.Time{}, errDead
	}
	return s.Store.RenewLease(ctx, id, owner, d)
}

// hangDefine kills its manager when the define step begins.
type hangDefine struct {
	hostapi.Driver
	dead    *atomic.Bool
	release chan struct{}
}

func (d hangDefine) CreateVM(ctx context.Context, spec hostapi.VMSpec) (*hostapi.VMInfo, error) {
	d.dead.Store(true) // the manager "dies" here, before anything after the disks step is written
	<-d.release
	return nil, errDead
}

// A manager that dies after a CreateVM's disks were copied (nothing it
// does after is written): the manager that resumes the job keeps the host
// the first one chose, even when another now rates better, and no disk is
// left on another host (review: an unrecorded place step was decided
// again).
func TestCrashAfterPlaceKeepsHost(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 2, sim: sim.Config{Template: sim.HostConfig{Memory: 8 << 30}}})
	c := tctx(t)
	path := filepath.Join(f.dir, "vmm.db")
	require.NoError(t, f.m.Close())

	var dead atomic.Bool
	release := make(chan struct{})
	defer close(release)
	st1, err := sqlite.New(c, sqlite.Config{Path: path})
	require.NoError(t, err)
	m1, err := vmm.New(vmm.Config{Store: deadStore{st1, &dead}, Library: f.lib, Instance: "m1", Lease: time.Second, Poll: 100 * time.Millisecond,
		Connectors: map[string]vmm.Connector{"sim": func(ctx context.Context, uri string) (hostapi.Driver, error) {
			d, err := vmm.SimConnector(f.fleet)(ctx, uri)
			if err != nil {
				return nil, err
			}
			return hangDefine{d, &dead, release}, nil
		}}})
	require.NoError(t, err)
	j, err := m1.CreateVM(c, vmm.VMSpec{Name: "x", Group: f.group.ID, Template: "web-small", NoStart: true})
	require.NoError(t, err)
	for !dead.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	rec, _ := st1.Job(c, j.ID)
	var steps []string
	for _, s := range rec.Steps {
		steps = append(steps, s.Name+":"+string(s.State))
	}
	t.Logf("as stored when m1 died: attempts %d, steps %v", rec.Attempts, steps)
	used := func() (out []string) {
		for _, h := range f.fleet.Hosts() {
			info, err := h.Host(c)
			require.NoError(t, err)
			for _, p := range info.Pools {
				if p.Capacity != p.Free {
					out = append(out, h.Name())
				}
			}
		}
		return out
	}
	first := used()
	t.Logf("hosts with disks when m1 died: %v", first)
	require.Len(t, first, 1)
	// Meanwhile the first host gets busy.
	h := f.fleet.Host(first[0])
	v, err := h.CreateVM(c, hostapi.VMSpec{Name: "busy", VCPUs: 16, Memory: 6 << 30})
	require.NoError(t, err)
	require.NoError(t, h.Start(c, v.ID))

	m2 := f.open(t, func(cfg *vmm.Config) { cfg.Instance = "m2" })
	done, err := m2.Wait(c, j.ID)
	require.NoError(t, err)
	var res vmm.CreateResult
	require.NoError(t, json.Unmarshal(done.Result, &res))
	t.Logf("resumed job: attempts %d, placed on %s; hosts with disks now: %v", done.Attempts, res.HostName, used())
	require.Len(t, used(), 1, "a disk of VM x left on %s", first[0])
}
