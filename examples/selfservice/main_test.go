package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
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

// With -tls-cert and -tls-key it serves HTTPS.
func TestServesTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	addr := serve(t, options{developers: "developers", qa: "qa", tlsCert: certFile, tlsKey: keyFile})
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var resp *http.Response
	require.Eventually(t, func() bool {
		resp, err = c.Get("https://" + addr + "/login")
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, http.StatusSeeOther, redirectStatus(t, c, addr))
}

// redirectStatus signs alice in over c without following the redirect and
// checks that the session cookie is Secure.
func redirectStatus(t *testing.T, c *http.Client, addr string) int {
	t.Helper()
	nc := *c
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := nc.PostForm("https://"+addr+"/login", url.Values{"user": {"alice"}, "password": {"alice-pw"}})
	require.NoError(t, err)
	resp.Body.Close()
	ck := resp.Cookies()
	require.Len(t, ck, 1)
	assert.True(t, ck[0].Secure, "the session cookie over TLS")
	return resp.StatusCode
}
