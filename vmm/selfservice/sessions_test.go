package selfservice_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/pgtest"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/selfservice"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// With SharedSessions, portals on one database share sessions: a sign-in
// on one is good on another and on a restarted one, a sign-out on one ends
// it everywhere, and the store holds only a digest of the token.
func TestSharedSessions(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(t *testing.T) vmm.Config
	}{
		{"sqlite", func(t *testing.T) vmm.Config { return vmm.Config{} }},
		{"postgres", func(t *testing.T) vmm.Config { return vmm.Config{PostgresDSN: pgtest.FreshDB(t)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPortalWith(t, tc.cfg(t), portalOptions{SharedSessions: true})
			second := func() *httptest.Server { // another portal process on the same database
				h, err := selfservice.New(p.cfg)
				require.NoError(t, err)
				srv := httptest.NewServer(h)
				t.Cleanup(srv.Close)
				return srv
			}
			alice := p.signIn(t, "alice", "alice-pw")
			u, _ := url.Parse(p.srv.URL)
			cookies := alice.http.Jar.Cookies(u)
			require.Len(t, cookies, 1)
			token := cookies[0].Value

			// The store has a digest of the token, not the token.
			ss := p.m.Store().(store.SessionStore)
			_, err := ss.Session(t.Context(), token)
			assert.ErrorIs(t, err, store.ErrNotFound)
			sum := sha256.Sum256([]byte(token))
			rec, err := ss.Session(t.Context(), hex.EncodeToString(sum[:]))
			require.NoError(t, err)
			assert.Equal(t, "alice", rec.User)

			// Another portal takes the cookie, and its CSRF token.
			other := second()
			alice.p = &portal{srv: other, m: p.m, group: p.group}
			alice.http.Jar.SetCookies(mustURL(t, other.URL), cookies)
			code, body := alice.get("/")
			require.Equal(t, http.StatusOK, code)
			assert.Contains(t, body, "Sign out alice")
			code, _, loc := alice.create("dev", "shared-1")
			require.Equal(t, http.StatusSeeOther, code, "a form of the first portal's session posted to the second")
			p.wait(t, loc)

			// A sign-out on the second ends it on the first and on a new one.
			code, _, _ = alice.post("/logout", url.Values{"csrf": {alice.csrf}})
			require.Equal(t, http.StatusSeeOther, code)
			for _, srv := range []*httptest.Server{p.srv, second()} {
				c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				req, _ := http.NewRequest("GET", srv.URL+"/", nil)
				req.AddCookie(&http.Cookie{Name: cookies[0].Name, Value: token})
				resp, err := c.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
				assert.Equal(t, "/login", resp.Header.Get("Location"))
			}
		})
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}
