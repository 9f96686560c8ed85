package vmm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/pgtest"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// helperEnv tells TestHelperManagerProcess what to do in a child process:
// "failover" (runFailoverChild) or "crash" (runCrashChild). The rest of
// the child's settings come in variables named helperEnv + "_...".
const helperEnv = "VMM_TEST_HELPER"

// TestHelperManagerProcess is not a test: it is a manager that the tests
// of this file and crash_test.go run in a child process (re-executing the
// test binary) so that they can kill it. It returns at once unless
// helperEnv is set.
func TestHelperManagerProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		return
	case "failover":
		runFailoverChild(t)
	case "crash":
		runCrashChild(t)
	case "p2v":
		runP2VChild(t)
	default:
		t.Fatalf("%s=%q: unknown", helperEnv, os.Getenv(helperEnv))
	}
}

// helperProcess is a child process running TestHelperManagerProcess.
type helperProcess struct {
	name string
	cmd  *exec.Cmd
	log  string // its output
	done chan struct{}
	err  error // set when done is closed
}

// startHelper starts TestHelperManagerProcess in a child process with
// env added to the environment; the child is killed when t ends.
func startHelper(t *testing.T, name string, env ...string) *helperProcess {
	t.Helper()
	p := &helperProcess{name: name, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	require.NoError(t, err)
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperManagerProcess$", "-test.v", "-test.count=1")
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		<-p.done
		if t.Failed() {
			p.dump(t)
		}
	})
	return p
}

// kill sends SIGKILL to the child: it stops where it is, as in a crash.
func (p *helperProcess) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
}

