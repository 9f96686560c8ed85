package s3share_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/library/s3share"
	"github.com/vmmkit/vmmkit/library/sharetest"
)

// server is the MinIO that scripts/minio.sh starts.
type server struct {
	endpoint, access, secret, region string
	buckets                          []string
}

func testServer(t *testing.T) server {
	t.Helper()
	if os.Getenv("VMM_TEST_S3_ENDPOINT") == "" {
		testenv.Missing(t, "VMM_TEST_S3_ENDPOINT not set (run: eval \"$(scripts/testenv.sh start)\" or scripts/minio.sh start)")
	}
	return server{
		endpoint: testenv.Var(t, "VMM_TEST_S3_ENDPOINT"),
		access:   testenv.Var(t, "VMM_TEST_S3_ACCESS_KEY"),
		secret:   testenv.Var(t, "VMM_TEST_S3_SECRET_KEY"),
		region:   os.Getenv("VMM_TEST_S3_REGION"),
		buckets:  strings.Split(testenv.Var(t, "VMM_TEST_S3_BUCKETS"), ","),
	}
}

func randomName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

func (sv server) config(bucket, prefix string) s3share.Config {
	return s3share.Config{
		Name: "s3-" + bucket, Site: bucket,
		Endpoint: sv.endpoint, AccessKey: sv.access, SecretKey: sv.secret, Region: sv.region,
		Bucket: bucket, Prefix: prefix,
		// Short, so that the offline tests end soon.
		RetryTimeout: time.Second,
	}
}

// newShare returns a share on a fresh prefix of bucket and removes what
// is left under the prefix (objects and uploads) when the test ends.
func (sv server) newShare(t *testing.T, cfg s3share.Config) *s3share.Share {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = randomName("test")
	}
	s, err := s3share.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { sv.clean(t, cfg.Bucket, cfg.Prefix+"/") })
	return s
}

func (sv server) client(t *testing.T) minio.Core {
	t.Helper()
	s, err := s3share.New(sv.config(sv.buckets[0], ""))
	require.NoError(t, err)
	return s3share.Client(s)
}

func (sv server) clean(t *testing.T, bucket, prefix string) {
	ctx := context.Background()
	c := sv.client(t)
	for oi := range c.Client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err == nil {
			c.RemoveObject(ctx, bucket, oi.Key, minio.RemoveObjectOptions{})
		}
	}
	for up := range c.ListIncompleteUploads(ctx, bucket, prefix, true) {
		if up.Err == nil {
			c.AbortMultipartUpload(ctx, bucket, up.Key, up.UploadID)
		}
	}
}

func TestConformance(t *testing.T) {
	sv := testServer(t)
	proxies := map[library.Share]*proxy{}
	var mu sync.Mutex
	sharetest.Run(t, &sharetest.Setup{
		New: func(t *testing.T) library.Share {
			// Through a proxy of our own, which Offline closes.
			p := newProxy(t, sv.endpoint)
			cfg := sv.config(sv.buckets[0], "")
			cfg.Endpoint = p.addr
			s := sv.newShare(t, cfg)
			mu.Lock()
			proxies[s] = p
			mu.Unlock()
			return s
		},
		PartSize: s3share.MinPartSize,
		Offline: func(t *testing.T, s library.Share) func() {
			mu.Lock()
			p := proxies[s]
			mu.Unlock()
			p.stop(t)
			return func() { p.start(t) }
		},
	})
}

// proxy forwards TCP connections to a target; stop closes the listener and
// every connection, as a store that went away would, and start listens
// again on the same address.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
	wg           sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{addr: "127.0.0.1:0", target: target, conns: map[net.Conn]bool{}}
	p.start(t)
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proxy) start(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	require.NoError(t, err)
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

func (p *proxy) forward(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { io.Copy(u, c); u.Close() })
	wg.Go(func() { io.Copy(c, u); c.Close() })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

func (p *proxy) stop(t *testing.T) {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func requireErr(t *testing.T, err, target error, what string) {
	t.Helper()
	require.Error(t, err, what)
	var se *library.ShareError
	require.True(t, errors.As(err, &se), "%s: got %T (%v), want a *library.ShareError", what, err, err)
	require.ErrorIs(t, err, target, what)
}
