package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"finepay/ferry/inbox"
	"finepay/ferry/outbox"
	"finepay/ferry/schema"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/shared/envelope"
	"finepay/shared/logging"
)

func payment(i int) envelope.Envelope {
	p := &envelope.PaymentConfirmed{BillNo: "B1", OrderNo: fmt.Sprintf("O%d", i), Channel: "wechat",
		ChannelTradeNo: fmt.Sprintf("4200%d", i), Amount: 20000, Fine: 20000, PaidAt: time.Unix(1700000000, 0)}
	e, err := envelope.New(fmt.Sprintf("pay:wechat:4200%d", i), "B1", time.Unix(1700000000, 0), p)
	if err != nil {
		panic(err)
	}
	return e
}

func setup(t *testing.T, db *sqldb.DB) context.Context {
	ctx := context.Background()
	sqltest.Must(t, schema.Migrate(ctx, db))
	sqltest.Must(t, schema.Migrate(ctx, db)) // idempotent
	return ctx
}

func incoming(t *testing.T, first int64, envs ...envelope.Envelope) []inbox.Incoming {
	var out []inbox.Incoming
	for i, e := range envs {
		raw, err := e.Marshal()
		sqltest.Must(t, err)
		out = append(out, inbox.Incoming{Seq: first + int64(i), Envelope: e, Raw: raw})
	}
	return out
}

func TestOutboxSequencesAndAck(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := setup(t, db)
		ob := outbox.New(1)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sqltest.Must(t, db.Tx(ctx, func(tx *sql.Tx) error { _, err := ob.Put(ctx, tx, payment(i)); return err }))
			}()
		}
		wg.Wait()
		// A rolled-back transaction leaves no row.
		_ = db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := ob.Put(ctx, tx, payment(99)); err != nil {
				return err
			}
			return errors.New("business change failed")
		})
		err := db.Tx(ctx, func(tx *sql.Tx) error { _, err := ob.Put(ctx, tx, payment(3)); return err })
		if !errors.Is(err, outbox.ErrDuplicate) {
			t.Fatalf("duplicate message ID: err = %v", err)
		}
		rows, err := outbox.Pending(ctx, db, "to-core.0", 0, 100, 1<<20)
		sqltest.Must(t, err)
		if len(rows) != 20 {
			t.Fatalf("pending = %d, want 20", len(rows))
		}
		for i, r := range rows {
			if r.Seq != int64(i+1) {
				t.Fatalf("row %d has seq %d: gap or disorder", i, r.Seq)
			}
		}
		// On PostgreSQL the rolled-back and the duplicate put each took a number that stays
		// unused (the sender closes such gaps); on SQLite the counter rolled back with them.
		lanes, err := outbox.Lanes(ctx, db)
		sqltest.Must(t, err)
		if len(lanes) != 1 || lanes[0].LastSeq < 20 || lanes[0].LastSeq > 22 {
			t.Fatalf("lanes %+v", lanes)
		}
		sqltest.Must(t, outbox.Sent(ctx, db, "to-core.0", 15))
		if _, err := outbox.Ack(ctx, db, "to-core.0", 16, time.Now()); !errors.Is(err, outbox.ErrAckBeyondSent) {
			t.Fatalf("ack beyond sent: %v", err)
		}
		n, err := outbox.Ack(ctx, db, "to-core.0", 15, time.Now())
		sqltest.Must(t, err)
		if n != 15 {
			t.Fatalf("retired %d, want 15", n)
		}
		if n, _ := outbox.Ack(ctx, db, "to-core.0", 10, time.Now()); n != 0 {
			t.Fatalf("stale ack retired %d", n)
		}
		lanes, err = outbox.Lanes(ctx, db)
		sqltest.Must(t, err)
		if len(lanes) != 1 || lanes[0].Backlog() != lanes[0].LastSeq-15 {
			t.Fatalf("lanes = %+v", lanes)
		}
	})
}

