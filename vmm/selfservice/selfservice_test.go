package selfservice_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/internal/demolib"
	"github.com/vmmkit/vmmkit/internal/pgtest"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/selfservice"
	"github.com/vmmkit/vmmkit/vmm/store"
)

type portal struct {
	srv   *httptest.Server
	m     *vmm.Manager
	group string
	cfg   selfservice.Config // of the portal served
}

// newPortal serves the portal over a manager of four simulated hosts, with
// the dev users alice and bob (group devs), carol (group qa) and the
// admin dora, a role "dev" (template web-small for 2 points, quota 4
// points) and a shared role "qa" (at most 3 VMs).
func newPortal(t testing.TB, cfg vmm.Config, extraUsers ...string) *portal {
	t.Helper()
	return newPortalWith(t, cfg, portalOptions{}, extraUsers...)
}

// portalOptions change what newPortal serves.
type portalOptions struct {
	// Auth replaces the dev users (and Dev mode).
	Auth selfservice.Authenticator
	// DevGroup and QAGroup are the groups of the roles "dev" and "qa"
	// (defaults "devs" and "qa").
	DevGroup, QAGroup string
	// DevActions replace the actions of the role "dev".
	DevActions []string
	// TrustedProxies of the portal.
	TrustedProxies []netip.Prefix
	// SharedSessions of the portal.
	SharedSessions bool
}

func newPortalWith(t testing.TB, cfg vmm.Config, o portalOptions, extraUsers ...string) *portal {
	t.Helper()
	dir := t.TempDir()
	fleet, err := sim.New(sim.Config{Count: 4})
	require.NoError(t, err)
	require.NoError(t, demolib.Build(filepath.Join(dir, "lib"), demolib.Options{Template: "web-small"}))
	share, err := library.NewDirShare("central", "paris", filepath.Join(dir, "lib"))
	require.NoError(t, err)
	lib, err := library.New(library.Options{Shares: []library.Share{share}})
	require.NoError(t, err)
	_, err = lib.Refresh(t.Context())
	require.NoError(t, err)
	if cfg.StorePath == "" && cfg.PostgresDSN == "" {
		cfg.StorePath = filepath.Join(dir, "vmm.db")
	}
	cfg.Sim, cfg.Library, cfg.Poll = fleet, lib, 100*time.Millisecond
	m, err := vmm.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	g, err := m.CreateGroup(t.Context(), store.HostGroup{Name: "self-" + store.NewID()[:6]})
	require.NoError(t, err)
	for _, n := range fleet.Names() {
		_, err := m.AddHost(t.Context(), g.ID, vmm.SimURI(n), &vmm.HostOptions{Name: g.Name + "-" + n})
		require.NoError(t, err)
	}
	users := selfservice.DevUsers{
		"alice": {Password: "alice-pw", Groups: []string{"devs"}},
		"bob":   {Password: "bob-pw", Groups: []string{"devs"}},
		"carol": {Password: "carol-pw", Groups: []string{"qa"}},
		"dora":  {Password: "dora-pw", Groups: []string{"admins"}},
		"eve":   {Password: "eve-pw"},
	}
	for _, u := range extraUsers {
		users[u] = selfservice.DevUser{Password: u + "-pw", Groups: []string{"devs"}}
	}
	var auth selfservice.Authenticator = users
	if o.Auth != nil {
		auth = o.Auth
	}
	if o.DevGroup == "" {
		o.DevGroup = "devs"
	}
	if o.QAGroup == "" {
		o.QAGroup = "qa"
	}
	if o.DevActions == nil {
		o.DevActions = []string{"create", "start", "stop", "remove"}
	}
	pcfg := selfservice.Config{
		Manager: m, Dev: o.Auth == nil, AdminUsers: []string{"dora"}, Auth: auth, TrustedProxies: o.TrustedProxies,
		SharedSessions: o.SharedSessions,
		Roles: []selfservice.Role{
			{Name: "dev", Groups: []string{o.DevGroup}, Templates: []string{"web-small"}, Points: map[string]int{"web-small": 2},
				Quota: 4, HostGroup: g.ID, Actions: o.DevActions},
			{Name: "qa", Groups: []string{o.QAGroup}, Users: []string{"dora"}, Templates: []string{"web-small"}, MaxVMs: 3,
				HostGroup: g.ID, Shared: true, Actions: []string{"create", "stop"}},
		},
	}
	h, err := selfservice.New(pcfg)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &portal{srv: srv, m: m, group: g.ID, cfg: pcfg}
}

