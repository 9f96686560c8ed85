package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"runtime/debug"
	"sync"
	"time"

	"github.com/vmmkit/vmmkit/vmm/store"
)

// Job kinds of the manager's workflows.
const (
	KindCreateVM        = "create-vm"
	KindMigrateVM       = "migrate-vm"
	KindEvacuate        = "evacuate-host"
	KindOptimize        = "optimize"
	KindConvertPhysical = "convert-physical"
	KindAddHosts        = "add-hosts"
)

// StepUndone is the state of a step whose effect a failed or cancelled job
// took back; a retry runs it again.
const StepUndone store.JobState = "undone"

var (
	// ErrCancelled is the cause of a job's ctx when the job was cancelled.
	ErrCancelled = errors.New("job cancelled")
	// errLost: another manager took the job (this one's lease ran out).
	errLost = errors.New("job lease lost")
	// errClosing: the manager is closing; the job is queued again.
	errClosing = errors.New("manager closing")
)

// A JobFunc carries out a job of one kind. It runs its work in steps
// (Do), which makes it resumable: after a crash, a lost lease or Retry
// the JobFunc is called again, steps that completed return what they
// returned then, and the step that was running is told it was
// interrupted. It returns nil when the job succeeded; when ctx is
// cancelled because the job was cancelled, context.Cause(ctx) is
// ErrCancelled and the JobFunc should take back what it did.
type JobFunc func(ctx context.Context, r *Run) error

// A JobError is the error of a job that failed or was cancelled.
type JobError struct {
	ID, Kind string
	State    store.JobState
	Msg      string // the job's Error
}

func (e *JobError) Error() string {
	return fmt.Sprintf("job %s (%s) %s: %s", e.ID, e.Kind, e.State, e.Msg)
}

// Is makes a cancelled job's error match ErrCancelled.
func (e *JobError) Is(target error) bool {
	return target == ErrCancelled && e.State == store.JobCancelled
}

// Run is a job while a manager runs it. It is safe for concurrent use.
type Run struct {
	m      *Manager
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	job      store.Job
	lastSave time.Time
	dirty    bool
	step     string // the step running
}

// testHookProgress, set by tests only, sees every progress report.
var testHookProgress func(job, step string, frac float64)

// Job returns a copy of the job as it stands.
func (r *Run) Job() store.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.job
}

// Input decodes the job's input into v.
func (r *Run) Input(v any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := json.Unmarshal(r.job.Input, v); err != nil {
		return fmt.Errorf("job %s: input: %w", r.job.ID, err)
	}
	return nil
}

// SetResult records v as the job's result.
func (r *Run) SetResult(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.job.Result = b
	r.dirty = true
	r.mu.Unlock()
	return nil
}

// Progress sets the current step's progress, from 0 to 1; the job's
// progress is the share of its steps done. Updates are written at most a
// few times a second.
func (r *Run) Progress(frac float64) {
	r.setProgress(frac)
	r.mu.Lock()
	id, step := r.job.ID, r.step
	r.mu.Unlock()
	if testHookProgress != nil {
		testHookProgress(id, step, frac)
	}
	r.save(false)
}

// setProgress sets the job's progress from its steps and frac of the
// current one, without writing it.
func (r *Run) setProgress(frac float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, done := len(r.job.Steps), 0
	for _, s := range r.job.Steps {
		if s.State == store.JobSucceeded {
			done++
		}
	}
	if n > 0 {
		r.job.Progress = min(1, (float64(done)+min(max(frac, 0), 1))/float64(n))
	}
	r.dirty = true
}

// Log records a line in the manager's log with the job's ID and kind.
func (r *Run) Log(msg string, args ...any) {
	j := r.Job()
	r.m.log.Info(msg, append([]any{"job", j.ID, "kind", j.Kind}, args...)...)
}

// save writes the job when force or a while since the last write.
func (r *Run) save(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !force && (!r.dirty || time.Since(r.lastSave) < 300*time.Millisecond) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.m.cfg.CallTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		j, err := r.m.st.UpdateJob(ctx, r.job)
		if err == nil {
			r.job, r.dirty, r.lastSave = j, false, time.Now()
			r.m.notify(j.ID)
			return nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= 5 {
			return err
		}
		// A cancel request changed the version, or the job is no longer
		// this manager's.
		cur, err2 := r.m.st.Job(ctx, r.job.ID)
		if err2 != nil {
			return err
		}
		if cur.Owner != r.job.Owner || cur.State != store.JobRunning {
			r.cancel(errLost)
			return errLost
		}
		r.job.Version, r.job.CancelRequested = cur.Version, cur.CancelRequested
		if cur.CancelRequested {
			r.cancel(ErrCancelled)
		}
	}
}

