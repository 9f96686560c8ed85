// Package storetest is the conformance suite of store.Store: every
// implementation runs it in its tests.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Opener {
//			path := filepath.Join(t.TempDir(), "vmm.db")
//			return func() (store.Store, error) { return sqlite.Open(path) }
//		})
//	}
//
// newDB makes a fresh, empty database for one test and returns an Opener
// that opens a new handle on it each time it is called; the suite closes
// the handles it opens. Several handles on one database stand for several
// managers; closing one and opening another checks persistence.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/vmm/store"
)

// Opener opens a new handle on one database.
type Opener func() (store.Store, error)

// Run runs the conformance suite, each test on a database of its own.
func Run(t *testing.T, newDB func(t *testing.T) Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func() store.Store)
	}{
		{"Groups", testGroups},
		{"Hosts", testHosts},
		{"VMs", testVMs},
		{"VMNameRace", testVMNameRace},
		{"Jobs", testJobs},
		{"Claims", testClaims},
		{"ExpiredLease", testExpiredLease},
		{"RenewedLeaseKept", testRenewedLeaseKept},
		{"InvalidInput", testInvalidInput},
		{"Leadership", testLeadership},
		{"Quota", testQuota},
		{"Cancelled", testCancelled},
		{"CancelRetry", testCancelRetry},
		{"Persistence", testPersistence},
		{"Closed", testClosed},
		{"Sessions", testSessions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opener := newDB(t)
			open := func() store.Store {
				t.Helper()
				s, err := opener()
				require.NoError(t, err, "open")
				t.Cleanup(func() { s.Close() })
				return s
			}
			tc.fn(t, open)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// wantErr checks that err wraps want and is an *store.OpError.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want %v", what, err, want)
		return
	}
	var oe *store.OpError
	if !errors.As(err, &oe) {
		t.Errorf("%s: got %T (%v), want a *store.OpError", what, err, err)
	}
}

func group(t *testing.T, s store.Store, parent string) store.HostGroup {
	t.Helper()
	g, err := s.CreateGroup(ctx(t), store.HostGroup{ParentID: parent, Name: "g-" + store.NewID()[:8], Goal: "balance"})
	require.NoError(t, err)
	return g
}

func host(t *testing.T, s store.Store, groupID string) store.Host {
	t.Helper()
	h, err := s.CreateHost(ctx(t), store.Host{Name: "h-" + store.NewID()[:8], GroupID: groupID, URI: "sim:///", Kind: "sim", Site: "paris"})
	require.NoError(t, err)
	return h
}

func testGroups(t *testing.T, open func() store.Store) {
	s, c := open(), ctx(t)
	root, err := s.CreateGroup(c, store.HostGroup{ID: "root", Name: "All hosts", Goal: "balance", Reserves: store.Reserves{CPUPercent: 10, MemoryMiB: 2048}})
	require.NoError(t, err)
	assert.Equal(t, int64(1), root.Version)
	child, err := s.CreateGroup(c, store.HostGroup{ParentID: root.ID, Name: "Paris", Goal: "pack"})
	require.NoError(t, err)
	assert.NotEmpty(t, child.ID, "generated ID")

	got, err := s.Group(c, root.ID)
	require.NoError(t, err)
	assert.Equal(t, root, got)
	all, err := s.Groups(c)
	require.NoError(t, err)
	assert.Len(t, all, 2)

	_, err = s.CreateGroup(c, store.HostGroup{ID: "root", Name: "again"})
	wantErr(t, "CreateGroup with a taken ID", err, store.ErrExists)
	_, err = s.CreateGroup(c, store.HostGroup{ParentID: "nosuch", Name: "orphan"})
	wantErr(t, "CreateGroup under a missing parent", err, store.ErrConflict)
	_, err = s.CreateGroup(c, store.HostGroup{})
	wantErr(t, "CreateGroup without a name", err, store.ErrInvalid)

	upd := got
	upd.Goal = "pack"
	upd.Reserves.DiskGiB = 100
	upd, err = s.UpdateGroup(c, upd)
	require.NoError(t, err)
	assert.Equal(t, int64(2), upd.Version)
	got, err = s.Group(c, root.ID)
	require.NoError(t, err)
	assert.Equal(t, upd, got)
	_, err = s.UpdateGroup(c, root) // Version 1: stale
	wantErr(t, "UpdateGroup with a stale Version", err, store.ErrConflict)
	_, err = s.UpdateGroup(c, store.HostGroup{ID: "nosuch", Name: "x", Version: 1})
	wantErr(t, "UpdateGroup of a missing group", err, store.ErrNotFound)

	wantErr(t, "DeleteGroup with a child", s.DeleteGroup(c, root.ID), store.ErrConflict)
	require.NoError(t, s.DeleteGroup(c, child.ID))
	require.NoError(t, s.DeleteGroup(c, root.ID))
	_, err = s.Group(c, root.ID)
	wantErr(t, "Group after delete", err, store.ErrNotFound)
	wantErr(t, "DeleteGroup twice", s.DeleteGroup(c, root.ID), store.ErrNotFound)
}

