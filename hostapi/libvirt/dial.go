package libvirt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	golibvirt "github.com/digitalocean/go-libvirt"
	"golang.org/x/crypto/ssh"

	"github.com/vmmkit/vmmkit/hostapi"
)

// Options tune Dial; nil means defaults.
type Options struct {
	// DomainType is the domain type of the VMs CreateVM defines: "kvm"
	// (the default), "qemu" for software emulation, or "test" (the default
	// for test:///default).
	DomainType string
	// Machine is the machine type ("pc", the default, or "q35").
	Machine string
	// ConsoleListen is the IP address on which the VNC console of every VM
	// CreateVM defines listens: "127.0.0.1" (the default, reached from the
	// host itself or through a tunnel), another address of the host, or
	// "0.0.0.0" or "::" for all of them. libvirt gives each running VM a
	// port of its own from 5900 on (autoport), and VMInfo.Console reports
	// it. ConsoleNone defines VMs without a console.
	ConsoleListen string

	// Dial, when set, opens every connection to the daemon instead of the
	// transport the URI names; the URI still names the hypervisor driver.
	Dial func(ctx context.Context) (net.Conn, error)
	// TLSConfig is used by qemu+tls URIs; nil means a default config with
	// the URI's host as ServerName.
	TLSConfig *tls.Config
	// SSHConfig is used by qemu+ssh URIs (authentication, host keys); it is
	// required for them.
	SSHConfig *ssh.ClientConfig
	// DialTimeout bounds one connection attempt (10 s when zero).
	DialTimeout time.Duration
	// ReconnectTimeout bounds how long a call waits for a lost connection
	// to come back before failing with hostapi.ErrHostUnreachable (30 s when
	// zero); ctx may end it sooner.
	ReconnectTimeout time.Duration

	// MigrationURI is the URI by which another host's libvirt daemon
	// reaches this one when this host is a migration destination. Empty
	// means the URI given to Dial (a socket path becomes
	// qemu+unix:///system?socket=PATH).
	MigrationURI string
	// MigrationDataURI and DisksURI, when set, are where this host's QEMU
	// listens for the memory and disk streams of a migration that copies
	// storage: "tcp://10.0.0.2", or "unix:///dir" for a folder both hosts'
	// QEMU see, where each migration gets sockets of its own. Empty lets
	// libvirt choose from the host's name.
	MigrationDataURI, DisksURI string
}

// ConsoleNone as Options.ConsoleListen defines VMs without a console.
const ConsoleNone = "none"

// checkConsoleListen refuses an Options.ConsoleListen that is neither an
// IP address nor ConsoleNone.
func checkConsoleListen(listen string) error {
	if listen != ConsoleNone && net.ParseIP(listen) == nil {
		return fmt.Errorf("%w: ConsoleListen %q is not an IP address or %q", hostapi.ErrInvalidSpec, listen, ConsoleNone)
	}
	return nil
}

// target is what Dial made of its URI.
type target struct {
	driverURI string // what ConnectToURI opens ("qemu:///system")
	migURI    string // how other daemons reach this one
	name      string // for errors: the URI as given
	dial      func(ctx context.Context) (net.Conn, error)
	remote    string // the daemon's host name from a tcp, tls or ssh URI; "" when local
}

func parseTarget(uri string, o *Options) (*target, error) {
	t := &target{name: uri}
	timeout := o.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if strings.HasPrefix(uri, "/") {
		t.driverURI = "qemu:///system"
		t.migURI = "qemu+unix:///system?socket=" + uri
		t.dial = unixDialer(uri, timeout)
	} else {
		u, err := url.Parse(uri)
		if err != nil {
			return nil, fmt.Errorf("%w: URI %q: %w", hostapi.ErrInvalidSpec, uri, err)
		}
		driver, transport, _ := strings.Cut(u.Scheme, "+")
		q := u.Query()
		socket := q.Get("socket")
		q.Del("socket")
		drv := url.URL{Scheme: driver, Path: u.Path, RawQuery: q.Encode()}
		t.driverURI = drv.String()
		if u.Path == "" || u.Path == "/" {
			return nil, fmt.Errorf("%w: URI %q has no path (/system or /default)", hostapi.ErrInvalidSpec, uri)
		}
		t.migURI = uri
		host := u.Host
		if transport == "tcp" || transport == "tls" || transport == "ssh" {
			t.remote = u.Hostname()
		}
		switch transport {
		case "", "unix":
			if host != "" && transport == "" {
				return nil, fmt.Errorf("%w: URI %q names a host but no transport (+tcp, +tls, +ssh)", hostapi.ErrInvalidSpec, uri)
			}
			if socket == "" {
				socket = "/run/libvirt/libvirt-sock"
			}
			t.dial = unixDialer(socket, timeout)
			if transport == "" {
				t.migURI = driver + "+unix://" + u.Path + "?socket=" + socket
			}
		case "tcp":
			t.dial = tcpDialer(withPort(host, "16509"), timeout)
		case "tls":
			cfg := o.TLSConfig.Clone()
			if cfg == nil {
				cfg = &tls.Config{}
			}
			if cfg.ServerName == "" {
				cfg.ServerName = u.Hostname()
			}
			addr := withPort(host, "16514")
			t.dial = func(ctx context.Context) (net.Conn, error) {
				d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
				return d.DialContext(ctx, "tcp", addr)
			}
		case "ssh":
			if o.SSHConfig == nil {
				return nil, fmt.Errorf("%w: URI %q needs Options.SSHConfig", hostapi.ErrInvalidSpec, uri)
			}
			cfg := *o.SSHConfig
			if cfg.User == "" && u.User != nil {
				cfg.User = u.User.Username()
			}
			if cfg.Timeout == 0 {
				cfg.Timeout = timeout
			}
			if socket == "" {
				socket = "/var/run/libvirt/libvirt-sock"
			}
			t.dial = sshDialer(withPort(host, "22"), &cfg, socket)
		default:
			return nil, fmt.Errorf("%w: URI %q: transport %q not supported", hostapi.ErrUnsupported, uri, transport)
		}
	}
	if o.Dial != nil {
		t.dial = o.Dial
	}
	if o.MigrationURI != "" {
		t.migURI = o.MigrationURI
	}
	return t, nil
}

