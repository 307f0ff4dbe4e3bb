package task_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/coredb"
	"finepay/intranet-core/internal/task"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func setup(t *testing.T, db *sqldb.DB, handlers map[string]task.Handler) (*task.Runner, *clock) {
	t.Helper()
	sqltest.Must(t, coredb.Migrate(context.Background(), db))
	clk := &clock{t: time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)}
	r := task.NewRunner(task.Config{DB: db, Handlers: handlers, Now: clk.Now, Jitter: func() float64 { return 0.5 }})
	return r, clk
}

func enqueue(t *testing.T, db *sqldb.DB, now time.Time, specs ...task.Spec) {
	t.Helper()
	sqltest.Must(t, db.Tx(context.Background(), func(tx *sql.Tx) error {
		for _, s := range specs {
			if _, err := task.Enqueue(context.Background(), tx, now, s); err != nil {
				return err
			}
		}
		return nil
	}))
}

func one(t *testing.T, db *sqldb.DB) task.Row {
	t.Helper()
	rows, err := task.List(context.Background(), db, "")
	sqltest.Must(t, err)
	if len(rows) != 1 {
		t.Fatalf("%d tasks, want 1", len(rows))
	}
	return rows[0]
}

func TestTaskEnqueueIsIdempotent(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		_, clk := setup(t, db, nil)
		s := task.Spec{Kind: "k", Key: "a", RequestID: "k-a", Payload: map[string]int{"n": 1}}
		enqueue(t, db, clk.Now(), s)
		s.Payload = map[string]int{"n": 2}
		enqueue(t, db, clk.Now(), s)
		if r := one(t, db); r.Payload != `{"n":1}` || r.Status != task.StatusPending {
			t.Fatalf("task %+v", r)
		}
	})
}

