package vmm_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

func TestVMActionsAndDelete(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 1})
	c := tctx(t)
	j, err := f.m.CreateVM(c, vmm.VMSpec{Name: "act", Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	require.NoError(t, err)
	var res vmm.CreateResult
	require.NoError(t, json.Unmarshal(j.Result, &res))
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
	j, err = f.m.VMAction(c, res.VMID, vmm.ActionPause, "alice")
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

func startVM(t *testing.T, f *fixture, id string) error {
	j, err := f.m.VMAction(tctx(t), id, vmm.ActionStart, "alice")
	if err != nil {
		return err
	}
	_, err = f.m.Wait(tctx(t), j.ID)
	return err
}
