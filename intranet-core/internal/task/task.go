// Package task runs the core's durable tasks: every call to an outside party (report a payment
// to the non-tax system, report a result to the window platform, issue an e-receipt) is a row in
// the tasks table, written in the same transaction as the business change that needs it, and
// run by a pool of workers until it succeeds.
//
// A worker claims one due task at a time (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's single
// writer serialises claims) and holds it under a lease; a worker that crashes leaves a lease
// that runs out, and the task is claimed again. A failed attempt is retried after an
// exponential backoff with jitter (capped at MaxDelay) stored in next_run_at, so the schedule
// survives restarts. An error marked Permanent, or MaxAttempts attempts, make the task dead
// (kept for an operator, never deleted). Each task carries a request ID fixed at enqueue time
// that every attempt sends, so a partner sees one logical request however often it is retried.
//
// A handler may return a Finish function: it runs in the transaction that marks the task
// done, so that the task's result (a receipt, an outbox message) is stored exactly when the task
// is completed, and not at all when a worker lost its lease in between.
package task

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/sqldb"
)

// Statuses of a task.
const (
	StatusPending = "pending"
	StatusRunning = "running"
	StatusDone    = "done"
	StatusDead    = "dead"
)

// Results of an attempt, the result label of core_tasks_total.
const (
	ResultDone  = "done"
	ResultRetry = "retry"
	ResultDead  = "dead"
)

// Task is one durable task as a handler sees it.
type Task struct {
	ID        int64
	Kind      string
	Key       string
	RequestID string
	Payload   []byte // JSON
	Attempt   int    // 1 for the first attempt
}

// Decode unmarshals the payload into v.
func (t Task) Decode(v any) error {
	if err := json.Unmarshal(t.Payload, v); err != nil {
		return fmt.Errorf("task %s/%s: payload: %w", t.Kind, t.Key, err)
	}
	return nil
}

// Finish runs in the transaction that marks a task done.
type Finish func(ctx context.Context, tx *sql.Tx) error

// Handler runs one attempt of a task.
type Handler func(ctx context.Context, t Task) (Finish, error)

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that retrying cannot fix: the task becomes dead.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Spec describes a task to enqueue.
type Spec struct {
	Kind      string
	Key       string // unique per kind: the business fact the task is about
	RequestID string // sent on every attempt; 1–64 of [A-Za-z0-9_-]
	Payload   any    // encoded as JSON
}

// Enqueue adds a task in tx, due at now. A task of the same kind and key already queued is left
// as it is, and Enqueue reports false.
func Enqueue(ctx context.Context, tx *sql.Tx, now time.Time, s Spec) (bool, error) {
	if s.Kind == "" || s.Key == "" || s.RequestID == "" {
		return false, errors.New("task: kind, key and request id are required")
	}
	p, err := json.Marshal(s.Payload)
	if err != nil {
		return false, fmt.Errorf("task: payload of %s/%s: %w", s.Kind, s.Key, err)
	}
	now = now.UTC()
	r, err := tx.ExecContext(ctx, `INSERT INTO tasks (kind, task_key, request_id, payload, status, attempts, next_run_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $6) ON CONFLICT (kind, task_key) DO NOTHING`,
		s.Kind, s.Key, s.RequestID, string(p), StatusPending, now)
	if err != nil {
		return false, fmt.Errorf("task: enqueue %s/%s: %w", s.Kind, s.Key, err)
	}
	n, _ := r.RowsAffected()
	return n == 1, nil
}

// Row is a task as stored, for consoles and tests.
type Row struct {
	ID        int64
	Kind      string
	Key       string
	RequestID string
	Payload   string
	Status    string
	Attempts  int
	NextRunAt time.Time
	LastError string
}

