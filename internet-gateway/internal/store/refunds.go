package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"finepay/shared/money"
)

// Refund statuses at the gateway: RefundPending until the channel has answered the refund
// request; then those of envelope.RefundResult (processing, unknown, success, failed).
const (
	RefundPending    = "pending"
	RefundProcessing = "processing"
	RefundUnknown    = "unknown"
	RefundSuccess    = "success"
	RefundFailed     = "failed"
)

// Refund is a refund the core instructed, and what the channel said of it.
type Refund struct {
	RefundNo       string
	Channel        string
	OrderNo        string
	ChannelTradeNo string
	PaidAmount     money.Fen
	Amount         money.Fen
	Reason         string
	Status         string
	// Accepted is set once the channel has acknowledged the refund request (an answer, a
	// notification or a query that knows the refund): from then on it is only queried.
	Accepted bool
	// TxnTime is UnionPay's txnTime of the refund request (with merId and orderId = refund_no it
	// identifies the refund), fixed at the first call and sent again on every retry.
	TxnTime         string
	ChannelRefundNo string
	RefundedAmount  money.Fen
	RefundedAt      time.Time // zero until success
	Detail          string
	Calls           int // refund requests sent
	Queries         int // refund queries sent
	NextAt          time.Time
	InstructedAt    time.Time
	UpdatedAt       time.Time
}

const refundColumns = `refund_no, channel, order_no, channel_trade_no, paid_amount, amount, reason, status, accepted, txn_time,
	channel_refund_no, refunded_amount, refunded_at, detail, calls, queries, next_at, instructed_at, updated_at`

func scanRefund(row interface{ Scan(...any) error }) (Refund, error) {
	var r Refund
	var refunded, next sql.NullTime
	err := row.Scan(&r.RefundNo, &r.Channel, &r.OrderNo, &r.ChannelTradeNo, &r.PaidAmount, &r.Amount, &r.Reason, &r.Status,
		&r.Accepted, &r.TxnTime, &r.ChannelRefundNo, &r.RefundedAmount, &refunded, &r.Detail, &r.Calls, &r.Queries, &next,
		&r.InstructedAt, &r.UpdatedAt)
	r.RefundedAt, r.NextAt = refunded.Time, next.Time
	return r, err
}

// RefundInsert stores a new refund unless one with its refund number exists; it reports whether
// it inserted.
func (s *Store) RefundInsert(ctx context.Context, q Querier, r Refund) (bool, error) {
	res, err := q.ExecContext(ctx, `INSERT INTO refunds (`+refundColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
		ON CONFLICT (refund_no) DO NOTHING`,
		r.RefundNo, r.Channel, r.OrderNo, r.ChannelTradeNo, int64(r.PaidAmount), int64(r.Amount), r.Reason, r.Status, r.Accepted,
		r.TxnTime, r.ChannelRefundNo, int64(r.RefundedAmount), nullTime(r.RefundedAt), r.Detail, r.Calls, r.Queries,
		nullTime(r.NextAt), utc(r.InstructedAt), utc(r.UpdatedAt))
	if err != nil {
		return false, fmt.Errorf("store: insert refund %s: %w", r.RefundNo, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// RefundGet returns a refund; forUpdate locks its row until the transaction ends.
func (s *Store) RefundGet(ctx context.Context, q Querier, refundNo string, forUpdate bool) (Refund, error) {
	lock := ""
	if forUpdate {
		lock = s.DB.ForUpdate()
	}
	r, err := scanRefund(q.QueryRowContext(ctx, `SELECT `+refundColumns+` FROM refunds WHERE refund_no = $1`+lock, refundNo))
	return r, notFound(err, "refund "+refundNo)
}

// RefundListForOrder returns the refunds of a channel order's payment, oldest first.
func (s *Store) RefundListForOrder(ctx context.Context, q Querier, orderNo string) ([]Refund, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+refundColumns+` FROM refunds WHERE order_no = $1 ORDER BY instructed_at, refund_no`, orderNo)
	if err != nil {
		return nil, fmt.Errorf("store: refunds of order %s: %w", orderNo, err)
	}
	return scanRefunds(rows)
}

// scanRefunds reads every row of rows (refundColumns) and closes it.
func scanRefunds(rows *sql.Rows) ([]Refund, error) {
	defer rows.Close()
	var out []Refund
	for rows.Next() {
		r, err := scanRefund(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RefundListDue returns up to limit refunds not final whose next call or query is due at now,
// those due longest first.
func (s *Store) RefundListDue(ctx context.Context, q Querier, now time.Time, limit int) ([]Refund, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+refundColumns+` FROM refunds
		WHERE status IN ($1, $2, $3) AND next_at <= $4 ORDER BY next_at, refund_no LIMIT $5`,
		RefundPending, RefundProcessing, RefundUnknown, utc(now), limit)
	if err != nil {
		return nil, fmt.Errorf("store: refunds due: %w", err)
	}
	return scanRefunds(rows)
}

// RefundClaim moves a due refund's next_at from was to until, so that one worker (of several
// replicas) calls the channel for it; it reports whether this caller got it.
func (s *Store) RefundClaim(ctx context.Context, q Querier, refundNo string, was, until time.Time) (bool, error) {
	res, err := q.ExecContext(ctx, `UPDATE refunds SET next_at = $3 WHERE refund_no = $1 AND next_at = $2`,
		refundNo, utc(was), utc(until))
	if err != nil {
		return false, fmt.Errorf("store: claim refund %s: %w", refundNo, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// RefundUpdate writes the mutable fields of a refund.
func (s *Store) RefundUpdate(ctx context.Context, q Querier, r Refund) error {
	_, err := q.ExecContext(ctx, `UPDATE refunds SET status = $2, accepted = $3, txn_time = $4, channel_refund_no = $5,
		refunded_amount = $6, refunded_at = $7, detail = $8, calls = $9, queries = $10, next_at = $11, updated_at = $12
		WHERE refund_no = $1`,
		r.RefundNo, r.Status, r.Accepted, r.TxnTime, r.ChannelRefundNo, int64(r.RefundedAmount), nullTime(r.RefundedAt),
		r.Detail, r.Calls, r.Queries, nullTime(r.NextAt), utc(r.UpdatedAt))
	if err != nil {
		return fmt.Errorf("store: update refund %s: %w", r.RefundNo, err)
	}
	return nil
}

// RefundResultInsert records that status of a refund was reported to the core under messageID,
// unless it was before; it reports whether it inserted.
func (s *Store) RefundResultInsert(ctx context.Context, q Querier, refundNo, status, messageID, source string, at time.Time) (bool, error) {
	res, err := q.ExecContext(ctx, `INSERT INTO refund_results (refund_no, status, message_id, source, recorded_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (refund_no, status) DO NOTHING`, refundNo, status, messageID, source, utc(at))
	if err != nil {
		return false, fmt.Errorf("store: insert refund result %s/%s: %w", refundNo, status, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