// Do runs step name of r's job with fn, unless an earlier attempt of the
// job completed it: then it returns the result recorded then. resumed
// tells fn that an earlier attempt of the job may have started the step
// and not recorded its end (a crash, a lost lease, or a failure before a
// Retry): fn must then find out what of its work is done, and not do it
// twice. Steps are
// matched by name, which must be unique within the job.
func Do[T any](ctx context.Context, r *Run, name string, fn func(ctx context.Context, resumed bool) (T, error)) (T, error) {
	var zero T
	r.mu.Lock()
	i := -1
	for k := range r.job.Steps {
		if r.job.Steps[k].Name == name {
			i = k
			break
		}
	}
	if i < 0 {
		r.job.Steps = append(r.job.Steps, store.Step{Name: name, State: store.JobQueued})
		i = len(r.job.Steps) - 1
	}
	st := r.job.Steps[i]
	if st.State == store.JobSucceeded {
		r.mu.Unlock()
		var v T
		if len(st.Data) > 0 {
			if err := json.Unmarshal(st.Data, &v); err != nil {
				return zero, fmt.Errorf("step %s: recorded result: %w", name, err)
			}
		}
		return v, nil
	}
	// A step that an earlier attempt may have begun is resumed: the start
	// of a step is written lazily (with progress, at most a few times a
	// second; its end at once), so any step not recorded done counts once
	// the job was claimed before.
	resumed := st.State == store.JobRunning || st.State == store.JobFailed || r.job.Attempts > 1
	st.State, st.StartedAt, st.EndedAt, st.Error = store.JobRunning, r.m.cfg.Now(), time.Time{}, ""
	r.job.Steps[i] = st
	r.step = name
	r.dirty = true
	r.mu.Unlock()
	if err := r.save(false); err != nil {
		return zero, err
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	v, err := fn(ctx, resumed)
	r.mu.Lock()
	st = r.job.Steps[i]
	st.EndedAt = r.m.cfg.Now()
	if err != nil {
		st.State, st.Error = store.JobFailed, err.Error()
	} else {
		st.State = store.JobSucceeded
		b, merr := json.Marshal(v)
		if merr != nil {
			err = merr
		}
		st.Data = b
	}
	r.job.Steps[i] = st
	r.dirty = true
	r.mu.Unlock()
	r.setProgress(0)
	// A step's end is written before the next step begins: what a step
	// decided (the host a VM goes to) must not be decided again
	// differently after a crash.
	if serr := r.save(true); serr != nil && err == nil {
		err = serr
	}
	return v, err
}

// undone marks the succeeded steps for a retry to run again.
func (r *Run) undone() {
	r.mu.Lock()
	for i := range r.job.Steps {
		if r.job.Steps[i].State == store.JobSucceeded || r.job.Steps[i].State == store.JobRunning {
			r.job.Steps[i].State = StepUndone
		}
	}
	r.dirty = true
	r.mu.Unlock()
}

// Submit queues a job of kind (one of the manager's or of Config.Jobs)
// with input encoded as JSON, on behalf of user, and returns it. Steps,
// when given, name the steps to show before the job runs.
func (m *Manager) Submit(ctx context.Context, kind, user string, input any, steps ...string) (store.Job, error) {
	if _, ok := m.handlers[kind]; !ok {
		return store.Job{}, &store.OpError{Op: "submit", ID: kind, Err: fmt.Errorf("%w: no job kind %q", store.ErrInvalid, kind)}
	}
	b, err := json.Marshal(input)
	if err != nil {
		return store.Job{}, fmt.Errorf("vmm: submit %s: input: %w", kind, err)
	}
	j := store.Job{Kind: kind, User: user, Input: b}
	for _, s := range steps {
		j.Steps = append(j.Steps, store.Step{Name: s, State: store.JobQueued})
	}
	j, err = m.st.CreateJob(ctx, j)
	if err != nil {
		return j, err
	}
	m.wake()
	return j, nil
}

// Job returns a job by ID.
func (m *Manager) Job(ctx context.Context, id string) (store.Job, error) { return m.st.Job(ctx, id) }

// Jobs lists the jobs f selects, oldest first.
func (m *Manager) Jobs(ctx context.Context, f store.JobFilter) ([]store.Job, error) {
	return m.st.Jobs(ctx, f)
}

// Cancel asks job id to stop: a queued job is cancelled at once; a
// running one, on whichever manager, stops, takes back what it did and
// ends as cancelled. Wait for it with Wait.
func (m *Manager) Cancel(ctx context.Context, id string) (store.Job, error) {
	j, err := m.st.CancelJob(ctx, id)
	if err != nil {
		return j, err
	}
	m.mu.Lock()
	r := m.running[id]
	m.mu.Unlock()
	if r != nil {
		r.cancel(ErrCancelled)
	}
	m.notify(id)
	return j, nil
}

// Retry queues a failed or cancelled job again; it resumes from its first
// step that did not succeed (steps a failure took back run again).
func (m *Manager) Retry(ctx context.Context, id string) (store.Job, error) {
	j, err := m.st.RetryJob(ctx, id)
	if err == nil {
		m.wake()
		m.notify(id)
	}
	return j, err
}

// Watch yields job id as it is now and then each time it changes, until
// it ends (the last job yielded is final) or ctx is done (the sequence
// then ends without an error). Changes made by this manager are seen at
// once, those of other managers within Config.Poll.
func (m *Manager) Watch(ctx context.Context, id string) iter.Seq2[store.Job, error] {
	return func(yield func(store.Job, error) bool) {
		var last int64 = -1
		for {
			e := m.subscribe(id)
			next := m.watchJobOnce(ctx, id, e, &last, yield)
			m.unsubscribe(id, e)
			if !next {
				return
			}
		}
	}
}

// watchJobOnce reads job id, yields it if it changed, and waits for its next
// change; it reports whether to go on.
func (m *Manager) watchJobOnce(ctx context.Context, id string, e *watchEntry, last *int64, yield func(store.Job, error) bool) bool {
	j, err := m.st.Job(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			yield(store.Job{}, err)
		}
		return false
	}
	if j.Version != *last {
		*last = j.Version
		if !yield(j, nil) {
			return false
		}
	}
	if final(j.State) {
		return false
	}
	t := time.NewTimer(m.cfg.Poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-e.ch:
	case <-t.C:
	}
	return true
}

