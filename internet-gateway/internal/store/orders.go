package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"finepay/shared/money"
)

// Channel order statuses.
const (
	OrderCreated = "created"
	OrderPaid    = "paid"
	OrderClosed  = "closed"
)

// Order is a channel order: one attempt to pay a bill through one channel, for the amount due
// on the day it was created.
type Order struct {
	OrderNo   string
	BillNo    string
	Channel   string
	Amount    money.Fen
	Fine      money.Fen
	LateFee   money.Fen
	CodeURL   string
	Status    string
	ExpiresAt time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
	QueriedAt time.Time // zero when never queried
	// QueryCount is how many times the order was queried at the channel; NextQueryAt is when
	// the next query is due (zero: created_at plus the query delay).
	QueryCount  int
	NextQueryAt time.Time
}

const orderColumns = `order_no, bill_no, channel, amount, fine, late_fee, code_url, status, expires_at, created_at, updated_at,
	queried_at, query_count, next_query_at`

func scanOrder(row interface{ Scan(...any) error }) (Order, error) {
	var o Order
	var queried, next sql.NullTime
	err := row.Scan(&o.OrderNo, &o.BillNo, &o.Channel, &o.Amount, &o.Fine, &o.LateFee, &o.CodeURL, &o.Status,
		&o.ExpiresAt, &o.CreatedAt, &o.UpdatedAt, &queried, &o.QueryCount, &next)
	o.QueriedAt, o.NextQueryAt = queried.Time, next.Time
	return o, err
}

// OrderInsert stores a new order. A second order still created for the same bill and channel
// fails with a unique violation (index channel_orders_open).
func (s *Store) OrderInsert(ctx context.Context, q Querier, o Order) error {
	_, err := q.ExecContext(ctx, `INSERT INTO channel_orders (`+orderColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		o.OrderNo, o.BillNo, o.Channel, int64(o.Amount), int64(o.Fine), int64(o.LateFee), o.CodeURL, o.Status,
		utc(o.ExpiresAt), utc(o.CreatedAt), utc(o.UpdatedAt), nullTime(o.QueriedAt), o.QueryCount, nullTime(o.NextQueryAt))
	if err != nil {
		return fmt.Errorf("store: insert order %s: %w", o.OrderNo, err)
	}
	return nil
}

// OrderGet returns an order; forUpdate locks its row until the transaction ends (PostgreSQL;
// SQLite's immediate transactions hold the write lock anyway).
func (s *Store) OrderGet(ctx context.Context, q Querier, orderNo string, forUpdate bool) (Order, error) {
	lock := ""
	if forUpdate {
		lock = s.DB.ForUpdate()
	}
	o, err := scanOrder(q.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM channel_orders WHERE order_no = $1`+lock, orderNo))
	return o, notFound(err, "order "+orderNo)
}

// OrderFindOpen returns the order of a bill and channel that is still created, expired or not
// (there is at most one).
func (s *Store) OrderFindOpen(ctx context.Context, q Querier, billNo, channel string) (Order, error) {
	o, err := scanOrder(q.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM channel_orders
		WHERE bill_no = $1 AND channel = $2 AND status = $3`, billNo, channel, OrderCreated))
	return o, notFound(err, "open order")
}

// OrderListToQuery returns up to limit orders of the channels still created that were created
// at or before createdBefore and whose next query is due at now (never queried, or
// next_query_at passed), those due longest first.
func (s *Store) OrderListToQuery(ctx context.Context, q Querier, channels []string, createdBefore, now time.Time, limit int) ([]Order, error) {
	if len(channels) == 0 {
		return nil, nil
	}
	args := []any{OrderCreated, utc(createdBefore), utc(now), limit}
	marks := make([]string, len(channels))
	for i, c := range channels {
		args = append(args, c)
		marks[i] = fmt.Sprintf("$%d", len(args))
	}
	rows, err := q.QueryContext(ctx, `SELECT `+orderColumns+` FROM channel_orders
		WHERE status = $1 AND channel IN (`+strings.Join(marks, ", ")+`) AND created_at <= $2
			AND (next_query_at IS NULL OR next_query_at <= $3)
		ORDER BY COALESCE(next_query_at, created_at), order_no LIMIT $4`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: orders to query: %w", err)
	}
	defer rows.Close()
	var out []Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// OrderMarkPaid sets an order's status to paid (from any status: a payment confirmed by the
// channel is a fact, even for an order we had closed).
func (s *Store) OrderMarkPaid(ctx context.Context, q Querier, orderNo string, now time.Time) error {
	_, err := q.ExecContext(ctx, `UPDATE channel_orders SET status = $2, updated_at = $3 WHERE order_no = $1`, orderNo, OrderPaid, utc(now))
	if err != nil {
		return fmt.Errorf("store: mark order %s paid: %w", orderNo, err)
	}
	return nil
}

// OrderClose closes an order that is still created. It reports whether it did.
func (s *Store) OrderClose(ctx context.Context, q Querier, orderNo string, now time.Time) (bool, error) {
	res, err := q.ExecContext(ctx, `UPDATE channel_orders SET status = $2, updated_at = $3 WHERE order_no = $1 AND status = $4`,
		orderNo, OrderClosed, utc(now), OrderCreated)
	if err != nil {
		return false, fmt.Errorf("store: close order %s: %w", orderNo, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// OrderMarkQueried records that an order was queried at the channel at now, counts the query
// and sets when the next is due.
func (s *Store) OrderMarkQueried(ctx context.Context, q Querier, orderNo string, now, next time.Time) error {
	_, err := q.ExecContext(ctx, `UPDATE channel_orders SET queried_at = $2, query_count = query_count + 1, next_query_at = $3
		WHERE order_no = $1`, orderNo, utc(now), utc(next))
	if err != nil {
		return fmt.Errorf("store: mark order %s queried: %w", orderNo, err)
	}
	return nil
}
