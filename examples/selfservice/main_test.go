package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/discovery"
	"github.com/vmmkit/vmmkit/internal/testenv"
)

// serve runs the example with o until the test ends and returns its
// address.
func serve(t *testing.T, o options) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, t.TempDir(), addr, o, ready) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(time.Minute):
		t.Fatal("not ready")
	}
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return addr
}

// signIn posts a sign-in and returns the page it ends on.
func signIn(t *testing.T, addr, user, password string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	var resp *http.Response
	var err error
	require.Eventually(t, func() bool {
		resp, err = c.PostForm("http://"+addr+"/login", url.Values{"user": {user}, "password": {password}})
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

// The example serves a portal a person can sign in to.
func TestServes(t *testing.T) {
	addr := serve(t, options{developers: "developers", qa: "qa"})
	code, body := signIn(t, addr, "alice", "alice-pw")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "My VMs", "the VM list after sign-in")
	assert.Contains(t, body, "development mode")
}

// With -ldap, against the test AD: users of the two groups sign in.
func TestServesWithAD(t *testing.T) {
	if os.Getenv("VMM_TEST_LDAP_URL") == "" {
		testenv.Missing(t, "VMM_TEST_LDAP_URL not set (run: eval \"$(scripts/testenv.sh start)\")")
	}
	v := func(name string) string { return testenv.Var(t, "VMM_TEST_LDAP_"+name) }
	addr := serve(t, options{developers: "vmm-dev", qa: "vmm-qa", ldap: discovery.Config{
		URLs: []string{v("LDAPS_URL")}, CAFile: v("CA_CERT"), ServerName: v("SERVER_NAME"),
		Bind: discovery.SimpleBind{Name: v("BIND_UPN"), Password: v("BIND_PASSWORD")},
	}})
	code, body := signIn(t, addr, "vmm-bob", v("USER_PASSWORD"))
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "Sign out vmm-bob")
	assert.NotContains(t, body, "development mode")
	code, _ = signIn(t, addr, "alice", "alice-pw")
	assert.Equal(t, http.StatusUnauthorized, code, "no development users with -ldap")
}
