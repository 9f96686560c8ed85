package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// collect runs a Hosts iteration and returns the hosts and the first error.
func collect(ctx context.Context, c *Client, q Query) ([]Host, error) {
	var hosts []Host
	for h, err := range c.Hosts(ctx, q) {
		if err != nil {
			return hosts, err
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// logBuffer is a slog handler target safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestFakePaging(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxPage   int
		pageSize  int
		rangeSize int
	}{
		{"one page", 1000, 500, 0},
		{"server caps pages at 3 (MaxPageSize)", 3, 500, 0},
		{"client pages of 4", 1000, 4, 0},
		{"range retrieval of 3 values", 1000, 500, 3},
		{"both", 3, 500, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, func(f *fakeServer) { f.maxPage, f.rangeSize = tc.maxPage, tc.rangeSize })
			cfg := f.config()
			cfg.PageSize = tc.pageSize
			c, err := Dial(t.Context(), cfg)
			require.NoError(t, err)
			defer c.Close()
			hosts, err := collect(t.Context(), c, Query{OU: fakeOU})
			require.NoError(t, err)
			require.Len(t, hosts, len(f.entries))
			for i, h := range hosts {
				want := f.entries[i]
				assert.Equal(t, want.DN, h.DN)
				assert.Equal(t, want.GetAttributeValues("servicePrincipalName"), h.SPNs, "SPNs of %s", h.DN)
				assert.Equal(t, []string{"Rack"}, h.Group)
				assert.Equal(t, RoleHyperV, h.Role)
				assert.True(t, h.Enabled)
			}
		})
	}
}

func TestFakeErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(*fakeServer)
		query     Query
		kind      error
		code      uint16
		wantHosts int
	}{
		{"referral", func(f *fakeServer) { f.referral = true }, Query{OU: fakeOU}, ErrReferral, ldap.LDAPResultReferral, 0},
		{"continuation reference", func(f *fakeServer) { f.reference = true }, Query{OU: fakeOU}, ErrReferral, ldap.LDAPResultReferral, 0},
		{"no such OU", nil, Query{OU: "OU=Nowhere,DC=fake,DC=test"}, ErrNoSuchOU, ldap.LDAPResultNoSuchObject, 0},
		{"closed mid-page", func(f *fakeServer) { f.maxPage, f.closeOnPage = 3, 2 }, Query{OU: fakeOU}, ErrConnection, ldap.ErrorNetwork, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, tc.configure)
			c, err := Dial(t.Context(), f.config())
			require.NoError(t, err)
			defer c.Close()
			hosts, err := collect(t.Context(), c, tc.query)
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.kind)
			var le *ldap.Error
			if assert.ErrorAs(t, err, &le) {
				assert.Equal(t, tc.code, le.ResultCode)
			}
			var oe *OpError
			assert.ErrorAs(t, err, &oe)
			assert.Len(t, hosts, tc.wantHosts, "hosts yielded before the error")
			assert.NotContains(t, err.Error(), fakePassword)
		})
	}
}

func TestFakeBind(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(*fakeServer)
		password  string
		kind      error
		reason    string
	}{
		{"wrong password", nil, "wrong-" + fakePassword, ErrInvalidCredentials, ""},
		{"locked account", func(f *fakeServer) {
			f.bindDiag = "80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data 775, v4563"
		}, fakePassword, ErrAccountRestricted, "account locked"},
		{"expired password", func(f *fakeServer) {
			f.bindDiag = "80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data 532, v4563"
		}, fakePassword, ErrAccountRestricted, "password expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, tc.configure)
			var logs logBuffer
			cfg := f.config()
			cfg.Bind = SimpleBind{Name: fakeUser, Password: tc.password}
			cfg.MaxRetries = 3
			cfg.newBackOff = func() backoff.BackOff { return &backoff.ZeroBackOff{} }
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			_, err := Dial(t.Context(), cfg)
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.kind)
			var le *ldap.Error
			if assert.ErrorAs(t, err, &le) {
				assert.Equal(t, uint16(ldap.LDAPResultInvalidCredentials), le.ResultCode)
			}
			var oe *OpError
			if assert.ErrorAs(t, err, &oe) {
				assert.Equal(t, tc.reason, oe.Reason)
				assert.Equal(t, "bind", oe.Op)
			}
			f.mu.Lock()
			binds := f.binds
			f.mu.Unlock()
			assert.Equal(t, 1, binds, "bad credentials must not be retried")
			assert.NotContains(t, err.Error(), tc.password)
			assert.NotContains(t, logs.String(), tc.password)
		})
	}
}

