package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-ldap/ldap/v3"
)

// A Client is a signed-in connection to one directory server of a Config,
// re-established (on the same or the next server) when it is lost. It is
// safe for concurrent use. Close releases it.
type Client struct {
	cfg Config

	mu     sync.Mutex
	conn   *ldap.Conn
	url    string // URL of conn's server
	closed bool
	// dialing, while a caller makes a connection, is closed when it is
	// done; others wait on it instead of on mu.
	dialing chan struct{}

	namingContext string        // the rootDSE's defaultNamingContext, once read
	noTokenGroups bool          // tests: resolve groups as if the server gave no tokenGroups
	userBinds     *atomic.Int64 // tests: counts Authenticate's binds
}

// Dial connects to the first server of cfg.URLs that answers, secures the
// connection (TLS, or StartTLS on ldap://) and binds. A transient failure
// moves on to the next server; when every server failed so, Dial retries
// with exponential backoff until cfg.MaxRetries or ctx ends. Bad credentials,
// a refused StartTLS and certificate errors are not retried.
//
// Errors are *OpError values, or wrap ErrConfig for a bad cfg.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.InsecureSkipVerify {
		cfg.Logger.Warn("discovery: TLS certificate verification is off (InsecureSkipVerify); the server is not authenticated")
	}
	c := &Client{cfg: cfg}
	if _, _, err := c.connection(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Close closes the connection. Operations in progress fail; later ones
// return ErrClosed. Close is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn != nil {
		err := c.conn.Close()
		c.conn = nil
		return err
	}
	return nil
}

// URL returns the URL of the server the client is connected to, or "" when
// it is not connected.
func (c *Client) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return ""
	}
	return c.url
}

// connection returns the live connection, making one (with failover and
// retries) when there is none. One caller dials at a time; the others wait
// for it, or for their own ctx to end, without holding the lock.
func (c *Client) connection(ctx context.Context) (*ldap.Conn, string, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, "", ErrClosed
		}
		if c.conn != nil && !c.conn.IsClosing() {
			conn, url := c.conn, c.url
			c.mu.Unlock()
			return conn, url, nil
		}
		if c.conn != nil {
			c.conn.Close()
			c.conn = nil
		}
		if wait := c.dialing; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue // dialled, or failed: look again
			case <-ctx.Done():
				return nil, "", &OpError{Op: "connect", Kind: ErrConnection, Err: ctx.Err()}
			}
		}
		done := make(chan struct{})
		c.dialing = done
		c.mu.Unlock()

		var conn *ldap.Conn
		var connURL string
		err := c.retry(ctx, "connect", func() error {
			var err error
			conn, connURL, err = c.dialAny(ctx)
			return err
		})

		c.mu.Lock()
		c.dialing = nil
		close(done)
		if err == nil && c.closed {
			conn.Close()
			err = ErrClosed
		}
		if err == nil {
			c.conn, c.url = conn, connURL
		}
		c.mu.Unlock()
		if err != nil {
			return nil, "", err
		}
		return conn, connURL, nil
	}
}

// drop forgets conn after a failure so that the next operation reconnects.
func (c *Client) drop(conn *ldap.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == conn && conn != nil {
		conn.Close()
		c.conn = nil
	}
}

// retry runs f until it succeeds, fails permanently (anything but a
// transient error), or the backoff or ctx ends.
func (c *Client) retry(ctx context.Context, what string, f func() error) error {
	var b backoff.BackOff
	if c.cfg.newBackOff != nil {
		b = c.cfg.newBackOff()
	} else {
		eb := backoff.NewExponentialBackOff()
		eb.InitialInterval = 200 * time.Millisecond
		eb.MaxInterval = 5 * time.Second
		b = eb
	}
	if c.cfg.MaxRetries > 0 {
		b = backoff.WithMaxRetries(b, uint64(c.cfg.MaxRetries))
	} else {
		b = &backoff.StopBackOff{}
	}
	attempt := 0
	err := backoff.RetryNotify(func() error {
		attempt++
		err := f()
		if err == nil || transient(err) {
			return err
		}
		return backoff.Permanent(err)
	}, backoff.WithContext(b, ctx), func(err error, wait time.Duration) {
		c.cfg.Logger.Info("discovery: retrying", "op", what, "attempt", attempt, "wait", wait, "err", err)
	})
	if err != nil && ctx.Err() != nil && transient(err) {
		return errors.Join(err, ctx.Err())
	}
	return err
}

