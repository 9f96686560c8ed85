package discovery_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmmkit/vmmkit/discovery"
)

// adminConn is a raw go-ldap connection for making changes in tests.
func adminConn(t testing.TB, e adEnv) *ldap.Conn {
	t.Helper()
	conn, err := ldap.DialURL(e.LDAPSURL, ldap.DialWithTLSConfig(tlsConfig(t, e)))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.Bind(e.BindDN, e.Password))
	return conn
}

func addComputer(t *testing.T, conn *ldap.Conn, name, ou string) string {
	t.Helper()
	dn := "CN=" + name + "," + ou
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"computer"})
	req.Attribute("sAMAccountName", []string{name + "$"})
	req.Attribute("userAccountControl", []string{"4096"})
	req.Attribute("dNSHostName", []string{strings.ToLower(name) + ".lab.example.test"})
	require.NoError(t, conn.Add(req))
	return dn
}

func kinds(changes []discovery.Change) map[string]discovery.ChangeKind {
	m := map[string]discovery.ChangeKind{}
	for _, c := range changes {
		m[strings.ToLower(c.Host.DN)] = c.Kind
	}
	return m
}

// TestADChanges adds, changes, moves out and deletes hosts in an OU of its
// own and checks that Changes reports each once, and nothing when nothing
// changed.
func TestADChanges(t *testing.T) {
	e := loadAD(t)
	conn := adminConn(t, e)
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1_000_000)
	ou := discovery.OUDN(e.BaseDN, "Sync, Test "+suffix)
	ouReq := ldap.NewAddRequest(ou, nil)
	ouReq.Attribute("objectClass", []string{"organizationalUnit"})
	require.NoError(t, conn.Add(ouReq))
	var cleanup []string
	t.Cleanup(func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			_ = conn.Del(ldap.NewDelRequest(cleanup[i], nil))
		}
		_ = conn.Del(ldap.NewDelRequest(ou, nil))
	})
	a := addComputer(t, conn, "SYA-"+suffix, ou)
	b := addComputer(t, conn, "SYB-"+suffix, ou)
	cdn := addComputer(t, conn, "SYC-"+suffix, ou)
	cleanup = append(cleanup, a, cdn)

	c, err := discovery.Dial(t.Context(), e.config(e.URL))
	require.NoError(t, err)
	defer c.Close()

	cur := discovery.NewCursor(discovery.Query{OU: ou})
	changes, cur, err := c.Changes(t.Context(), cur)
	require.NoError(t, err)
	assert.Equal(t, map[string]discovery.ChangeKind{
		strings.ToLower(a): discovery.Added, strings.ToLower(b): discovery.Added, strings.ToLower(cdn): discovery.Added,
	}, kinds(changes))
	assert.Len(t, cur.Hosts, 3)
	assert.NotZero(t, cur.USN)
	assert.NotEmpty(t, cur.InvocationID)

	changes, cur, err = c.Changes(t.Context(), cur)
	require.NoError(t, err)
	assert.Empty(t, changes, "nothing changed")

	mod := ldap.NewModifyRequest(a, nil)
	mod.Replace("description", []string{"changed by TestADChanges"})
	require.NoError(t, conn.Modify(mod))
	d := addComputer(t, conn, "SYD-"+suffix, ou)
	cleanup = append(cleanup, d)
	require.NoError(t, conn.ModifyDN(ldap.NewModifyDNRequest(b, "CN=SYB-"+suffix, true, "CN=Computers,"+e.BaseDN)))
	cleanup = append(cleanup, "CN=SYB-"+suffix+",CN=Computers,"+e.BaseDN)
	require.NoError(t, conn.Del(ldap.NewDelRequest(cdn, nil)))

	changes, cur, err = c.Changes(t.Context(), cur)
	require.NoError(t, err)
	assert.Equal(t, map[string]discovery.ChangeKind{
		strings.ToLower(a): discovery.Changed, strings.ToLower(d): discovery.Added,
		strings.ToLower(b): discovery.MovedOut, strings.ToLower(cdn): discovery.Deleted,
	}, kinds(changes))
	assert.Len(t, cur.Hosts, 2)

	changes, _, err = c.Changes(t.Context(), cur)
	require.NoError(t, err)
	assert.Empty(t, changes, "nothing changed since")

	// A cursor from another server (here: another invocationId) resyncs.
	other := cur
	other.InvocationID = "00000000-0000-0000-0000-000000000001"
	changes, _, err = c.Changes(t.Context(), other)
	require.NoError(t, err)
	assert.Equal(t, map[string]discovery.ChangeKind{
		strings.ToLower(a): discovery.Changed, strings.ToLower(d): discovery.Changed,
	}, kinds(changes))
}