func TestFakeStartTLSRefused(t *testing.T) {
	f := newFakeServer(t, func(f *fakeServer) { f.refuseTLS = true })
	_, err := Dial(t.Context(), f.config())
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrStartTLS)
	var le *ldap.Error
	assert.ErrorAs(t, err, &le)
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Zero(t, f.binds, "no bind may be sent without TLS")
	assert.NotContains(t, err.Error(), fakePassword)
}

func TestFakeBreakAbandonsPaging(t *testing.T) {
	f := newFakeServer(t, func(f *fakeServer) { f.maxPage = 3 })
	c, err := Dial(t.Context(), f.config())
	require.NoError(t, err)
	defer c.Close()
	n := 0
	for _, err := range c.Hosts(t.Context(), Query{OU: fakeOU}) {
		require.NoError(t, err)
		n++
		break
	}
	assert.Equal(t, 1, n)
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Equal(t, 1, f.abandonedPgs, "the server was told to drop the paged search")
}

func TestFailover(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "ldaps://" + ln.Addr().String()
	ln.Close()
	f := newFakeServer(t, nil)
	var logs logBuffer
	cfg := f.config()
	cfg.URLs = []string{dead, f.URL}
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	c, err := Dial(t.Context(), cfg)
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, f.URL, c.URL())
	assert.Contains(t, logs.String(), "fallback")
}

func TestRetriesAreBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "ldaps://" + ln.Addr().String()
	ln.Close()
	var logs logBuffer
	_, err = Dial(t.Context(), Config{
		URLs: []string{dead}, Bind: SimpleBind{Name: "x", Password: "y"}, MaxRetries: 2,
		Logger:     slog.New(slog.NewTextHandler(&logs, nil)),
		newBackOff: func() backoff.BackOff { return &backoff.ZeroBackOff{} },
	})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrConnection)
	assert.Equal(t, 2, strings.Count(logs.String(), "retrying"))

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = Dial(ctx, Config{URLs: []string{dead}, Bind: SimpleBind{Name: "x", Password: "y"}})
	assert.ErrorIs(t, err, context.Canceled)
}

type fakeResolver map[string]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestResolve(t *testing.T) {
	f := newFakeServer(t, nil)
	cfg := f.config()
	cfg.Resolver = fakeResolver{"fake-01.fake.test": netip.MustParseAddr("192.0.2.1")}
	c, err := Dial(t.Context(), cfg)
	require.NoError(t, err)
	defer c.Close()
	hosts, err := collect(t.Context(), c, Query{OU: fakeOU, Resolve: true})
	require.NoError(t, err)
	unresolved := 0
	for _, h := range hosts {
		if h.DNSHostName == "fake-01.fake.test" {
			assert.NoError(t, h.ResolveErr)
			assert.Equal(t, []netip.Addr{netip.MustParseAddr("192.0.2.1")}, h.Addrs)
			continue
		}
		var de *net.DNSError
		if assert.ErrorAs(t, h.ResolveErr, &de) {
			assert.True(t, de.IsNotFound)
		}
		unresolved++
	}
	assert.Equal(t, len(f.entries)-1, unresolved)
}