func testHosts(t *testing.T, open func() store.Store) {
	s, c := open(), ctx(t)
	g1, g2 := group(t, s, ""), group(t, s, "")
	added := time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)
	h, err := s.CreateHost(c, store.Host{ID: "h1", Name: "hv01", GroupID: g1.ID, URI: "qemu+ssh://hv01/system", Kind: "libvirt", AddedAt: added})
	require.NoError(t, err)
	assert.True(t, h.AddedAt.Equal(added), "AddedAt %v, want %v", h.AddedAt, added)
	h2 := host(t, s, g2.ID)
	assert.False(t, h2.AddedAt.IsZero(), "AddedAt set on create")

	got, err := s.Host(c, "h1")
	require.NoError(t, err)
	assert.Equal(t, h, got)
	for _, tc := range []struct {
		name  string
		group string
		want  int
	}{{"all", "", 2}, {"group 1", g1.ID, 1}, {"group 2", g2.ID, 1}, {"other", "nosuch", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			hs, err := s.Hosts(c, tc.group)
			require.NoError(t, err)
			assert.Len(t, hs, tc.want)
		})
	}

	_, err = s.CreateHost(c, store.Host{ID: "h1", Name: "dup", GroupID: g1.ID})
	wantErr(t, "CreateHost with a taken ID", err, store.ErrExists)
	_, err = s.CreateHost(c, store.Host{Name: "HV01", GroupID: g2.ID})
	wantErr(t, "CreateHost with a taken name in another case", err, store.ErrExists)
	_, err = s.CreateHost(c, store.Host{Name: "nogroup"})
	wantErr(t, "CreateHost without a group", err, store.ErrInvalid)
	_, err = s.CreateHost(c, store.Host{Name: "badgroup", GroupID: "nosuch"})
	wantErr(t, "CreateHost in a missing group", err, store.ErrConflict)

	got.Maintenance = true
	got.GroupID = g2.ID
	got.Site = "lyon"
	upd, err := s.UpdateHost(c, got)
	require.NoError(t, err)
	again, err := s.Host(c, "h1")
	require.NoError(t, err)
	assert.Equal(t, upd, again)
	assert.True(t, again.Maintenance)
	assert.Equal(t, "lyon", again.Site, "Site")
	_, err = s.UpdateHost(c, got)
	wantErr(t, "UpdateHost with a stale Version", err, store.ErrConflict)

	vm, err := s.CreateVM(c, store.VM{Name: "on-h1", GroupID: g2.ID, HostID: "h1"})
	require.NoError(t, err)
	wantErr(t, "DeleteHost with a VM on it", s.DeleteHost(c, "h1"), store.ErrConflict)
	require.NoError(t, s.DeleteVM(c, vm.ID))
	require.NoError(t, s.DeleteHost(c, "h1"))
	_, err = s.Host(c, "h1")
	wantErr(t, "Host after delete", err, store.ErrNotFound)
}

