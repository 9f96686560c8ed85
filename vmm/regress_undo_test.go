package vmm_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// The host goes away mid-copy: the job fails saying what is left to take
// back, the record says "failed" (not "creating" for good, as the review
// found), and when the host answers again the leader takes back the disk
// and removes the record, so the name can be used again.
func TestHostDownDuringCreateTakenBackLater(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 1, sim: sim.Config{TimeScale: 1, DiskSpeed: 1 << 20}})
	c := tctx(t)
	j, err := f.m.CreateVM(c, vmm.VMSpec{Name: "slow", Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	waitStep(t, f.m, j.ID, 2)
	time.Sleep(300 * time.Millisecond)
	f.fleet.Host("host1").SetFaults(sim.Faults{Down: true})
	j, err = f.m.Wait(c, j.ID)
	require.Error(t, err)
	assert.Contains(t, j.Error, "taking it back failed, and is left to the host's next sync")
	vms, err := f.m.VMs(c, store.VMFilter{})
	require.NoError(t, err)
	require.Len(t, vms, 1)
	assert.Equal(t, vmm.VMFailed, vms[0].State)

	f.fleet.Host("host1").SetFaults(sim.Faults{})
	require.Eventually(t, func() bool {
		vms, err := f.m.VMs(c, store.VMFilter{})
		return err == nil && len(vms) == 0
	}, 40*time.Second, 50*time.Millisecond, "the leader takes back the failed creation")
	assert.Zero(t, f.diskCount(t), "pools with disks")
	assert.Empty(t, f.onHosts(t))
	j, err = f.m.CreateVM(c, vmm.VMSpec{Name: "slow", Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	_, err = f.m.Wait(c, j.ID)
	require.NoError(t, err, "the name is free again")
}