func TestInboxReceiveExactlyOnce(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := setup(t, db)
		now := time.Now()
		res, err := inbox.Receive(ctx, db, "ferry-dmz", "to-core.0", "b1", incoming(t, 1, payment(1), payment(2)), now)
		sqltest.Must(t, err)
		if res.Applied != 2 || res.HWM != 2 {
			t.Fatalf("first bundle: %+v", res)
		}
		// The same bundle again changes nothing.
		res, err = inbox.Receive(ctx, db, "ferry-dmz", "to-core.0", "b1", incoming(t, 1, payment(1), payment(2)), now)
		sqltest.Must(t, err)
		if res.Applied != 0 || res.Duplicates != 2 || res.HWM != 2 {
			t.Fatalf("replayed bundle: %+v", res)
		}
		// A gap waits.
		_, err = inbox.Receive(ctx, db, "ferry-dmz", "to-core.0", "b3", incoming(t, 4, payment(4)), now)
		if !errors.Is(err, inbox.ErrGap) {
			t.Fatalf("gap: err = %v", err)
		}
		// Overlap applies only the new part.
		res, err = inbox.Receive(ctx, db, "ferry-dmz", "to-core.0", "b2", incoming(t, 2, payment(2), payment(3)), now)
		sqltest.Must(t, err)
		if res.Applied != 1 || res.Duplicates != 1 || res.HWM != 3 {
			t.Fatalf("overlap: %+v", res)
		}
		var n int
		sqltest.Must(t, db.QueryRowContext(ctx, `SELECT count(*) FROM ferry_inbox`).Scan(&n))
		if n != 3 {
			t.Fatalf("inbox holds %d messages, want 3", n)
		}
	})
}