func TestConfigErrors(t *testing.T) {
	good := SimpleBind{Name: "CN=x", Password: "pw-Secret"}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no URL", Config{Bind: good}},
		{"http URL", Config{URLs: []string{"http://dc.example.com"}, Bind: good}},
		{"credentials in URL", Config{URLs: []string{"ldaps://admin:pw-Secret@dc.example.com"}, Bind: good}},
		{"no host", Config{URLs: []string{"ldaps://"}, Bind: good}},
		{"no bind", Config{URLs: []string{"ldaps://dc"}}},
		{"empty password", Config{URLs: []string{"ldaps://dc"}, Bind: SimpleBind{Name: "CN=x"}}},
		{"kerberos without secret", Config{URLs: []string{"ldaps://dc"}, Bind: KerberosBind{Username: "x"}}},
		{"page size above 1000", Config{URLs: []string{"ldaps://dc"}, Bind: good, PageSize: 1001}},
		{"negative page size", Config{URLs: []string{"ldaps://dc"}, Bind: good, PageSize: -1}},
		{"missing CA file", Config{URLs: []string{"ldaps://dc"}, Bind: good, CAFile: "/nonexistent/ca.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Dial(t.Context(), tc.cfg)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrConfig)
			assert.NotContains(t, err.Error(), "pw-Secret")
		})
	}
}

func TestBindsHidePasswords(t *testing.T) {
	for _, b := range []any{
		SimpleBind{Name: "CN=x", Password: "pw-Secret"},
		KerberosBind{Username: "x", Realm: "R", Password: "pw-Secret"},
		Config{Bind: SimpleBind{Name: "CN=x", Password: "pw-Secret"}},
	} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			assert.NotContains(t, fmt.Sprintf(verb, b), "pw-Secret", verb)
		}
		var logs bytes.Buffer
		slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "bind", b)
		assert.NotContains(t, logs.String(), "pw-Secret")
	}
}

func TestQueryErrors(t *testing.T) {
	f := newFakeServer(t, nil)
	c, err := Dial(t.Context(), f.config())
	require.NoError(t, err)
	defer c.Close()
	for _, tc := range []struct {
		name string
		q    Query
	}{
		{"no OU", Query{}},
		{"bad OU", Query{OU: "OU=a,,=b"}},
		{"unknown scope", Query{OU: fakeOU, Scope: 7}},
		{"injection: two filters", Query{OU: fakeOU, Filter: "(cn=x)(objectClass=*)"}},
		{"injection: closing the AND", Query{OU: fakeOU, Filter: "(cn=x))(|(objectClass=*)"}},
		{"unbalanced", Query{OU: fakeOU, Filter: "(|(cn=a)"}},
		{"no parentheses", Query{OU: fakeOU, Filter: "cn=a"}},
		{"NUL", Query{OU: fakeOU, Filter: "(cn=a\x00)"}},
		{"too long", Query{OU: fakeOU, Filter: "(cn=" + strings.Repeat("a", MaxFilterLength) + ")"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, err := collect(t.Context(), c, tc.q)
			assert.ErrorIs(t, err, ErrQuery)
			assert.Empty(t, hosts)
		})
	}
}

func TestFormatGUID(t *testing.T) {
	b := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	g, err := formatGUID(b)
	require.NoError(t, err)
	assert.Equal(t, "03020100-0504-0706-0809-0a0b0c0d0e0f", g)
	_, err = formatGUID(b[:15])
	assert.Error(t, err)
}

