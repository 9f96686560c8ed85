package selfservice

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ErrBadCredentials is what an Authenticator returns for a wrong user name
// or password; the portal says the same for both, so that a wrong password
// does not tell whether the user exists.
var ErrBadCredentials = errors.New("selfservice: wrong user name or password")

// A BadCredentialsError is ErrBadCredentials for an account the
// Authenticator found: User is the account's name as Identity.User would
// have it, whatever spelling was typed. The portal counts failed sign-ins
// under that name too, so that spellings of one account ("LAB\alice",
// "alice.smith@example.com") share one limit.
type BadCredentialsError struct {
	User string
	Err  error // the Authenticator's reason, for the log
}

func (e *BadCredentialsError) Error() string {
	return ErrBadCredentials.Error() + ": " + e.Err.Error()
}

// Unwrap returns ErrBadCredentials and the reason.
func (e *BadCredentialsError) Unwrap() []error { return []error{ErrBadCredentials, e.Err} }

// An Identity is a signed-in user and the groups they belong to (directly
// or nested), as role membership sees them.
type Identity struct {
	User   string
	Groups []string
}

// An Authenticator checks a user name and password and says who the user
// is. It returns an error wrapping ErrBadCredentials when they do not
// match; any other error means it could not tell (the directory is down).
type Authenticator interface {
	Authenticate(ctx context.Context, user, password string) (Identity, error)
}

// DevUser is a local user of DevUsers.
type DevUser struct {
	Password string
	Groups   []string
}

// DevUsers is an Authenticator of local users, for development and the
// example only: the portal labels its pages "development mode" when it
// uses one (Config.Dev).
type DevUsers map[string]DevUser

// Authenticate implements Authenticator, in constant time for the password.
func (d DevUsers) Authenticate(_ context.Context, user, password string) (Identity, error) {
	u, ok := d[strings.ToLower(user)]
	want := u.Password
	if !ok {
		want = "\x00never"
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(password)) != 1 || !ok {
		return Identity{}, ErrBadCredentials
	}
	return Identity{User: strings.ToLower(user), Groups: append([]string(nil), u.Groups...)}, nil
}

// limiter counts failed sign-ins per key (a user name, an address) in a
// sliding window.
type limiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	fails  map[string][]time.Time
}

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, fails: map[string][]time.Time{}}
}

// blocked reports whether key failed max times within the window.
func (l *limiter) blocked(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recent(key, now)) >= l.max
}

func (l *limiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fails[key] = append(l.recent(key, now), now)
	if len(l.fails) > 100000 { // bound memory under a spray of names
		for k := range l.fails {
			l.recent(k, now)
		}
	}
}

func (l *limiter) recent(key string, now time.Time) []time.Time {
	ts := l.fails[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > l.window {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.fails, key)
		return nil
	}
	l.fails[key] = ts
	return ts
}

// turns lets at most n callers at a time hold a key; the others wait for
// a turn or for their context. It holds state only for keys in use.
type turns struct {
	n  int
	mu sync.Mutex
	m  map[string]*turn
}

type turn struct {
	slots chan struct{}
	refs  int
}

func (t *turns) acquire(ctx context.Context, key string) (release func(), err error) {
	t.mu.Lock()
	if t.m == nil {
		t.m = map[string]*turn{}
	}
	e := t.m[key]
	if e == nil {
		e = &turn{slots: make(chan struct{}, t.n)}
		t.m[key] = e
	}
	e.refs++
	t.mu.Unlock()
	drop := func() {
		t.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(t.m, key)
		}
		t.mu.Unlock()
	}
	select {
	case e.slots <- struct{}{}:
		return func() { <-e.slots; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
}

// addrKey is the rate-limit key of a remote address: the host, or its /64
// for IPv6.
func addrKey(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return "addr:" + remote
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "addr:" + p.String()
	}
	return "addr:" + a.String()
}
