package selfservice_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/discovery"
	"github.com/vmmkit/vmmkit/internal/testenv"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/selfservice"
)

// testAD is the Samba AD of scripts/samba-ad.sh, with the users and groups
// of two portal roles: vmm-alice (vmm-dev), vmm-bob (vmm-dev through
// vmm-dev-leads), vmm-carol (vmm-qa), vmm-dave (none).
type testAD struct {
	dir      selfservice.Directory
	password string // of every portal user
	realm    string // lower case
}

func loadTestAD(t testing.TB) testAD {
	t.Helper()
	if os.Getenv("VMM_TEST_LDAP_URL") == "" {
		testenv.Missing(t, "VMM_TEST_LDAP_URL not set (run: eval \"$(scripts/testenv.sh start)\")")
	}
	if os.Getenv("VMM_TEST_LDAP_PORTAL_USERS") == "" {
		testenv.Missing(t, "VMM_TEST_LDAP_PORTAL_USERS not set: the test AD has no portal users (scripts/samba-ad.sh too old?)")
	}
	v := func(name string) string { return testenv.Var(t, "VMM_TEST_LDAP_"+name) }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := discovery.Dial(ctx, discovery.Config{
		URLs: []string{v("URL")}, CAFile: v("CA_CERT"), ServerName: v("SERVER_NAME"),
		Bind: discovery.SimpleBind{Name: v("BIND_DN"), Password: v("BIND_PASSWORD")},
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return testAD{dir: selfservice.Directory{Client: c}, password: v("USER_PASSWORD"), realm: strings.ToLower(v("REALM"))}
}

// Sign-in against Active Directory: roles by (nested) group, every
// spelling of a name one user, refusals that say nothing about the user.
func TestDirectorySignIn(t *testing.T) {
	ad := loadTestAD(t)
	p := newPortalWith(t, vmm.Config{}, portalOptions{Auth: ad.dir, DevGroup: "vmm-dev", QAGroup: "vmm-qa"})

	alice := p.signIn(t, "vmm-alice", ad.password)
	_, body := alice.get("/")
	assert.Contains(t, body, "Sign out vmm-alice")
	assert.NotContains(t, body, "development mode", "a directory sign-in is not development mode")
	code, _, loc := alice.create("dev", "ad-alice-1")
	require.Equal(t, http.StatusSeeOther, code)
	p.wait(t, loc)

	// Other spellings of the same account are the same user.
	for _, name := range []string{`LAB\vmm-alice`, "VMM-Alice", "vmm-alice@" + ad.realm} {
		c := p.signIn(t, name, ad.password)
		_, body := c.get("/")
		assert.Contains(t, body, "ad-alice-1", name)
		assert.Contains(t, body, "Sign out vmm-alice", name)
	}

	// vmm-bob is in vmm-dev through a nested group; he does not see
	// alice's VM (the role is not shared), nor can he act on it.
	bob := p.signIn(t, "vmm-bob", ad.password)
	_, body = bob.get("/")
	assert.NotContains(t, body, "ad-alice-1")
	assert.Contains(t, body, `id="new-vm"`)
	id := p.vmID(t, "ad-alice-1")
	code, _ = bob.get("/vms/" + id)
	assert.Equal(t, http.StatusNotFound, code)
	code, _, _ = bob.post("/vms/"+id+"/stop", map[string][]string{"csrf": {bob.csrf}})
	assert.Equal(t, http.StatusNotFound, code)

	// vmm-carol's role is qa: no dev offers.
	carol := p.signIn(t, "vmm-carol", ad.password)
	code, _, _ = carol.create("dev", "ad-carol-1")
	assert.Equal(t, http.StatusForbidden, code)

	// vmm-dave has no role; vmm-disabled has the right password but may
	// not sign in, and reads as a wrong password.
	code, body, _ = p.tryLogin("vmm-dave", ad.password, "192.0.2.10:1")
	assert.Equal(t, http.StatusForbidden, code)
	assert.Contains(t, body, "no access")
	c1, b1, _ := p.tryLogin("vmm-alice", ad.password+"x", "192.0.2.11:1")
	c2, b2, _ := p.tryLogin("vmm-nobody", ad.password, "192.0.2.12:1")
	c3, b3, _ := p.tryLogin("vmm-disabled", ad.password, "192.0.2.13:1")
	assert.Equal(t, http.StatusUnauthorized, c1)
	assert.Equal(t, c1, c2)
	assert.Equal(t, c1, c3)
	same := func(body, user string) string { return strings.ReplaceAll(body, user, "X") }
	assert.Equal(t, same(b1, "vmm-alice"), same(b2, "vmm-nobody"))
	assert.Equal(t, same(b1, "vmm-alice"), same(b3, "vmm-disabled"))

	// Failures of one account count together whatever its spelling.
	spellings := []string{"vmm-carol", `LAB\vmm-carol`, "VMM-CAROL", "vmm-carol@" + ad.realm, `OTHER\Vmm-Carol`}
	for i, name := range spellings {
		code, _, _ := p.tryLogin(name, "nope", fmt.Sprintf("198.51.100.%d:1", i))
		assert.Equal(t, http.StatusUnauthorized, code, name)
	}
	code, _, _ = p.tryLogin("vmm-carol", ad.password, "198.51.100.99:1")
	assert.Equal(t, http.StatusTooManyRequests, code)

	// Also when a spelling is not the account's name (vmm-dave's UPN is
	// dave.d@realm): the directory names the account, whose limit then
	// refuses even the right password under the account's name.
	for i := range 5 {
		code, _, _ := p.tryLogin("dave.d@"+ad.realm, "nope", fmt.Sprintf("203.0.113.%d:1", i))
		assert.Equal(t, http.StatusUnauthorized, code)
	}
	code, _, _ = p.tryLogin("vmm-dave", ad.password, "203.0.113.99:1")
	assert.Equal(t, http.StatusTooManyRequests, code, "vmm-dave has no role: 403 had the failures not counted")
}

// BenchmarkDirectorySignIn: 50 users signing in to the portal at once
// against the test AD (a lookup with the portal's bind, a bind as the user
// on a new TLS connection, tokenGroups and the groups' names), then each
// loading their list.
func BenchmarkDirectorySignIn(b *testing.B) {
	ad := loadTestAD(b)
	const users = 50
	names := make([]string, users)
	for i := range names {
		names[i] = fmt.Sprintf("vmm-load-%02d", i+1) // made by scripts/samba-ad.sh
	}
	var signIns, lists []time.Duration
	for range b.N {
		b.StopTimer()
		p := newPortalWith(b, vmm.Config{}, portalOptions{Auth: ad.dir, DevGroup: "vmm-dev", QAGroup: "vmm-qa"})
		b.StartTimer()
		atOnce(users, &signIns, &lists, func(i int, first, second func()) {
			first()
			c := p.signIn(b, names[i], ad.password)
			second()
			if code, _ := c.get("/"); code != http.StatusOK {
				b.Errorf("list: %d", code)
			}
		})
		b.StopTimer()
		p.m.Close()
		b.StartTimer()
	}
	b.ReportMetric(p95ms(signIns), "signin-p95-ms")
	b.ReportMetric(p95ms(lists), "list-p95-ms")
	b.Logf("%d users: sign-in p95 %.1f ms, list p95 %.1f ms", users, p95ms(signIns), p95ms(lists))
}