// Wait waits until job id ends and returns it: with a nil error when it
// succeeded, a *JobError when it failed or was cancelled, or ctx's error.
func (m *Manager) Wait(ctx context.Context, id string) (store.Job, error) {
	var last store.Job
	for j, err := range m.Watch(ctx, id) {
		if err != nil {
			return last, err
		}
		last = j
	}
	if err := ctx.Err(); err != nil && !final(last.State) {
		return last, err
	}
	if last.State != store.JobSucceeded {
		return last, &JobError{ID: last.ID, Kind: last.Kind, State: last.State, Msg: last.Error}
	}
	return last, nil
}

func final(s store.JobState) bool {
	return s == store.JobSucceeded || s == store.JobFailed || s == store.JobCancelled
}

// --- notifications within the process

// A watchEntry is the channel the watchers of one job wait on, closed at
// the job's next change, and how many watchers hold it.
type watchEntry struct {
	ch chan struct{}
	n  int
}

func (m *Manager) subscribe(id string) *watchEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.watch[id]
	if e == nil {
		e = &watchEntry{ch: make(chan struct{})}
		m.watch[id] = e
	}
	e.n++
	return e
}

// unsubscribe lets go of e: the last watcher of an entry still waited on
// removes it.
func (m *Manager) unsubscribe(id string, e *watchEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.n--
	if e.n == 0 && m.watch[id] == e {
		delete(m.watch, id)
	}
}

func (m *Manager) notify(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.watch[id]; e != nil {
		close(e.ch)
		delete(m.watch, id)
	}
}

// wake tells idle workers that a job was queued.
func (m *Manager) wake() {
	m.mu.Lock()
	defer m.mu.Unlock()
	close(m.wakeCh)
	m.wakeCh = make(chan struct{})
}

// --- workers

