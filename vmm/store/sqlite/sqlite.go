// Package sqlite is a store.Store in one SQLite file, through the pure-Go
// driver modernc.org/sqlite (no cgo).
//
// The file is opened in WAL mode with foreign keys on, synchronous=NORMAL
// (a power loss may lose the last transactions, never corrupt the file) and
// a busy timeout, so several Store handles, also in several processes on one
// host, can share it. Every transaction is BEGIN IMMEDIATE: writers queue
// for the write lock instead of failing mid-transaction, which is what makes
// ClaimJob, CreateVM and CreateVMWithinQuota atomic. Leadership is a lease
// row. A read-only file or file system, or a full disk, gives errors
// wrapping store.ErrReadOnly.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/vmmkit/vmmkit/vmm/store"
	"github.com/vmmkit/vmmkit/vmm/store/internal/sqldb"
)

// Config says which file to open and how. Zero fields mean defaults.
type Config struct {
	// Path of the database file; it is created with its schema if missing.
	Path string
	// BusyTimeout is how long a transaction waits for another handle's
	// write lock; default 30s.
	BusyTimeout time.Duration
	// ReadOnly opens the store for reads only: writes fail with
	// store.ErrReadOnly. The schema must be current.
	ReadOnly bool
	// MaxSize caps the file at about that many bytes (0: no cap); writes
	// beyond it fail with store.ErrReadOnly as on a full disk.
	MaxSize int64
	// Now is the clock of timestamps and leases; nil means time.Now.
	Now func() time.Time
}

// Open opens or creates the store in the file at path with default settings.
// The caller closes it.
func Open(path string) (*Store, error) { return New(context.Background(), Config{Path: path}) }

// Store is the SQLite store.Store. It is safe for concurrent use.
type Store struct{ *sqldb.DB }

// New opens or creates the store described by c, migrating its schema.
func New(ctx context.Context, c Config) (*Store, error) {
	if c.Path == "" {
		return nil, &store.OpError{Op: "open", Err: fmt.Errorf("%w: Config.Path is required", store.ErrInvalid)}
	}
	if c.BusyTimeout <= 0 {
		c.BusyTimeout = 30 * time.Second
	}
	q := url.Values{}
	q.Add("_txlock", "immediate")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", c.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	if c.ReadOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
	}
	if c.MaxSize > 0 {
		q.Add("_pragma", fmt.Sprintf("max_page_count(%d)", max(c.MaxSize/4096, 1)))
	}
	// The path goes into a file: URI, in which %, ? and # have meanings.
	path := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(c.Path)
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, &store.OpError{Op: "open", ID: c.Path, Err: err}
	}
	db.SetMaxIdleConns(4)
	s, err := sqldb.New(ctx, db, sqldb.Dialect{Classify: classify, Now: c.Now, SerialWrites: true}, nil)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{s}, nil
}

func classify(err error) error {
	var e *msqlite.Error
	if !errors.As(err, &e) {
		return err
	}
	switch code := e.Code(); {
	case code == sqlite3.SQLITE_CONSTRAINT_UNIQUE, code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("%w (%v)", store.ErrExists, err)
	case code == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("%w: a referenced record is missing or a record still refers to this one (%v)", store.ErrConflict, err)
	case code&0xff == sqlite3.SQLITE_READONLY, code&0xff == sqlite3.SQLITE_FULL,
		code == sqlite3.SQLITE_IOERR_WRITE, code == sqlite3.SQLITE_IOERR_FSYNC:
		return fmt.Errorf("%w (%v)", store.ErrReadOnly, err)
	}
	return err
}