func TestInboxConsumerOrderAndRetry(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := setup(t, db)
		_, err := inbox.Receive(ctx, db, "ferry-dmz", "to-core.0", "b1", incoming(t, 1, payment(1), payment(2), payment(3)), time.Now())
		sqltest.Must(t, err)
		_, err = db.ExecContext(ctx, `CREATE TABLE applied (message_id TEXT PRIMARY KEY, n INTEGER)`)
		sqltest.Must(t, err)
		now := time.Now()
		failOnce := true
		var order []string
		c := inbox.NewConsumer(inbox.Config{DB: db, Logger: logging.Discard(), Now: func() time.Time { return now },
			Handlers: map[string]inbox.Handler{envelope.TypePaymentConfirmed: func(ctx context.Context, tx *sql.Tx, e envelope.Envelope) error {
				if e.ID == "pay:wechat:42002" && failOnce {
					failOnce = false
					return errors.New("partner down")
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO applied (message_id, n) VALUES ($1, 1)`, e.ID); err != nil {
					return err
				}
				order = append(order, e.ID)
				return nil
			}}})
		n, err := c.ConsumeOnce(ctx)
		sqltest.Must(t, err)
		if n != 1 || len(order) != 1 {
			t.Fatalf("first pass applied %d (%v); the lane must wait behind the failed message", n, order)
		}
		// Not yet due: nothing happens.
		if n, _ := c.ConsumeOnce(ctx); n != 0 {
			t.Fatalf("retried before its time: %d", n)
		}
		now = now.Add(time.Minute)
		n, err = c.ConsumeOnce(ctx)
		sqltest.Must(t, err)
		if n != 2 {
			t.Fatalf("second pass applied %d", n)
		}
		want := []string{"pay:wechat:42001", "pay:wechat:42002", "pay:wechat:42003"}
		if fmt.Sprint(order) != fmt.Sprint(want) {
			t.Fatalf("order %v, want %v", order, want)
		}
		var cnt int
		sqltest.Must(t, db.QueryRowContext(ctx, `SELECT count(*) FROM applied`).Scan(&cnt))
		if cnt != 3 {
			t.Fatalf("applied rows %d", cnt)
		}
	})
}

// A lane gap filler (a number whose producer never committed it, closed by the sender) is stored
// as consumed when it arrives: the service consumes the messages around it and never sees it.
func TestInboxStoresALaneGapFillerConsumed(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := setup(t, db)
		gap, err := envelope.NewLaneGap("to-core.0", 2, time.Unix(1700000000, 0))
		sqltest.Must(t, err)
		res, err := inbox.Receive(ctx, db, "ferry-dmz", "to-core.0", "b1", incoming(t, 1, payment(1), gap, payment(3)), time.Now())
		sqltest.Must(t, err)
		if res.HWM != 3 {
			t.Fatalf("high-water mark %d, want 3", res.HWM)
		}
		var seen []string
		c := inbox.NewConsumer(inbox.Config{DB: db, Logger: logging.Discard(),
			Handlers: map[string]inbox.Handler{envelope.TypePaymentConfirmed: func(ctx context.Context, tx *sql.Tx, e envelope.Envelope) error {
				seen = append(seen, e.ID)
				return nil
			}}})
		for range 3 {
			_, err := c.ConsumeOnce(ctx)
			sqltest.Must(t, err)
		}
		if fmt.Sprint(seen) != "[pay:wechat:42001 pay:wechat:42003]" {
			t.Fatalf("the service saw %v", seen)
		}
		var pending int
		sqltest.Must(t, db.QueryRowContext(ctx, `SELECT count(*) FROM ferry_inbox WHERE consumed_at IS NULL OR attempts > 0 AND type = $1`, envelope.TypeLaneGap).Scan(&pending))
		if pending != 0 {
			t.Fatalf("%d rows left unconsumed or the filler was tried", pending)
		}
	})
}

// A handler's error whose text is cut inside a character, or holds a NUL byte or invalid UTF-8,
// is still recorded with its back-off, on both engines; and one lane's failure does not stop the
// pass for the other lanes.
func TestHandlerErrorOfAnyTextIsRecorded(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := setup(t, db)
		texts := []string{
			strings.Repeat("x", 499) + "银行返回：账户不存在", // byte 500 falls inside 银
			"bank said \x00 then stopped",
			"bad \xff\xfe bytes",
		}
		for i := range texts {
			_, err := inbox.Receive(ctx, db, "ferry-dmz", fmt.Sprintf("to-core.%d", i), fmt.Sprintf("b%d", i), incoming(t, 1, payment(i)), time.Now())
			sqltest.Must(t, err)
		}
		_, err := inbox.Receive(ctx, db, "ferry-dmz", "to-core.9", "b9", incoming(t, 1, payment(9)), time.Now())
		sqltest.Must(t, err)
		calls := map[string]int{}
		c := inbox.NewConsumer(inbox.Config{DB: db, Logger: logging.Discard(),
			Handlers: map[string]inbox.Handler{envelope.TypePaymentConfirmed: func(ctx context.Context, tx *sql.Tx, e envelope.Envelope) error {
				calls[e.ID]++
				for i, text := range texts {
					if e.ID == payment(i).ID {
						return errors.New(text)
					}
				}
				return nil
			}}})
		for range 3 {
			if _, err := c.ConsumeOnce(ctx); err != nil {
				t.Fatalf("ConsumeOnce: %v", err)
			}
		}
		if calls[payment(9).ID] != 1 {
			t.Fatalf("the healthy lane's message was applied %d times", calls[payment(9).ID])
		}
		for i, text := range texts {
			var attempts int
			var next sql.NullTime
			var last string
			sqltest.Must(t, db.QueryRowContext(ctx, `SELECT attempts, next_try_at, last_error FROM ferry_inbox WHERE message_id = $1`,
				payment(i).ID).Scan(&attempts, &next, &last))
			if attempts != 1 || !next.Valid || calls[payment(i).ID] != 1 {
				t.Errorf("error %d: attempts %d, next try %v, handler called %d times: the failure was not recorded with its back-off",
					i, attempts, next, calls[payment(i).ID])
			}
			if !utf8.ValidString(last) || strings.ContainsRune(last, 0) || len(last) > 500 || last == "" || last[:4] != text[:4] {
				t.Errorf("error %d recorded as %q", i, last)
			}
		}
	})
}
