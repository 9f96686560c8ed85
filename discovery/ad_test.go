package discovery_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmmkit/vmmkit/discovery"
	"github.com/vmmkit/vmmkit/internal/testenv"
)

// adEnv is the test directory that scripts/samba-ad.sh start describes.
type adEnv struct {
	URL, LDAPSURL, CACert, ServerName, BaseDN, HostsOU    string
	BindDN, BindUPN, Password, UserDN, UserUPN, UserPass  string
	ExpiredDN, DisabledDN, Keytab, Realm, Krb5Config, SPN string
}

func loadAD(t testing.TB) adEnv {
	t.Helper()
	if os.Getenv("VMM_TEST_LDAP_URL") == "" {
		testenv.Missing(t, "VMM_TEST_LDAP_URL not set (run: eval \"$(scripts/samba-ad.sh start)\")")
	}
	v := func(name string) string { return testenv.Var(t, "VMM_TEST_LDAP_"+name) }
	return adEnv{
		URL: v("URL"), LDAPSURL: v("LDAPS_URL"), CACert: v("CA_CERT"), ServerName: v("SERVER_NAME"),
		BaseDN: v("BASE_DN"), HostsOU: v("HOSTS_OU"), BindDN: v("BIND_DN"), BindUPN: v("BIND_UPN"),
		Password: v("BIND_PASSWORD"), UserDN: v("USER_DN"), UserUPN: v("USER_UPN"), UserPass: v("USER_PASSWORD"),
		ExpiredDN: v("EXPIRED_DN"), DisabledDN: v("DISABLED_DN"), Keytab: v("KEYTAB"), Realm: v("REALM"),
		Krb5Config: v("KRB5_CONFIG"), SPN: v("SPN"),
	}
}

// config returns a Config for url with a simple bind as the administrator.
func (e adEnv) config(url string) discovery.Config {
	return discovery.Config{URLs: []string{url}, CAFile: e.CACert, ServerName: e.ServerName,
		Bind: discovery.SimpleBind{Name: e.BindDN, Password: e.Password}}
}

// An object is what an independent ldapsearch says about one entry.
type object struct {
	DN          string
	Classes     []string
	UAC         int64
	DNSHostName string
	OS          string
	GUID        []byte
	SPNs        []string
}

func (o object) isComputer() bool {
	for _, c := range o.Classes {
		if strings.EqualFold(c, "computer") {
			return true
		}
	}
	return false
}

var (
	censusOnce sync.Once
	census     []object
	censusErr  error
)

// readCensus lists every object below the hosts OU with OpenLDAP's
// ldapsearch, so that the counts the tests expect come from the directory,
// not from the seeding script or from the code under test.
func readCensus(t *testing.T, e adEnv) []object {
	t.Helper()
	ldapsearch := testenv.Tool(t, "VMM_TEST_LDAPSEARCH", "ldapsearch")
	censusOnce.Do(func() {
		census, censusErr = ldapsearchAll(ldapsearch, e, e.HostsOU, "(objectClass=*)",
			"objectClass", "userAccountControl", "dNSHostName", "operatingSystem", "objectGUID", "servicePrincipalName")
	})
	require.NoError(t, censusErr)
	require.NotEmpty(t, census)
	return census
}