// List returns the tasks of a kind (all kinds when kind is empty), oldest first.
func List(ctx context.Context, db *sqldb.DB, kind string) ([]Row, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, kind, task_key, request_id, payload, status, attempts, next_run_at, last_error
		FROM tasks WHERE ($1 = '' OR kind = $1) ORDER BY id`, kind)
	if err != nil {
		return nil, fmt.Errorf("task: list: %w", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		if err := rows.Scan(&r.ID, &r.Kind, &r.Key, &r.RequestID, &r.Payload, &r.Status, &r.Attempts, &r.NextRunAt, &r.LastError); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Config configures a Runner.
type Config struct {
	DB       *sqldb.DB
	Handlers map[string]Handler // by kind
	Workers  int                // concurrent workers; 4 when zero
	Lease    time.Duration      // how long a claim holds; 2 min when zero
	// AttemptTimeout bounds one attempt; it must be shorter than Lease. 60 s when zero.
	AttemptTimeout time.Duration
	BaseDelay      time.Duration // backoff after the first failure; 2 s when zero
	MaxDelay       time.Duration // backoff cap; 10 min when zero
	MaxAttempts    int           // attempts before a task is dead; 200 when zero
	Poll           time.Duration // how often idle workers look for due tasks; 500 ms when zero
	Now            func() time.Time
	Jitter         func() float64 // uniform in [0, 1); math/rand/v2 when nil
	Logger         *slog.Logger
	Registry       prometheus.Registerer
	// Observe, when set, is called after every attempt with its result (done, retry, dead):
	// the signal tests wait on instead of sleeping.
	Observe func(t Task, result string, err error)
}

// Runner claims and runs due tasks.
type Runner struct {
	cfg   Config
	wake  chan struct{}
	total *prometheus.CounterVec
}

// NewRunner returns a runner. Its metrics core_tasks_total{kind,result} and
// core_tasks_pending{kind} are registered with cfg.Registry when given.
func NewRunner(cfg Config) *Runner {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 60 * time.Second
	}
	if cfg.AttemptTimeout >= cfg.Lease {
		cfg.AttemptTimeout = cfg.Lease / 2
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = 2 * time.Second
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 10 * time.Minute
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 200
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = mrand.Float64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{cfg: cfg, wake: make(chan struct{}, 1)}
	r.total = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "core_tasks_total", Help: "Attempts of durable tasks, by kind and result (done, retry, dead)."}, []string{"kind", "result"})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(r.total, &pendingCollector{db: cfg.DB})
	}
	return r
}

// Wake makes an idle worker look for due tasks now.
func (r *Runner) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run runs the workers until ctx ends, and waits for them.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Go(func() { r.worker(ctx) })
	}
	wg.Wait()
	return nil
}

func (r *Runner) worker(ctx context.Context) {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for ctx.Err() == nil {
		ran, err := r.RunOne(ctx)
		if err != nil && ctx.Err() == nil {
			r.cfg.Logger.Error("task: claim", "err", err)
		}
		if ran {
			continue
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-r.wake:
		}
	}
}

// RunDue runs due tasks one after another until none is due, and returns how many attempts it
// made. Tests and one-shot tools use it; services use Run.
func (r *Runner) RunDue(ctx context.Context) (int, error) {
	n := 0
	for {
		ran, err := r.RunOne(ctx)
		if err != nil || !ran {
			return n, err
		}
		n++
	}
}

// RunOne claims one due task and runs one attempt of it. It reports whether there was one.
func (r *Runner) RunOne(ctx context.Context) (bool, error) {
	t, token, err := r.claim(ctx)
	if err != nil || t == nil {
		return false, err
	}
	r.attempt(ctx, *t, token)
	return true, nil
}

func newToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// claim takes the oldest due task: pending and due, or running with its lease run out.
func (r *Runner) claim(ctx context.Context) (*Task, string, error) {
	var (
		t     *Task
		token = newToken()
	)
	db := r.cfg.DB
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		t = nil
		now := r.cfg.Now().UTC()
		var c Task
		var payload string
		err := tx.QueryRowContext(ctx, `SELECT id, kind, task_key, request_id, payload, attempts FROM tasks
			WHERE (status = 'pending' AND next_run_at <= $1) OR (status = 'running' AND lease_until <= $1)
			ORDER BY next_run_at, id LIMIT 1`+db.SkipLocked(), now).Scan(&c.ID, &c.Kind, &c.Key, &c.RequestID, &payload, &c.Attempt)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		c.Attempt++
		c.Payload = []byte(payload)
		if _, err := tx.ExecContext(ctx, `UPDATE tasks SET status = 'running', attempts = $2, lease_until = $3, claim_token = $4, updated_at = $5 WHERE id = $1`,
			c.ID, c.Attempt, now.Add(r.cfg.Lease), token, now); err != nil {
			return err
		}
		t = &c
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("task: claim: %w", err)
	}
	return t, token, nil
}

// errLostLease: another worker claimed the task while this attempt ran.
var errLostLease = errors.New("task: lease lost")

func (r *Runner) attempt(ctx context.Context, t Task, token string) {
	log := r.cfg.Logger.With("task_id", t.ID, "kind", t.Kind, "key", t.Key, "attempt", t.Attempt)
	var (
		finish Finish
		err    error
	)
	h, ok := r.cfg.Handlers[t.Kind]
	if !ok {
		err = Permanent(fmt.Errorf("task: no handler for kind %q", t.Kind))
	} else {
		actx, cancel := context.WithTimeout(ctx, r.cfg.AttemptTimeout)
		finish, err = h(actx, t)
		cancel()
	}
	// Record the outcome even when ctx was cancelled mid-attempt (shutdown).
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err == nil {
		err = r.complete(sctx, t, token, finish)
		if err == nil {
			r.observe(t, ResultDone, nil)
			log.Info("task done")
			return
		}
		if errors.Is(err, errLostLease) {
			log.Warn("task attempt finished after its lease ran out; result discarded")
			return
		}
	}
	if ctx.Err() != nil && !IsPermanent(err) {
		// Shutting down: give the task back without counting the attempt against it.
		if _, e := r.cfg.DB.ExecContext(sctx, `UPDATE tasks SET status = 'pending', attempts = attempts - 1, lease_until = NULL, next_run_at = $3, updated_at = $3
			WHERE id = $1 AND claim_token = $2 AND status = 'running'`, t.ID, token, r.cfg.Now().UTC()); e != nil {
			log.Error("task: release", "err", e)
		}
		return
	}
	r.fail(sctx, log, t, token, err)
}

func (r *Runner) complete(ctx context.Context, t Task, token string, finish Finish) error {
	return r.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		now := r.cfg.Now().UTC()
		res, err := tx.ExecContext(ctx, `UPDATE tasks SET status = 'done', lease_until = NULL, last_error = '', done_at = $3, updated_at = $3
			WHERE id = $1 AND claim_token = $2 AND status = 'running'`, t.ID, token, now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errLostLease
		}
		if finish != nil {
			return finish(ctx, tx)
		}
		return nil
	})
}

// Backoff is the delay before attempt n+1 after n failed attempts: BaseDelay·2^(n−1), capped
// at MaxDelay, of which the second half is jitter.
func (r *Runner) Backoff(n int) time.Duration {
	d := r.cfg.BaseDelay << min(max(n-1, 0), 30)
	if d <= 0 || d > r.cfg.MaxDelay {
		d = r.cfg.MaxDelay
	}
	half := d / 2
	return half + time.Duration(r.cfg.Jitter()*float64(d-half))
}

func (r *Runner) fail(ctx context.Context, log *slog.Logger, t Task, token string, err error) {
	now := r.cfg.Now().UTC()
	status, result := StatusPending, ResultRetry
	next := now.Add(r.Backoff(t.Attempt))
	if IsPermanent(err) || t.Attempt >= r.cfg.MaxAttempts {
		status, result = StatusDead, ResultDead
		next = now
	}
	msg := err.Error()
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	_, uerr := r.cfg.DB.ExecContext(ctx, `UPDATE tasks SET status = $3, lease_until = NULL, next_run_at = $4, last_error = $5, updated_at = $6
		WHERE id = $1 AND claim_token = $2 AND status = 'running'`, t.ID, token, status, next, msg, now)
	if uerr != nil {
		log.Error("task: record failure", "err", uerr)
	}
	if result == ResultDead {
		log.Error("task dead; needs an operator", "err", err)
	} else {
		log.Warn("task attempt failed; will retry", "retry_at", next, "err", err)
	}
	r.observe(t, result, err)
}

func (r *Runner) observe(t Task, result string, err error) {
	r.total.WithLabelValues(t.Kind, result).Inc()
	if r.cfg.Observe != nil {
		r.cfg.Observe(t, result, err)
	}
}

type pendingCollector struct{ db *sqldb.DB }

var pendingDesc = prometheus.NewDesc("core_tasks_pending", "Durable tasks not yet done (pending or running), by kind.", []string{"kind"}, nil)

func (p *pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- pendingDesc }

func (p *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := p.db.QueryContext(ctx, `SELECT kind, count(*) FROM tasks WHERE status IN ('pending', 'running') GROUP BY kind`)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(pendingDesc, err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var kind string
		var n int64
		if rows.Scan(&kind, &n) == nil {
			ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(n), kind)
		}
	}
}
