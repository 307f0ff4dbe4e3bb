package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"finepay/ferry/internal/fixture"
	"finepay/ferry/outbox"
	"finepay/ferry/schema"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/shared/envelope"
)

// A lane that holds its bound of unacknowledged messages refuses the next one with
// ErrBackpressure, queues nothing, counts the refusal, and takes messages again once the peer
// acknowledged some.
func TestPutRefusesWhenBacklogFull(t *testing.T) {
	db := fixture.DB(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	ob := outbox.New(1, outbox.WithMaxBacklog(3), outbox.WithRegistry(reg))
	put := func(e envelope.Envelope) (outbox.Placed, error) {
		var placed outbox.Placed
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			var err error
			placed, err = ob.Put(ctx, tx, e)
			return err
		})
		return placed, err
	}
	for i := 1; i <= 3; i++ {
		if p, err := put(fixture.Bill(t, i)); err != nil || p.Seq != int64(i) {
			t.Fatalf("put %d: %+v %v", i, p, err)
		}
	}
	_, err := put(fixture.Bill(t, 4))
	if !errors.Is(err, outbox.ErrBackpressure) {
		t.Fatalf("put over the bound: %v, want ErrBackpressure", err)
	}
	lanes, err := outbox.Lanes(ctx, db)
	if err != nil || len(lanes) != 1 || lanes[0].LastSeq != 3 || lanes[0].Backlog() != 3 {
		t.Fatalf("lanes after refusal: %+v %v", lanes, err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM ferry_outbox`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d rows queued (%v), want 3", n, err)
	}
	want := `# HELP ferry_outbox_backpressure_total Messages refused by outbox.Put because their lane's backlog was full (the producer was told to retry), by lane.
# TYPE ferry_outbox_backpressure_total counter
ferry_outbox_backpressure_total{lane="` + lanes[0].Lane + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ferry_outbox_backpressure_total"); err != nil {
		t.Fatal(err)
	}

	sqltest.Must(t, outbox.Sent(ctx, db, lanes[0].Lane, 2))
	if _, err := outbox.Ack(ctx, db, lanes[0].Lane, 2, time.Now()); err != nil {
		t.Fatal(err)
	}
	if p, err := put(fixture.Bill(t, 4)); err != nil || p.Seq != 4 {
		t.Fatalf("put after the peer caught up: %+v %v", p, err)
	}
}

// The default bound is DefaultMaxBacklog; services that call New(lanes) keep working.
func TestDefaultBacklogBound(t *testing.T) {
	db := fixture.DB(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `SELECT setval('"ferry_lane_seq:to-gateway.0"', $1)`, outbox.DefaultMaxBacklog); err != nil {
		t.Fatal(err)
	}
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := outbox.New(1).Put(ctx, tx, fixture.Bill(t, 1))
		return err
	})
	if !errors.Is(err, outbox.ErrBackpressure) {
		t.Fatalf("put past the default bound: %v", err)
	}
}

// The collector exports each lane's backlog and the age of its oldest unacknowledged message.
func TestBacklogCollectorLag(t *testing.T) {
	db := fixture.DB(t)
	ctx := context.Background()
	e := fixture.Bill(t, 1)
	e.CreatedAt = time.Now().Add(-90 * time.Second).UTC().Truncate(time.Microsecond)
	fixture.Put(t, db, 1, e, fixture.Bill(t, 2))
	reg := prometheus.NewRegistry()
	reg.MustRegister(outbox.NewBacklogCollector(db, "test"))
	lagOf := func() (backlog, lag float64) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			v := mf.GetMetric()[0].GetGauge().GetValue()
			switch mf.GetName() {
			case "ferry_outbox_backlog":
				backlog = v
			case "ferry_lane_lag_seconds":
				lag = v
			}
		}
		return backlog, lag
	}
	if b, l := lagOf(); b != 2 || l < 90 || l > 120 {
		t.Fatalf("backlog %v, lag %v s; want 2 and about 90", b, l)
	}
	sqltest.Must(t, outbox.Sent(ctx, db, "to-gateway.0", 2))
	if _, err := outbox.Ack(ctx, db, "to-gateway.0", 2, time.Now()); err != nil {
		t.Fatal(err)
	}
	if b, l := lagOf(); b != 0 || l != 0 {
		t.Fatalf("after the acknowledgement: backlog %v, lag %v", b, l)
	}
}

// PutBatch queues a batch like Put does one by one: consecutive sequences per lane in the
// batch's order, one transaction; a duplicate ID fails the whole batch.
func TestPutBatch(t *testing.T) {
	db := fixture.DB(t)
	ctx := context.Background()
	ob := outbox.New(2)
	var envs []envelope.Envelope
	for i := range 50 {
		envs = append(envs, fixture.Bill(t, i))
	}
	var placed []outbox.Placed
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		placed, err = ob.PutBatch(ctx, tx, envs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int64{}
	for i, p := range placed {
		lane, _ := envelope.Lane(envs[i].Type, envs[i].Key, 2)
		next[lane]++
		if p.Lane != lane || p.Seq != next[lane] {
			t.Fatalf("message %d placed %+v, want %s/%d", i, p, lane, next[lane])
		}
		var id string
		if err := db.QueryRowContext(ctx, `SELECT message_id FROM ferry_outbox WHERE lane = $1 AND seq = $2`, p.Lane, p.Seq).Scan(&id); err != nil || id != envs[i].ID {
			t.Fatalf("row %+v: %q %v", p, id, err)
		}
	}
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := ob.PutBatch(ctx, tx, []envelope.Envelope{fixture.Bill(t, 100), envs[3]})
		return err
	})
	if !errors.Is(err, outbox.ErrDuplicate) {
		t.Fatalf("batch with a duplicate: %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM ferry_outbox`).Scan(&n); err != nil || n != 50 {
		t.Fatalf("%d rows after the refused batch (%v), want 50", n, err)
	}
}