func testVMs(t *testing.T, open func() store.Store) {
	s, c := open(), ctx(t)
	g1, g2 := group(t, s, ""), group(t, s, "")
	h := host(t, s, g1.ID)
	spec := json.RawMessage(`{"cpus":2,"memory_mib":4096}`)
	vm, err := s.CreateVM(c, store.VM{Name: "web01", GroupID: g1.ID, HostID: h.ID, Template: "win2003-std", Owner: "alice", State: "running", Points: 3, Spec: spec})
	require.NoError(t, err)
	assert.Equal(t, int64(1), vm.Version)
	assert.False(t, vm.CreatedAt.IsZero())

	got, err := s.VM(c, vm.ID)
	require.NoError(t, err)
	assert.Equal(t, vm, got)
	assert.JSONEq(t, string(spec), string(got.Spec))

	_, err = s.CreateVM(c, store.VM{Name: "web01", GroupID: g1.ID})
	wantErr(t, "CreateVM with a name taken in the group", err, store.ErrExists)
	other, err := s.CreateVM(c, store.VM{Name: "web01", GroupID: g2.ID, Owner: "bob"})
	require.NoError(t, err, "the same name in another group")
	_, err = s.CreateVM(c, store.VM{Name: "x", GroupID: g1.ID, HostID: "nosuch"})
	wantErr(t, "CreateVM on a missing host", err, store.ErrConflict)
	_, err = s.CreateVM(c, store.VM{Name: "x"})
	wantErr(t, "CreateVM without a group", err, store.ErrInvalid)

	for _, tc := range []struct {
		name string
		f    store.VMFilter
		want int
	}{
		{"all", store.VMFilter{}, 2},
		{"group", store.VMFilter{GroupID: g2.ID}, 1},
		{"host", store.VMFilter{HostID: h.ID}, 1},
		{"owner", store.VMFilter{Owner: "alice"}, 1},
		{"owner and group", store.VMFilter{Owner: "alice", GroupID: g2.ID}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs, err := s.VMs(c, tc.f)
			require.NoError(t, err)
			assert.Len(t, vs, tc.want)
		})
	}

	got.State = "stopped"
	got.HostID = ""
	upd, err := s.UpdateVM(c, got)
	require.NoError(t, err)
	assert.Equal(t, int64(2), upd.Version)
	again, err := s.VM(c, vm.ID)
	require.NoError(t, err)
	assert.Equal(t, upd, again)
	_, err = s.UpdateVM(c, got)
	wantErr(t, "UpdateVM with a stale Version", err, store.ErrConflict)
	again.GroupID = g2.ID // other has that name in g2
	_, err = s.UpdateVM(c, again)
	wantErr(t, "UpdateVM to a name taken in the group", err, store.ErrExists)

	require.NoError(t, s.DeleteVM(c, other.ID))
	wantErr(t, "DeleteVM twice", s.DeleteVM(c, other.ID), store.ErrNotFound)
	_, err = s.VM(c, other.ID)
	wantErr(t, "VM after delete", err, store.ErrNotFound)
}

// testVMNameRace creates one name from many goroutines on two handles:
// exactly one create succeeds.
func testVMNameRace(t *testing.T, open func() store.Store) {
	a, b := open(), open()
	g := group(t, a, "")
	c := ctx(t)
	var wg sync.WaitGroup
	var ok, exists atomic.Int32
	errs := make(chan error, 32)
	for i := range 32 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			_, err := s.CreateVM(c, store.VM{Name: "same", GroupID: g.ID})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrExists):
				exists.Add(1)
			default:
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("CreateVM: unexpected error %v", err)
	}
	assert.Equal(t, int32(1), ok.Load(), "creates that succeeded")
	assert.Equal(t, int32(31), exists.Load(), "creates that got ErrExists")
	vms, err := a.VMs(c, store.VMFilter{GroupID: g.ID})
	require.NoError(t, err)
	assert.Len(t, vms, 1)
}