// ldapsearchAll runs ldapsearch over StartTLS with paging and parses its
// LDIF.
func ldapsearchAll(ldapsearch string, e adEnv, base, filter string, attrs ...string) ([]object, error) {
	pwFile := filepath.Join(os.TempDir(), fmt.Sprintf("vmm-ldap-pw-%d", os.Getpid()))
	if err := os.WriteFile(pwFile, []byte(e.Password), 0o600); err != nil {
		return nil, err
	}
	defer os.Remove(pwFile)
	args := append([]string{"-LLL", "-x", "-ZZ", "-o", "ldif-wrap=no", "-H", e.URL, "-D", e.BindDN, "-y", pwFile,
		"-E", "pr=500/noprompt", "-b", base, filter}, attrs...)
	cmd := exec.Command(ldapsearch, args...)
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+e.CACert, "LDAPTLS_REQCERT=demand")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ldapsearch: %v: %s", err, stderr.String())
	}
	var objs []object
	var cur *object
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("ldapsearch: bad line %q", line)
		}
		var raw []byte
		if strings.HasPrefix(value, ":") {
			raw, err = base64.StdEncoding.DecodeString(strings.TrimSpace(value[1:]))
			if err != nil {
				return nil, err
			}
		} else {
			raw = []byte(strings.TrimPrefix(value, " "))
		}
		switch strings.ToLower(name) {
		case "dn":
			objs = append(objs, object{DN: string(raw)})
			cur = &objs[len(objs)-1]
		case "objectclass":
			cur.Classes = append(cur.Classes, string(raw))
		case "useraccountcontrol":
			cur.UAC, _ = strconv.ParseInt(string(raw), 10, 64)
		case "dnshostname":
			cur.DNSHostName = string(raw)
		case "operatingsystem":
			cur.OS = string(raw)
		case "objectguid":
			cur.GUID = raw
		case "serviceprincipalname":
			cur.SPNs = append(cur.SPNs, string(raw))
		}
	}
	return objs, sc.Err()
}

// expectedDNs returns the DNs (lower case) of the census computers that
// keep returns true for.
func expectedDNs(objs []object, keep func(object) bool) map[string]object {
	m := map[string]object{}
	for _, o := range objs {
		if o.isComputer() && keep(o) {
			m[strings.ToLower(o.DN)] = o
		}
	}
	return m
}

func enabled(o object) bool { return o.UAC&2 == 0 }

func collect(t *testing.T, c *discovery.Client, q discovery.Query) []discovery.Host {
	t.Helper()
	var hosts []discovery.Host
	for h, err := range c.Hosts(t.Context(), q) {
		require.NoError(t, err)
		hosts = append(hosts, h)
	}
	return hosts
}

func dnSet(hosts []discovery.Host) map[string]bool {
	m := map[string]bool{}
	for _, h := range hosts {
		m[strings.ToLower(h.DN)] = true
	}
	return m
}

func assertSameDNs(t *testing.T, want map[string]object, hosts []discovery.Host) {
	t.Helper()
	got := dnSet(hosts)
	assert.Equal(t, len(want), len(hosts), "hosts yielded")
	assert.Equal(t, len(hosts), len(got), "no host yielded twice")
	for dn := range want {
		if !got[dn] {
			t.Errorf("missing host %s", dn)
		}
	}
	for dn := range got {
		if _, ok := want[dn]; !ok {
			t.Errorf("unexpected entry %s", dn)
		}
	}
}

// TestADBinds enumerates the enabled hosts over LDAPS and StartTLS with
// simple binds (DN and UPN) and Kerberos binds (password and keytab).
func TestADBinds(t *testing.T) {
	e := loadAD(t)
	want := expectedDNs(readCensus(t, e), enabled)
	kerberos := func(b discovery.KerberosBind) discovery.KerberosBind {
		b.Realm, b.Krb5Config, b.SPN = e.Realm, e.Krb5Config, e.SPN
		return b
	}
	for _, tc := range []struct {
		name string
		url  string
		bind discovery.Bind
	}{
		{"StartTLS simple DN", e.URL, discovery.SimpleBind{Name: e.BindDN, Password: e.Password}},
		{"LDAPS simple UPN", e.LDAPSURL, discovery.SimpleBind{Name: e.BindUPN, Password: e.Password}},
		{"LDAPS simple service account", e.LDAPSURL, discovery.SimpleBind{Name: e.UserUPN, Password: e.UserPass}},
		{"StartTLS Kerberos password", e.URL, kerberos(discovery.KerberosBind{Username: "Administrator", Password: e.Password})},
		{"LDAPS Kerberos keytab", e.LDAPSURL, kerberos(discovery.KerberosBind{Username: "vmm-reader", KeytabFile: e.Keytab})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config(tc.url)
			cfg.Bind = tc.bind
			c, err := discovery.Dial(t.Context(), cfg)
			require.NoError(t, err)
			defer c.Close()
			assertSameDNs(t, want, collect(t, c, discovery.Query{OU: e.HostsOU}))
		})
	}
}