type client struct {
	t    testing.TB
	p    *portal
	http *http.Client
	csrf string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs user in and keeps the session and its CSRF token.
func (p *portal) signIn(t testing.TB, user, pass string) *client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	// Each user has a connection of their own, kept alive, as a browser
	// does (http.DefaultTransport keeps 2 idle connections a host, which
	// made 50 users dial again and again).
	c := &client{t: t, p: p, http: &http.Client{Jar: jar, Transport: &http.Transport{}, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
	t.Cleanup(c.http.CloseIdleConnections)
	code, _, loc := c.post("/login", url.Values{"user": {user}, "password": {pass}})
	require.Equal(t, http.StatusSeeOther, code, "sign-in of %s", user)
	require.Equal(t, "/", loc)
	_, body := c.get("/")
	m := csrfField.FindStringSubmatch(body)
	require.NotNil(t, m, "a CSRF token in the page")
	c.csrf = m[1]
	return c
}

func (c *client) get(path string) (int, string) {
	c.t.Helper()
	resp, err := c.http.Get(c.p.srv.URL + path)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *client) post(path string, form url.Values) (int, string, string) {
	c.t.Helper()
	resp, err := c.http.PostForm(c.p.srv.URL+path, form)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Location")
}

// create asks for a VM and returns the job's path, or the refusal.
func (c *client) create(role, name string) (int, string, string) {
	return c.post("/vms", url.Values{"csrf": {c.csrf}, "role": {role}, "template": {"web-small"}, "name": {name}})
}

func (p *portal) wait(t *testing.T, jobPath string) store.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	j, err := p.m.Wait(ctx, strings.TrimPrefix(jobPath, "/jobs/"))
	require.NoError(t, err)
	return j
}

func (p *portal) vmID(t *testing.T, name string) string {
	t.Helper()
	vms, err := p.m.VMs(t.Context(), store.VMFilter{GroupID: p.group})
	require.NoError(t, err)
	for _, v := range vms {
		if v.Name == name {
			return v.ID
		}
	}
	t.Fatalf("no VM %s", name)
	return ""
}

func TestPortal(t *testing.T) {
	p := newPortal(t, vmm.Config{})
	alice := p.signIn(t, "alice", "alice-pw")

	// Headers of every page.
	resp, err := alice.http.Get(p.srv.URL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))

	_, body := alice.get("/new")
	assert.Contains(t, body, "Costs 2 points. You have 4 left (dev).")
	assert.Contains(t, body, "development mode")

	// A form without the token is refused.
	code, _, _ := alice.post("/vms", url.Values{"role": {"dev"}, "template": {"web-small"}, "name": {"nocsrf"}})
	assert.Equal(t, http.StatusForbidden, code, "no CSRF token")
	code, _, _ = alice.post("/vms", url.Values{"csrf": {"forged"}, "role": {"dev"}, "template": {"web-small"}, "name": {"forged"}})
	assert.Equal(t, http.StatusForbidden, code, "a wrong CSRF token")

	// Create, watch, reach running.
	code, _, loc := alice.create("dev", "alice-web1")
	require.Equal(t, http.StatusSeeOther, code)
	require.True(t, strings.HasPrefix(loc, "/jobs/"), loc)
	code, body = alice.get(loc)
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "create-vm")
	assert.Equal(t, store.JobSucceeded, p.wait(t, loc).State)
	id := p.vmID(t, "alice-web1")
	_, body = alice.get("/vms/" + id)
	assert.Contains(t, body, `id="state">running<`)
	assert.Contains(t, body, `id="act-stop"`)
	assert.NotContains(t, body, `id="act-pause"`, "an action the role does not allow")

	// Names and templates the role does not allow.
	code, body, _ = alice.create("dev", "<script>x</script>")
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, "does not follow the pattern")
	assert.NotContains(t, body, "<script>x</script>", "the name is escaped")
	code, _, _ = alice.post("/vms", url.Values{"csrf": {alice.csrf}, "role": {"dev"}, "template": {"db-large"}, "name": {"other"}})
	assert.Equal(t, http.StatusForbidden, code, "a template the role does not list")
	code, _, _ = alice.create("qa", "not-my-role")
	assert.Equal(t, http.StatusForbidden, code, "a role alice does not have")

	// Quota: 2 + 2 points, then refused.
	code, _, loc = alice.create("dev", "alice-web2")
	require.Equal(t, http.StatusSeeOther, code)
	p.wait(t, loc)
	code, body, _ = alice.create("dev", "alice-web3")
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, "exceed your quota")

	// Bob, in the same (unshared) role, neither sees nor acts on it, also
	// with requests made by hand.
	bob := p.signIn(t, "bob", "bob-pw")
	_, body = bob.get("/")
	assert.NotContains(t, body, "alice-web1")
	code, _ = bob.get("/vms/" + id)
	assert.Equal(t, http.StatusNotFound, code)
	code, _, _ = bob.post("/vms/"+id+"/stop", url.Values{"csrf": {bob.csrf}})
	assert.Equal(t, http.StatusNotFound, code)
	code, _, _ = bob.post("/vms/"+id+"/stop", url.Values{"csrf": {alice.csrf}})
	assert.Equal(t, http.StatusForbidden, code, "another session's token")
	code, _ = bob.get(loc)
	assert.Equal(t, http.StatusNotFound, code, "another user's job")
	rec, err := p.m.Store().VM(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, "running", rec.State, "untouched by bob")

	// Alice stops it and removes it.
	code, _, loc = alice.post("/vms/"+id+"/stop", url.Values{"csrf": {alice.csrf}})
	require.Equal(t, http.StatusSeeOther, code)
	p.wait(t, loc)
	code, _, loc = alice.post("/vms/"+id+"/remove", url.Values{"csrf": {alice.csrf}})
	require.Equal(t, http.StatusSeeOther, code)
	p.wait(t, loc)
	_, err = p.m.Store().VM(t.Context(), id)
	assert.ErrorIs(t, err, store.ErrNotFound)

	// A shared role: carol's VM is dora's to see too.
	carol := p.signIn(t, "carol", "carol-pw")
	code, _, loc = carol.create("qa", "qa-box")
	require.Equal(t, http.StatusSeeOther, code)
	p.wait(t, loc)
	dora := p.signIn(t, "dora", "dora-pw")
	_, body = dora.get("/")
	assert.Contains(t, body, "qa-box")
	_, body = dora.get("/admin/roles")
	assert.Contains(t, body, "<h2>dev</h2>", "an admin sees every role")
	_, body = carol.get("/admin/roles")
	assert.NotContains(t, body, "<h2>dev</h2>", "others see their own roles")

	// Sign-out ends the session.
	code, _, _ = alice.post("/logout", url.Values{"csrf": {alice.csrf}})
	assert.Equal(t, http.StatusSeeOther, code)
	code, _ = alice.get("/vms/" + p.vmID(t, "alice-web2"))
	assert.Equal(t, http.StatusSeeOther, code, "back to the sign-in page")
}

