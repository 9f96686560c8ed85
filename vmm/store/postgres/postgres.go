// Package postgres is a store.Store on a PostgreSQL server through pgx/v5,
// for several managers sharing one database.
//
// ClaimJob picks its job with SELECT … FOR UPDATE SKIP LOCKED, so
// concurrent claimers take different jobs without waiting on each other.
// CreateVMWithinQuota serialises the transactions of one owner with a
// transaction-level advisory lock keyed by the owner. Leadership is a lease
// row, not a session advisory lock: a session lock lives as long as a pooled
// connection, so it would survive a manager that hangs but keeps its
// connection, and after a network partition it is held until the server
// notices the dead TCP connection (minutes); a lease row gives failover
// after exactly ttl, works the same on SQLite, and shows who leads. Leases
// compare the managers' clocks, which must agree to well under a ttl.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/vmmkit/vmmkit/vmm/store"
	"github.com/vmmkit/vmmkit/vmm/store/internal/sqldb"
)

// Store is the PostgreSQL store.Store. It is safe for concurrent use.
type Store struct{ *sqldb.DB }

// advisory lock class for this package: pg_advisory_xact_lock(lockClass, key).
const lockClass = 0x766d6d // "vmm"

// Config says which database to use and how. Zero fields mean defaults.
type Config struct {
	// DSN names the database: a libpq URL or key=value string, with pgx's
	// pool settings (pool_max_conns, ...) if wanted.
	DSN string
	// Now is the clock of timestamps and leases; nil means time.Now.
	Now func() time.Time
}

// Open connects a pool to the database named by dsn, creates or migrates
// the schema, and returns the store. The caller closes it.
func Open(ctx context.Context, dsn string) (*Store, error) { return New(ctx, Config{DSN: dsn}) }

// New is Open with the settings of c.
func New(ctx context.Context, c Config) (*Store, error) {
	pool, err := pgxpool.New(ctx, c.DSN)
	if err != nil {
		return nil, &store.OpError{Op: "open", Err: err}
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, &store.OpError{Op: "open", Err: classify(err)}
	}
	db := stdlib.OpenDBFromPool(pool)
	s, err := sqldb.New(ctx, db, sqldb.Dialect{
		Dollar:      true,
		ClaimLock:   "FOR UPDATE SKIP LOCKED",
		OwnerLock:   fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, hashtext(?))", lockClass),
		MigrateLock: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, 0)", lockClass),
		Classify:    classify,
		Now:         c.Now,
		TxOptions:   &sql.TxOptions{Isolation: sql.LevelReadCommitted},
	}, func() error { pool.Close(); return nil })
	if err != nil {
		db.Close()
		pool.Close()
		return nil, err
	}
	return &Store{s}, nil
}

func classify(err error) error {
	var e *pgconn.PgError
	if !errors.As(err, &e) {
		return err
	}
	switch e.Code {
	case "23505": // unique_violation
		return fmt.Errorf("%w (%v)", store.ErrExists, err)
	case "23503": // foreign_key_violation
		return fmt.Errorf("%w: a referenced record is missing or a record still refers to this one (%v)", store.ErrConflict, err)
	case "25006", "53100", "53200": // read_only_sql_transaction, disk_full, out_of_memory
		return fmt.Errorf("%w (%v)", store.ErrReadOnly, err)
	}
	return err
}
