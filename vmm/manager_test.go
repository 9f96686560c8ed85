package vmm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

func TestCreateVM(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 4})
	c := tctx(t)
	var jobs []store.Job
	for i := range 6 {
		j, err := f.m.CreateVM(c, vmm.VMSpec{Name: fmt.Sprintf("web%02d", i), Group: f.group.ID, Template: "web-small", Owner: "alice"})
		require.NoError(t, err)
		assert.Equal(t, store.JobQueued, j.State)
		jobs = append(jobs, j)
	}
	hostsUsed := map[string]bool{}
	for i, j := range jobs {
		done, err := f.m.Wait(c, j.ID)
		require.NoError(t, err, "job %d", i)
		var res vmm.CreateResult
		require.NoError(t, json.Unmarshal(done.Result, &res))
		assert.Greater(t, res.Stars, 0.0, "stars of the chosen host")
		assert.NotEmpty(t, res.Ratings, "ratings")
		assert.Equal(t, "running", res.State)
		hostsUsed[res.HostID] = true
		for _, s := range done.Steps {
			assert.Equal(t, store.JobSucceeded, s.State, "step %s", s.Name)
		}
		rec, err := f.m.Store().VM(c, res.VMID)
		require.NoError(t, err)
		assert.Equal(t, "running", rec.State)
		assert.Equal(t, res.HostID, rec.HostID)
		assert.Equal(t, "alice", rec.Owner)
		v := f.vm(t, rec.Name)
		require.NotNil(t, v, "VM %s on a host", rec.Name)
		assert.Equal(t, hostapi.StateRunning, v.State)
		assert.Equal(t, res.VMID, v.Labels[vmm.LabelVM])
		assert.Equal(t, 2, v.VCPUs, "VCPUs from the hardware profile")
		assert.Equal(t, int64(2048)<<20, v.Memory, "memory from the hardware profile")
		require.Len(t, v.Disks, 1)
		assert.Equal(t, 1.0, done.Progress)
	}
	assert.Greater(t, len(hostsUsed), 1, "load balancing spreads the VMs")
	for name, hosts := range f.onHosts(t) {
		assert.Len(t, hosts, 1, "VM %s on hosts %v", name, hosts)
	}
}

func TestCreateVMInvalid(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 1})
	c := tctx(t)
	for _, tc := range []struct {
		name string
		spec vmm.VMSpec
	}{
		{"no name", vmm.VMSpec{Group: f.group.ID, Template: "web-small"}},
		{"bad name", vmm.VMSpec{Name: "../x", Group: f.group.ID, Template: "web-small"}},
		{"no group", vmm.VMSpec{Name: "a", Template: "web-small"}},
		{"no template", vmm.VMSpec{Name: "a", Group: f.group.ID}},
		{"disk without size", vmm.VMSpec{Name: "a", Group: f.group.ID, Disk: "web-small.vhd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.m.CreateVM(c, tc.spec)
			assert.ErrorIs(t, err, store.ErrInvalid)
		})
	}
	_, err := f.m.CreateVM(c, vmm.VMSpec{Name: "a", Group: "nosuch", Template: "web-small"})
	assert.ErrorIs(t, err, store.ErrNotFound, "missing group")
	jobs, err := f.m.Jobs(c, store.JobFilter{})
	require.NoError(t, err)
	assert.Empty(t, jobs, "no job for a refused spec")
}

// Two requests for one name: exactly one VM, the other job fails with the
// reason, and the inventory and hosts agree.
func TestCreateVMSameName(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 3})
	c := tctx(t)
	var ids []string
	for range 4 {
		j, err := f.m.CreateVM(c, vmm.VMSpec{Name: "dup", Group: f.group.ID, Template: "web-small"})
		require.NoError(t, err)
		ids = append(ids, j.ID)
	}
	ok := 0
	for _, id := range ids {
		j, err := f.m.Wait(c, id)
		if err == nil {
			ok++
			continue
		}
		var je *vmm.JobError
		require.ErrorAs(t, err, &je)
		assert.Equal(t, store.JobFailed, j.State)
		assert.Contains(t, j.Error, `a VM named "dup" exists`)
	}
	assert.Equal(t, 1, ok, "jobs that succeeded")
	vms, err := f.m.VMs(c, store.VMFilter{})
	require.NoError(t, err)
	assert.Len(t, vms, 1, "records")
	assert.Len(t, f.onHosts(t)["dup"], 1, "VMs on hosts")
}