// tryLogin posts a sign-in from addr straight to the handler, with the
// X-Forwarded-For headers xff.
func (p *portal) tryLogin(user, pass, addr string, xff ...string) (int, string, *http.Response) {
	req := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"user": {user}, "password": {pass}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, v := range xff {
		req.Header.Add("X-Forwarded-For", v)
	}
	req.RemoteAddr = addr
	w := httptest.NewRecorder()
	p.srv.Config.Handler.ServeHTTP(w, req)
	return w.Code, w.Body.String(), w.Result()
}

func TestSignIn(t *testing.T) {
	p := newPortal(t, vmm.Config{})
	try := p.tryLogin
	// A wrong password and an unknown user read the same.
	c1, b1, _ := try("alice", "nope", "192.0.2.1:1000")
	c2, b2, _ := try("mallory", "nope", "192.0.2.2:1000")
	assert.Equal(t, http.StatusUnauthorized, c1)
	assert.Equal(t, c1, c2)
	assert.Equal(t, strings.Replace(b1, "alice", "X", -1), strings.Replace(b2, "mallory", "X", -1))
	// A user without a role is refused.
	c, _, _ := try("eve", "eve-pw", "192.0.2.3:1000")
	assert.Equal(t, http.StatusForbidden, c)
	// The session cookie.
	c, _, resp := try("alice", "alice-pw", "192.0.2.4:1000")
	require.Equal(t, http.StatusSeeOther, c)
	ck := resp.Cookies()
	require.Len(t, ck, 1)
	assert.True(t, ck[0].HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, ck[0].SameSite)
	// Per user: after 5 failures from anywhere, even the right password
	// is refused for a while.
	for i := range 5 {
		try("bob", "nope", fmt.Sprintf("198.51.100.%d:1", i))
	}
	c, b, _ := try("bob", "bob-pw", "198.51.100.99:1")
	assert.Equal(t, http.StatusTooManyRequests, c)
	assert.Contains(t, b, "Too many failed sign-ins")
	// Per address: one address trying many names is stopped.
	for i := range 20 {
		try(fmt.Sprintf("user%d", i), "nope", "203.0.113.7:1")
	}
	c, _, _ = try("carol", "carol-pw", "203.0.113.7:2")
	assert.Equal(t, http.StatusTooManyRequests, c)
	c, _, _ = try("carol", "carol-pw", "203.0.113.8:2")
	assert.Equal(t, http.StatusSeeOther, c, "another address")
}

