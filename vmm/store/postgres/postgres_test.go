package postgres_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/pgtest"
	"github.com/vmmkit/vmmkit/vmm/store"
	"github.com/vmmkit/vmmkit/vmm/store/postgres"
	"github.com/vmmkit/vmmkit/vmm/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dsn := pgtest.FreshDB(t)
		return func() (store.Store, error) { return postgres.Open(t.Context(), dsn) }
	})
}

// The store's locking (SKIP LOCKED, the quota's owner lock) must hold
// whatever isolation the server or the DSN makes the default: the whole
// suite runs again with REPEATABLE READ as the session's default.
func TestConformanceRepeatableReadDefault(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		u, err := url.Parse(pgtest.FreshDB(t))
		require.NoError(t, err)
		// pgx takes %20 for a space, not the + of url.Values.Encode.
		u.RawQuery += "&default_transaction_isolation=repeatable%20read"
		dsn := u.String()
		return func() (store.Store, error) { return postgres.Open(t.Context(), dsn) }
	})
}

func TestReadOnly(t *testing.T) {
	dsn := pgtest.FreshDB(t)
	s, err := postgres.Open(t.Context(), dsn)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	q.Set("default_transaction_read_only", "on")
	u.RawQuery = q.Encode()
	ro, err := postgres.Open(t.Context(), u.String())
	require.NoError(t, err)
	defer ro.Close()
	_, err = ro.Groups(t.Context())
	require.NoError(t, err, "reads work")
	_, err = ro.CreateGroup(t.Context(), store.HostGroup{Name: "g"})
	assert.ErrorIs(t, err, store.ErrReadOnly)
}

func TestOpenBadDSN(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	var oe *store.OpError
	assert.ErrorAs(t, err, &oe)
}

func pgDB(tb testing.TB) storetest.Opener {
	dsn := pgtest.FreshDB(tb)
	return func() (store.Store, error) { return postgres.Open(context.Background(), dsn) }
}

func BenchmarkStartup(b *testing.B) { storetest.BenchStartup(b, pgDB) }

func BenchmarkJobs(b *testing.B) { storetest.BenchJobs(b, pgDB) }