// A template whose disk is gone from its share: the job fails saying so,
// and leaves no record and no disk.
func TestCreateVMMissingDisk(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 2})
	c := tctx(t)
	require.NoError(t, os.Remove(filepath.Join(f.libDir, "disks", "web-small.vhd")))
	j, err := f.m.CreateVM(c, vmm.VMSpec{Name: "nodisk", Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	require.Error(t, err)
	assert.Equal(t, store.JobFailed, j.State)
	assert.Contains(t, j.Error, "web-small.vhd", "the reason names the disk")
	t.Logf("reason: %s", j.Error)
	vms, err := f.m.VMs(c, store.VMFilter{})
	require.NoError(t, err)
	assert.Empty(t, vms, "records")
	assert.Empty(t, f.onHosts(t), "VMs on hosts")
	assert.Zero(t, f.diskCount(t), "pools with disks")
	for _, s := range j.Steps {
		assert.NotEqual(t, store.JobSucceeded, s.State, "step %s after the failure was taken back", s.Name)
	}
}

// No host fits: the reason lists the hosts' rejections.
func TestCreateVMNoHost(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 2, sim: sim.Config{Template: sim.HostConfig{Memory: 1 << 30}}})
	c := tctx(t)
	j, err := f.m.CreateVM(c, vmm.VMSpec{Name: "big", Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	require.Error(t, err)
	assert.Contains(t, j.Error, "no host of group prod can take the VM")
	assert.Contains(t, j.Error, "host1")
	vms, err := f.m.VMs(c, store.VMFilter{})
	require.NoError(t, err)
	assert.Empty(t, vms)
}

// Cancelling mid-copy: the job ends cancelled, nothing stays behind.
func TestCancelMidCopy(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 1, sim: sim.Config{TimeScale: 1, DiskSpeed: 1 << 20}})
	c := tctx(t)
	j, err := f.m.CreateVM(c, vmm.VMSpec{Name: "slow", Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	waitStep(t, f.m, j.ID, 2)
	time.Sleep(300 * time.Millisecond)
	_, err = f.m.Cancel(c, j.ID)
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	assert.ErrorIs(t, err, vmm.ErrCancelled)
	assert.Equal(t, store.JobCancelled, j.State)
	vms, err := f.m.VMs(c, store.VMFilter{})
	require.NoError(t, err)
	assert.Empty(t, vms, "records")
	assert.Empty(t, f.onHosts(t), "VMs on hosts")
	assert.Zero(t, f.diskCount(t), "pools with disks")
}

// A job that fails on a full pool succeeds when retried after the pool
// has room.
func TestRetry(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 1})
	c := tctx(t)
	h := f.fleet.Host("host1")
	h.SetFaults(sim.Faults{FullPools: []string{"default"}})
	j, err := f.m.CreateVM(c, vmm.VMSpec{Name: "r1", Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	require.Error(t, err)
	assert.Contains(t, j.Error, "capacity")
	h.SetFaults(sim.Faults{})
	_, err = f.m.Retry(c, j.ID)
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	require.NoError(t, err)
	assert.Equal(t, 2, j.Attempts)
	assert.Len(t, f.onHosts(t)["r1"], 1)
}

func TestMigrateAndMaintenance(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 3})
	c := tctx(t)
	var vmIDs []string
	for i := range 3 {
		j, err := f.m.CreateVM(c, vmm.VMSpec{Name: fmt.Sprintf("m%d", i), Group: f.group.ID, Template: "web-small"})
		require.NoError(t, err)
		j, err = f.m.Wait(c, j.ID)
		require.NoError(t, err)
		var res vmm.CreateResult
		require.NoError(t, json.Unmarshal(j.Result, &res))
		vmIDs = append(vmIDs, res.VMID)
	}
	rec, err := f.m.Store().VM(c, vmIDs[0])
	require.NoError(t, err)
	j, err := f.m.MigrateVM(c, vmm.MigrateSpec{VM: rec.ID})
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	require.NoError(t, err)
	var mr vmm.MigrateResult
	require.NoError(t, json.Unmarshal(j.Result, &mr))
	assert.True(t, mr.Live, "live migration")
	assert.NotEqual(t, rec.HostID, mr.To)
	after, err := f.m.Store().VM(c, rec.ID)
	require.NoError(t, err)
	assert.Equal(t, mr.To, after.HostID)
	assert.Equal(t, "running", after.State)

	// Maintenance empties a host.
	busy := after.HostID
	j, err = f.m.SetMaintenance(c, busy, true, "admin")
	require.NoError(t, err)
	_, err = f.m.Wait(c, j.ID)
	require.NoError(t, err)
	left, err := f.m.VMs(c, store.VMFilter{HostID: busy})
	require.NoError(t, err)
	assert.Empty(t, left, "VMs left on the host in maintenance")
	for name, hosts := range f.onHosts(t) {
		require.Len(t, hosts, 1, name)
		assert.NotEqual(t, busy, f.hostIDs[hosts[0]], "VM %s on the host in maintenance", name)
	}
	// No new VM goes there.
	j, err = f.m.CreateVM(c, vmm.VMSpec{Name: "after", Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	require.NoError(t, err)
	var res vmm.CreateResult
	require.NoError(t, json.Unmarshal(j.Result, &res))
	assert.NotEqual(t, busy, res.HostID)
	assert.ErrorIs(t, f.m.RemoveHost(c, res.HostID), store.ErrConflict, "remove a host with VMs")
	require.NoError(t, f.m.RemoveHost(c, busy))
}

// A group that packs: Optimize empties hosts.
func TestOptimizePack(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 3})
	c := tctx(t)
	for i := range 3 {
		j, err := f.m.CreateVM(c, vmm.VMSpec{Name: fmt.Sprintf("p%d", i), Group: f.group.ID, Template: "web-small"})
		require.NoError(t, err)
		_, err = f.m.Wait(c, j.ID)
		require.NoError(t, err)
	}
	before := map[string]bool{}
	for _, hs := range f.onHosts(t) {
		before[hs[0]] = true
	}
	require.Len(t, before, 3, "balanced: one VM a host")
	g := f.group
	g.Goal = vmm.GoalPack
	_, err := f.m.Store().UpdateGroup(c, g)
	require.NoError(t, err)
	j, err := f.m.Optimize(c, vmm.OptimizeSpec{Group: g.ID})
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	require.NoError(t, err)
	var res vmm.OptimizeResult
	require.NoError(t, json.Unmarshal(j.Result, &res))
	assert.Equal(t, 2, res.HostsEmptied)
	after := map[string]bool{}
	for _, hs := range f.onHosts(t) {
		after[hs[0]] = true
	}
	assert.Len(t, after, 1, "packed onto one host")
	// The inventory agrees.
	vms, err := f.m.VMs(c, store.VMFilter{})
	require.NoError(t, err)
	for _, v := range vms {
		hv := f.vm(t, v.Name)
		require.NotNil(t, hv)
		for name, id := range f.hostIDs {
			if id == v.HostID {
				assert.Contains(t, f.onHosts(t)[v.Name], name)
			}
		}
	}
}