func TestDeriveRole(t *testing.T) {
	for _, tc := range []struct {
		name string
		spns []string
		os   string
		want Role
	}{
		{"migration service", []string{"HOST/a", "Microsoft Virtual System Migration Service/a.example.com"}, "Windows Server 2008", RoleHyperV},
		{"replica, any case", []string{"hyper-v replica service/a"}, "", RoleHyperV},
		{"virtual server", []string{"Microsoft Virtual Server/a"}, "Windows Server 2003", RoleVirtualServer},
		{"Hyper-V Server without SPNs", nil, "Hyper-V Server 2008 R2", RoleHyperV},
		{"plain server", []string{"HOST/a"}, "Windows Server 2008 R2 Datacenter", RoleOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := deriveRole(tc.spns, tc.os); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOUDN(t *testing.T) {
	got := OUDN("DC=example,DC=com", "VirtualHosts", "Staging, Test")
	assert.Equal(t, `OU=Staging\, Test,OU=VirtualHosts,DC=example,DC=com`, got)
	dn, err := ldap.ParseDN(got)
	require.NoError(t, err)
	assert.Equal(t, "Staging, Test", dn.RDNs[0].Attributes[0].Value)
	base, err := ldap.ParseDN("OU=VirtualHosts,DC=example,DC=com")
	require.NoError(t, err)
	g, err := groupOf("CN=h1,"+got, base)
	require.NoError(t, err)
	assert.Equal(t, []string{"Staging, Test"}, g)
	_, err = groupOf("CN=h1,OU=Elsewhere,DC=example,DC=com", base)
	assert.ErrorIs(t, err, ErrReferral)
}

func FuzzFilterValue(f *testing.F) {
	for _, s := range []string{"", "*", "*)(objectClass=*", `\2a`, "a\x00b", "(|(cn=*))", "ü", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		flt := "(description=" + EscapeFilter(v) + ")"
		if len(flt) > MaxFilterLength {
			return
		}
		if err := CheckFilter(flt); err != nil {
			t.Fatalf("escaped value %q gives a filter that fails: %v", v, err)
		}
		p, err := ldap.CompileFilter(flt)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Children) != 2 || p.Children[1].Data.String() != v {
			t.Fatalf("value %q: filter %q does not match it literally", v, flt)
		}
	})
}

func FuzzCheckFilter(f *testing.F) {
	for _, s := range []string{"(cn=a)", "(&(a=b)(c=d))", "(cn=x)(objectClass=*)", "((", "(a=\\", "(!(a=b))"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckFilter(s) != nil {
			return
		}
		// Whatever passes stays one filter once ANDed into the query.
		q := Query{OU: "OU=a", Filter: s}
		if _, err := ldap.CompileFilter(q.filter("")); err != nil {
			t.Fatalf("accepted filter %q breaks the query filter: %v", s, err)
		}
	})
}

func FuzzOUDN(f *testing.F) {
	for _, s := range []string{"Staging, Test", "a+b", `back\slash`, " lead", "trail ", "#hash", "q\"uote", "a=b", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if name == "" || !utf8.ValidString(name) {
			return // OUDN documents that invalid UTF-8 becomes U+FFFD
		}
		dn, err := ldap.ParseDN(OUDN("DC=example,DC=com", name))
		if err != nil {
			t.Fatalf("OUDN(%q) does not parse: %v", name, err)
		}
		if len(dn.RDNs) != 3 || dn.RDNs[0].Attributes[0].Value != name {
			t.Fatalf("OUDN(%q) = %v, want one RDN with that value", name, dn)
		}
	})
}

var _ = errors.Is

// While one caller dials a server that does not answer, others wait for
// it only as long as their own context lets them.
func TestDialDoesNotHoldOthers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() { // accept, never answer
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cfg := Config{URLs: []string{"ldaps://" + ln.Addr().String()}, Bind: SimpleBind{Name: "x", Password: "y"},
		Timeout: time.Minute, MaxRetries: -1}
	require.NoError(t, cfg.check())
	c := &Client{cfg: cfg}

	ctxA, cancelA := context.WithCancel(t.Context())
	aDone := make(chan error, 1)
	go func() {
		_, _, err := c.connection(ctxA)
		aDone <- err
	}()
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.dialing != nil
	}, 10*time.Second, time.Millisecond, "A dials")

	ctxB, cancelB := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelB()
	_, _, err = c.connection(ctxB)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, ErrConnection)
	select {
	case err := <-aDone:
		t.Fatalf("A ended before B gave up: %v", err)
	default: // B gave up while A still dials
	}
	cancelA()
	assert.Error(t, <-aDone)
	c.mu.Lock()
	assert.Nil(t, c.dialing)
	c.mu.Unlock()
}