// 100 concurrent creates from one user never exceed the quota, on SQLite
// and on PostgreSQL.
func TestQuotaRace(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(t *testing.T) vmm.Config
	}{
		{"sqlite", func(*testing.T) vmm.Config { return vmm.Config{} }},
		{"postgres", func(t *testing.T) vmm.Config { return vmm.Config{PostgresDSN: pgtest.FreshDB(t)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPortal(t, tc.cfg(t))
			alice := p.signIn(t, "alice", "alice-pw")
			var wg sync.WaitGroup
			var mu sync.Mutex
			var jobs []string
			for i := range 100 {
				wg.Go(func() {
					code, _, loc := alice.create("dev", fmt.Sprintf("race-%03d", i))
					if code == http.StatusSeeOther {
						mu.Lock()
						jobs = append(jobs, loc)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			ok := 0
			for _, loc := range jobs {
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				j, err := p.m.Wait(ctx, strings.TrimPrefix(loc, "/jobs/"))
				cancel()
				if err == nil {
					ok++
				} else {
					assert.Contains(t, j.Error, "quota", "why job %s failed", j.ID)
				}
			}
			vms, err := p.m.VMs(t.Context(), store.VMFilter{Owner: "alice"})
			require.NoError(t, err)
			points := 0
			for _, v := range vms {
				points += v.Points
			}
			assert.LessOrEqual(t, points, 4, "alice's points")
			assert.Equal(t, 2, ok, "VMs made")
		})
	}
}

// BenchmarkPortal: 50 users at once, each listing their VMs and creating
// one, on the simulator and SQLite over loopback; it reports the 95th
// percentile latency of the list page (target 50 ms) and of the create
// request (target 100 ms).
func BenchmarkPortal(b *testing.B) {
	const users = 50
	var lists, creates []time.Duration
	for n := range b.N {
		b.StopTimer()
		names := make([]string, users)
		for i := range names {
			names[i] = fmt.Sprintf("user%02d", i)
		}
		p := newPortal(b, vmm.Config{}, names...)
		clients := make([]*client, users)
		for i, u := range names {
			clients[i] = p.signIn(b, u, u+"-pw")
		}
		b.StartTimer()
		atOnce(users, &lists, &creates, func(i int, first, second func()) {
			c := clients[i]
			var code, code2 int
			first()
			code, _ = c.get("/")
			second()
			code2, _, _ = c.create("dev", fmt.Sprintf("u%02d-r%d", i, n))
			if code != http.StatusOK || code2 != http.StatusSeeOther {
				b.Errorf("user %d: list %d, create %d", i, code, code2)
			}
		})
		b.StopTimer()
		p.m.Close()
		b.StartTimer()
	}
	b.ReportMetric(p95ms(lists), "list-p95-ms")
	b.ReportMetric(p95ms(creates), "create-p95-ms")
	b.Logf("%d users: list p95 %.1f ms (target 50), create p95 %.1f ms (target 100)", users, p95ms(lists), p95ms(creates))
}

// atOnce runs user(i) for n users at once; each marks when its first and
// its second request begin, and their times go to first and second.
func atOnce(n int, first, second *[]time.Duration, user func(i int, first, second func())) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range n {
		wg.Go(func() {
			var t0, t1 time.Time
			user(i, func() { t0 = time.Now() }, func() { t1 = time.Now() })
			t2 := time.Now()
			mu.Lock()
			*first, *second = append(*first, t1.Sub(t0)), append(*second, t2.Sub(t1))
			mu.Unlock()
		})
	}
	wg.Wait()
}

// p95ms is the 95th percentile of ds in milliseconds.
func p95ms(ds []time.Duration) float64 {
	slices.Sort(ds)
	return float64(ds[(len(ds)*95+99)/100-1].Microseconds()) / 1000
}

// slowAuth checks passwords as a directory does: with a delay, counting
// the checks.
type slowAuth struct {
	selfservice.Authenticator
	checks *atomic.Int64
}

func (a slowAuth) Authenticate(ctx context.Context, user, password string) (selfservice.Identity, error) {
	a.checks.Add(1)
	time.Sleep(20 * time.Millisecond)
	return a.Authenticator.Authenticate(ctx, user, password)
}

// Guesses sent at once get no more checks than the limit allows: each
// attempt counts before its password is checked.
func TestSignInBurst(t *testing.T) {
	checks := new(atomic.Int64)
	auth := slowAuth{selfservice.DevUsers{"alice": {Password: "alice-pw", Groups: []string{"devs"}}}, checks}
	p := newPortalWith(t, vmm.Config{}, portalOptions{Auth: auth})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() { p.tryLogin("alice", fmt.Sprintf("guess-%d", i), fmt.Sprintf("198.51.100.%d:1", i)) })
	}
	wg.Wait()
	assert.Equal(t, int64(5), checks.Load(), "password checks for 40 guesses at once")
	code, _, _ := p.tryLogin("alice", "alice-pw", "198.51.100.200:1")
	assert.Equal(t, http.StatusTooManyRequests, code)

	// One address trying many names at once: a few are checked at a
	// time, so the address limit (20) is passed by fewer than that.
	checks.Store(0)
	r := newPortalWith(t, vmm.Config{}, portalOptions{Auth: auth})
	for i := range 40 {
		wg.Go(func() { r.tryLogin(fmt.Sprintf("name%d", i), "guess", "203.0.113.9:1") })
	}
	wg.Wait()
	assert.LessOrEqual(t, checks.Load(), int64(20+8-1), "password checks for 40 names from one address")
	assert.GreaterOrEqual(t, checks.Load(), int64(20))

	// Successful sign-ins do not use up the limit, even at once.
	q := newPortalWith(t, vmm.Config{}, portalOptions{Auth: auth})
	codes := make([]int, 30)
	for i := range codes {
		wg.Go(func() { codes[i], _, _ = q.tryLogin("alice", "alice-pw", "192.0.2.50:1") })
	}
	wg.Wait()
	for i, code := range codes {
		assert.Equal(t, http.StatusSeeOther, code, "sign-in %d", i)
	}
}

// Behind a trusted reverse proxy, the limits per address are the clients',
// not the proxy's; X-Forwarded-For is believed only from a trusted proxy,
// and only its last untrusted address.
func TestTrustedProxies(t *testing.T) {
	p := newPortalWith(t, vmm.Config{}, portalOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	const proxy = "10.0.0.5:4000"
	// One client behind the proxy sprays names until its address is
	// stopped; a client prepending a made-up address is still itself.
	for i := range 20 {
		p.tryLogin(fmt.Sprintf("user%d", i), "nope", proxy, fmt.Sprintf("192.0.2.%d, 198.51.100.1", i))
	}
	code, _, _ := p.tryLogin("carol", "carol-pw", proxy, "198.51.100.1")
	assert.Equal(t, http.StatusTooManyRequests, code, "the spraying client")
	code, _, _ = p.tryLogin("carol", "carol-pw", proxy, "198.51.100.2")
	assert.Equal(t, http.StatusSeeOther, code, "another client behind the same proxy")
	// Two proxies in a row, both trusted: the client is the address
	// before them.
	code, _, _ = p.tryLogin("alice", "alice-pw", proxy, "198.51.100.1, 10.1.1.1")
	assert.Equal(t, http.StatusTooManyRequests, code, "the spraying client through two proxies")

	// A client that is not a trusted proxy cannot choose its address.
	for i := range 20 {
		p.tryLogin(fmt.Sprintf("user%d", i), "nope", "203.0.113.5:1", fmt.Sprintf("192.0.2.%d", i))
	}
	code, _, _ = p.tryLogin("carol", "carol-pw", "203.0.113.5:1", "192.0.2.200")
	assert.Equal(t, http.StatusTooManyRequests, code)

	// Proxies that write the port too.
	for i := range 20 {
		p.tryLogin(fmt.Sprintf("user%d", i), "nope", proxy, "[2001:db8::7]:443")
	}
	code, _, _ = p.tryLogin("carol", "carol-pw", proxy, "[2001:db8::7]:8443")
	assert.Equal(t, http.StatusTooManyRequests, code, "the client, whatever its port")
	code, _, _ = p.tryLogin("carol", "carol-pw", proxy, "198.51.100.3:1234")
	assert.Equal(t, http.StatusSeeOther, code, "another client, with a port")

	// Without TrustedProxies, X-Forwarded-For means nothing.
	q := newPortal(t, vmm.Config{})
	for i := range 20 {
		q.tryLogin(fmt.Sprintf("user%d", i), "nope", proxy, fmt.Sprintf("198.51.100.%d", i))
	}
	code, _, _ = q.tryLogin("carol", "carol-pw", proxy, "198.51.100.200")
	assert.Equal(t, http.StatusTooManyRequests, code)
}

// spellings is an Authenticator of one account, "alice", which knows her
// by two spellings, as a directory does (her account name and her UPN).
type spellings struct{}

func (spellings) Authenticate(_ context.Context, user, password string) (selfservice.Identity, error) {
	if user != "alice" && user != "alice.smith@lab" {
		return selfservice.Identity{}, selfservice.ErrBadCredentials
	}
	if password != "alice-pw" {
		return selfservice.Identity{}, &selfservice.BadCredentialsError{User: "alice", Err: errors.New("wrong password")}
	}
	return selfservice.Identity{User: "alice", Groups: []string{"devs"}}, nil
}

// Once an account is over the limit, another spelling of it gets the same
// answer for a right and a wrong password.
func TestSignInSpellings(t *testing.T) {
	p := newPortalWith(t, vmm.Config{}, portalOptions{Auth: spellings{}})
	for i := range 5 {
		code, _, _ := p.tryLogin("alice", "nope", fmt.Sprintf("198.51.100.%d:1", i))
		require.Equal(t, http.StatusUnauthorized, code)
	}
	wrong, _, _ := p.tryLogin("alice.smith@lab", "nope", "198.51.100.20:1")
	right, _, _ := p.tryLogin("alice.smith@lab", "alice-pw", "198.51.100.21:1")
	assert.Equal(t, http.StatusTooManyRequests, wrong)
	assert.Equal(t, http.StatusTooManyRequests, right)

	// And failures under the other spelling count for the account.
	q := newPortalWith(t, vmm.Config{}, portalOptions{Auth: spellings{}})
	for i := range 5 {
		code, _, _ := q.tryLogin("alice.smith@lab", "nope", fmt.Sprintf("198.51.100.%d:1", i))
		require.Equal(t, http.StatusUnauthorized, code)
	}
	code, _, _ := q.tryLogin("alice", "alice-pw", "198.51.100.30:1")
	assert.Equal(t, http.StatusTooManyRequests, code)
}
