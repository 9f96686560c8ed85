package selfservice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/vmmkit/vmmkit/vmm/store"
)

// A sessionKeeper keeps the portal's sessions by the token in the user's
// cookie.
type sessionKeeper interface {
	put(ctx context.Context, s *session) error
	// get returns the live session of token, or nil.
	get(ctx context.Context, token string) (*session, error)
	drop(ctx context.Context, token string) error
}

// memSessions keeps sessions in the Handler's memory.
type memSessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*session
}

func (k *memSessions) put(_ context.Context, s *session) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	for id, o := range k.m { // drop expired ones now and then
		if now.After(o.expires) {
			delete(k.m, id)
		}
	}
	k.m[s.id] = s
	return nil
}

func (k *memSessions) get(_ context.Context, token string) (*session, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.m[token]
	if s != nil && k.now().After(s.expires) {
		delete(k.m, token)
		return nil, nil
	}
	return s, nil
}

func (k *memSessions) drop(_ context.Context, token string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, token)
	return nil
}

// storeSessions keeps sessions in the manager's store, under a digest of
// the token: several portal processes on one database share them, and
// whoever reads the database cannot use them.
type storeSessions struct {
	st  store.SessionStore
	now func() time.Time
	log *slog.Logger

	mu        sync.Mutex
	lastSweep time.Time
}

// sweepEvery is how often expired sessions are removed from the store.
const sweepEvery = 10 * time.Minute

func digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func (k *storeSessions) put(ctx context.Context, s *session) error {
	k.mu.Lock()
	sweep := k.now().Sub(k.lastSweep) > sweepEvery
	if sweep {
		k.lastSweep = k.now()
	}
	k.mu.Unlock()
	if sweep {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if n, err := k.st.DeleteExpiredSessions(ctx); err != nil {
				k.log.Warn("expired sessions cannot be removed", "err", err)
			} else if n > 0 {
				k.log.Debug("expired sessions removed", "count", n)
			}
		}()
	}
	return k.st.CreateSession(ctx, store.Session{ID: digest(s.id), User: s.who.User, Groups: s.who.Groups,
		CSRF: s.csrf, Expires: s.expires})
}

func (k *storeSessions) get(ctx context.Context, token string) (*session, error) {
	ss, err := k.st.Session(ctx, digest(token))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &session{id: token, csrf: ss.CSRF, who: Identity{User: ss.User, Groups: ss.Groups}, expires: ss.Expires}, nil
}

func (k *storeSessions) drop(ctx context.Context, token string) error {
	return k.st.DeleteSession(ctx, digest(token))
}
