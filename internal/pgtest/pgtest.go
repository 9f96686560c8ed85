// Package pgtest gives tests a PostgreSQL database of their own on the
// server of VMM_TEST_PG_DSN (scripts/postgres.sh start).
package pgtest

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// FreshDB creates an empty database for t on the server of
// VMM_TEST_PG_DSN and returns its DSN; the database is dropped when t
// ends. Without VMM_TEST_PG_DSN it skips t, or fails it under
// VMM_TEST_REQUIRE=1 (see testenv.Var).
func FreshDB(t testing.TB) string {
	t.Helper()
	dsn := testenv.Var(t, "VMM_TEST_PG_DSN")
	u, err := url.Parse(dsn)
	require.NoError(t, err, "VMM_TEST_PG_DSN must be a postgres:// URL")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err, "connect to VMM_TEST_PG_DSN")
	defer admin.Close(ctx)
	name := "vmmtest_" + strings.ToLower(store.NewID()[:16])
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		admin, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		// FORCE ends our sessions, but not an autovacuum worker of the
		// server's superuser that may be in the database: retry a while.
		for i := 0; ; i++ {
			_, err := admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
			if err == nil {
				return
			}
			if i == 20 {
				t.Logf("left database %s behind: %v", name, err)
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
	u.Path = "/" + name
	return u.String()
}