func testJobs(t *testing.T, open func() store.Store) {
	s, c := open(), ctx(t)
	_, err := s.ClaimJob(c, "m1", time.Minute)
	wantErr(t, "ClaimJob with no jobs", err, store.ErrNotFound)

	input := json.RawMessage(`{"template":"win2003-std"}`)
	j1, err := s.CreateJob(c, store.Job{Kind: "create-vm", User: "alice", Input: input,
		Steps: []store.Step{{Name: "copy", State: store.JobQueued}, {Name: "define", State: store.JobQueued}}})
	require.NoError(t, err)
	assert.Equal(t, store.JobQueued, j1.State)
	time.Sleep(2 * time.Millisecond) // distinct CreatedAt, for the order
	j2, err := s.CreateJob(c, store.Job{Kind: "p2v", User: "bob"})
	require.NoError(t, err)
	_, err = s.CreateJob(c, store.Job{})
	wantErr(t, "CreateJob without a Kind", err, store.ErrInvalid)

	got, err := s.Job(c, j1.ID)
	require.NoError(t, err)
	assert.Equal(t, j1, got)
	for _, tc := range []struct {
		name string
		f    store.JobFilter
		want []string
	}{
		{"all", store.JobFilter{}, []string{j1.ID, j2.ID}},
		{"kind", store.JobFilter{Kind: "p2v"}, []string{j2.ID}},
		{"user", store.JobFilter{User: "alice"}, []string{j1.ID}},
		{"state", store.JobFilter{State: store.JobQueued}, []string{j1.ID, j2.ID}},
		{"running", store.JobFilter{State: store.JobRunning}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js, err := s.Jobs(c, tc.f)
			require.NoError(t, err)
			var ids []string
			for _, j := range js {
				ids = append(ids, j.ID)
			}
			assert.Equal(t, tc.want, ids)
		})
	}

	// Claims: by kind, then oldest first.
	cl, err := s.ClaimJob(c, "m1", time.Minute, "p2v")
	require.NoError(t, err)
	assert.Equal(t, j2.ID, cl.ID, "claim of kind p2v")
	_, err = s.ClaimJob(c, "m1", time.Minute, "p2v")
	wantErr(t, "second claim of kind p2v", err, store.ErrNotFound)
	cl, err = s.ClaimJob(c, "m1", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, j1.ID, cl.ID)
	assert.Equal(t, store.JobRunning, cl.State)
	assert.Equal(t, "m1", cl.Owner)
	assert.Equal(t, 1, cl.Attempts)
	assert.False(t, cl.StartedAt.IsZero(), "StartedAt")
	assert.True(t, cl.LeaseUntil.After(time.Now()), "LeaseUntil %v in the future", cl.LeaseUntil)
	assert.Equal(t, j1.Version+1, cl.Version)

	until, err := s.RenewLease(c, cl.ID, "m1", time.Hour)
	require.NoError(t, err)
	assert.True(t, until.After(time.Now().Add(50*time.Minute)), "renewed lease %v", until)
	_, err = s.RenewLease(c, cl.ID, "m2", time.Hour)
	wantErr(t, "RenewLease by another owner", err, store.ErrConflict)
	_, err = s.RenewLease(c, "nosuch", "m1", time.Hour)
	wantErr(t, "RenewLease of a missing job", err, store.ErrNotFound)

	// Progress by the owner; stale and foreign updates fail.
	cl.Steps[0].State, cl.Steps[0].StartedAt = store.JobRunning, time.Now().UTC().Truncate(time.Microsecond)
	cl.Steps[0].Data = json.RawMessage(`{"copied":1024}`)
	cl.Progress = 0.5
	p, err := s.UpdateJob(c, cl)
	require.NoError(t, err)
	got, err = s.Job(c, cl.ID)
	require.NoError(t, err)
	assert.Equal(t, 0.5, got.Progress)
	require.Len(t, got.Steps, 2)
	assert.True(t, got.Steps[0].StartedAt.Equal(cl.Steps[0].StartedAt))
	assert.JSONEq(t, `{"copied":1024}`, string(got.Steps[0].Data))
	_, err = s.UpdateJob(c, cl)
	wantErr(t, "UpdateJob with a stale Version", err, store.ErrConflict)
	foreign := p
	foreign.Owner = "m2"
	_, err = s.UpdateJob(c, foreign)
	wantErr(t, "UpdateJob by another owner", err, store.ErrConflict)
	_, err = s.UpdateJob(c, store.Job{ID: "nosuch", Owner: "m1", Version: 1})
	wantErr(t, "UpdateJob of a missing job", err, store.ErrNotFound)

	p.State, p.Result, p.Progress = store.JobSucceeded, json.RawMessage(`{"vm":"web01"}`), 1
	done, err := s.UpdateJob(c, p)
	require.NoError(t, err)
	got, err = s.Job(c, p.ID)
	require.NoError(t, err)
	assert.Equal(t, done, got)
	assert.False(t, got.EndedAt.IsZero(), "EndedAt set by a final state")
	assert.JSONEq(t, `{"vm":"web01"}`, string(got.Result))
	_, err = s.ClaimJob(c, "m3", time.Minute)
	// j2 is running under m1's lease; j1 is done.
	wantErr(t, "ClaimJob with nothing claimable", err, store.ErrNotFound)
}