func TestTaskRetriesWithBackoffUntilDone(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		var seen []task.Task
		var finishedAt time.Time
		r, clk := setup(t, db, map[string]task.Handler{"k": func(ctx context.Context, tk task.Task) (task.Finish, error) {
			seen = append(seen, tk)
			if len(seen) < 3 {
				return nil, errors.New("partner down")
			}
			return func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (component, version, name, applied_at) VALUES ('finish', 1, 'x', $1)`, finishedAt)
				return err
			}, nil
		}})
		finishedAt = clk.Now()
		enqueue(t, db, clk.Now(), task.Spec{Kind: "k", Key: "a", RequestID: "k-a", Payload: 1})

		// Backoff with jitter 0.5: 2 s·2^(n−1) · 0.75.
		for i, wait := range []time.Duration{1500 * time.Millisecond, 3 * time.Second} {
			if n, err := r.RunDue(ctx); err != nil || n != 1 {
				t.Fatalf("round %d: RunDue = %d, %v", i, n, err)
			}
			row := one(t, db)
			if row.Status != task.StatusPending || row.Attempts != i+1 || row.LastError != "partner down" {
				t.Fatalf("round %d: %+v", i, row)
			}
			if got := row.NextRunAt.Sub(clk.Now()); got != wait {
				t.Fatalf("round %d: next run in %s, want %s", i, got, wait)
			}
			clk.Advance(wait - time.Millisecond)
			if n, _ := r.RunDue(ctx); n != 0 {
				t.Fatalf("round %d: ran before its time", i)
			}
			clk.Advance(time.Millisecond)
		}
		if n, err := r.RunDue(ctx); err != nil || n != 1 {
			t.Fatalf("last round: %d, %v", n, err)
		}
		if row := one(t, db); row.Status != task.StatusDone || row.Attempts != 3 {
			t.Fatalf("task %+v", row)
		}
		var finished int
		sqltest.Must(t, db.QueryRow(`SELECT count(*) FROM schema_migrations WHERE component = 'finish'`).Scan(&finished))
		if finished != 1 {
			t.Fatal("finish did not run in the completing transaction")
		}
		for _, s := range seen {
			if s.RequestID != "k-a" {
				t.Errorf("attempt %d request id %q", s.Attempt, s.RequestID)
			}
		}
	})
}

func TestTaskBackoffIsCapped(t *testing.T) {
	r := task.NewRunner(task.Config{Jitter: func() float64 { return 0.999999 }})
	for n := 1; n < 100; n++ {
		if d := r.Backoff(n); d > 10*time.Minute || d <= 0 {
			t.Fatalf("Backoff(%d) = %s", n, d)
		}
	}
	if d := r.Backoff(40); d < 5*time.Minute {
		t.Fatalf("Backoff(40) = %s, want near the cap", d)
	}
}

func TestTaskPermanentErrorMakesItDead(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		r, clk := setup(t, db, map[string]task.Handler{"k": func(context.Context, task.Task) (task.Finish, error) {
			return nil, task.Permanent(errors.New("404 no such form"))
		}})
		enqueue(t, db, clk.Now(), task.Spec{Kind: "k", Key: "a", RequestID: "k-a", Payload: 1})
		r.RunDue(context.Background())
		clk.Advance(time.Hour)
		r.RunDue(context.Background())
		if row := one(t, db); row.Status != task.StatusDead || row.Attempts != 1 {
			t.Fatalf("task %+v", row)
		}
	})
}

func TestTaskExpiredLeaseIsClaimedAgain(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		var runs atomic.Int32
		r, clk := setup(t, db, map[string]task.Handler{"k": func(context.Context, task.Task) (task.Finish, error) {
			runs.Add(1)
			return nil, nil
		}})
		enqueue(t, db, clk.Now(), task.Spec{Kind: "k", Key: "a", RequestID: "k-a", Payload: 1})
		// A worker claimed it and crashed: running, lease until one minute from now.
		_, err := db.ExecContext(ctx, `UPDATE tasks SET status = 'running', attempts = 1, claim_token = 'dead-worker', lease_until = $1`, clk.Now().Add(time.Minute))
		sqltest.Must(t, err)
		if n, _ := r.RunDue(ctx); n != 0 {
			t.Fatal("a task under a live lease was claimed")
		}
		clk.Advance(time.Minute)
		if n, err := r.RunDue(ctx); n != 1 || err != nil {
			t.Fatalf("RunDue = %d, %v", n, err)
		}
		if row := one(t, db); row.Status != task.StatusDone || row.Attempts != 2 || runs.Load() != 1 {
			t.Fatalf("task %+v after %d runs", row, runs.Load())
		}
		// The crashed worker's late completion changes nothing.
		res, err := db.ExecContext(ctx, `UPDATE tasks SET status = 'done' WHERE claim_token = 'dead-worker' AND status = 'running'`)
		sqltest.Must(t, err)
		if n, _ := res.RowsAffected(); n != 0 {
			t.Fatal("stale claim token still matches")
		}
	})
}

func TestTaskWorkersRunEachTaskOnce(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		const n = 40
		var mu sync.Mutex
		count := map[string]int{}
		done := make(chan struct{}, n)
		sqltest.Must(t, coredb.Migrate(context.Background(), db))
		r := task.NewRunner(task.Config{DB: db, Workers: 4, Poll: 10 * time.Millisecond,
			Handlers: map[string]task.Handler{"k": func(_ context.Context, tk task.Task) (task.Finish, error) {
				mu.Lock()
				count[tk.Key]++
				mu.Unlock()
				return nil, nil
			}},
			Observe: func(task.Task, string, error) { done <- struct{}{} }})
		var specs []task.Spec
		for i := range n {
			specs = append(specs, task.Spec{Kind: "k", Key: fmt.Sprint(i), RequestID: fmt.Sprint("k-", i), Payload: i})
		}
		enqueue(t, db, time.Now(), specs...)
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() { r.Run(ctx); close(stopped) }()
		r.Wake()
		deadline := time.After(30 * time.Second)
		for i := 0; i < n; i++ {
			select {
			case <-done:
			case <-deadline:
				t.Fatalf("only %d of %d tasks ran", i, n)
			}
		}
		cancel()
		<-stopped
		for k, c := range count {
			if c != 1 {
				t.Errorf("task %s ran %d times", k, c)
			}
		}
		rows, _ := task.List(context.Background(), db, "k")
		for _, row := range rows {
			if row.Status != task.StatusDone {
				t.Errorf("task %s %s", row.Key, row.Status)
			}
		}
	})
}
