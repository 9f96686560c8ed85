package sqldb

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/vmmkit/vmmkit/vmm/store"
)

func newSerial(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_txlock=immediate")
	require.NoError(t, err)
	s, err := New(t.Context(), db, Dialect{SerialWrites: true}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, path
}

// busy makes the writer run a transaction that waits for release.
func busy(t *testing.T, s *DB) (release func(), done <-chan error) {
	started, rel := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- s.tx(context.Background(), "busy", "", func(*sql.Tx) error {
			close(started)
			<-rel
			return nil
		})
	}()
	<-started
	return func() { close(rel) }, errc
}

// A write whose context ends while it waits for its turn is never run.
func TestWriterQueuedContext(t *testing.T) {
	s, _ := newSerial(t)
	release, done := busy(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	ran := false
	err := s.tx(ctx, "late", "", func(*sql.Tx) error { ran = true; return nil })
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	release()
	require.NoError(t, <-done)
	require.NoError(t, s.tx(t.Context(), "after", "", func(*sql.Tx) error { return nil }))
	assert.False(t, ran)
}

// A panic in a write transaction reaches its caller, and the writer goes on.
func TestWriterPanic(t *testing.T) {
	s, _ := newSerial(t)
	assert.PanicsWithValue(t, "boom", func() {
		_ = s.tx(t.Context(), "panics", "", func(*sql.Tx) error { panic("boom") })
	})
	require.NoError(t, s.tx(t.Context(), "after", "", func(*sql.Tx) error { return nil }))
}

// Close with writes running and queued: every caller gets an answer, what
// it was told succeeded is written, and Close waits for the write running.
func TestWriterClose(t *testing.T) {
	s, path := newSerial(t)
	_, err := s.db.Exec(`CREATE TABLE t (n INTEGER)`)
	require.NoError(t, err)
	release, done := busy(t, s)
	var wg sync.WaitGroup
	ok := make([]bool, 10)
	for i := range ok {
		wg.Go(func() {
			err := s.tx(context.Background(), "insert", "", func(tx *sql.Tx) error {
				_, err := tx.Exec(`INSERT INTO t VALUES (?)`, i)
				return err
			})
			ok[i] = err == nil
			if err != nil {
				assert.ErrorIs(t, err, store.ErrClosed)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // let them queue
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a write was running")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	require.NoError(t, <-done)
	require.NoError(t, <-closed)
	wg.Wait()
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()
	for i, o := range ok {
		var n int
		require.NoError(t, db.QueryRow(`SELECT count(*) FROM t WHERE n = ?`, i).Scan(&n))
		assert.Equal(t, map[bool]int{true: 1, false: 0}[o], n, "write %d reported ok=%v", i, o)
	}
}
