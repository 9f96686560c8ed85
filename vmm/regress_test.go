package vmm_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
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

// Concurrent AddHost calls of one URI on one manager make one record (review).
func TestAddHostConcurrentOneRecord(t *testing.T) {
	fleet, err := sim.New(sim.Config{Count: 1})
	require.NoError(t, err)
	m, err := vmm.New(vmm.Config{StorePath: filepath.Join(t.TempDir(), "v.db"), Sim: fleet})
	require.NoError(t, err)
	defer m.Close()
	g, err := m.CreateGroup(t.Context(), store.HostGroup{Name: "g"})
	require.NoError(t, err)
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 8 {
		wg.Go(func() {
			if _, err := m.AddHost(t.Context(), g.ID, vmm.SimURI(fleet.Names()[0]), nil); err == nil {
				ok.Add(1)
			} else {
				t.Log(err)
			}
		})
	}
	wg.Wait()
	hs, _ := m.Hosts(t.Context(), "")
	t.Logf("succeeded %d, host records %d", ok.Load(), len(hs))
	require.Equal(t, 1, len(hs))
}

// A second manager (not leading) on the same store cannot add a host the
// first added (review: its list of hosts was only its own).
func TestAddHostTakenByOtherManager(t *testing.T) {
	fleet, err := sim.New(sim.Config{Count: 1})
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "v.db")
	m1, err := vmm.New(vmm.Config{StorePath: p, Sim: fleet, Instance: "a"})
	require.NoError(t, err)
	defer m1.Close()
	m2, err := vmm.New(vmm.Config{StorePath: p, Sim: fleet, Instance: "b"})
	require.NoError(t, err)
	defer m2.Close()
	g, err := m1.CreateGroup(t.Context(), store.HostGroup{Name: "g"})
	require.NoError(t, err)
	_, err = m1.AddHost(t.Context(), g.ID, vmm.SimURI(fleet.Names()[0]), nil)
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	_, err = m2.AddHost(t.Context(), g.ID, vmm.SimURI(fleet.Names()[0]), nil)
	hs, _ := m1.Hosts(t.Context(), "")
	t.Logf("second AddHost err=%v, host records %d", err, len(hs))
	require.ErrorIs(t, err, store.ErrExists)
}

// A host whose connection hangs does not hold up the rest of the manager:
// while the leader's dial to it is stuck, another host is added and a job
// is queued (review: the dial held the host's lock, which callers holding
// the manager's lock waited for).
func TestSlowDialDoesNotStallManager(t *testing.T) {
	fleet, err := sim.New(sim.Config{Count: 2})
	require.NoError(t, err)
	var hang atomic.Bool
	entered, release := make(chan struct{}, 16), make(chan struct{})
	slow := func(ctx context.Context, uri string) (hostapi.Driver, error) {
		if hang.Load() {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, errors.New("no answer")
		}
		return vmm.SimConnector(fleet)(ctx, uri)
	}
	p := filepath.Join(t.TempDir(), "v.db")
	cfg := vmm.Config{StorePath: p, Sim: fleet, Instance: "a", CallTimeout: time.Minute, Lease: 600 * time.Millisecond,
		Connectors: map[string]vmm.Connector{"slow": slow},
		Jobs:       map[string]vmm.JobFunc{"noop": func(ctx context.Context, r *vmm.Run) error { return nil }}}
	m1, err := vmm.New(cfg)
	require.NoError(t, err)
	g, err := m1.CreateGroup(t.Context(), store.HostGroup{Name: "g"})
	require.NoError(t, err)
	_, err = m1.AddHost(t.Context(), g.ID, vmm.SimURI(fleet.Names()[0]), &vmm.HostOptions{Kind: "slow"})
	require.NoError(t, err)
	require.NoError(t, m1.Close())
	hang.Store(true)
	m2, err := vmm.New(cfg) // leads; its watcher dials the slow host and hangs
	require.NoError(t, err)
	defer m2.Close()
	defer close(release)
	<-entered

	done := make(chan error, 2)
	go func() {
		_, err := m2.AddHost(t.Context(), g.ID, vmm.SimURI(fleet.Names()[1]), nil)
		done <- err
	}()
	go func() {
		_, err := m2.Submit(t.Context(), "noop", "u", nil)
		done <- err
	}()
	for range 2 {
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second): // a deadlock detector, far above any run time
			t.Fatal("AddHost or Submit waited for the hung dial")
		}
	}
}

type slowCreateHost struct{ store.Store }

func (s slowCreateHost) CreateHost(ctx context.Context, h store.Host) (store.Host, error) {
	time.Sleep(50 * time.Millisecond) // a PostgreSQL round trip or two
	return s.Store.CreateHost(ctx, h)
}

// Concurrent adds of one host through a store as slow as a network round
// trip still make one record (review).
func TestAddHostSlowStoreRace(t *testing.T) {
	fleet, err := sim.New(sim.Config{Count: 1})
	require.NoError(t, err)
	st, err := sqlite.New(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "v.db")})
	require.NoError(t, err)
	defer st.Close()
	m, err := vmm.New(vmm.Config{Store: slowCreateHost{st}, Sim: fleet, StorePath: filepath.Join(t.TempDir(), "x.db")})
	require.NoError(t, err)
	defer m.Close()
	g, err := m.CreateGroup(t.Context(), store.HostGroup{Name: "g"})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { m.AddHost(t.Context(), g.ID, vmm.SimURI(fleet.Names()[0]), nil) })
	}
	wg.Wait()
	hs, _ := m.Hosts(t.Context(), "")
	t.Logf("host records %d", len(hs))
	require.Equal(t, 1, len(hs))
}
