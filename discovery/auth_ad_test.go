package discovery_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmmkit/vmmkit/discovery"
	"github.com/vmmkit/vmmkit/internal/testenv"
)

// portalUsers are the users scripts/samba-ad.sh makes for the self-service
// roles, with the portal groups each is in (directly or nested).
var portalUsers = map[string][]string{
	"vmm-alice": {"vmm-dev"},
	"vmm-bob":   {"vmm-dev", "vmm-dev-leads"},
	"vmm-carol": {"vmm-qa"},
	"vmm-dave":  nil,
}

func portalGroups(groups []string) []string {
	var out []string
	for _, g := range groups {
		if g == "vmm-dev" || g == "vmm-dev-leads" || g == "vmm-qa" {
			out = append(out, g)
		}
	}
	return out
}

func dialAD(t *testing.T, cfg discovery.Config) *discovery.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := discovery.Dial(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestAuthenticateAD(t *testing.T) {
	e := loadAD(t)
	if got := strings.Fields(os.Getenv("VMM_TEST_LDAP_PORTAL_USERS")); len(got) != len(portalUsers) {
		testenv.Missing(t, "VMM_TEST_LDAP_PORTAL_USERS does not list the portal users (scripts/samba-ad.sh too old?)")
	}
	ctx := context.Background()
	c := dialAD(t, e.config(e.URL))
	realm := strings.ToLower(e.Realm)

	t.Run("names", func(t *testing.T) {
		for user, want := range portalUsers {
			upn := user + "@" + realm
			if user == "vmm-dave" {
				upn = "dave.d@" + realm // a UPN that is not the account name
			}
			for _, name := range []string{user, strings.ToUpper(user), "LAB\\" + user, upn} {
				a, err := c.Authenticate(ctx, name, e.UserPass)
				require.NoError(t, err, name)
				assert.Equal(t, user, a.SAMAccountName, name)
				assert.Equal(t, upn, a.UPN, name)
				assert.Equal(t, "CN="+user+",CN=Users,"+e.BaseDN, a.DN, name)
				assert.Equal(t, want, portalGroups(a.Groups), name)
				assert.Contains(t, a.Groups, "Domain Users", name)
				assert.NotContains(t, a.Groups, "vmm-dist", "%s: a distribution list is no security group", name)
				assert.True(t, slices.IsSortedFunc(a.Groups, func(x, y string) int {
					return strings.Compare(strings.ToLower(x), strings.ToLower(y))
				}), "%s: %v", name, a.Groups)
				require.Len(t, a.GroupDNs, len(a.Groups))
			}
		}
	})

	t.Run("in-chain search gives the same groups", func(t *testing.T) {
		c2 := dialAD(t, e.config(e.URL))
		discovery.SetNoTokenGroups(c2, true)
		for user := range portalUsers {
			want, err := c.Authenticate(ctx, user, e.UserPass)
			require.NoError(t, err)
			got, err := c2.Authenticate(ctx, user, e.UserPass)
			require.NoError(t, err)
			// tokenGroups also carries builtin and well-known groups the
			// account is in through nesting; the account's own domain
			// groups must be the same either way.
			assert.Subset(t, want.Groups, got.Groups, user)
			assert.Equal(t, portalGroups(want.Groups), portalGroups(got.Groups), user)
			assert.Contains(t, got.Groups, "Domain Users", user)
			assert.NotContains(t, got.Groups, "vmm-dist", "%s: a distribution list is no security group", user)
		}
	})

	t.Run("refused", func(t *testing.T) {
		c2 := dialAD(t, e.config(e.URL))
		binds := discovery.CountUserBinds(c2)
		for _, tc := range []struct {
			name, user, password string
			kind                 error
			reason               string // "": any
			binds                int64  // binds as a user it makes
		}{
			{"wrong password", "vmm-alice", e.UserPass + "x", discovery.ErrInvalidCredentials, "", 1},
			// A name that is no account costs a bind too (the time must
			// not tell which names exist).
			{"unknown user", "vmm-nobody", e.UserPass, discovery.ErrInvalidCredentials, "no such user", 1},
			{"empty password", "vmm-alice", "", discovery.ErrInvalidCredentials, "empty password", 0},
			{"empty user", "", e.UserPass, discovery.ErrInvalidCredentials, "not a user name", 0},
			// Filter characters are values, not syntax: unescaped, these
			// would match several accounts, or vmm-alice herself.
			{"wildcard", "vmm-*", e.UserPass, discovery.ErrInvalidCredentials, "no such user", 1},
			{"wildcard, right password", "vmm-alic*", e.UserPass, discovery.ErrInvalidCredentials, "no such user", 1},
			{"filter injection", "vmm-alice)(sAMAccountName=*", e.UserPass, discovery.ErrInvalidCredentials, "no such user", 1},
			{"control character", "vmm-alice\x00", e.UserPass, discovery.ErrInvalidCredentials, "not a user name", 0},
			{"computer account", "HVR1-0300$", e.UserPass, discovery.ErrInvalidCredentials, "no such user", 1},
			{"group", "vmm-dev", e.UserPass, discovery.ErrInvalidCredentials, "no such user", 1},
			{"disabled", "vmm-disabled", e.UserPass, discovery.ErrAccountRestricted, "", 1},
			{"expired", "vmm-expired", e.UserPass, discovery.ErrAccountRestricted, "", 1},
		} {
			before := binds.Load()
			a, err := c2.Authenticate(ctx, tc.user, tc.password)
			require.Error(t, err, tc.name)
			assert.ErrorIs(t, err, tc.kind, tc.name)
			var oe *discovery.OpError
			require.True(t, errors.As(err, &oe), tc.name)
			assert.Equal(t, "authenticate", oe.Op, tc.name)
			if tc.reason != "" {
				assert.Equal(t, tc.reason, oe.Reason, tc.name)
			}
			assert.Equal(t, tc.binds, binds.Load()-before, "%s: binds", tc.name)
			assert.Empty(t, a.Groups, tc.name)
			assert.NotContains(t, err.Error(), e.UserPass, tc.name)
		}
	})

	t.Run("a refused account is named", func(t *testing.T) {
		a, err := c.Authenticate(ctx, "dave.d@"+realm, e.UserPass+"x")
		require.ErrorIs(t, err, discovery.ErrInvalidCredentials)
		assert.Equal(t, "vmm-dave", a.SAMAccountName)
		assert.Empty(t, a.Groups)
		a, err = c.Authenticate(ctx, "vmm-disabled", e.UserPass)
		require.ErrorIs(t, err, discovery.ErrAccountRestricted)
		assert.Equal(t, "vmm-disabled", a.SAMAccountName)
		a, err = c.Authenticate(ctx, "vmm-nobody", e.UserPass)
		require.ErrorIs(t, err, discovery.ErrInvalidCredentials)
		assert.Empty(t, a.SAMAccountName)
	})

	t.Run("the client's connection still serves", func(t *testing.T) {
		_, err := c.Authenticate(ctx, "vmm-carol", e.UserPass)
		require.NoError(t, err)
		// The user's bind happens on a connection of its own, closed
		// after; the Client's queries go on on its own.
		n := 0
		for h, err := range c.Hosts(ctx, discovery.Query{OU: e.HostsOU}) {
			require.NoError(t, err)
			if len(h.SPNs) > 0 {
				n++
			}
		}
		assert.Positive(t, n)
	})

	t.Run("UserBase", func(t *testing.T) {
		cfg := e.config(e.URL)
		cfg.UserBase = e.HostsOU
		c2 := dialAD(t, cfg)
		_, err := c2.Authenticate(ctx, "vmm-alice", e.UserPass)
		assert.ErrorIs(t, err, discovery.ErrInvalidCredentials)
		// Groups come from the whole domain, not only UserBase: the
		// builtin Users group lives in CN=Builtin.
		cfg.UserBase = "CN=Users," + e.BaseDN
		c3 := dialAD(t, cfg)
		got, err := c3.Authenticate(ctx, "vmm-alice", e.UserPass)
		require.NoError(t, err)
		want, err := c.Authenticate(ctx, "vmm-alice", e.UserPass)
		require.NoError(t, err)
		assert.Equal(t, want.Groups, got.Groups)
		assert.Contains(t, got.Groups, "Users")
		discovery.SetNoTokenGroups(c3, true)
		got, err = c3.Authenticate(ctx, "vmm-alice", e.UserPass)
		require.NoError(t, err)
		assert.Subset(t, want.Groups, got.Groups)
		assert.Contains(t, got.Groups, "vmm-dev")
		cfg.UserBase = "not a DN"
		_, err = discovery.Dial(ctx, cfg)
		assert.ErrorIs(t, err, discovery.ErrConfig)
	})

	t.Run("Kerberos-bound client over LDAPS", func(t *testing.T) {
		cfg := e.config(e.LDAPSURL)
		cfg.Bind = discovery.KerberosBind{Username: "vmm-reader", Realm: e.Realm, KeytabFile: e.Keytab,
			Krb5Config: e.Krb5Config, SPN: e.SPN}
		c2 := dialAD(t, cfg)
		a, err := c2.Authenticate(ctx, "vmm-bob", e.UserPass)
		require.NoError(t, err)
		assert.Equal(t, portalUsers["vmm-bob"], portalGroups(a.Groups))
	})

	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 40 {
			wg.Go(func() {
				pw := e.UserPass
				if i%4 == 3 {
					pw += "-wrong"
				}
				_, err := c.Authenticate(ctx, "vmm-carol", pw)
				if i%4 == 3 {
					if !errors.Is(err, discovery.ErrInvalidCredentials) {
						errs <- err
					}
				} else if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := c.Authenticate(cctx, "vmm-alice", e.UserPass)
		assert.ErrorIs(t, err, context.Canceled)
	})
}
