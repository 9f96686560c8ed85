package sqldb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vmmkit/vmmkit/vmm/store"
)

var _ store.SessionStore = (*DB)(nil)

// CreateSession implements store.SessionStore.
func (s *DB) CreateSession(ctx context.Context, ss store.Session) error {
	if ss.ID == "" || ss.User == "" || ss.Expires.IsZero() {
		return &store.OpError{Op: "create session", Err: fmt.Errorf("%w: a session needs an ID, a user and an expiry", store.ErrInvalid)}
	}
	groups, err := json.Marshal(ss.Groups)
	if err != nil {
		return err
	}
	return s.tx(ctx, "create session", "", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO sessions (id, user_name, groups_json, csrf, expires_ns) VALUES (?, ?, ?, ?, ?)`),
			ss.ID, ss.User, string(groups), ss.CSRF, ns(ss.Expires))
		return err
	})
}

// Session implements store.SessionStore.
func (s *DB) Session(ctx context.Context, id string) (store.Session, error) {
	if err := s.check(ctx, "session", ""); err != nil {
		return store.Session{}, err
	}
	var ss store.Session
	var groups string
	var exp int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT id, user_name, groups_json, csrf, expires_ns FROM sessions WHERE id = ? AND expires_ns > ?`),
		id, ns(s.now())).Scan(&ss.ID, &ss.User, &groups, &ss.CSRF, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return ss, &store.OpError{Op: "session", Err: store.ErrNotFound}
	}
	if err != nil {
		return ss, s.fail(ctx, "session", "", err)
	}
	if err := json.Unmarshal([]byte(groups), &ss.Groups); err != nil {
		return store.Session{}, &store.OpError{Op: "session", Err: fmt.Errorf("groups: %w", err)}
	}
	ss.Expires = tm(exp)
	return ss, nil
}

// DeleteSession implements store.SessionStore.
func (s *DB) DeleteSession(ctx context.Context, id string) error {
	return s.tx(ctx, "delete session", "", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`DELETE FROM sessions WHERE id = ?`), id)
		return err
	})
}

// DeleteExpiredSessions implements store.SessionStore.
func (s *DB) DeleteExpiredSessions(ctx context.Context) (int, error) {
	var n int64
	err := s.tx(ctx, "delete expired sessions", "", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, s.q(`DELETE FROM sessions WHERE expires_ns <= ?`), ns(s.now()))
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	return int(n), err
}
