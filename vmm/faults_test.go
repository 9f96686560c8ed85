package vmm_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
	"github.com/vmmkit/vmmkit/vmm/store/sqlite"
)

// hanging is a driver whose chosen calls, once switched on, do not return
// before ctx is done, as a host whose agent stopped answering.
type hanging struct {
	hostapi.Driver
	host, create *atomic.Bool
}

func (h *hanging) Host(ctx context.Context) (*hostapi.HostInfo, error) {
	if h.host.Load() {
		<-ctx.Done()
		return nil, hostapi.NewOpError("host", "", "", ctx.Err())
	}
	return h.Driver.Host(ctx)
}

func (h *hanging) CreateVM(ctx context.Context, spec hostapi.VMSpec) (*hostapi.VMInfo, error) {
	if h.create.Load() {
		<-ctx.Done()
		return nil, hostapi.NewOpError("create VM", "", spec.Name, ctx.Err())
	}
	return h.Driver.CreateVM(ctx, spec)
}

// A host that stops answering is rated as not responding and skipped; a
// define that hangs fails its job after Config.CallTimeout with the reason,
// leaving nothing behind.
func TestDriverHangs(t *testing.T) {
	var hangHost2, hangCreate atomic.Bool
	f := newFixture(t, fixtureOpts{hosts: 2, config: func(c *vmm.Config) {
		c.CallTimeout = 300 * time.Millisecond
		conn := vmm.SimConnector(c.Sim)
		c.Connectors = map[string]vmm.Connector{"sim": func(ctx context.Context, uri string) (hostapi.Driver, error) {
			d, err := conn(ctx, uri)
			if err != nil {
				return nil, err
			}
			h := &hanging{Driver: d, host: new(atomic.Bool), create: &hangCreate}
			if uri == vmm.SimURI("host2") {
				h.host = &hangHost2
			}
			return h, nil
		}}
	}})
	c := tctx(t)

	hangHost2.Store(true)
	j, err := f.m.CreateVM(c, vmm.VMSpec{Name: "a", Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	require.NoError(t, err)
	var res vmm.CreateResult
	require.NoError(t, json.Unmarshal(j.Result, &res))
	assert.Equal(t, f.hostIDs["host1"], res.HostID, "the host that answers")
	var rejected string
	for _, r := range res.Ratings {
		if r.HostID == f.hostIDs["host2"] {
			rejected = r.Reason
		}
	}
	assert.Contains(t, rejected, "not responding", "host2's rating")
	hangHost2.Store(false)

	hangCreate.Store(true)
	j, err = f.m.CreateVM(c, vmm.VMSpec{Name: "b", Group: f.group.ID, Template: "web-small"})
	require.NoError(t, err)
	j, err = f.m.Wait(c, j.ID)
	require.Error(t, err)
	assert.Contains(t, j.Error, "deadline exceeded")
	t.Logf("reason: %s", j.Error)
	vms, err := f.m.VMs(c, store.VMFilter{})
	require.NoError(t, err)
	require.Len(t, vms, 1, "only the first VM is in the inventory")
	assert.Equal(t, "a", vms[0].Name)
	assert.Len(t, f.onHosts(t), 1, "VMs on hosts")
}

// A store the manager cannot write refuses new jobs with ErrReadOnly, and
// nothing is done on the hosts.
func TestReadOnlyStore(t *testing.T) {
	f := newFixture(t, fixtureOpts{hosts: 1})
	c := tctx(t)
	path := filepath.Join(t.TempDir(), "ro.db")
	rw, err := sqlite.Open(path)
	require.NoError(t, err)
	g, err := rw.CreateGroup(c, store.HostGroup{Name: "g"})
	require.NoError(t, err)
	require.NoError(t, rw.Close())
	ro, err := sqlite.New(c, sqlite.Config{Path: path, ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(func() { ro.Close() })
	m := f.open(t, func(cfg *vmm.Config) { cfg.Store = ro })
	_, err = m.CreateVM(c, vmm.VMSpec{Name: "x", Group: g.ID, Template: "web-small"})
	assert.ErrorIs(t, err, store.ErrReadOnly)
	_, err = m.AddHost(c, g.ID, vmm.SimURI("host1"), &vmm.HostOptions{Name: "again"})
	assert.ErrorIs(t, err, store.ErrReadOnly)
	assert.Empty(t, f.onHosts(t))
}
