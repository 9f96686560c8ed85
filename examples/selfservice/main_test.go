package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The example serves a portal a person can sign in to.
func TestServes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, t.TempDir(), addr, ready) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(time.Minute):
		t.Fatal("not ready")
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	var resp *http.Response
	require.Eventually(t, func() bool {
		resp, err = c.PostForm("http://"+addr+"/login", url.Values{"user": {"alice"}, "password": {"alice-pw"}})
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.Contains(string(body), "My VMs"), "the VM list after sign-in")
	cancel()
	require.NoError(t, <-done)
}
