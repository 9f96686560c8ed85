// Package sqldb is the implementation shared by store/sqlite and
// store/postgres over database/sql; a Dialect holds what differs.
package sqldb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmmkit/vmmkit/vmm/store"
)

// Dialect is what differs between the SQL databases.
type Dialect struct {
	// Dollar rewrites ? placeholders as $1, $2, ...
	Dollar bool
	// ClaimLock is appended to the SELECT that picks the job to claim
	// ("FOR UPDATE SKIP LOCKED"); "" when write transactions are serial.
	ClaimLock string
	// OwnerLock, when set, runs first in a quota transaction with the
	// owner as its argument and serialises transactions of one owner.
	OwnerLock string
	// MigrateLock, when set, runs first in the migration transaction.
	MigrateLock string
	// Now is the clock of timestamps and leases; nil means time.Now.
	Now func() time.Time
	// Classify maps a driver error to one of the store errors (wrapping
	// it), or returns err unchanged.
	Classify func(err error) error
	// TxOptions, when set, are the options of every transaction. The
	// locking the store relies on (SKIP LOCKED, the owner lock of the
	// quota) needs READ COMMITTED on PostgreSQL, whatever the server's or
	// the DSN's default isolation is.
	TxOptions *sql.TxOptions
	// SerialWrites makes one goroutine of the handle run its write
	// transactions, one after the other in the order they were asked for,
	// instead of each caller retrying the database's write lock with
	// back-off sleeps (SQLite's busy handler), which under load left some
	// waiting far longer than the others. One goroutine rather than a
	// mutex: with the CPU busy, handing a mutex from waiter to waiter
	// costs a wait for a core at each hand-off (a lock convoy), which made
	// a burst of 50 requests wait 100 ms behind a dozen short writes.
	SerialWrites bool
}

// DB is a store.Store over a *sql.DB.
type DB struct {
	db      *sql.DB
	d       Dialect
	closeFn func() error

	writes  chan write    // to the writer, with Dialect.SerialWrites
	stop    chan struct{} // closed by Close: the writer ends
	stopped chan struct{} // closed by the writer when it ends
	mu      sync.Mutex
	closed  bool
	leads   map[[2]string]bool // {name, owner} led through this handle
}

var _ store.Store = (*DB)(nil)

// New migrates db to the current schema and returns a Store over it.
// closeFn, if not nil, runs after db.Close in Close.
func New(ctx context.Context, db *sql.DB, d Dialect, closeFn func() error) (*DB, error) {
	s := &DB{db: db, d: d, closeFn: closeFn, leads: map[[2]string]bool{},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	if d.SerialWrites {
		s.writes = make(chan write)
		go s.writer()
	}
	return s, nil
}

// A write is a write transaction for the writer to run.
type write struct {
	run  func() error
	done chan error
}

// writer runs the handle's write transactions, one at a time, until Close.
func (s *DB) writer() {
	defer close(s.stopped)
	for {
		select {
		case w := <-s.writes:
			w.done <- w.safeRun()
		case <-s.stop:
			return
		}
	}
}

// safeRun runs w, turning a panic into a writePanic for the caller to
// panic with again, in its own goroutine, as it would have without the
// writer.
func (w write) safeRun() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = writePanic{p}
		}
	}()
	return w.run()
}

type writePanic struct{ value any }

func (p writePanic) Error() string { return fmt.Sprint("panic in a write transaction: ", p.value) }

func (s *DB) now() time.Time {
	if s.d.Now != nil {
		return s.d.Now()
	}
	return time.Now()
}