// TestADHosts checks the options and the attributes of hosts against the
// census.
func TestADHosts(t *testing.T) {
	e := loadAD(t)
	objs := readCensus(t, e)
	c, err := discovery.Dial(t.Context(), e.config(e.URL))
	require.NoError(t, err)
	defer c.Close()

	t.Run("include disabled", func(t *testing.T) {
		want := expectedDNs(objs, func(object) bool { return true })
		hosts := collect(t, c, discovery.Query{OU: e.HostsOU, IncludeDisabled: true})
		assertSameDNs(t, want, hosts)
		disabled := 0
		for _, h := range hosts {
			o := want[strings.ToLower(h.DN)]
			assert.Equal(t, enabled(o), h.Enabled, h.DN)
			assert.Equal(t, o.DNSHostName, h.DNSHostName, h.DN)
			assert.Equal(t, o.OS, h.OperatingSystem, h.DN)
			assert.ElementsMatch(t, o.SPNs, h.SPNs, h.DN)
			if !h.Enabled {
				disabled++
			}
		}
		assert.NotZero(t, disabled, "the directory has disabled hosts")
	})

	t.Run("one level", func(t *testing.T) {
		ou, err := ldap.ParseDN(e.HostsOU)
		require.NoError(t, err)
		want := expectedDNs(objs, func(o object) bool {
			dn, err := ldap.ParseDN(o.DN)
			return err == nil && enabled(o) && len(dn.RDNs) == len(ou.RDNs)+1
		})
		hosts := collect(t, c, discovery.Query{OU: e.HostsOU, Scope: discovery.OneLevel})
		assertSameDNs(t, want, hosts)
		for _, h := range hosts {
			assert.Empty(t, h.Group)
		}
	})

	t.Run("OU with a comma", func(t *testing.T) {
		ou := discovery.OUDN(e.BaseDN, "VirtualHosts", "Staging, Test")
		suffix := strings.ToLower("," + ou)
		want := expectedDNs(objs, func(o object) bool { return enabled(o) && strings.HasSuffix(strings.ToLower(o.DN), suffix) })
		require.NotEmpty(t, want)
		hosts := collect(t, c, discovery.Query{OU: ou})
		assertSameDNs(t, want, hosts)
		all := collect(t, c, discovery.Query{OU: e.HostsOU})
		n := 0
		for _, h := range all {
			if h.GroupPath() == "Staging, Test" {
				n++
			}
		}
		assert.Equal(t, len(want), n, "hosts in the group \"Staging, Test\"")
	})

	t.Run("nested groups", func(t *testing.T) {
		suffix := strings.ToLower(",OU=Rack01,OU=Redmond,OU=HyperV," + e.HostsOU)
		want := expectedDNs(objs, func(o object) bool { return enabled(o) && strings.HasSuffix(strings.ToLower(o.DN), suffix) })
		require.NotEmpty(t, want)
		n := 0
		for _, h := range collect(t, c, discovery.Query{OU: e.HostsOU}) {
			if h.GroupPath() == "HyperV/Redmond/Rack01" {
				n++
				assert.Contains(t, want, strings.ToLower(h.DN))
			}
		}
		assert.Equal(t, len(want), n)
	})

	t.Run("filter", func(t *testing.T) {
		want := expectedDNs(objs, func(o object) bool { return enabled(o) && strings.HasPrefix(o.OS, "Windows Server 2003") })
		require.NotEmpty(t, want)
		hosts := collect(t, c, discovery.Query{OU: e.HostsOU, Filter: "(operatingSystem=Windows Server 2003*)"})
		assertSameDNs(t, want, hosts)
		for _, h := range hosts {
			if len(h.SPNs) > 0 { // pre-staged hosts have no SPN to tell their role
				assert.Equal(t, discovery.RoleVirtualServer, h.Role, h.DN)
			}
		}
	})

	t.Run("filter injection", func(t *testing.T) {
		for _, v := range []string{"*)(objectClass=*", "*))(|(objectClass=*", "x)(|(objectClass=*)"} {
			hosts := collect(t, c, discovery.Query{OU: e.HostsOU, Filter: "(description=" + discovery.EscapeFilter(v) + ")"})
			assert.Empty(t, hosts, "escaped %q matched", v)
			hosts = collect(t, c, discovery.Query{OU: e.HostsOU, Filter: "(cn=" + discovery.EscapeFilter("*") + ")"})
			assert.Empty(t, hosts, "an escaped * is not a wildcard")
			for _, err := range c.Hosts(t.Context(), discovery.Query{OU: e.HostsOU, Filter: "(description=" + v + ")"}) {
				assert.ErrorIs(t, err, discovery.ErrQuery, "unescaped %q", v)
			}
		}
	})

	t.Run("roles and pre-staged hosts", func(t *testing.T) {
		want := expectedDNs(objs, enabled)
		for _, h := range collect(t, c, discovery.Query{OU: e.HostsOU}) {
			o := want[strings.ToLower(h.DN)]
			var role discovery.Role = discovery.RoleOther
			for _, s := range o.SPNs {
				switch {
				case strings.HasPrefix(s, "Microsoft Virtual Server/"):
					role = discovery.RoleVirtualServer
				case strings.HasPrefix(s, "Microsoft Virtual Console Service/"):
					role = discovery.RoleHyperV
				}
			}
			if len(o.SPNs) == 0 && strings.HasPrefix(o.OS, "Hyper-V Server") {
				role = discovery.RoleHyperV
			}
			assert.Equal(t, role, h.Role, h.DN)
			if o.DNSHostName == "" {
				assert.Empty(t, h.DNSHostName)
				assert.Empty(t, h.SPNs)
			}
		}
	})

	t.Run("objectGUID", func(t *testing.T) {
		// The server itself resolves <GUID=...> from the string form.
		hosts := collect(t, c, discovery.Query{OU: e.HostsOU})
		require.NotEmpty(t, hosts)
		conn, err := ldap.DialURL(e.LDAPSURL, ldap.DialWithTLSConfig(tlsConfig(t, e)))
		require.NoError(t, err)
		defer conn.Close()
		require.NoError(t, conn.Bind(e.BindDN, e.Password))
		for _, h := range []discovery.Host{hosts[0], hosts[len(hosts)/2], hosts[len(hosts)-1]} {
			res, err := conn.Search(ldap.NewSearchRequest("<GUID="+h.GUID+">", ldap.ScopeBaseObject,
				ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"cn"}, nil))
			require.NoError(t, err, h.GUID)
			require.Len(t, res.Entries, 1)
			assert.True(t, strings.EqualFold(h.DN, res.Entries[0].DN), "GUID %s is %s, want %s", h.GUID, res.Entries[0].DN, h.DN)
			assert.False(t, h.WhenChanged.IsZero())
			assert.NotZero(t, h.USNChanged)
		}
	})
}

