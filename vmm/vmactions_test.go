package vmm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

func TestVMActionsAndDelete(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 1})
	c := tctx(t)
	res := createdVM(t, f, "act")
	disksBefore := f.diskCount(t)
	require.Equal(t, 1, disksBefore)

	for _, tc := range []struct {
		action string
		want   hostapi.State
	}{
		{vmm.ActionPause, hostapi.StatePaused},
		{vmm.ActionResume, hostapi.StateRunning},
		{vmm.ActionStart, hostapi.StateRunning}, // already running: nothing to do
		{vmm.ActionReboot, hostapi.StateRunning},
		{vmm.ActionPowerOff, hostapi.StateStopped},
		{vmm.ActionStart, hostapi.StateRunning},
		{vmm.ActionShutdown, hostapi.StateStopped},
	} {
		j, err := f.m.VMAction(c, res.VMID, tc.action, "alice")
		require.NoError(t, err, tc.action)
		j, err = f.m.Wait(c, j.ID)
		require.NoError(t, err, tc.action)
		assert.Equal(t, tc.want, f.vm(t, "act").State, "on the host after %s", tc.action)
		rec, err := f.m.Store().VM(c, res.VMID)
		require.NoError(t, err)
		assert.Equal(t, tc.want.String(), rec.State, "record after %s", tc.action)
	}
	// Pausing a stopped VM fails with the host's reason.
	j, err := f.m.VMAction(c, res.VMID, vmm.ActionPause, "alice")
	require.NoError(t, err)
	_, err = f.m.Wait(c, j.ID)
	var je *vmm.JobError
	require.ErrorAs(t, err, &je)
	assert.Contains(t, je.Msg, "invalid state")
	_, err = f.m.VMAction(c, res.VMID, "explode", "alice")
	assert.ErrorIs(t, err, store.ErrInvalid)

	// Delete: gone from the host, its disk too, and from the inventory.
	require.NoError(t, startVM(t, f, res.VMID))
	j, err = f.m.DeleteVM(c, res.VMID, "alice")
	require.NoError(t, err)
	_, err = f.m.Wait(c, j.ID)
	require.NoError(t, err)
	assert.Empty(t, f.onHosts(t))
	assert.Zero(t, f.diskCount(t), "pools with disks")
	_, err = f.m.Store().VM(c, res.VMID)
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, err = f.m.DeleteVM(c, res.VMID, "alice")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

