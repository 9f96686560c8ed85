package vmm_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/discovery"
	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/internal/testenv"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// The hosts of the test directory's hosts OU are added, each in the group
// of its OU path; those the fleet lacks are listed as failed with the
// reason; a second run adds nothing more.
func TestAddHostsFromAD(t *testing.T) {
	v := func(name string) string { return testenv.Var(t, "VMM_TEST_LDAP_"+name) }
	url, ca, server, ou := v("URL"), v("CA_CERT"), v("SERVER_NAME"), v("HOSTS_OU")
	bindDN, password := v("BIND_DN"), v("BIND_PASSWORD")
	c, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	client, err := discovery.Dial(c, discovery.Config{URLs: []string{url}, CAFile: ca, ServerName: server,
		Bind: discovery.SimpleBind{Name: bindDN, Password: password}})
	require.NoError(t, err)
	defer client.Close()

	// The fleet has every enabled host of the OU but one in ten.
	var names, missing []string
	paths := map[string]string{} // name -> OU path
	i := 0
	for h, err := range client.Hosts(c, discovery.Query{OU: ou}) {
		require.NoError(t, err)
		i++
		if i%10 == 3 {
			missing = append(missing, h.Name)
		} else {
			names = append(names, h.Name)
		}
		paths[h.Name] = strings.Join(h.Group, "/")
	}
	require.Greater(t, len(names), 100, "hosts in the test directory")
	var hcs []sim.HostConfig
	for _, n := range names {
		hcs = append(hcs, sim.HostConfig{Name: n})
	}
	fleet, err := sim.New(sim.Config{Hosts: hcs})
	require.NoError(t, err)
	m, err := vmm.New(vmm.Config{StorePath: filepath.Join(t.TempDir(), "vmm.db"), Sim: fleet, Discovery: client})
	require.NoError(t, err)
	defer m.Close()
	root, err := m.CreateGroup(c, store.HostGroup{Name: "directory", Goal: vmm.GoalPack})
	require.NoError(t, err)

	spec := vmm.AddHostsSpec{Query: discovery.Query{OU: ou}, Group: root.ID, ByOU: true, URITemplate: "sim:///{name}", Site: "hq"}
	run := func() vmm.AddHostsResult {
		j, err := m.AddHostsFromAD(c, spec)
		require.NoError(t, err)
		j, err = m.Wait(c, j.ID)
		require.NoError(t, err)
		var res vmm.AddHostsResult
		require.NoError(t, jsonUnmarshal(j.Result, &res))
		return res
	}
	res := run()
	assert.Equal(t, len(names)+len(missing), res.Found, "found")
	assert.Equal(t, len(names), res.Added, "added")
	var failed []string
	for _, f := range res.Failed {
		failed = append(failed, f.Name)
		assert.Contains(t, f.Reason, "no host", "reason for %s", f.Name)
	}
	slices.Sort(failed)
	slices.Sort(missing)
	assert.Equal(t, missing, failed, "hosts that did not answer")

	// Each host is in the group of its OU path, below the root, and the
	// groups take the root's goal.
	groups, err := m.Store().Groups(c)
	require.NoError(t, err)
	byID := map[string]store.HostGroup{}
	for _, g := range groups {
		byID[g.ID] = g
	}
	pathOf := func(id string) string {
		var p []string
		for id != root.ID {
			g, ok := byID[id]
			require.True(t, ok, "group %s below the root", id)
			p = append([]string{g.Name}, p...)
			id = g.ParentID
		}
		return strings.Join(p, "/")
	}
	hosts, err := m.Hosts(c, "")
	require.NoError(t, err)
	require.Len(t, hosts, len(names))
	for _, h := range hosts {
		assert.Equal(t, paths[h.Name], pathOf(h.GroupID), "group of %s", h.Name)
		assert.Equal(t, "hq", h.Site)
		assert.Equal(t, vmm.GoalPack, byID[h.GroupID].Goal, "goal of %s's group", h.Name)
	}
	assert.Positive(t, res.Groups, "groups created")

	again := run()
	assert.Zero(t, again.Added, "added by the second run")
	assert.Equal(t, len(names), again.Existing, "existing at the second run")
	assert.Zero(t, again.Groups, "groups created by the second run")

	// A missing OU fails the job with the directory's reason.
	spec.Query.OU = "OU=Nowhere," + ou
	j, err := m.AddHostsFromAD(c, spec)
	require.NoError(t, err)
	_, err = m.Wait(c, j.ID)
	var je *vmm.JobError
	require.True(t, errors.As(err, &je), "got %v", err)
	assert.Contains(t, je.Msg, "no such OU")

	// No directory client: refused at once.
	m2, err := vmm.New(vmm.Config{StorePath: filepath.Join(t.TempDir(), "vmm.db"), Sim: fleet})
	require.NoError(t, err)
	defer m2.Close()
	g2, err := m2.CreateGroup(c, store.HostGroup{Name: "x"})
	require.NoError(t, err)
	_, err = m2.AddHostsFromAD(c, vmm.AddHostsSpec{Query: discovery.Query{OU: ou}, Group: g2.ID, URITemplate: "sim:///{name}"})
	assert.ErrorIs(t, err, store.ErrInvalid)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
