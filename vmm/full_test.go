package vmm_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
	"github.com/vmmkit/vmmkit/vmm/store/sqlite"
)

// A store that fills up: new jobs are refused with ErrReadOnly, jobs
// queued wait, no VM is made without a record; with room again every job
// ends and the inventory and the hosts agree.
func TestFullStore(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 2})
	c := tctx(t)
	path := filepath.Join(t.TempDir(), "full.db")
	st, err := sqlite.New(c, sqlite.Config{Path: path, MaxSize: 256 << 10})
	require.NoError(t, err)
	m := f.open(t, func(cfg *vmm.Config) { cfg.Store = st })
	g, err := m.CreateGroup(c, store.HostGroup{Name: "g"})
	require.NoError(t, err)
	for _, n := range f.fleet.Names() {
		_, err := m.AddHost(c, g.ID, vmm.SimURI(n), &vmm.HostOptions{Name: "full-" + n})
		require.NoError(t, err)
	}
	var jobs []string
	var refused error
	for i := 0; i < 2000 && refused == nil; i++ {
		var j store.Job
		j, refused = m.CreateVM(c, vmm.VMSpec{Name: fmt.Sprintf("vm%04d", i), Group: g.ID, Template: "web-small"})
		if refused == nil {
			jobs = append(jobs, j.ID)
		}
	}
	require.Error(t, refused, "the store never filled up")
	assert.ErrorIs(t, refused, store.ErrReadOnly)
	t.Logf("%d jobs accepted before: %v", len(jobs), refused)

	// Nothing can be recorded now: no VM is on a host without a record.
	time.Sleep(2 * time.Second)
	vms, err := m.VMs(c, store.VMFilter{})
	require.NoError(t, err)
	recs := map[string]bool{}
	for _, v := range vms {
		recs[v.Name] = true
	}
	for name := range f.onHosts(t) {
		assert.True(t, recs[name], "VM %s on a host has a record while the store is full", name)
	}

	// Room again (the file may grow): the jobs go on where they stopped
	// and end, and the inventory and the hosts agree.
	require.NoError(t, m.Close())
	require.NoError(t, st.Close())
	st2, err := sqlite.New(c, sqlite.Config{Path: path})
	require.NoError(t, err)
	t.Cleanup(func() { st2.Close() })
	m = f.open(t, func(cfg *vmm.Config) { cfg.Store = st2 })
	wc, cancel := context.WithTimeout(c, 2*time.Minute)
	defer cancel()
	for _, id := range jobs {
		j, err := m.Wait(wc, id)
		require.True(t, final(j.State), "job %s did not end: %s (%v)", id, j.State, err)
		if err != nil {
			t.Logf("job %s failed (attempts %d): %s", id, j.Attempts, j.Error)
		}
		if err != nil {
			// The hosts fill up too; or the store filled up mid-job, and
			// the job could still record that.
			var steps []string
			for _, st := range j.Steps {
				steps = append(steps, st.Name+":"+string(st.State))
			}
			assert.Regexp(t, "no host|read-only or full", j.Error, "the reason job %s failed (attempts %d, steps %v)", id, j.Attempts, steps)
		}
	}
	vms, err = m.VMs(c, store.VMFilter{})
	require.NoError(t, err)
	recs = map[string]bool{}
	for _, v := range vms {
		recs[v.Name] = true
		assert.Equal(t, "running", v.State, "record %s", v.Name)
	}
	on := f.onHosts(t)
	for name := range on {
		assert.True(t, recs[name], "VM %s on a host has a record", name)
	}
	for name := range recs {
		assert.Contains(t, on, name, "record %s has its VM on a host", name)
	}
}

func final(s store.JobState) bool {
	return s == store.JobSucceeded || s == store.JobFailed || s == store.JobCancelled
}
