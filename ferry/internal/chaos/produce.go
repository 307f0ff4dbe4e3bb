package chaos

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
)

// Sides a producer plays: the core puts bills (to-gateway), the gateway payments (to-core).
const (
	Core    = "core"
	Gateway = "gateway"
)

// Lanes is the number of lanes per direction the producers spread messages over.
const Lanes = 4

// producedTable is the producer's business table: a row per message, written in the same
// transaction as the message's outbox row, as a service writes its business change.
const producedTable = `CREATE TABLE IF NOT EXISTS chaos_produced (i BIGINT PRIMARY KEY, message_id TEXT NOT NULL)`

// Message returns message i of side's producer: a bill from the core, a payment from the
// gateway. Its ID ends in the zero-padded i.
func Message(side string, i int64) (envelope.Envelope, error) {
	at := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	billNo := fmt.Sprintf("C%09d", i)
	if side == Core {
		p := &envelope.BillPublished{
			BillNo: billNo, Token: fmt.Sprintf("tok_%024d", i), DecisionNo: fmt.Sprintf("2301%012d", i),
			PartyMasked: "张*", PlateMasked: "黑A***12", Fine: 20000, ServedDate: "2025-02-20",
			UnitName: "哈尔滨市公安局交通警察支队", ItemName: "交通罚没收入", FormNo: fmt.Sprintf("F%09d", i),
			PayCode: fmt.Sprintf("P%019d", i), IssuedAt: at,
		}
		return envelope.New(fmt.Sprintf("bill.published:%09d", i), billNo, at, p)
	}
	p := &envelope.PaymentConfirmed{
		BillNo: billNo, OrderNo: fmt.Sprintf("O%09d", i), Channel: "wechat", ChannelTradeNo: fmt.Sprintf("T%09d", i),
		Amount: 20000, Fine: 20000, PaidAt: at, NotificationID: fmt.Sprintf("N%09d", i),
	}
	return envelope.New(fmt.Sprintf("payment.confirmed:%09d", i), billNo, at, p)
}

// index returns the i a message ID of Message ends with.
func index(id string) (int64, error) {
	_, n, ok := strings.Cut(id, ":")
	if !ok {
		return 0, fmt.Errorf("message ID %q is not the harness's", id)
	}
	return strconv.ParseInt(n, 10, 64)
}

// ProduceMain is the producer process: it puts side's messages into the outbox of the database
// at -db, one business transaction each, at -rate per second, until -n are produced or ctx ends
// (SIGTERM: it finishes the transaction at hand). It starts after the last message it committed
// before, so it may be killed at any moment and started again. It returns the exit status.
func ProduceMain(ctx context.Context, args []string, stderr io.Writer) int {
	set := flag.NewFlagSet("produce", flag.ContinueOnError)
	set.SetOutput(stderr)
	dbURL := set.String("db", "", "database URL")
	side := set.String("side", "", "core or gateway")
	rate := set.Int("rate", 200, "messages per second")
	n := set.Int64("n", 1<<40, "stop after this many messages")
	if err := set.Parse(args); err != nil {
		return 2
	}
	if err := produce(ctx, *dbURL, *side, *rate, *n); err != nil && ctx.Err() == nil {
		fmt.Fprintln(stderr, "produce:", err)
		return 1
	}
	return 0
}

func produce(ctx context.Context, dbURL, side string, rate int, n int64) error {
	if side != Core && side != Gateway {
		return fmt.Errorf("side %q", side)
	}
	db, err := sqldb.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, producedTable); err != nil {
		return err
	}
	var next int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(max(i) + 1, 0) FROM chaos_produced`).Scan(&next); err != nil {
		return err
	}
	ob := outbox.New(Lanes)
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	for i := next; i < n; {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		env, err := Message(side, i)
		if err != nil {
			return err
		}
		tctx := context.WithoutCancel(ctx) // a stop request lets the transaction at hand finish
		err = db.Tx(tctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(tctx, `INSERT INTO chaos_produced (i, message_id) VALUES ($1, $2)`, i, env.ID); err != nil {
				return err
			}
			_, err := ob.Put(tctx, tx, env)
			return err
		})
		switch {
		case errors.Is(err, outbox.ErrBackpressure):
			continue // the same message again at the next tick
		case sqldb.IsUniqueViolation(err) && strings.Contains(err.Error(), "chaos_produced"):
			// The killed producer before this one had sent its last commit, which the server
			// finished after this one read where to start: go on after it.
			if err := db.QueryRowContext(ctx, `SELECT COALESCE(max(i) + 1, 0) FROM chaos_produced`).Scan(&i); err != nil {
				return err
			}
			continue
		case err != nil:
			return fmt.Errorf("message %d: %w", i, err)
		}
		i++
	}
	return nil
}