// createdVM creates a VM from web-small in f's group and waits for it.
func createdVM(t *testing.T, f *fixture, name string) vmm.CreateResult {
	t.Helper()
	j, err := f.m.CreateVM(tctx(t), vmm.VMSpec{Name: name, Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	j, err = f.m.Wait(tctx(t), j.ID)
	require.NoError(t, err)
	var res vmm.CreateResult
	require.NoError(t, json.Unmarshal(j.Result, &res))
	return res
}

func startVM(t *testing.T, f *fixture, id string) error {
	j, err := f.m.VMAction(tctx(t), id, vmm.ActionStart, "alice")
	if err != nil {
		return err
	}
	_, err = f.m.Wait(tctx(t), j.ID)
	return err
}

// slowCheckpoints is a driver whose checkpoints take a while to make, as
// a real host's do, which opens the window between counting a VM's
// checkpoints and making one more.
type slowCheckpoints struct{ hostapi.Driver }

func (d slowCheckpoints) CreateCheckpoint(ctx context.Context, id, name string) (*hostapi.Checkpoint, error) {
	time.Sleep(30 * time.Millisecond)
	return d.Driver.CreateCheckpoint(ctx, id, name)
}

func TestCheckpoints(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 1, config: func(c *vmm.Config) {
		conn := vmm.SimConnector(c.Sim)
		c.Connectors = map[string]vmm.Connector{"sim": func(ctx context.Context, uri string) (hostapi.Driver, error) {
			d, err := conn(ctx, uri)
			return slowCheckpoints{d}, err
		}}
	}})
	c := tctx(t)
	res := createdVM(t, f, "cp")
	wait := func(j store.Job, err error) error {
		require.NoError(t, err)
		_, err = f.m.Wait(c, j.ID)
		return err
	}

	info, err := f.m.VMInfo(c, res.VMID)
	require.NoError(t, err)
	assert.Equal(t, hostapi.StateRunning, info.State)

	require.NoError(t, wait(f.m.CreateCheckpoint(c, res.VMID, "before-change", "alice", 2)))
	// The same name again is refused: a new checkpoint never silently
	// keeps an old one.
	_, err = f.m.CreateCheckpoint(c, res.VMID, "before-change", "alice", 2)
	assert.ErrorIs(t, err, store.ErrExists)
	require.NoError(t, wait(f.m.VMAction(c, res.VMID, vmm.ActionPowerOff, "alice")))
	require.NoError(t, wait(f.m.CreateCheckpoint(c, res.VMID, "off", "alice", 2)))
	// At most 2.
	_, err = f.m.CreateCheckpoint(c, res.VMID, "third", "alice", 2)
	assert.ErrorIs(t, err, store.ErrQuota)
	cps, err := f.m.Checkpoints(c, res.VMID)
	require.NoError(t, err)
	var names []string
	for _, cp := range cps {
		names = append(names, cp.Name)
	}
	assert.Equal(t, []string{"before-change", "off"}, names)

	// Reverting to the running checkpoint runs the VM again, in the
	// record too.
	require.NoError(t, wait(f.m.RevertCheckpoint(c, res.VMID, "before-change", "alice")))
	assert.Equal(t, hostapi.StateRunning, f.vm(t, "cp").State)
	rec, err := f.m.Store().VM(c, res.VMID)
	require.NoError(t, err)
	assert.Equal(t, "running", rec.State)

	// Delete one; then there is room again.
	require.NoError(t, wait(f.m.DeleteCheckpoint(c, res.VMID, "off", "alice")))
	cps, err = f.m.Checkpoints(c, res.VMID)
	require.NoError(t, err)
	require.Len(t, cps, 1)
	assert.Equal(t, "before-change", cps[0].Name)
	require.NoError(t, wait(f.m.CreateCheckpoint(c, res.VMID, "third", "alice", 2)))

	// Many at once never pass the cap: asked for while there is room, each
	// job checks again under the VM's lock.
	var wg sync.WaitGroup
	var mu sync.Mutex
	made, refused := 0, 0
	for i := range 6 {
		wg.Go(func() {
			j, err := f.m.CreateCheckpoint(c, res.VMID, fmt.Sprintf("race-%d", i), "alice", 3)
			if err == nil {
				_, err = f.m.Wait(c, j.ID)
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				made++
			} else if assert.Contains(t, err.Error(), "the most it may have") {
				refused++
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1, made)
	assert.Equal(t, 5, refused)
	cps, err = f.m.Checkpoints(c, res.VMID)
	require.NoError(t, err)
	assert.Len(t, cps, 3)

	// Bad names are refused before a job; an unknown one fails the job.
	for _, bad := range []string{"", ".hidden", "a/b", "x y", string(make([]byte, 65))} {
		_, err := f.m.CreateCheckpoint(c, res.VMID, bad, "alice", 0)
		assert.ErrorIs(t, err, store.ErrInvalid, "%q", bad)
	}
	err = wait(f.m.DeleteCheckpoint(c, res.VMID, "never-made", "alice"))
	assert.Error(t, err)
	_, err = f.m.VMAction(c, res.VMID, vmm.ActionCheckpoint, "alice")
	assert.ErrorIs(t, err, store.ErrInvalid)
	err = wait(f.m.RevertCheckpoint(c, res.VMID, "never-made", "alice"))
	var je *vmm.JobError
	require.ErrorAs(t, err, &je)
}
