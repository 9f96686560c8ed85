package vmm_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/internal/demolib"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// Two managers on one store: one leads and watches the hosts; when it
// closes, the other takes over within the lease, and does the leader's
// periodic work (a library refresh, an optimization).
func TestLeaderFailover(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 2})
	c := tctx(t)
	second := f.open(t, func(cfg *vmm.Config) {
		cfg.Instance = "second"
		cfg.Lease = time.Second
		cfg.RefreshEvery = 300 * time.Millisecond
		cfg.OptimizeEvery = 300 * time.Millisecond
	})
	require.NoError(t, second.WaitSynced(c), "a manager that does not lead returns at once")

	// While the first leads, the second does no periodic work.
	time.Sleep(time.Second)
	jobs, err := second.Jobs(c, store.JobFilter{Kind: vmm.KindOptimize})
	require.NoError(t, err)
	assert.Empty(t, jobs, "optimizations queued by a manager that does not lead")

	require.NoError(t, f.m.Close())
	// The second takes over: it sees a VM made behind its back...
	h := f.fleet.Host("host1")
	_, err = h.CreateVM(c, hostapi.VMSpec{Name: "after-failover", VCPUs: 1, Memory: 1 << 30})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		vms, err := second.VMs(c, store.VMFilter{})
		return err == nil && len(vms) == 1 && vms[0].Name == "after-failover"
	}, 15*time.Second, 50*time.Millisecond, "the new leader adopts the VM")

	// ...refreshes the library...
	require.NoError(t, demolib.Build(filepath.Join(f.libDir, "more"), demolib.Options{Template: "db-large", Seed: 9}))
	require.Eventually(t, func() bool { return len(f.lib.Find("db-large")) == 1 }, 15*time.Second, 50*time.Millisecond,
		"the new leader refreshes the library")

	// ...and queues optimizations.
	require.Eventually(t, func() bool {
		js, err := second.Jobs(c, store.JobFilter{Kind: vmm.KindOptimize})
		if err != nil || len(js) == 0 {
			return false
		}
		var in vmm.OptimizeSpec
		return json.Unmarshal(js[0].Input, &in) == nil && in.Group == f.group.ID
	}, 15*time.Second, 50*time.Millisecond, "the new leader queues an optimization of the group")
}