// testClaims has 8 goroutines on each of two handles claim and complete 200
// jobs: each is claimed exactly once.
func testClaims(t *testing.T, open func() store.Store) {
	const jobs, workers = 200, 8
	handles := []store.Store{open(), open()}
	c := ctx(t)
	for i := range jobs {
		_, err := handles[0].CreateJob(c, store.Job{Kind: "k", Input: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
		require.NoError(t, err)
	}
	var mu sync.Mutex
	claims := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, len(handles)*workers)
	for h, s := range handles {
		for w := range workers {
			owner := fmt.Sprintf("m%d-w%d", h, w)
			wg.Go(func() {
				for {
					j, err := s.ClaimJob(c, owner, time.Hour)
					if errors.Is(err, store.ErrNotFound) {
						return
					}
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					claims[j.ID]++
					mu.Unlock()
					j.State = store.JobSucceeded
					if _, err := s.UpdateJob(c, j); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("claim or update: %v", err)
	}
	assert.Len(t, claims, jobs, "jobs claimed")
	for id, n := range claims {
		if n != 1 {
			t.Errorf("job %s claimed %d times, want 1", id, n)
		}
	}
	done, err := handles[1].Jobs(c, store.JobFilter{State: store.JobSucceeded})
	require.NoError(t, err)
	assert.Len(t, done, jobs, "succeeded jobs")
	for _, j := range done {
		if j.Attempts != 1 {
			t.Errorf("job %s: %d attempts, want 1", j.ID, j.Attempts)
		}
	}
}

func testExpiredLease(t *testing.T, open func() store.Store) {
	a, b := open(), open()
	c := ctx(t)
	j, err := a.CreateJob(c, store.Job{Kind: "k"})
	require.NoError(t, err)
	first, err := a.ClaimJob(c, "dead", time.Second)
	require.NoError(t, err)
	require.Equal(t, j.ID, first.ID)
	_, err = b.ClaimJob(c, "alive", time.Hour)
	wantErr(t, "claim while the lease runs", err, store.ErrNotFound)
	time.Sleep(1200 * time.Millisecond)
	second, err := b.ClaimJob(c, "alive", time.Hour)
	require.NoError(t, err, "claim after the lease expired")
	assert.Equal(t, j.ID, second.ID)
	assert.Equal(t, "alive", second.Owner)
	assert.Equal(t, 2, second.Attempts)
	assert.True(t, second.StartedAt.Equal(first.StartedAt), "StartedAt kept from the first claim")

	first.State = store.JobFailed
	_, err = a.UpdateJob(c, first)
	wantErr(t, "UpdateJob by the owner whose lease expired", err, store.ErrConflict)
	_, err = a.RenewLease(c, j.ID, "dead", time.Hour)
	wantErr(t, "RenewLease by the owner whose lease expired", err, store.ErrConflict)
	second.State = store.JobSucceeded
	_, err = b.UpdateJob(c, second)
	require.NoError(t, err)
}

func testLeadership(t *testing.T, open func() store.Store) {
	c := ctx(t)
	a, b := open(), open()
	lead := func(s store.Store, name, owner string, ttl time.Duration) bool {
		t.Helper()
		ok, err := s.TryLead(c, name, owner, ttl)
		require.NoError(t, err)
		return ok
	}
	t.Run("Exclusive", func(t *testing.T) {
		assert.True(t, lead(a, "sync", "A", time.Hour), "A leads a free name")
		assert.False(t, lead(b, "sync", "B", time.Hour), "B while A leads")
		assert.True(t, lead(a, "sync", "A", time.Hour), "A renews")
		assert.True(t, lead(b, "other", "B", time.Hour), "B leads another name")
		require.NoError(t, a.Resign(c, "sync", "B"), "Resign by a non-leader")
		assert.False(t, lead(b, "sync", "B", time.Hour), "B after its own no-op Resign")
		require.NoError(t, a.Resign(c, "sync", "A"))
		assert.True(t, lead(b, "sync", "B", time.Hour), "B after A resigned")
		assert.False(t, lead(a, "sync", "A", time.Hour), "A after B took over")
	})
	t.Run("TTL", func(t *testing.T) {
		assert.True(t, lead(a, "ttl", "A", time.Second))
		assert.False(t, lead(b, "ttl", "B", time.Hour))
		time.Sleep(1200 * time.Millisecond)
		assert.True(t, lead(b, "ttl", "B", time.Hour), "B after A's term ran out")
		assert.False(t, lead(a, "ttl", "A", time.Hour))
	})
	t.Run("Close", func(t *testing.T) {
		x := open()
		assert.True(t, lead(x, "close", "X", time.Hour))
		assert.False(t, lead(b, "close", "B", time.Hour))
		require.NoError(t, x.Close())
		assert.True(t, lead(b, "close", "B", time.Hour), "B after X's handle closed")
	})
	t.Run("Race", func(t *testing.T) {
		var wg sync.WaitGroup
		var leaders atomic.Int32
		for i := range 16 {
			s := []store.Store{a, b}[i%2]
			wg.Go(func() {
				ok, err := s.TryLead(c, "race", fmt.Sprintf("M%d", i), time.Hour)
				if err != nil {
					t.Errorf("TryLead: %v", err)
				}
				if ok {
					leaders.Add(1)
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int32(1), leaders.Load(), "leaders")
	})
}

// testQuota runs 100 concurrent creates of one point each against a limit
// of 10: exactly 10 succeed.
func testQuota(t *testing.T, open func() store.Store) {
	const tries, limit = 100, 10
	a, b := open(), open()
	c := ctx(t)
	g := group(t, a, "")
	_, err := a.CreateVM(c, store.VM{Name: "bobs", GroupID: g.ID, Owner: "bob", Points: 50})
	require.NoError(t, err)
	var wg sync.WaitGroup
	var ok, over atomic.Int32
	for i := range tries {
		s := []store.Store{a, b}[i%2]
		wg.Go(func() {
			_, err := s.CreateVMWithinQuota(c, store.VM{Name: fmt.Sprintf("vm%03d", i), GroupID: g.ID, Owner: "alice", Points: 1}, limit)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrQuota):
				over.Add(1)
			default:
				t.Errorf("CreateVMWithinQuota: %v", err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(limit), ok.Load(), "creates within the quota")
	assert.Equal(t, int32(tries-limit), over.Load(), "creates refused with ErrQuota")
	vms, err := b.VMs(c, store.VMFilter{Owner: "alice"})
	require.NoError(t, err)
	assert.Len(t, vms, limit)

	_, err = a.CreateVMWithinQuota(c, store.VM{Name: "big", GroupID: g.ID, Owner: "carol", Points: 11}, limit)
	wantErr(t, "a VM bigger than the quota", err, store.ErrQuota)
	_, err = a.CreateVMWithinQuota(c, store.VM{Name: vms[0].Name, GroupID: g.ID, Owner: "carol", Points: 1}, limit)
	wantErr(t, "a quota create with a taken name", err, store.ErrExists)
}

func testCancelled(t *testing.T, open func() store.Store) {
	s := open()
	g := group(t, s, "")
	j, err := s.CreateJob(ctx(t), store.Job{Kind: "k"})
	require.NoError(t, err)
	c, cancel := context.WithCancel(t.Context())
	cancel()
	calls := []struct {
		name string
		fn   func() error
	}{
		{"CreateGroup", func() error { _, err := s.CreateGroup(c, store.HostGroup{Name: "x"}); return err }},
		{"Group", func() error { _, err := s.Group(c, g.ID); return err }},
		{"Groups", func() error { _, err := s.Groups(c); return err }},
		{"CreateHost", func() error { _, err := s.CreateHost(c, store.Host{Name: "x", GroupID: g.ID}); return err }},
		{"Hosts", func() error { _, err := s.Hosts(c, ""); return err }},
		{"CreateVM", func() error { _, err := s.CreateVM(c, store.VM{Name: "x", GroupID: g.ID}); return err }},
		{"CreateVMWithinQuota", func() error {
			_, err := s.CreateVMWithinQuota(c, store.VM{Name: "y", GroupID: g.ID}, 10)
			return err
		}},
		{"VMs", func() error { _, err := s.VMs(c, store.VMFilter{}); return err }},
		{"CreateJob", func() error { _, err := s.CreateJob(c, store.Job{Kind: "k"}); return err }},
		{"Jobs", func() error { _, err := s.Jobs(c, store.JobFilter{}); return err }},
		{"ClaimJob", func() error { _, err := s.ClaimJob(c, "m", time.Hour); return err }},
		{"CancelJob", func() error { _, err := s.CancelJob(c, j.ID); return err }},
		{"RetryJob", func() error { _, err := s.RetryJob(c, j.ID); return err }},
		{"TryLead", func() error { _, err := s.TryLead(c, "n", "m", time.Hour); return err }},
		{"DeleteGroup", func() error { return s.DeleteGroup(c, g.ID) }},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, tc.name, tc.fn(), context.Canceled)
		})
	}
	// Nothing was written.
	c2 := ctx(t)
	gs, err := s.Groups(c2)
	require.NoError(t, err)
	assert.Len(t, gs, 1, "groups")
	hs, err := s.Hosts(c2, "")
	require.NoError(t, err)
	assert.Empty(t, hs, "hosts")
	vms, err := s.VMs(c2, store.VMFilter{})
	require.NoError(t, err)
	assert.Empty(t, vms, "VMs")
	js, err := s.Jobs(c2, store.JobFilter{})
	require.NoError(t, err)
	require.Len(t, js, 1, "jobs")
	assert.Equal(t, j, js[0], "the job is still queued")
	ok, err := s.TryLead(c2, "n", "other", time.Hour)
	require.NoError(t, err)
	assert.True(t, ok, "no lease was taken by the cancelled TryLead")
}

func testPersistence(t *testing.T, open func() store.Store) {
	s, c := open(), ctx(t)
	g := group(t, s, "")
	h := host(t, s, g.ID)
	vm, err := s.CreateVM(c, store.VM{Name: "kept", GroupID: g.ID, HostID: h.ID, Spec: json.RawMessage(`{"a":1}`)})
	require.NoError(t, err)
	j, err := s.CreateJob(c, store.Job{Kind: "k", Steps: []store.Step{{Name: "one", State: store.JobQueued}}})
	require.NoError(t, err)
	ok, err := s.TryLead(c, "kept", "A", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, s.Resign(c, "kept", "A"))
	require.NoError(t, s.Close())

	r := open()
	gotG, err := r.Group(c, g.ID)
	require.NoError(t, err)
	assert.Equal(t, g, gotG)
	gotH, err := r.Host(c, h.ID)
	require.NoError(t, err)
	assert.Equal(t, h, gotH)
	gotVM, err := r.VM(c, vm.ID)
	require.NoError(t, err)
	assert.Equal(t, vm, gotVM)
	gotJ, err := r.Job(c, j.ID)
	require.NoError(t, err)
	assert.Equal(t, j, gotJ)
}

func testClosed(t *testing.T, open func() store.Store) {
	s := open()
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "second Close")
	_, err := s.Groups(ctx(t))
	wantErr(t, "Groups after Close", err, store.ErrClosed)
	_, err = s.CreateJob(ctx(t), store.Job{Kind: "k"})
	wantErr(t, "CreateJob after Close", err, store.ErrClosed)
}

// A renewal is not undone by an update made from a copy of the job read
// before it: the job must not become claimable while its owner works.
func testRenewedLeaseKept(t *testing.T, open func() store.Store) {
	a, b := open(), open()
	c := ctx(t)
	_, err := a.CreateJob(c, store.Job{Kind: "k"})
	require.NoError(t, err)
	j, err := a.ClaimJob(c, "worker", time.Second)
	require.NoError(t, err)
	until, err := a.RenewLease(c, j.ID, "worker", time.Hour)
	require.NoError(t, err)
	j.Progress = 0.5 // from the copy ClaimJob returned, before the renewal
	j, err = a.UpdateJob(c, j)
	require.NoError(t, err)
	assert.True(t, j.LeaseUntil.Equal(until), "UpdateJob returns the renewed lease: got %v, want %v", j.LeaseUntil, until)
	time.Sleep(1200 * time.Millisecond) // past the first lease
	_, err = b.ClaimJob(c, "thief", time.Hour)
	wantErr(t, "claim of a job whose lease was renewed", err, store.ErrNotFound)
	j.State = store.JobSucceeded
	j, err = a.UpdateJob(c, j)
	require.NoError(t, err)
	assert.True(t, j.LeaseUntil.IsZero(), "a finished job holds no lease")
}

func testInvalidInput(t *testing.T, open func() store.Store) {
	s := open()
	c := ctx(t)
	g := group(t, s, "")
	child := group(t, s, g.ID)
	grandchild := group(t, s, child.ID)
	for _, parent := range []string{g.ID, child.ID, grandchild.ID} {
		cyc := g
		cyc.ParentID = parent
		_, err := s.UpdateGroup(c, cyc)
		wantErr(t, "a group moved under itself or its descendant", err, store.ErrInvalid)
	}
	moved := grandchild
	moved.ParentID = g.ID
	_, err := s.UpdateGroup(c, moved)
	require.NoError(t, err, "a group moved up the tree")
	_, err = s.CreateVMWithinQuota(c, store.VM{Name: "neg", GroupID: g.ID, Owner: "eve", Points: -100}, 10)
	wantErr(t, "negative points", err, store.ErrInvalid)
	_, err = s.CreateVM(c, store.VM{Name: "neg2", GroupID: g.ID, Owner: "eve", Points: -1})
	wantErr(t, "negative points without quota", err, store.ErrInvalid)

	_, err = s.CreateJob(c, store.Job{Kind: "k"})
	require.NoError(t, err)
	_, err = s.ClaimJob(c, "w", time.Duration(math.MaxInt64))
	wantErr(t, "a lease beyond the clock", err, store.ErrInvalid)
	_, err = s.ClaimJob(c, "w", 0)
	wantErr(t, "a zero lease", err, store.ErrInvalid)
	_, err = s.TryLead(c, "leader", "a", time.Duration(math.MaxInt64))
	wantErr(t, "a ttl beyond the clock", err, store.ErrInvalid)
	j, err := s.ClaimJob(c, "w", time.Hour)
	require.NoError(t, err)
	j.State = ""
	_, err = s.UpdateJob(c, j)
	wantErr(t, "an empty job state", err, store.ErrInvalid)
	j.State = "paused-forever"
	_, err = s.UpdateJob(c, j)
	wantErr(t, "an unknown job state", err, store.ErrInvalid)
}

func testCancelRetry(t *testing.T, open func() store.Store) {
	s, c := open(), ctx(t)
	_, err := s.CancelJob(c, "missing")
	wantErr(t, "cancel a missing job", err, store.ErrNotFound)
	_, err = s.RetryJob(c, "missing")
	wantErr(t, "retry a missing job", err, store.ErrNotFound)

	// A queued job is cancelled at once and no longer claimed.
	q, err := s.CreateJob(c, store.Job{Kind: "q"})
	require.NoError(t, err)
	got, err := s.CancelJob(c, q.ID)
	require.NoError(t, err)
	assert.Equal(t, store.JobCancelled, got.State, "queued job after CancelJob")
	assert.False(t, got.EndedAt.IsZero(), "cancelled job has an end time")
	_, err = s.ClaimJob(c, "m1", time.Hour, "q")
	wantErr(t, "claim a cancelled job", err, store.ErrNotFound)

	// A running job gets the request; its owner sees it and ends it.
	r, err := s.CreateJob(c, store.Job{Kind: "r", Steps: []store.Step{{Name: "one"}, {Name: "two"}}})
	require.NoError(t, err)
	r, err = s.ClaimJob(c, "m1", time.Hour, "r")
	require.NoError(t, err)
	_, err = s.RetryJob(c, r.ID)
	wantErr(t, "retry a running job", err, store.ErrConflict)
	asked, err := s.CancelJob(c, r.ID)
	require.NoError(t, err)
	assert.Equal(t, store.JobRunning, asked.State, "a running job keeps running until its owner ends it")
	assert.True(t, asked.CancelRequested, "CancelRequested")
	again, err := s.CancelJob(c, r.ID)
	require.NoError(t, err)
	assert.Equal(t, asked.Version, again.Version, "a second request changes nothing")
	seen, err := s.Job(c, r.ID)
	require.NoError(t, err)
	assert.True(t, seen.CancelRequested, "the owner reads CancelRequested")
	seen.State, seen.Error = store.JobFailed, "boom"
	seen.Steps[0].State, seen.Steps[1].State = store.JobSucceeded, store.JobFailed
	ended, err := s.UpdateJob(c, seen)
	require.NoError(t, err)
	asked, err = s.CancelJob(c, r.ID)
	require.NoError(t, err)
	assert.Equal(t, ended.Version, asked.Version, "cancelling an ended job changes nothing")

	// Retry queues it again with its steps, without the error and request.
	re, err := s.RetryJob(c, r.ID)
	require.NoError(t, err)
	assert.Equal(t, store.JobQueued, re.State)
	assert.Empty(t, re.Error, "error cleared")
	assert.False(t, re.CancelRequested, "cancel request cleared")
	assert.True(t, re.EndedAt.IsZero(), "end time cleared")
	require.Len(t, re.Steps, 2)
	assert.Equal(t, store.JobSucceeded, re.Steps[0].State, "steps kept")
	claimed, err := s.ClaimJob(c, "m2", time.Hour, "r")
	require.NoError(t, err)
	assert.Equal(t, r.ID, claimed.ID)
	assert.Equal(t, 2, claimed.Attempts, "attempts counted across retries")
	_, err = s.RetryJob(c, q.ID)
	require.NoError(t, err, "a cancelled job can be retried")
}

// testSessions: a session made through one handle is seen through another
// (another process), until it ends or expires; expired ones are swept.
func testSessions(t *testing.T, open func() store.Store) {
	a, b := open(), open()
	sa, ok := a.(store.SessionStore)
	if !ok {
		t.Skip("the store keeps no sessions")
	}
	sb := b.(store.SessionStore)
	c := ctx(t)
	want := store.Session{ID: "digest-1", User: "alice", Groups: []string{"devs", "Domain Users"}, CSRF: "tok",
		Expires: time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)}
	require.NoError(t, sa.CreateSession(c, want))
	got, err := sb.Session(c, "digest-1")
	require.NoError(t, err)
	assert.Equal(t, want.User, got.User)
	assert.Equal(t, want.Groups, got.Groups)
	assert.Equal(t, want.CSRF, got.CSRF)
	assert.True(t, want.Expires.Equal(got.Expires), "expires %v, want %v", got.Expires, want.Expires)
	wantErr(t, "a session ID taken", sb.CreateSession(c, want), store.ErrExists)
	wantErr(t, "a session without a user", sa.CreateSession(c, store.Session{ID: "x", Expires: want.Expires}), store.ErrInvalid)
	_, err = sa.Session(c, "nosuch")
	wantErr(t, "no such session", err, store.ErrNotFound)

	// Ended through the other handle: gone for both.
	require.NoError(t, sb.DeleteSession(c, "digest-1"))
	_, err = sa.Session(c, "digest-1")
	wantErr(t, "an ended session", err, store.ErrNotFound)
	require.NoError(t, sb.DeleteSession(c, "digest-1"), "ending it twice")

	// Expired: not returned, then swept.
	require.NoError(t, sa.CreateSession(c, store.Session{ID: "short", User: "bob", Expires: time.Now().Add(300 * time.Millisecond)}))
	require.NoError(t, sa.CreateSession(c, store.Session{ID: "long", User: "carol", Expires: time.Now().Add(time.Hour)}))
	_, err = sb.Session(c, "short")
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond)
	_, err = sb.Session(c, "short")
	wantErr(t, "an expired session", err, store.ErrNotFound)
	n, err := sb.DeleteExpiredSessions(c)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = sa.Session(c, "long")
	assert.NoError(t, err, "a live session is not swept")
}
