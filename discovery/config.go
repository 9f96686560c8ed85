package discovery

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-ldap/ldap/v3"
)

// Defaults and limits of a Config.
const (
	DefaultPageSize = 500              // entries a page when Config.PageSize is 0
	MaxPageSize     = 1000             // AD's MaxPageSize; a larger PageSize is an error
	DefaultTimeout  = 30 * time.Second // when Config.Timeout is 0
)

// Config says how to reach and sign in to a directory. The zero value of each
// optional field means its default. Dial copies the Config; changing it
// afterwards has no effect.
type Config struct {
	// URLs lists the servers, tried in this order: ldaps://host[:port], or
	// ldap://host[:port], on which StartTLS is required before anything else
	// is sent. At least one is required.
	URLs []string

	// ServerName is the name the servers' certificates must carry and, for
	// Kerberos, the host part of the default SPN. Empty means the host of
	// each URL.
	ServerName string
	// CAFile names a PEM file of CA certificates to trust instead of the
	// system roots. RootCAs, when set, is used instead of both.
	CAFile  string
	RootCAs *x509.CertPool
	// InsecureSkipVerify turns certificate verification off. It is for
	// tests only; Dial logs a warning when it is set.
	InsecureSkipVerify bool

	// Bind signs in: a SimpleBind or a KerberosBind. Required.
	Bind Bind

	// Timeout bounds each network round trip (connect, TLS handshake, each
	// request). 0 means DefaultTimeout.
	Timeout time.Duration
	// PageSize is the number of entries a search asks for a page: 0 means
	// DefaultPageSize; above MaxPageSize or negative is an error.
	PageSize int
	// MaxRetries bounds the retries of a transient failure (after every
	// server was tried); 0 means 4, negative means none. Retries also stop
	// when the context is done.
	MaxRetries int

	// UserBase is the subtree in which Authenticate looks for accounts;
	// empty means the whole domain (the rootDSE's defaultNamingContext).
	// Groups are looked up in the whole domain either way.
	UserBase string

	// Resolver looks up host names for Query.Resolve; nil means
	// net.DefaultResolver.
	Resolver Resolver

	// Logger receives connection events (server chosen, failover, retries,
	// insecure settings) without credentials. Nil means discard.
	Logger *slog.Logger

	// newBackOff, when set by tests, replaces the exponential backoff.
	newBackOff func() backoff.BackOff
}

// check validates c and fills in defaults.
func (c *Config) check() error {
	if len(c.URLs) == 0 {
		return fmt.Errorf("%w: no server URL", ErrConfig)
	}
	for _, s := range c.URLs {
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("%w: bad URL: %v", ErrConfig, err)
		}
		if u.Scheme != "ldap" && u.Scheme != "ldaps" {
			return fmt.Errorf("%w: URL %s: scheme must be ldap or ldaps", ErrConfig, redactURL(s))
		}
		if u.User != nil {
			return fmt.Errorf("%w: URL %s: credentials belong in Bind, not in the URL", ErrConfig, redactURL(s))
		}
		if u.Host == "" {
			return fmt.Errorf("%w: URL %s has no host", ErrConfig, redactURL(s))
		}
	}
	if c.UserBase != "" {
		if _, err := ldap.ParseDN(c.UserBase); err != nil {
			return fmt.Errorf("%w: UserBase %q: %v", ErrConfig, c.UserBase, err)
		}
	}
	if c.Bind == nil {
		return fmt.Errorf("%w: no Bind", ErrConfig)
	}
	if err := c.Bind.check(); err != nil {
		return err
	}
	switch {
	case c.PageSize == 0:
		c.PageSize = DefaultPageSize
	case c.PageSize < 0 || c.PageSize > MaxPageSize:
		return fmt.Errorf("%w: PageSize %d not in 1..%d", ErrConfig, c.PageSize, MaxPageSize)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	} else if c.Timeout < 0 {
		return fmt.Errorf("%w: negative Timeout", ErrConfig)
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 4
	}
	if c.CAFile != "" && c.RootCAs == nil {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("%w: CA file: %w", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrConfig, c.CAFile)
		}
		c.RootCAs = pool
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// tlsConfig returns the TLS settings for the server at host (from its URL).
func (c *Config) tlsConfig(host string) *tls.Config {
	name := c.ServerName
	if name == "" {
		name = host
	}
	return &tls.Config{
		ServerName:         name,
		RootCAs:            c.RootCAs,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // explicit opt-in, logged by Dial
		MinVersion:         tls.VersionTLS12,
	}
}

// serverName returns the name the server at host is known by.
func (c *Config) serverName(host string) string {
	if c.ServerName != "" {
		return c.ServerName
	}
	return host
}

// redactURL drops any user information from a URL before it is shown.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}