// exited reports whether the child ended.
func (p *helperProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// dump logs the end of the child's output.
func (p *helperProcess) dump(t *testing.T) {
	b, _ := os.ReadFile(p.log)
	const max = 8000
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	t.Logf("output of child %s (%s; %v):\n%s", p.name, p.log, p.err, b)
}

// childLogger logs to the child's stderr, which the parent keeps in a file.
func childLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

const (
	failoverJobs   = 200
	effectKind     = "effect"
	effectsTable   = `CREATE TABLE effects (job_id TEXT NOT NULL, instance TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT now())`
	failoverLease  = 2 * time.Second
	failoverPoll   = 100 * time.Millisecond
	failoverBudget = 2 * time.Minute
)

// effectResult is the result of an effect job and of its step.
type effectResult struct {
	Instance string `json:"instance"`          // who ran the job to its end
	Found    bool   `json:"found,omitempty"`   // the effect was recorded by an earlier attempt
	Resumed  bool   `json:"resumed,omitempty"` // the step was resumed
}

// effectJob is the job kind of TestTwoManagersFailover: one step that
// records an effect in the table effects, once, however many times the
// job is run.
//
// With stallAt above zero, the manager's stallAt-th effect is followed by
// a stall (and marker written): the parent kills it there, holding a job
// whose effect is recorded and whose step is not.
func effectJob(db *pgxpool.Pool, instance string, stallAt int64, marker string) vmm.JobFunc {
	var done atomic.Int64
	return func(ctx context.Context, r *vmm.Run) error {
		id := r.Job().ID
		res, err := vmm.Do(ctx, r, "effect", func(ctx context.Context, resumed bool) (effectResult, error) {
			res := effectResult{Instance: instance, Resumed: resumed}
			if resumed {
				// An earlier attempt started the step: did it record the
				// effect before it died?
				var n int
				if err := db.QueryRow(ctx, `SELECT count(*) FROM effects WHERE job_id = $1`, id).Scan(&n); err != nil {
					return res, err
				}
				if n > 0 {
					res.Found = true
					return res, nil
				}
			}
			if err := sleepCtx(ctx, 50+rand.N(50*time.Millisecond)); err != nil {
				return res, err
			}
			if _, err := db.Exec(ctx, `INSERT INTO effects (job_id, instance) VALUES ($1, $2)`, id, instance); err != nil {
				return res, err
			}
			if stallAt > 0 && done.Add(1) == stallAt {
				if err := os.WriteFile(marker, []byte(id), 0o600); err != nil {
					return res, err
				}
				select {} // until killed
			}
			// Some more work after the effect, which widens the window
			// in which a crash leaves the effect done and the step not.
			return res, sleepCtx(ctx, 50+rand.N(50*time.Millisecond))
		})
		if err != nil {
			return err
		}
		res.Instance = instance
		return r.SetResult(res)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// runFailoverChild is a manager of TestTwoManagersFailover: it runs effect
// jobs until every job of the store ended (or it is killed).
func runFailoverChild(t *testing.T) {
	dsn, instance := os.Getenv(helperEnv+"_DSN"), os.Getenv(helperEnv+"_INSTANCE")
	stallAt, _ := strconv.ParseInt(os.Getenv(helperEnv+"_STALL_AT"), 10, 64)
	marker := os.Getenv(helperEnv + "_MARKER")
	require.NotEmpty(t, dsn)
	require.NotEmpty(t, instance)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // in case the parent is gone
	defer cancel()
	db, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	defer db.Close()
	m, err := vmm.New(vmm.Config{
		PostgresDSN: dsn, Instance: instance, Workers: 4, Lease: failoverLease, Poll: failoverPoll,
		Jobs:   map[string]vmm.JobFunc{effectKind: effectJob(db, instance, stallAt, marker)},
		Logger: childLogger(),
	})
	require.NoError(t, err)
	defer m.Close()
	for {
		jobs, err := m.Jobs(ctx, store.JobFilter{Kind: effectKind})
		require.NoError(t, err)
		left := 0
		for _, j := range jobs {
			if j.State == store.JobQueued || j.State == store.JobRunning {
				left++
			}
		}
		if len(jobs) >= failoverJobs && left == 0 {
			fmt.Fprintf(os.Stderr, "child %s: all %d jobs ended\n", instance, len(jobs))
			return
		}
		require.NoError(t, sleepCtx(ctx, 200*time.Millisecond), "child %s: jobs left: %d", instance, left)
	}
}

// Two managers on one PostgreSQL run 200 jobs between them with each job
// run exactly once, and one of them killed half-way: the jobs it held are
// resumed by the other after their lease, and a step that was interrupted
// after its effect does not do it again.
func TestTwoManagersFailover(t *testing.T) {
	dsn := pgtest.FreshDB(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), failoverBudget)
	defer cancel()

	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, effectsTable)
	require.NoError(t, err)

	// A front end that only queues.
	front, err := vmm.New(vmm.Config{
		PostgresDSN: dsn, Instance: "front", NoJobs: true, Lease: failoverLease, Poll: failoverPoll,
		Jobs: map[string]vmm.JobFunc{effectKind: func(context.Context, *vmm.Run) error {
			t.Error("the front end ran a job")
			return nil
		}},
	})
	require.NoError(t, err)
	defer front.Close()
	ids := make([]string, 0, failoverJobs)
	for i := range failoverJobs {
		j, err := front.Submit(ctx, effectKind, "test", map[string]int{"n": i})
		require.NoError(t, err)
		ids = append(ids, j.ID)
	}

	env := func(instance string) []string {
		return []string{helperEnv + "=failover", helperEnv + "_DSN=" + dsn, helperEnv + "_INSTANCE=" + instance}
	}
	marker := filepath.Join(t.TempDir(), "A-stalled")
	a := startHelper(t, "A", append(env("A"), helperEnv+"_STALL_AT="+strconv.Itoa(failoverJobs/4), helperEnv+"_MARKER="+marker)...)
	b := startHelper(t, "B", env("B")...)

	count := func(q string, args ...any) int {
		var n int
		require.NoError(t, conn.QueryRow(ctx, q, args...).Scan(&n), q)
		return n
	}
	// Kill A after its 50th effect, which it follows by a stall: it holds
	// that job with the effect recorded and the step not (the window
	// idempotence is for), and about half the jobs are done.
	for {
		require.False(t, a.exited(), "child A ended before it was killed")
		require.False(t, b.exited(), "child B ended early")
		require.NoError(t, ctx.Err(), "waiting for A to stall")
		if _, err := os.Stat(marker); err == nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	a.kill()
	<-a.done
	killedAt := time.Now()
	effectsAtKill := count(`SELECT count(*) FROM effects`)

	// The jobs A held when it died.
	running, err := front.Jobs(ctx, store.JobFilter{State: store.JobRunning, Kind: effectKind})
	require.NoError(t, err)
	held := map[string]bool{}
	for _, j := range running {
		if j.Owner == "A" {
			held[j.ID] = true
		}
	}
	require.NotEmpty(t, held, "A held no job when killed")
	var heldIDs []string
	for id := range held {
		heldIDs = append(heldIDs, id)
	}
	heldWithEffect := count(`SELECT count(DISTINCT job_id) FROM effects WHERE instance = 'A' AND job_id = ANY($1)`, heldIDs)
	t.Logf("A killed %v after start with %d effects recorded; it held %d jobs, %d of them with their effect recorded",
		killedAt.Sub(start).Round(time.Millisecond), effectsAtKill, len(held), heldWithEffect)

	// Every job ends, by B.
	for _, id := range ids {
		j, err := front.Wait(ctx, id)
		require.NoError(t, err, "job %s (held by A: %v)", id, held[id])
		assert.Equal(t, store.JobSucceeded, j.State)
	}
	allDone := time.Now()
	select {
	case <-b.done:
	case <-ctx.Done():
		t.Fatal("child B did not end after all jobs did")
	}
	require.NoError(t, b.err, "child B")
	t.Logf("all %d jobs succeeded %v after the kill (%v in all)", failoverJobs,
		allDone.Sub(killedAt).Round(time.Millisecond), allDone.Sub(start).Round(time.Millisecond))

	// Each job has exactly one effect, and each manager did some.
	rows, err := conn.Query(ctx, `SELECT job_id, count(*), min(instance), max(instance) FROM effects GROUP BY job_id`)
	require.NoError(t, err)
	type effects struct {
		n        int
		from, to string
	}
	byJob := map[string]effects{}
	for rows.Next() {
		var id string
		var e effects
		require.NoError(t, rows.Scan(&id, &e.n, &e.from, &e.to))
		byJob[id] = e
	}
	require.NoError(t, rows.Err())
	perInstance := map[string]int{}
	for _, id := range ids {
		e := byJob[id]
		assert.Equal(t, 1, e.n, "effects of job %s (held by A: %v; by %s..%s)", id, held[id], e.from, e.to)
		if e.n > 0 {
			perInstance[e.from]++
		}
	}
	assert.Len(t, byJob, failoverJobs, "jobs with effects")
	assert.Positive(t, perInstance["A"], "effects of A")
	assert.Positive(t, perInstance["B"], "effects of B")
	t.Logf("effects: A %d, B %d", perInstance["A"], perInstance["B"])

	// The jobs A held were resumed and finished by B, on their second
	// claim; those whose effect A had recorded were not done again.
	for id := range held {
		j, err := front.Job(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, 2, j.Attempts, "claims of job %s held by A", id)
		var res effectResult
		require.NoError(t, json.Unmarshal(j.Result, &res), "result of job %s", id)
		assert.Equal(t, "B", res.Instance, "who finished job %s held by A", id)
		require.Len(t, j.Steps, 1)
		var step effectResult
		require.NoError(t, json.Unmarshal(j.Steps[0].Data, &step))
		if step.Instance == "A" {
			// A recorded the step's end before it died: B did not run it.
			assert.Equal(t, "A", byJob[id].from, "job %s: the step A ended made A's effect", id)
			continue
		}
		assert.True(t, step.Resumed, "job %s: B ran a step A had begun: resumed", id)
		assert.Equal(t, byJob[id].from == "A", step.Found, "job %s: the resumed step found A's effect", id)
	}
	assert.Positive(t, heldWithEffect, "jobs A held with their effect recorded: the kill did not test idempotence")
	// The others were claimed once.
	for _, id := range ids {
		if held[id] {
			continue
		}
		j, err := front.Job(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, 1, j.Attempts, "claims of job %s", id)
	}
}
