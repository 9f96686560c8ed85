package libvirt_test

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy forwards a unix socket to a libvirt daemon's and plays the
// network's faults on command: it drops the next reply and the connection
// with it (the host went away while a call was in flight), refuses
// connections (the host is down), or cuts a connection once a given number
// of bytes went to the daemon (a migration stream lost half-way).
type proxy struct {
	t      testing.TB
	path   string
	target string
	ln     net.Listener

	accepted   atomic.Int64
	dropReply  atomic.Bool  // drop the next reply and close its connection
	refuse     atomic.Bool  // close new connections at once
	cutAfter   atomic.Int64 // close a connection once this many bytes went to the daemon (0: never)
	cuts       atomic.Int64 // connections cut by cutAfter
	forwarding sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	p := &proxy{t: t, path: filepath.Join(t.TempDir(), "p.sock"), target: target}
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p.ln = ln
	p.forwarding.Go(p.serve)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		if p.refuse.Load() {
			c.Close()
			continue
		}
		s, err := net.Dial("unix", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.forwarding.Go(func() { p.pipe(s, c, true) })
		p.forwarding.Go(func() { p.pipe(c, s, false) })
	}
}

// pipe copies from src to dst; toDaemon says which way it goes.
func (p *proxy) pipe(dst, src net.Conn, toDaemon bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	var sent int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !toDaemon && p.dropReply.CompareAndSwap(true, false) {
				return // the reply is lost with the connection
			}
			if toDaemon {
				if limit := p.cutAfter.Load(); limit > 0 && sent+int64(n) > limit {
					p.cuts.Add(1)
					return
				}
				sent += int64(n)
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.t.Logf("proxy: %v", err)
			}
			return
		}
	}
}

// cutAll closes every connection through the proxy.
func (p *proxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) close() {
	p.ln.Close()
	p.cutAll()
	p.forwarding.Wait()
}
