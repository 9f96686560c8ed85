package vmm

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmmkit/vmmkit/vmm/store"

	"github.com/stretchr/testify/require"
)

// Waits leave no subscription behind (review: every Wait left one).
func TestWatchLeavesNoSubscription(t *testing.T) {
	m, err := New(Config{StorePath: filepath.Join(t.TempDir(), "v.db"),
		Jobs: map[string]JobFunc{"noop": func(ctx context.Context, r *Run) error { return nil }}})
	require.NoError(t, err)
	defer m.Close()
	for range 50 {
		j, err := m.Submit(t.Context(), "noop", "u", nil)
		require.NoError(t, err)
		_, err = m.Wait(t.Context(), j.ID)
		require.NoError(t, err)
	}
	m.mu.Lock()
	n := len(m.watch)
	m.mu.Unlock()
	t.Logf("m.watch holds %d channels after 50 finished Waits", n)
	require.Zero(t, n)
}

// updateVM gives up on an ErrConflict that is not a stale version (the
// host the VM would go to is gone) instead of trying again until ctx ends
// (review).
func TestUpdateVMToDeletedHost(t *testing.T) {
	m, err := New(Config{StorePath: filepath.Join(t.TempDir(), "v.db")})
	require.NoError(t, err)
	defer m.Close()
	g, err := m.st.CreateGroup(t.Context(), store.HostGroup{Name: "g"})
	require.NoError(t, err)
	h, err := m.st.CreateHost(t.Context(), store.Host{Name: "b", GroupID: g.ID})
	require.NoError(t, err)
	vm, err := m.st.CreateVM(t.Context(), store.VM{Name: "x", GroupID: g.ID, State: "running"})
	require.NoError(t, err)
	require.NoError(t, m.RemoveHost(t.Context(), h.ID)) // no VM on it yet: allowed
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	n := 0
	_, err = m.updateVM(ctx, vm.ID, func(v *store.VM) bool { n++; v.HostID = h.ID; return true }) // as migrate() does at its end
	t.Logf("updateVM tried %d times, err %v", n, err)
	require.ErrorIs(t, err, store.ErrConflict)
	require.Equal(t, 1, n, "tries")
}