func (m *Manager) worker() {
	for m.ctx.Err() == nil {
		m.mu.Lock()
		woken := m.wakeCh
		m.mu.Unlock()
		j, err := m.st.ClaimJob(m.ctx, m.id, m.cfg.Lease, m.kinds...)
		if err == nil {
			m.run(j)
			continue
		}
		if !errors.Is(err, store.ErrNotFound) && m.ctx.Err() == nil {
			m.log.Warn("claiming a job", "err", err)
		}
		t := time.NewTimer(m.cfg.Poll)
		select {
		case <-m.ctx.Done():
		case <-woken:
		case <-t.C:
		}
		t.Stop()
	}
}

// run carries out one claimed job and records how it ended.
func (m *Manager) run(j store.Job) {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(m.ctx))
	defer cancel(nil)
	r := &Run{m: m, job: j, cancel: cancel, lastSave: time.Now()}
	m.mu.Lock()
	if m.running[j.ID] != nil {
		// This manager runs the job already: its lease ran out while the
		// store could not renew it (full, unreachable), and a worker of
		// the same manager claimed it again. The run under way goes on
		// under the new lease; a second one would do the work twice.
		m.mu.Unlock()
		m.log.Warn("claimed a job this manager runs already", "job", j.ID)
		return
	}
	m.running[j.ID] = r
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.running, j.ID)
		m.mu.Unlock()
	}()
	m.notify(j.ID)
	if j.CancelRequested {
		cancel(ErrCancelled)
	}
	keeperDone := make(chan struct{})
	var kwg sync.WaitGroup
	kwg.Go(func() { m.keep(r, j.ID, j.Owner, keeperDone) })

	err := m.call(ctx, r)
	close(keeperDone)
	kwg.Wait()

	cause := context.Cause(ctx)
	if errors.Is(cause, errLost) || errors.Is(err, errLost) {
		m.log.Warn("job taken over by another manager", "job", j.ID, "kind", j.Kind)
		return
	}
	r.mu.Lock()
	switch {
	case err == nil:
		r.job.State, r.job.Progress, r.job.Error = store.JobSucceeded, 1, ""
	case errors.Is(cause, ErrCancelled):
		r.job.State, r.job.Error = store.JobCancelled, "cancelled"
		if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrCancelled) {
			r.job.Error = "cancelled: " + err.Error()
		}
	case errors.Is(cause, errClosing):
		// Queued again for this or another manager to resume.
		r.job.State = store.JobQueued
		for i := range r.job.Steps {
			if r.job.Steps[i].State == store.JobFailed {
				r.job.Steps[i].State = store.JobRunning // interrupted, not failed
				r.job.Steps[i].Error = ""
			}
		}
	default:
		r.job.State, r.job.Error = store.JobFailed, err.Error()
	}
	r.dirty = true
	r.mu.Unlock()
	if err := r.save(true); err != nil {
		m.log.Error("recording the end of a job", "job", j.ID, "err", err)
	}
	jj := r.Job()
	m.log.Info("job ended", "job", j.ID, "kind", j.Kind, "state", jj.State, "error", jj.Error)
}

// call runs the job's handler, turning a panic into an error.
func (m *Manager) call(ctx context.Context, r *Run) (err error) {
	j := r.Job()
	defer func() {
		if p := recover(); p != nil {
			m.log.Error("job panicked", "job", j.ID, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error: %v", p)
		}
	}()
	h := m.handlers[j.Kind]
	return h(ctx, r)
}

// keep renews the job's lease, looks for a cancel request made elsewhere,
// and stops the job when the manager closes.
func (m *Manager) keep(r *Run, id, owner string, done <-chan struct{}) {
	renew := time.NewTicker(m.cfg.Lease / 3)
	defer renew.Stop()
	poll := time.NewTicker(m.cfg.Poll)
	defer poll.Stop()
	for {
		select {
		case <-done:
			return
		case <-m.ctx.Done():
			r.cancel(errClosing)
			return
		case <-renew.C:
			c, cancel := context.WithTimeout(context.Background(), m.cfg.Lease/3)
			_, err := m.st.RenewLease(c, id, owner, m.cfg.Lease)
			cancel()
			if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
				r.cancel(errLost)
				return
			}
			if err != nil {
				m.log.Warn("renewing a job's lease", "job", id, "err", err)
			}
		case <-poll.C:
			c, cancel := context.WithTimeout(context.Background(), m.cfg.Poll)
			j, err := m.st.Job(c, id)
			cancel()
			if err == nil && j.CancelRequested {
				r.cancel(ErrCancelled)
			}
		}
	}
}