// dialAny tries each URL in order and returns the first signed-in
// connection. It stops at the first permanent failure.
func (c *Client) dialAny(ctx context.Context) (*ldap.Conn, string, error) {
	return c.dialAnyAs(ctx, c.cfg.Bind, c.cfg.URLs)
}

// dialAnyAs is dialAny for another bind and list of URLs.
func (c *Client) dialAnyAs(ctx context.Context, bind Bind, urls []string) (*ldap.Conn, string, error) {
	var last error
	for i, u := range urls {
		conn, err := c.dialOne(ctx, u, bind)
		if err == nil {
			if i > 0 {
				c.cfg.Logger.Info("discovery: connected to a fallback server", "url", redactURL(u))
			} else {
				c.cfg.Logger.Debug("discovery: connected", "url", redactURL(u))
			}
			return conn, u, nil
		}
		if !transient(err) {
			return nil, "", err
		}
		c.cfg.Logger.Warn("discovery: server unavailable", "url", redactURL(u), "err", err)
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", last
}

// dialOne connects to one server, secures the connection and binds.
func (c *Client) dialOne(ctx context.Context, rawURL string, bind Bind) (_ *ldap.Conn, err error) {
	shown := redactURL(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, &OpError{Op: "dial", URL: shown, Kind: ErrConfig, Err: err}
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "389"
		if u.Scheme == "ldaps" {
			port = "636"
		}
	}
	d := net.Dialer{Timeout: c.cfg.Timeout}
	raw, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, classify("dial", shown, err)
	}
	tlsCfg := c.cfg.tlsConfig(host)
	var conn *ldap.Conn
	if u.Scheme == "ldaps" {
		hctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		tc := tls.Client(raw, tlsCfg)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, classify("dial", shown, err)
		}
		conn = ldap.NewConn(tc, true)
	} else {
		conn = ldap.NewConn(raw, false)
	}
	conn.SetTimeout(c.cfg.Timeout)
	conn.Start()
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	// The binds and StartTLS take no context: closing the connection ends
	// them when ctx is done.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if u.Scheme == "ldap" {
		// go-ldap flattens a failed handshake into a message; verifying
		// here keeps the typed certificate error for the caller.
		var verifyErr error
		stCfg := tlsCfg
		if !tlsCfg.InsecureSkipVerify {
			stCfg = tlsCfg.Clone()
			stCfg.InsecureSkipVerify = true //nolint:gosec // verified by VerifyConnection below
			stCfg.VerifyConnection = func(cs tls.ConnectionState) error {
				verifyErr = verifyChain(cs, tlsCfg)
				return verifyErr
			}
		}
		if err := conn.StartTLS(stCfg); err != nil {
			if ctx.Err() != nil {
				return nil, &OpError{Op: "starttls", URL: shown, Kind: ErrConnection, Err: ctx.Err()}
			}
			if verifyErr != nil {
				return nil, &OpError{Op: "starttls", URL: shown, Kind: ErrTLS, Err: errors.Join(err, verifyErr)}
			}
			return nil, startTLSError(shown, err)
		}
	}
	if err := bind.bind(ctx, conn, c.cfg.serverName(host)); err != nil {
		if ctx.Err() != nil {
			return nil, &OpError{Op: "bind", URL: shown, Kind: ErrConnection, Err: ctx.Err()}
		}
		return nil, classify("bind", shown, err)
	}
	return conn, nil
}

// startTLSError classifies a failed StartTLS: a certificate problem is
// ErrTLS, a lost connection ErrConnection, anything the server said
// ErrStartTLS.
func startTLSError(shown string, err error) *OpError {
	e := classify("starttls", shown, err)
	if e.Kind == ErrConnection {
		var le *ldap.Error
		if errors.As(err, &le) && le.ResultCode != ldap.ErrorNetwork {
			e.Kind = ErrStartTLS
		}
	}
	return e
}

// verifyChain verifies a server's certificate chain and name as crypto/tls
// does when InsecureSkipVerify is false.
func verifyChain(cs tls.ConnectionState, cfg *tls.Config) error {
	if len(cs.PeerCertificates) == 0 {
		return &tls.CertificateVerificationError{Err: errors.New("server sent no certificate")}
	}
	opts := x509.VerifyOptions{
		Roots:         cfg.RootCAs,
		DNSName:       cfg.ServerName,
		Intermediates: x509.NewCertPool(),
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}