func tlsConfig(t testing.TB, e adEnv) *tls.Config {
	pem, err := os.ReadFile(e.CACert)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	return &tls.Config{RootCAs: pool, ServerName: e.ServerName}
}

// TestADErrors covers bad credentials, TLS failures and bad queries
// against the real server.
func TestADErrors(t *testing.T) {
	e := loadAD(t)
	for _, tc := range []struct {
		name   string
		cfg    func() discovery.Config
		kind   error
		as     func(error) bool
		secret string
	}{
		{"wrong password", func() discovery.Config {
			cfg := e.config(e.LDAPSURL)
			cfg.Bind = discovery.SimpleBind{Name: e.UserDN, Password: "Wrong#Passw0rd-x"}
			return cfg
		}, discovery.ErrInvalidCredentials, isLDAPCode(ldap.LDAPResultInvalidCredentials), "Wrong#Passw0rd-x"},
		{"wrong Kerberos password", func() discovery.Config {
			cfg := e.config(e.URL)
			cfg.Bind = discovery.KerberosBind{Username: "vmm-reader", Realm: e.Realm, Password: "Wrong#Passw0rd-k",
				Krb5Config: e.Krb5Config, SPN: e.SPN}
			return cfg
		}, discovery.ErrInvalidCredentials, nil, "Wrong#Passw0rd-k"},
		{"expired account", func() discovery.Config {
			cfg := e.config(e.LDAPSURL)
			cfg.Bind = discovery.SimpleBind{Name: e.ExpiredDN, Password: e.UserPass}
			return cfg
		}, discovery.ErrAccountRestricted, isLDAPCode(ldap.LDAPResultInvalidCredentials), e.UserPass},
		{"disabled account", func() discovery.Config {
			cfg := e.config(e.LDAPSURL)
			cfg.Bind = discovery.SimpleBind{Name: e.DisabledDN, Password: e.UserPass}
			return cfg
		}, discovery.ErrAccountRestricted, isLDAPCode(ldap.LDAPResultInvalidCredentials), e.UserPass},
		{"untrusted certificate (LDAPS)", func() discovery.Config {
			cfg := e.config(e.LDAPSURL)
			cfg.CAFile = ""
			return cfg
		}, discovery.ErrTLS, isUnknownAuthority, e.Password},
		{"untrusted certificate (StartTLS)", func() discovery.Config {
			cfg := e.config(e.URL)
			cfg.CAFile = ""
			return cfg
		}, discovery.ErrTLS, isUnknownAuthority, e.Password},
		{"hostname mismatch", func() discovery.Config {
			cfg := e.config(e.LDAPSURL)
			cfg.ServerName = "not-the-dc.example.test"
			return cfg
		}, discovery.ErrTLS, isHostnameError, e.Password},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			cfg := tc.cfg()
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			c, err := discovery.Dial(t.Context(), cfg)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			t.Log(err)
			assert.ErrorIs(t, err, tc.kind)
			if tc.as != nil {
				assert.True(t, tc.as(err), "error chain lacks the expected cause: %v", err)
			}
			assert.NotContains(t, err.Error(), tc.secret)
			assert.NotContains(t, logs.String(), tc.secret)
			assert.NotContains(t, logs.String(), "retrying", "must not be retried")
		})
	}

	c, err := discovery.Dial(t.Context(), e.config(e.URL))
	require.NoError(t, err)
	defer c.Close()
	t.Run("OU that does not exist", func(t *testing.T) {
		n := 0
		for h, err := range c.Hosts(t.Context(), discovery.Query{OU: discovery.OUDN(e.BaseDN, "NoSuchOU")}) {
			if err == nil {
				t.Errorf("got host %s", h.DN)
				continue
			}
			n++
			assert.ErrorIs(t, err, discovery.ErrNoSuchOU)
			assert.True(t, isLDAPCode(ldap.LDAPResultNoSuchObject)(err), "%v", err)
		}
		assert.Equal(t, 1, n)
	})

	t.Run("insecure skip verify is logged", func(t *testing.T) {
		var logs bytes.Buffer
		cfg := e.config(e.LDAPSURL)
		cfg.CAFile, cfg.InsecureSkipVerify = "", true
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c, err := discovery.Dial(t.Context(), cfg)
		require.NoError(t, err)
		c.Close()
		assert.Contains(t, logs.String(), "InsecureSkipVerify")
	})
}

func isLDAPCode(code uint16) func(error) bool {
	return func(err error) bool {
		var le *ldap.Error
		return errors.As(err, &le) && le.ResultCode == code
	}
}

func isUnknownAuthority(err error) bool {
	var ua x509.UnknownAuthorityError
	return errors.As(err, &ua)
}

func isHostnameError(err error) bool {
	var he x509.HostnameError
	return errors.As(err, &he)
}