func withPort(host, port string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

func unixDialer(path string, timeout time.Duration) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		return d.DialContext(ctx, "unix", path)
	}
}

func tcpDialer(addr string, timeout time.Duration) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		return d.DialContext(ctx, "tcp", addr)
	}
}

// sshDialer opens an SSH client and dials the daemon's unix socket through
// it; closing the returned conn closes the SSH client too.
func sshDialer(addr string, cfg *ssh.ClientConfig, socket string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Timeout: cfg.Timeout}
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
		if err != nil {
			nc.Close()
			return nil, err
		}
		client := ssh.NewClient(c, chans, reqs)
		conn, err := client.Dial("unix", socket)
		if err != nil {
			client.Close()
			return nil, err
		}
		return &sshConn{Conn: conn, client: client}, nil
	}
}

type sshConn struct {
	net.Conn
	client *ssh.Client
}

func (c *sshConn) Close() error {
	err := c.Conn.Close()
	c.client.Close()
	return err
}

// ctxDialer adapts a dial func to go-libvirt's socket.Dialer, which takes
// no context: the context of the call that connects is set before each use.
type ctxDialer struct {
	ctx  context.Context
	dial func(context.Context) (net.Conn, error)
}

func (d *ctxDialer) Dial() (net.Conn, error) { return d.dial(d.ctx) }

// conn holds the RPC client and re-establishes it when lost.
type conn struct {
	t       *target
	timeout time.Duration

	mu     sync.Mutex
	l      *golibvirt.Libvirt
	closed bool
}

// errClosed marks a call on a closed Driver.
var errClosed = hostapi.ErrClosed

// client returns a connected RPC client, connecting (with backoff when
// retry) if there is none or it was lost.
func (c *conn) client(ctx context.Context, retry bool) (*golibvirt.Libvirt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.l != nil && c.l.IsConnected() {
		return c.l, nil
	}
	connect := func() error {
		if err := ctx.Err(); err != nil {
			return backoff.Permanent(err)
		}
		l := golibvirt.NewWithDialer(&ctxDialer{ctx: ctx, dial: c.t.dial})
		if err := l.ConnectToURI(golibvirt.ConnectURI(c.t.driverURI)); err != nil {
			var le golibvirt.Error
			if errors.As(err, &le) {
				// The daemon answered and refused: retrying will not help.
				return backoff.Permanent(err)
			}
			return err
		}
		c.l = l
		return nil
	}
	var err error
	if retry {
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = 50 * time.Millisecond
		b.MaxInterval = 2 * time.Second
		b.MaxElapsedTime = c.timeout
		err = backoff.Retry(connect, backoff.WithContext(b, ctx))
	} else {
		err = connect()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var le golibvirt.Error
		if errors.As(err, &le) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", hostapi.ErrHostUnreachable, err)
	}
	return c.l, nil
}

// drop forgets l if it is still the current client, after a transport
// failure, so that the next call reconnects.
func (c *conn) drop(l *golibvirt.Libvirt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.l == l {
		c.l = nil
		go l.Disconnect() //nolint:errcheck // the connection is broken already
	}
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *conn) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.l == nil || !c.l.IsConnected() {
		return nil
	}
	return c.l.Disconnect()
}

// isTransport reports whether err came from the connection rather than
// from the daemon.
func isTransport(err error) bool {
	if err == nil {
		return false
	}
	var le golibvirt.Error
	if errors.As(err, &le) {
		return false
	}
	for _, e := range []error{context.Canceled, context.DeadlineExceeded, hostapi.ErrClosed,
		hostapi.ErrInvalidSpec, hostapi.ErrNotFound, hostapi.ErrExists, hostapi.ErrInvalidState,
		hostapi.ErrUnsupported, hostapi.ErrCapacity, hostapi.ErrHostUnreachable} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// read runs an idempotent call, reconnecting and retrying it when the
// connection is lost.
func (c *conn) read(ctx context.Context, fn func(l *golibvirt.Libvirt) error) error {
	for attempt := 0; ; attempt++ {
		l, err := c.client(ctx, true)
		if err != nil {
			return err
		}
		err = fn(l)
		if !isTransport(err) {
			return err
		}
		c.drop(l)
		if attempt >= 3 {
			return fmt.Errorf("%w: %w", hostapi.ErrHostUnreachable, err)
		}
	}
}

// write runs a call that changes the host once: it connects first (with
// backoff), but a call cut off by the connection is not repeated.
func (c *conn) write(ctx context.Context, fn func(l *golibvirt.Libvirt) error) error {
	l, err := c.client(ctx, true)
	if err != nil {
		return err
	}
	err = fn(l)
	if isTransport(err) {
		c.drop(l)
		return fmt.Errorf("%w: %w", hostapi.ErrHostUnreachable, err)
	}
	return err
}
