package sqldb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vmmkit/vmmkit/vmm/store"
)

const jobCols = `id, kind, user_name, state, steps, progress, input, result, error, owner, lease_until, attempts, created_at, started_at, ended_at, version, cancel_requested`

func scanJob(r scanner) (store.Job, error) {
	var j store.Job
	var steps, input, result string
	var lease, created, started, ended, cancel int64
	err := r.Scan(&j.ID, &j.Kind, &j.User, &j.State, &steps, &j.Progress, &input, &result, &j.Error, &j.Owner,
		&lease, &j.Attempts, &created, &started, &ended, &j.Version, &cancel)
	j.CancelRequested = cancel != 0
	if err != nil {
		return j, err
	}
	j.Input, j.Result = unraw(input), unraw(result)
	j.LeaseUntil, j.CreatedAt, j.StartedAt, j.EndedAt = tm(lease), tm(created), tm(started), tm(ended)
	if steps != "" && steps != "null" {
		if err := json.Unmarshal([]byte(steps), &j.Steps); err != nil {
			return j, fmt.Errorf("job %s: steps: %w", j.ID, err)
		}
	}
	return j, nil
}

func stepsJSON(st []store.Step) (string, error) {
	if len(st) == 0 {
		return "", nil
	}
	b, err := json.Marshal(st)
	return string(b), err
}

func final(st store.JobState) bool {
	return st == store.JobSucceeded || st == store.JobFailed || st == store.JobCancelled
}

// CreateJob implements store.Store.
func (s *DB) CreateJob(ctx context.Context, j store.Job) (store.Job, error) {
	if j.ID == "" {
		j.ID = store.NewID()
	}
	j.State, j.Owner, j.LeaseUntil, j.Version, j.CancelRequested = store.JobQueued, "", time.Time{}, 1, false
	j.CreatedAt = tm(ns(s.now()))
	err := s.tx(ctx, "create job", j.ID, func(tx *sql.Tx) error {
		if j.Kind == "" {
			return invalid("Kind")
		}
		steps, err := stepsJSON(j.Steps)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO jobs (`+jobCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`),
			j.ID, j.Kind, j.User, string(j.State), steps, j.Progress, raw(j.Input), raw(j.Result), j.Error, j.Owner,
			ns(j.LeaseUntil), j.Attempts, ns(j.CreatedAt), ns(j.StartedAt), ns(j.EndedAt), j.Version)
		return err
	})
	return j, err
}

// UpdateJob implements store.Store.
func (s *DB) UpdateJob(ctx context.Context, j store.Job) (store.Job, error) {
	if final(j.State) {
		if j.EndedAt.IsZero() {
			j.EndedAt = s.now()
		}
	}
	j.EndedAt = tm(ns(j.EndedAt))
	err := s.tx(ctx, "update job", j.ID, func(tx *sql.Tx) error {
		if !validState(j.State) {
			var one int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM jobs WHERE id = ?`), j.ID).Scan(&one); err != nil {
				return notFound(err)
			}
			return invalid("State")
		}
		steps, err := stepsJSON(j.Steps)
		if err != nil {
			return err
		}
		// The lease is RenewLease's and ClaimJob's alone: a copy of the job
		// read before a renewal must not set it back (another manager
		// could then claim a job that still runs). A final job has none.
		lease := ""
		if final(j.State) {
			lease = "lease_until = 0, "
		}
		r, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = ?, steps = ?, progress = ?, input = ?, result = ?, error = ?, `+lease+`started_at = ?, ended_at = ?, version = version + 1
WHERE id = ? AND version = ? AND owner = ?`),
			string(j.State), steps, j.Progress, raw(j.Input), raw(j.Result), j.Error, ns(j.StartedAt), ns(j.EndedAt),
			j.ID, j.Version, j.Owner)
		if err != nil {
			return err
		}
		if err := s.changed(ctx, tx, r, "jobs", j.ID); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("%w: stale version or %q does not hold the job", store.ErrConflict, j.Owner)
			}
			return err
		}
		var until int64
		if err := tx.QueryRowContext(ctx, s.q(`SELECT lease_until FROM jobs WHERE id = ?`), j.ID).Scan(&until); err != nil {
			return err
		}
		j.LeaseUntil = tm(until)
		return nil
	})
	if err == nil {
		j.Version++
	}
	return j, err
}

func validState(st store.JobState) bool {
	switch st {
	case store.JobQueued, store.JobRunning, store.JobSucceeded, store.JobFailed, store.JobCancelled:
		return true
	}
	return false
}

// maxLease bounds leases and leadership ttls, so that their end stays far
// within the nanosecond clock the store keeps (which ends in 2262).
const maxLease = 100 * 365 * 24 * time.Hour

func checkLease(what string, d time.Duration) error {
	if d <= 0 || d > maxLease {
		return fmt.Errorf("%w: %s %v is not between 0 and %v", store.ErrInvalid, what, d, maxLease)
	}
	return nil
}

// Job implements store.Store.
func (s *DB) Job(ctx context.Context, id string) (store.Job, error) {
	if err := s.check(ctx, "job", id); err != nil {
		return store.Job{}, err
	}
	j, err := scanJob(s.db.QueryRowContext(ctx, s.q(`SELECT `+jobCols+` FROM jobs WHERE id = ?`), id))
	return j, s.fail(ctx, "job", id, notFound(err))
}