// VMs made, changed and removed behind the manager's back are seen.
func TestSyncFromHostEvents(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 2})
	c := tctx(t)
	h := f.fleet.Host("host2")
	v, err := h.CreateVM(c, hostapi.VMSpec{Name: "outside", VCPUs: 1, Memory: 1 << 30})
	require.NoError(t, err)
	waitVM := func(what string, ok func(vms []store.VM) bool) {
		t.Helper()
		require.Eventually(t, func() bool {
			vms, err := f.m.VMs(c, store.VMFilter{})
			return err == nil && ok(vms)
		}, 10*time.Second, 20*time.Millisecond, what)
	}
	waitVM("adopted", func(vms []store.VM) bool {
		return len(vms) == 1 && vms[0].Name == "outside" && vms[0].State == "stopped" && vms[0].HostID == f.hostIDs["host2"]
	})
	require.NoError(t, h.Start(c, v.ID))
	waitVM("running", func(vms []store.VM) bool { return len(vms) == 1 && vms[0].State == "running" })
	require.NoError(t, h.PowerOff(c, v.ID))
	require.NoError(t, h.DeleteVM(c, v.ID, nil))
	waitVM("missing", func(vms []store.VM) bool { return len(vms) == 1 && vms[0].State == vmm.VMMissing })

	// A new manager on the same store adopts what changed while none ran.
	require.NoError(t, f.m.Close())
	v2, err := h.CreateVM(c, hostapi.VMSpec{Name: "while-down", VCPUs: 1, Memory: 1 << 30})
	require.NoError(t, err)
	require.NoError(t, h.Start(c, v2.ID))
	f.m = f.open(t, nil)
	require.NoError(t, f.m.WaitSynced(c))
	waitVM("adopted after restart", func(vms []store.VM) bool {
		for _, v := range vms {
			if v.Name == "while-down" && v.State == "running" {
				return true
			}
		}
		return false
	})
}