// A batch over two lanes refused by the second lane's bound takes no number of the first (on
// PostgreSQL numbers are not given back), so a refusal leaves no gap the sender must fill.
func TestPutBatchRefusalLeavesNoGap(t *testing.T) {
	db := fixture.DB(t)
	ctx := context.Background()
	ob := outbox.New(2, outbox.WithMaxBacklog(2))
	byLane := map[string][]envelope.Envelope{}
	for i := 0; len(byLane["to-gateway.0"]) < 2 || len(byLane["to-gateway.1"]) < 3; i++ {
		e := fixture.Bill(t, i)
		l, err := envelope.Lane(e.Type, e.Key, 2)
		if err != nil {
			t.Fatal(err)
		}
		byLane[l] = append(byLane[l], e)
	}
	a, b := byLane["to-gateway.0"], byLane["to-gateway.1"]
	if err := db.Tx(ctx, func(tx *sql.Tx) error { _, err := ob.PutBatch(ctx, tx, b[:2]); return err }); err != nil {
		t.Fatal(err)
	}
	err := db.Tx(ctx, func(tx *sql.Tx) error { _, err := ob.PutBatch(ctx, tx, []envelope.Envelope{a[0], b[2]}); return err })
	if !errors.Is(err, outbox.ErrBackpressure) {
		t.Fatalf("err = %v, want ErrBackpressure", err)
	}
	var p outbox.Placed
	if err := db.Tx(ctx, func(tx *sql.Tx) error { var err error; p, err = ob.Put(ctx, tx, a[1]); return err }); err != nil {
		t.Fatal(err)
	}
	if p.Lane != "to-gateway.0" || p.Seq != 1 {
		t.Fatalf("the next message of to-gateway.0 was placed at %+v, want number 1: the refused batch took it", p)
	}
}

// Ack retires the rows up to the acknowledged sequence once, ignores an acknowledgement at or
// below the current one, and refuses one past the last sequence sent (even when the number was
// handed out: its producer may not have committed) or of an unknown lane, changing nothing; on
// both engines.
func TestAckRetiresOnce(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		sqltest.Must(t, schema.Migrate(ctx, db))
		ob := outbox.New(1)
		var lane string
		for i := range 3 {
			sqltest.Must(t, db.Tx(ctx, func(tx *sql.Tx) error {
				p, err := ob.Put(ctx, tx, fixture.Bill(t, i))
				lane = p.Lane
				return err
			}))
		}
		sqltest.Must(t, outbox.Sent(ctx, db, lane, 2))
		sqltest.Must(t, outbox.Sent(ctx, db, lane, 1)) // a bundle sent again: no change
		ack := func(seq int64) (retired, before int64, err error) {
			err = db.Tx(ctx, func(tx *sql.Tx) error {
				var err error
				retired, before, err = outbox.AckTx(ctx, tx, db.Dialect, lane, seq, time.Now())
				return err
			})
			return retired, before, err
		}
		if r, b, err := ack(2); err != nil || r != 2 || b != 0 {
			t.Fatalf("ack 2: retired %d, before %d, %v", r, b, err)
		}
		if r, b, err := ack(1); err != nil || r != 0 || b != 2 {
			t.Fatalf("ack 1 again: retired %d, before %d, %v", r, b, err)
		}
		if _, _, err := ack(3); !errors.Is(err, outbox.ErrAckBeyondSent) {
			t.Fatalf("ack of a number handed out but not sent: %v", err)
		}
		if _, _, err := ack(5); !errors.Is(err, outbox.ErrAckBeyondSent) {
			t.Fatalf("ack past the last sent: %v", err)
		}
		if _, err := outbox.Ack(ctx, db, "to-gateway.9", 1, time.Now()); !errors.Is(err, outbox.ErrAckBeyondSent) {
			t.Fatalf("ack of an unknown lane: %v", err)
		}
		lanes, err := outbox.Lanes(ctx, db)
		sqltest.Must(t, err)
		if len(lanes) != 1 || lanes[0].AckedSeq != 2 || lanes[0].LastSeq != 3 {
			t.Fatalf("lanes %+v", lanes)
		}
		sqltest.Must(t, outbox.Sent(ctx, db, lane, 3))
		if r, b, err := ack(3); err != nil || r != 1 || b != 2 {
			t.Fatalf("ack 3 once sent: retired %d, before %d, %v", r, b, err)
		}
		var left int
		sqltest.Must(t, db.QueryRowContext(ctx, `SELECT count(*) FROM ferry_outbox`).Scan(&left))
		if left != 0 {
			t.Fatalf("%d rows left", left)
		}
	})
}