func (s *DB) q(query string) string {
	if !s.d.Dollar {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (s *DB) fail(ctx context.Context, op, id string, err error) error {
	if err == nil {
		return nil
	}
	var oe *store.OpError
	if errors.As(err, &oe) {
		return err
	}
	if ce := ctx.Err(); ce != nil && !errors.Is(err, ce) {
		err = fmt.Errorf("%w (%v)", ce, err)
	} else if errors.Is(err, sql.ErrConnDone) || (err != nil && err.Error() == "sql: database is closed") {
		err = fmt.Errorf("%w (%v)", store.ErrClosed, err)
	} else if s.d.Classify != nil {
		err = s.d.Classify(err)
	}
	return &store.OpError{Op: op, ID: id, Err: err}
}

func (s *DB) migrate(ctx context.Context) error {
	const op = "migrate"
	var have int
	// A read first, so that a read-only store at the current version opens.
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&have); err == nil && have == Version {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(ctx, op, "", err)
	}
	defer tx.Rollback()
	if s.d.MigrateLock != "" {
		if _, err := tx.ExecContext(ctx, s.d.MigrateLock); err != nil {
			return s.fail(ctx, op, "", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return s.fail(ctx, op, "", err)
	}
	var v sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil {
		return s.fail(ctx, op, "", err)
	}
	have = int(v.Int64)
	if have > Version {
		return &store.OpError{Op: op, Err: fmt.Errorf("schema version %d is newer than this program's %d", have, Version)}
	}
	for i := have; i < Version; i++ {
		for _, stmt := range strings.Split(migrations[i], ";\n") {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return s.fail(ctx, op, strconv.Itoa(i+1), err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_version (version) VALUES (?)`), i+1); err != nil {
			return s.fail(ctx, op, strconv.Itoa(i+1), err)
		}
	}
	return s.fail(ctx, op, "", tx.Commit())
}

// Close implements store.Store.
func (s *DB) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	leads := s.leads
	s.leads = nil
	s.mu.Unlock()
	close(s.stop)
	if s.writes != nil {
		<-s.stopped // the write in progress has ended; no other will start
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for k := range leads {
		_, _ = s.db.ExecContext(ctx, s.q(`DELETE FROM leases WHERE name = ? AND owner = ?`), k[0], k[1])
	}
	err := s.db.Close()
	if s.closeFn != nil {
		if e := s.closeFn(); err == nil {
			err = e
		}
	}
	return err
}

func (s *DB) check(ctx context.Context, op, id string) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return &store.OpError{Op: op, ID: id, Err: store.ErrClosed}
	}
	if err := ctx.Err(); err != nil {
		return &store.OpError{Op: op, ID: id, Err: err}
	}
	return nil
}

// tx runs fn in a write transaction.
func (s *DB) tx(ctx context.Context, op, id string, fn func(tx *sql.Tx) error) error {
	if err := s.check(ctx, op, id); err != nil {
		return err
	}
	if s.d.SerialWrites {
		// The caller waits for its transaction to end even when ctx ends
		// first: it must not report a write that then happens. The
		// transaction itself stops at ctx's end.
		w := write{run: func() error {
			if err := ctx.Err(); err != nil {
				return &store.OpError{Op: op, ID: id, Err: err}
			}
			return s.txNow(ctx, op, id, fn)
		}, done: make(chan error, 1)}
		select {
		case s.writes <- w:
			err := <-w.done
			if p, ok := err.(writePanic); ok {
				panic(p.value)
			}
			return err
		case <-ctx.Done(): // never handed over: never runs
			return &store.OpError{Op: op, ID: id, Err: ctx.Err()}
		case <-s.stop:
			return &store.OpError{Op: op, ID: id, Err: store.ErrClosed}
		}
	}
	return s.txNow(ctx, op, id, fn)
}

// txNow runs fn in a write transaction, on this goroutine.
func (s *DB) txNow(ctx context.Context, op, id string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, s.d.TxOptions)
	if err != nil {
		return s.fail(ctx, op, id, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return s.fail(ctx, op, id, err)
	}
	return s.fail(ctx, op, id, tx.Commit())
}

// --- encoding

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func null(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func raw(b json.RawMessage) string { return string(b) }

func unraw(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

type scanner interface{ Scan(dest ...any) error }

// changed turns an UPDATE or DELETE that touched no row into ErrNotFound or
// ErrConflict, looking up whether the row exists.
func (s *DB) changed(ctx context.Context, tx *sql.Tx, res sql.Result, table, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	var one int
	err = tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM `+table+` WHERE id = ?`), id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: stale version", store.ErrConflict)
}

func (s *DB) del(ctx context.Context, op, table, id string) error {
	return s.tx(ctx, op, id, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM `+table+` WHERE id = ?`), id)
		if err != nil {
			return err
		}
		return s.changed(ctx, tx, res, table, id)
	})
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

func invalid(what string) error { return fmt.Errorf("%w: %s is required", store.ErrInvalid, what) }

// --- host groups

const groupCols = `id, COALESCE(parent_id, ''), name, goal, reserves, version`

func scanGroup(r scanner) (store.HostGroup, error) {
	var g store.HostGroup
	var res string
	if err := r.Scan(&g.ID, &g.ParentID, &g.Name, &g.Goal, &res, &g.Version); err != nil {
		return g, err
	}
	return g, json.Unmarshal([]byte(res), &g.Reserves)
}

// CreateGroup implements store.Store.
func (s *DB) CreateGroup(ctx context.Context, g store.HostGroup) (store.HostGroup, error) {
	if g.ID == "" {
		g.ID = store.NewID()
	}
	g.Version = 1
	res, _ := json.Marshal(g.Reserves)
	err := s.tx(ctx, "create group", g.ID, func(tx *sql.Tx) error {
		if g.Name == "" {
			return invalid("Name")
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO host_groups (id, parent_id, name, goal, reserves, version) VALUES (?, ?, ?, ?, ?, ?)`),
			g.ID, null(g.ParentID), g.Name, g.Goal, string(res), g.Version)
		return err
	})
	return g, err
}

// UpdateGroup implements store.Store.
func (s *DB) UpdateGroup(ctx context.Context, g store.HostGroup) (store.HostGroup, error) {
	res, _ := json.Marshal(g.Reserves)
	err := s.tx(ctx, "update group", g.ID, func(tx *sql.Tx) error {
		if g.ParentID != "" {
			// The tree stays a tree: the new parent may not be the group
			// itself nor one of its descendants.
			var n int
			err := tx.QueryRowContext(ctx, s.q(`WITH RECURSIVE up(id, parent_id) AS (
  SELECT id, parent_id FROM host_groups WHERE id = ?
  UNION SELECT h.id, h.parent_id FROM host_groups h JOIN up ON h.id = up.parent_id)
SELECT COUNT(*) FROM up WHERE id = ?`), g.ParentID, g.ID).Scan(&n)
			if err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("%w: group %s cannot be under %s, which is itself or below it", store.ErrInvalid, g.ID, g.ParentID)
			}
		}
		r, err := tx.ExecContext(ctx, s.q(`UPDATE host_groups SET parent_id = ?, name = ?, goal = ?, reserves = ?, version = version + 1 WHERE id = ? AND version = ?`),
			null(g.ParentID), g.Name, g.Goal, string(res), g.ID, g.Version)
		if err != nil {
			return err
		}
		return s.changed(ctx, tx, r, "host_groups", g.ID)
	})
	if err == nil {
		g.Version++
	}
	return g, err
}

// Group implements store.Store.
func (s *DB) Group(ctx context.Context, id string) (store.HostGroup, error) {
	if err := s.check(ctx, "group", id); err != nil {
		return store.HostGroup{}, err
	}
	g, err := scanGroup(s.db.QueryRowContext(ctx, s.q(`SELECT `+groupCols+` FROM host_groups WHERE id = ?`), id))
	return g, s.fail(ctx, "group", id, notFound(err))
}

// Groups implements store.Store.
func (s *DB) Groups(ctx context.Context) ([]store.HostGroup, error) {
	return list(s, ctx, "groups", `SELECT `+groupCols+` FROM host_groups ORDER BY id`, nil, scanGroup)
}

// DeleteGroup implements store.Store.
func (s *DB) DeleteGroup(ctx context.Context, id string) error {
	return s.del(ctx, "delete group", "host_groups", id)
}

func list[T any](s *DB, ctx context.Context, op, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	if err := s.check(ctx, op, ""); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, s.fail(ctx, op, "", err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, s.fail(ctx, op, "", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, "", err)
	}
	return out, nil
}

// --- hosts

const hostCols = `id, name, group_id, uri, kind, maintenance, added_at, version, site`

func scanHost(r scanner) (store.Host, error) {
	var h store.Host
	var m int
	var added int64
	err := r.Scan(&h.ID, &h.Name, &h.GroupID, &h.URI, &h.Kind, &m, &added, &h.Version, &h.Site)
	h.Maintenance = m != 0
	h.AddedAt = tm(added)
	return h, err
}

// CreateHost implements store.Store.
func (s *DB) CreateHost(ctx context.Context, h store.Host) (store.Host, error) {
	if h.ID == "" {
		h.ID = store.NewID()
	}
	if h.AddedAt.IsZero() {
		h.AddedAt = s.now()
	}
	h.AddedAt = tm(ns(h.AddedAt))
	h.Version = 1
	err := s.tx(ctx, "create host", h.ID, func(tx *sql.Tx) error {
		if h.GroupID == "" {
			return invalid("GroupID")
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO hosts (`+hostCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			h.ID, h.Name, h.GroupID, h.URI, h.Kind, b2i(h.Maintenance), ns(h.AddedAt), h.Version, h.Site)
		return err
	})
	return h, err
}

// UpdateHost implements store.Store.
func (s *DB) UpdateHost(ctx context.Context, h store.Host) (store.Host, error) {
	err := s.tx(ctx, "update host", h.ID, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, s.q(`UPDATE hosts SET name = ?, group_id = ?, uri = ?, kind = ?, maintenance = ?, added_at = ?, site = ?, version = version + 1 WHERE id = ? AND version = ?`),
			h.Name, h.GroupID, h.URI, h.Kind, b2i(h.Maintenance), ns(h.AddedAt), h.Site, h.ID, h.Version)
		if err != nil {
			return err
		}
		return s.changed(ctx, tx, r, "hosts", h.ID)
	})
	if err == nil {
		h.Version++
	}
	return h, err
}

// Host implements store.Store.
func (s *DB) Host(ctx context.Context, id string) (store.Host, error) {
	if err := s.check(ctx, "host", id); err != nil {
		return store.Host{}, err
	}
	h, err := scanHost(s.db.QueryRowContext(ctx, s.q(`SELECT `+hostCols+` FROM hosts WHERE id = ?`), id))
	return h, s.fail(ctx, "host", id, notFound(err))
}

// Hosts implements store.Store.
func (s *DB) Hosts(ctx context.Context, groupID string) ([]store.Host, error) {
	if groupID == "" {
		return list(s, ctx, "hosts", `SELECT `+hostCols+` FROM hosts ORDER BY id`, nil, scanHost)
	}
	return list(s, ctx, "hosts", `SELECT `+hostCols+` FROM hosts WHERE group_id = ? ORDER BY id`, []any{groupID}, scanHost)
}

// DeleteHost implements store.Store.
func (s *DB) DeleteHost(ctx context.Context, id string) error {
	return s.del(ctx, "delete host", "hosts", id)
}

// --- VMs

const vmCols = `id, name, COALESCE(host_id, ''), group_id, template, owner, state, points, spec, created_at, updated_at, version`

func scanVM(r scanner) (store.VM, error) {
	var v store.VM
	var spec string
	var created, updated int64
	err := r.Scan(&v.ID, &v.Name, &v.HostID, &v.GroupID, &v.Template, &v.Owner, &v.State, &v.Points, &spec, &created, &updated, &v.Version)
	v.Spec, v.CreatedAt, v.UpdatedAt = unraw(spec), tm(created), tm(updated)
	return v, err
}

func (s *DB) prepVM(vm store.VM) store.VM {
	if vm.ID == "" {
		vm.ID = store.NewID()
	}
	now := s.now()
	if vm.CreatedAt.IsZero() {
		vm.CreatedAt = now
	}
	vm.CreatedAt, vm.UpdatedAt = tm(ns(vm.CreatedAt)), tm(ns(now))
	vm.Version = 1
	return vm
}

func (s *DB) insertVM(ctx context.Context, tx *sql.Tx, vm store.VM) error {
	if err := checkPoints(vm.Points); err != nil {
		return err
	}
	if vm.GroupID == "" {
		return invalid("GroupID")
	}
	if vm.Name == "" {
		return invalid("Name")
	}
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO vms (`+strings.Replace(vmCols, "COALESCE(host_id, '')", "host_id", 1)+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		vm.ID, vm.Name, null(vm.HostID), vm.GroupID, vm.Template, vm.Owner, vm.State, vm.Points, raw(vm.Spec), ns(vm.CreatedAt), ns(vm.UpdatedAt), vm.Version)
	return err
}

// CreateVM implements store.Store.
func (s *DB) CreateVM(ctx context.Context, vm store.VM) (store.VM, error) {
	vm = s.prepVM(vm)
	err := s.tx(ctx, "create vm", vm.Name, func(tx *sql.Tx) error { return s.insertVM(ctx, tx, vm) })
	return vm, err
}

// CreateVMWithinQuota implements store.Store.
func (s *DB) CreateVMWithinQuota(ctx context.Context, vm store.VM, limit int) (store.VM, error) {
	vm = s.prepVM(vm)
	err := s.tx(ctx, "create vm within quota", vm.Name, func(tx *sql.Tx) error {
		if s.d.OwnerLock != "" {
			if _, err := tx.ExecContext(ctx, s.q(s.d.OwnerLock), vm.Owner); err != nil {
				return err
			}
		}
		if err := checkPoints(vm.Points); err != nil {
			return err
		}
		var used int64
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COALESCE(SUM(points), 0) FROM vms WHERE owner = ?`), vm.Owner).Scan(&used); err != nil {
			return err
		}
		if used+int64(vm.Points) > int64(limit) {
			return fmt.Errorf("%w: %s uses %d of %d points, the VM needs %d", store.ErrQuota, vm.Owner, used, limit, vm.Points)
		}
		return s.insertVM(ctx, tx, vm)
	})
	return vm, err
}

// UpdateVM implements store.Store.
func (s *DB) UpdateVM(ctx context.Context, vm store.VM) (store.VM, error) {
	vm.UpdatedAt = tm(ns(s.now()))
	err := s.tx(ctx, "update vm", vm.ID, func(tx *sql.Tx) error {
		if err := checkPoints(vm.Points); err != nil {
			return err
		}
		r, err := tx.ExecContext(ctx, s.q(`UPDATE vms SET name = ?, host_id = ?, group_id = ?, template = ?, owner = ?, state = ?, points = ?, spec = ?, updated_at = ?, version = version + 1 WHERE id = ? AND version = ?`),
			vm.Name, null(vm.HostID), vm.GroupID, vm.Template, vm.Owner, vm.State, vm.Points, raw(vm.Spec), ns(vm.UpdatedAt), vm.ID, vm.Version)
		if err != nil {
			return err
		}
		return s.changed(ctx, tx, r, "vms", vm.ID)
	})
	if err == nil {
		vm.Version++
	}
	return vm, err
}

// VM implements store.Store.
func (s *DB) VM(ctx context.Context, id string) (store.VM, error) {
	if err := s.check(ctx, "vm", id); err != nil {
		return store.VM{}, err
	}
	v, err := scanVM(s.db.QueryRowContext(ctx, s.q(`SELECT `+vmCols+` FROM vms WHERE id = ?`), id))
	return v, s.fail(ctx, "vm", id, notFound(err))
}

// VMs implements store.Store.
func (s *DB) VMs(ctx context.Context, f store.VMFilter) ([]store.VM, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{{"group_id", f.GroupID}, {"host_id", f.HostID}, {"owner", f.Owner}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	q := `SELECT ` + vmCols + ` FROM vms`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	return list(s, ctx, "vms", q+` ORDER BY id`, args, scanVM)
}

// DeleteVM implements store.Store.
func (s *DB) DeleteVM(ctx context.Context, id string) error {
	return s.del(ctx, "delete vm", "vms", id)
}

// checkPoints refuses quota points that are negative (they would lower the
// owner's count) or beyond what the databases store.
func checkPoints(p int) error {
	if p < 0 || p > math.MaxInt32 {
		return invalid("Points")
	}
	return nil
}