// A manager closed mid-job queues it again; the next one resumes it and
// nothing is done twice.
func TestResumeAfterClose(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 2, sim: sim.Config{TimeScale: 1, DiskSpeed: 2 << 20}})
	c := tctx(t)
	j, err := f.m.CreateVM(c, vmm.VMSpec{Name: "resumed", Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	waitStep(t, f.m, j.ID, 2)
	require.NoError(t, f.m.Close())
	queued, err := f.m.Store().Job(c, j.ID)
	if err == nil { // the store is closed with the manager; read through a new one
		t.Fatalf("store still open after Close: %+v", queued)
	}
	m2 := f.open(t, nil)
	done, err := m2.Wait(c, j.ID)
	require.NoError(t, err)
	assert.Equal(t, 2, done.Attempts)
	assert.Len(t, f.onHosts(t)["resumed"], 1)
	vms, err := m2.VMs(c, store.VMFilter{})
	require.NoError(t, err)
	require.Len(t, vms, 1)
	assert.Equal(t, "running", vms[0].State)
}

// Jobs are watched as they progress, and a product's own job kinds run
// like the manager's.
func TestCustomJobAndWatch(t *testing.T) {
	var mu sync.Mutex
	runs := map[string]int{}
	f := newFixture(t, fixtureOpts{hosts: 1, config: func(c *vmm.Config) {
		c.Jobs = map[string]vmm.JobFunc{"count": func(ctx context.Context, r *vmm.Run) error {
			for i := range 4 {
				if _, err := vmm.Do(ctx, r, fmt.Sprintf("s%d", i), func(ctx context.Context, _ bool) (int, error) {
					mu.Lock()
					runs[r.Job().ID]++
					mu.Unlock()
					r.Progress(0.5)
					time.Sleep(200 * time.Millisecond)
					return i, nil
				}); err != nil {
					return err
				}
			}
			var in struct{ Fail bool }
			if err := r.Input(&in); err != nil {
				return err
			}
			if in.Fail {
				return errors.New("asked to fail")
			}
			return r.SetResult("done")
		}}
	}})
	c := tctx(t)
	j, err := f.m.Submit(c, "count", "bob", map[string]bool{"Fail": false})
	require.NoError(t, err)
	var seen []float64
	var last store.Job
	for cur, err := range f.m.Watch(c, j.ID) {
		require.NoError(t, err)
		seen = append(seen, cur.Progress)
		last = cur
	}
	assert.Equal(t, store.JobSucceeded, last.State)
	assert.Equal(t, "bob", last.User)
	assert.JSONEq(t, `"done"`, string(last.Result))
	assert.Greater(t, len(seen), 3, "updates seen")
	for i := 1; i < len(seen); i++ {
		assert.GreaterOrEqual(t, seen[i], seen[i-1], "progress never goes back")
	}
	assert.Equal(t, 4, runs[j.ID], "steps run once each")

	j, err = f.m.Submit(c, "count", "bob", map[string]bool{"Fail": true})
	require.NoError(t, err)
	_, err = f.m.Wait(c, j.ID)
	var je *vmm.JobError
	require.ErrorAs(t, err, &je)
	assert.Equal(t, "asked to fail", je.Msg)
	_, err = f.m.Submit(c, "nosuch", "bob", nil)
	assert.ErrorIs(t, err, store.ErrInvalid)
}

// VMs created at the same time are spread by what each placement leaves:
// four hosts that hold two VMs each take eight VMs, none over capacity.
func TestCreateVMConcurrentFill(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 4, sim: sim.Config{Template: sim.HostConfig{Memory: 5 << 30}}})
	c := tctx(t)
	var ids []string
	for i := range 8 {
		j, err := f.m.CreateVM(c, vmm.VMSpec{Name: fmt.Sprintf("c%d", i), Group: f.group.ID, Template: "web-small"})
		require.NoError(t, err)
		ids = append(ids, j.ID)
	}
	for _, id := range ids {
		j, err := f.m.Wait(c, id)
		require.NoError(t, err, "job %s", j.Error)
	}
	perHost := map[string]int{}
	for _, hosts := range f.onHosts(t) {
		perHost[hosts[0]]++
	}
	assert.Equal(t, map[string]int{"host1": 2, "host2": 2, "host3": 2, "host4": 2}, perHost)
}
