package store

import (
	"context"
	"time"
)

// A Session is a signed-in user of an application on the store, such as
// the self-service portal, kept in the store so that several processes on
// one database share it and a restart keeps it.
type Session struct {
	// ID names the session: a digest of the secret the user's browser
	// holds, never the secret itself, so that reading the store does not
	// give a way in.
	ID      string
	User    string
	Groups  []string
	CSRF    string // the session's token for forms
	Expires time.Time
}

// SessionStore keeps Sessions. The SQLite and PostgreSQL stores implement
// it; other stores may not (the portal then keeps sessions in memory).
type SessionStore interface {
	// CreateSession records s; ErrExists if its ID is taken.
	CreateSession(ctx context.Context, s Session) error
	// Session returns the session id; ErrNotFound when there is none or
	// it has expired.
	Session(ctx context.Context, id string) (Session, error)
	// DeleteSession ends the session id; none is no error.
	DeleteSession(ctx context.Context, id string) error
	// DeleteExpiredSessions removes the expired sessions and says how many.
	DeleteExpiredSessions(ctx context.Context) (int, error)
}
