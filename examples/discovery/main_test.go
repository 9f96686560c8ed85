package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmmkit/vmmkit/discovery"
	"github.com/vmmkit/vmmkit/internal/testenv"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no URL", nil, nil, "no server"},
		{"no OU", map[string]string{"VMM_LDAP_URL": "ldaps://dc"}, nil, "no OU"},
		{"no password", map[string]string{"VMM_LDAP_URL": "ldaps://dc", "VMM_HOSTS_OU": "OU=x"}, nil, "no password"},
		{"no account", map[string]string{"VMM_LDAP_URL": "ldaps://dc", "VMM_HOSTS_OU": "OU=x", "VMM_BIND_PASSWORD": "p"}, nil, "no account"},
		{"kerberos without realm", map[string]string{"VMM_LDAP_URL": "ldaps://dc", "VMM_HOSTS_OU": "OU=x", "VMM_BIND_PASSWORD": "p",
			"VMM_BIND_UPN": "svc"}, []string{"-kerberos"}, "user@realm"},
		{"bad URL scheme", map[string]string{"VMM_LDAP_URL": "http://dc", "VMM_HOSTS_OU": "OU=x", "VMM_BIND_PASSWORD": "p",
			"VMM_BIND_DN": "CN=x"}, nil, "scheme"},
		{"stray argument", nil, []string{"extra"}, "unexpected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), tc.args, env(tc.env), &out)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestAgainstDC runs the command against the Samba DC of
// scripts/samba-ad.sh, with its settings from the environment variables
// the command documents, and checks its JSON against the library.
func TestAgainstDC(t *testing.T) {
	if os.Getenv("VMM_TEST_LDAP_URL") == "" {
		testenv.Missing(t, "VMM_TEST_LDAP_URL not set (run: eval \"$(scripts/samba-ad.sh start)\")")
	}
	e := map[string]string{
		"VMM_LDAP_URL":        testenv.Var(t, "VMM_TEST_LDAP_URL"),
		"VMM_HOSTS_OU":        testenv.Var(t, "VMM_TEST_LDAP_HOSTS_OU"),
		"VMM_BIND_UPN":        testenv.Var(t, "VMM_TEST_LDAP_BIND_UPN"),
		"VMM_BIND_PASSWORD":   testenv.Var(t, "VMM_TEST_LDAP_BIND_PASSWORD"),
		"VMM_CA_CERT":         testenv.Var(t, "VMM_TEST_LDAP_CA_CERT"),
		"VMM_TLS_SERVER_NAME": testenv.Var(t, "VMM_TEST_LDAP_SERVER_NAME"),
	}
	c, err := discovery.Dial(t.Context(), discovery.Config{URLs: []string{e["VMM_LDAP_URL"]}, CAFile: e["VMM_CA_CERT"],
		ServerName: e["VMM_TLS_SERVER_NAME"], Bind: discovery.SimpleBind{Name: e["VMM_BIND_UPN"], Password: e["VMM_BIND_PASSWORD"]}})
	require.NoError(t, err)
	defer c.Close()
	count := func(includeDisabled bool) int {
		n := 0
		for _, err := range c.Hosts(t.Context(), discovery.Query{OU: e["VMM_HOSTS_OU"], IncludeDisabled: includeDisabled}) {
			require.NoError(t, err)
			n++
		}
		return n
	}

	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"enabled", []string{"-json"}, count(false)},
		{"include disabled", []string{"-json", "-include-disabled"}, count(true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(t.Context(), tc.args, env(e), &out))
			sc := bufio.NewScanner(&out)
			n := 0
			for sc.Scan() {
				var h map[string]any
				require.NoError(t, json.Unmarshal(sc.Bytes(), &h), sc.Text())
				for _, k := range []string{"dn", "name", "dnsHostName"} {
					assert.Contains(t, h, k)
				}
				n++
			}
			assert.Equal(t, tc.want, n)
		})
	}

	t.Run("table", func(t *testing.T) {
		var out bytes.Buffer
		require.NoError(t, run(t.Context(), nil, env(e), &out))
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		assert.Equal(t, count(false)+2, len(lines), "header, hosts, total")
		assert.True(t, strings.HasPrefix(lines[0], "NAME"))
		assert.NotContains(t, out.String(), e["VMM_BIND_PASSWORD"])
	})
}
