package vmm_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/placement/consolidate"
	"github.com/vmmkit/vmmkit/placement/history"
	"github.com/vmmkit/vmmkit/vmm"
)

// planetLabMachines reads the PlanetLab sample of placement/history as
// machines of four CPU sizes with 1 GiB of memory each.
func planetLabMachines(t *testing.T) []consolidate.Machine {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "placement", "history", "testdata", "planetlab", "20110303-sample.tar.gz"))
	require.NoError(t, err)
	defer f.Close()
	var ms []consolidate.Machine
	mhz := []float64{2500, 2000, 1000, 500}
	for s, err := range history.ReadPlanetLabTar(f) {
		require.NoError(t, err)
		ms = append(ms, consolidate.Machine{ID: s.ID, CPU: mhz[len(ms)%4], Memory: 1024, Series: s})
	}
	require.NotEmpty(t, ms)
	return ms
}

// Rank and plan from history, then P2V jobs deployed where the plan says.
func TestConsolidate(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 4})
	c := tctx(t)
	machines := planetLabMachines(t)

	res, err := f.m.Consolidate(c, vmm.ConsolidateSpec{Machines: machines, Group: f.group.ID})
	require.NoError(t, err)
	require.Len(t, res.Candidates, len(machines))
	for i := 1; i < len(res.Candidates); i++ {
		assert.GreaterOrEqual(t, res.Candidates[i-1].Score, res.Candidates[i].Score, "best first")
	}
	require.NotNil(t, res.Plan)
	cands := 0
	for _, cd := range res.Candidates {
		if cd.Consolidate {
			cands++
			assert.Contains(t, f.hostIDs, hostName(f, res.Plan.Assignments[cd.Machine.ID]), "planned host of %s", cd.Machine.ID)
		} else {
			assert.NotContains(t, res.Plan.Assignments, cd.Machine.ID, "a machine to keep is not planned")
		}
	}
	assert.Equal(t, cands, len(res.Plan.Assignments))
	assert.Zero(t, res.Plan.OverloadedIntervals)
	assert.Empty(t, res.Jobs, "no conversion without Convert")

	// Convert the two best candidates that have a source.
	sources := map[string]string{}
	for _, cd := range res.Candidates[:2] {
		require.True(t, cd.Consolidate)
		p := filepath.Join(t.TempDir(), "disk.raw")
		writeRawDisk(t, p, 16<<20)
		sources[cd.Machine.ID] = p
	}
	res, err = f.m.Consolidate(c, vmm.ConsolidateSpec{Machines: machines, Group: f.group.ID, Sources: sources, Convert: true, Share: "central", User: "ops"})
	require.NoError(t, err)
	require.Len(t, res.Jobs, 2)
	for id, jid := range res.Jobs {
		j, err := f.m.Wait(c, jid)
		require.NoError(t, err)
		assert.Equal(t, "ops", j.User)
		var cr vmm.ConvertResult
		require.NoError(t, json.Unmarshal(j.Result, &cr))
		dj, err := f.m.Wait(c, cr.DeployJob)
		require.NoError(t, err)
		var cres vmm.CreateResult
		require.NoError(t, json.Unmarshal(dj.Result, &cres))
		assert.Equal(t, res.Plan.Assignments[id], cres.HostID, "%s deployed on its planned host", id)
	}
}

func hostName(f *fixture, id string) string {
	for name, hid := range f.hostIDs {
		if hid == id {
			return name
		}
	}
	return ""
}