// Jobs implements store.Store.
func (s *DB) Jobs(ctx context.Context, f store.JobFilter) ([]store.Job, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{{"state", string(f.State)}, {"kind", f.Kind}, {"user_name", f.User}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	q := `SELECT ` + jobCols + ` FROM jobs`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	return list(s, ctx, "jobs", q+` ORDER BY created_at, id`, args, scanJob)
}

// ClaimJob implements store.Store.
func (s *DB) ClaimJob(ctx context.Context, owner string, lease time.Duration, kinds ...string) (store.Job, error) {
	var j store.Job
	err := s.tx(ctx, "claim job", owner, func(tx *sql.Tx) error {
		if owner == "" {
			return invalid("owner")
		}
		if err := checkLease("lease", lease); err != nil {
			return err
		}
		now := s.now()
		q := `SELECT id FROM jobs WHERE (state = 'queued' OR (state = 'running' AND lease_until < ?))`
		args := []any{ns(now)}
		if len(kinds) > 0 {
			q += ` AND kind IN (?` + strings.Repeat(", ?", len(kinds)-1) + `)`
			for _, k := range kinds {
				args = append(args, k)
			}
		}
		q += ` ORDER BY created_at, id LIMIT 1 ` + s.d.ClaimLock
		var id string
		if err := tx.QueryRowContext(ctx, s.q(q), args...).Scan(&id); err != nil {
			return notFound(err)
		}
		_, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = 'running', owner = ?, lease_until = ?, attempts = attempts + 1,
started_at = CASE WHEN started_at = 0 THEN ? ELSE started_at END, version = version + 1 WHERE id = ?`),
			owner, ns(now.Add(lease)), ns(now), id)
		if err != nil {
			return err
		}
		j, err = scanJob(tx.QueryRowContext(ctx, s.q(`SELECT `+jobCols+` FROM jobs WHERE id = ?`), id))
		return err
	})
	return j, err
}

// CancelJob implements store.Store.
func (s *DB) CancelJob(ctx context.Context, id string) (store.Job, error) {
	var j store.Job
	err := s.tx(ctx, "cancel job", id, func(tx *sql.Tx) error {
		now := ns(s.now())
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = 'cancelled', error = 'cancelled before it started', ended_at = ?, version = version + 1
WHERE id = ? AND state = 'queued'`), now, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET cancel_requested = 1, version = version + 1
WHERE id = ? AND state = 'running' AND cancel_requested = 0`), id); err != nil {
			return err
		}
		var err error
		j, err = scanJob(tx.QueryRowContext(ctx, s.q(`SELECT `+jobCols+` FROM jobs WHERE id = ?`), id))
		return notFound(err)
	})
	return j, err
}

// RetryJob implements store.Store.
func (s *DB) RetryJob(ctx context.Context, id string) (store.Job, error) {
	var j store.Job
	err := s.tx(ctx, "retry job", id, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = 'queued', error = '', result = '', owner = '', lease_until = 0, ended_at = 0,
cancel_requested = 0, version = version + 1 WHERE id = ? AND state IN ('failed', 'cancelled')`), id)
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		if err != nil {
			return err
		}
		j, err = scanJob(tx.QueryRowContext(ctx, s.q(`SELECT `+jobCols+` FROM jobs WHERE id = ?`), id))
		if err != nil {
			return notFound(err)
		}
		if n == 0 {
			return fmt.Errorf("%w: job is %s; only a failed or cancelled job can be retried", store.ErrConflict, j.State)
		}
		return nil
	})
	return j, err
}

// RenewLease implements store.Store.
func (s *DB) RenewLease(ctx context.Context, id, owner string, lease time.Duration) (time.Time, error) {
	until := tm(ns(s.now().Add(lease)))
	err := s.tx(ctx, "renew lease", id, func(tx *sql.Tx) error {
		if err := checkLease("lease", lease); err != nil {
			return err
		}
		r, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET lease_until = ? WHERE id = ? AND owner = ? AND state = 'running'`), ns(until), id, owner)
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			var one int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM jobs WHERE id = ?`), id).Scan(&one); err != nil {
				return notFound(err)
			}
			return fmt.Errorf("%w: %q does not hold the job", store.ErrConflict, owner)
		}
		return nil
	})
	return until, err
}

// TryLead implements store.Store.
func (s *DB) TryLead(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	var led bool
	err := s.tx(ctx, "lead", name, func(tx *sql.Tx) error {
		if owner == "" {
			return invalid("owner")
		}
		if err := checkLease("ttl", ttl); err != nil {
			return err
		}
		now := s.now()
		r, err := tx.ExecContext(ctx, s.q(`INSERT INTO leases (name, owner, until_ns) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until_ns = excluded.until_ns
WHERE leases.owner = excluded.owner OR leases.until_ns < ?`), name, owner, ns(now.Add(ttl)), ns(now))
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		led = n > 0
		return err
	})
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	if s.leads != nil {
		if led {
			s.leads[[2]string{name, owner}] = true
		} else {
			delete(s.leads, [2]string{name, owner})
		}
	}
	s.mu.Unlock()
	return led, nil
}

// Resign implements store.Store.
func (s *DB) Resign(ctx context.Context, name, owner string) error {
	err := s.tx(ctx, "resign", name, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`DELETE FROM leases WHERE name = ? AND owner = ?`), name, owner)
		return err
	})
	if err == nil {
		s.mu.Lock()
		delete(s.leads, [2]string{name, owner})
		s.mu.Unlock()
	}
	return err
}
