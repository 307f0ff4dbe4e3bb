package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Notification verdicts.
const (
	VerdictReceived  = "received" // stored, not yet decided
	VerdictAccepted  = "accepted"
	VerdictDuplicate = "duplicate"
	VerdictRejected  = "rejected"
	VerdictIgnored   = "ignored" // genuine, but asks for nothing (a trade not paid, a failed payment)
)

// Notification is a channel notification as received: its raw headers (JSON) and body, where
// it came from, and what the gateway decided about it.
type Notification struct {
	ID             int64
	Channel        string
	ReceivedAt     time.Time
	RemoteAddr     string
	Headers        string // JSON object of header name to values
	Body           []byte
	Verdict        string
	Reason         string
	EventID        string // the channel's notification ID
	OutTradeNo     string
	ChannelTradeNo string
	DecidedAt      time.Time
}

// NotificationInsert stores a received notification with verdict received and returns its ID.
func (s *Store) NotificationInsert(ctx context.Context, q Querier, n Notification) (int64, error) {
	if n.Verdict == "" {
		n.Verdict = VerdictReceived
	}
	if n.Body == nil {
		n.Body = []byte{}
	}
	var id int64
	err := q.QueryRowContext(ctx, `INSERT INTO notifications (channel, received_at, remote_addr, headers, body, verdict, reason,
		event_id, out_trade_no, channel_trade_no, decided_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
		n.Channel, utc(n.ReceivedAt), n.RemoteAddr, n.Headers, n.Body, n.Verdict, n.Reason,
		n.EventID, n.OutTradeNo, n.ChannelTradeNo, nullTime(n.DecidedAt)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: insert notification: %w", err)
	}
	return id, nil
}

// Decision is the outcome of verifying a notification.
type Decision struct {
	Verdict        string
	Reason         string
	EventID        string
	OutTradeNo     string
	ChannelTradeNo string
	At             time.Time
}

// NotificationDecide records the verdict of a stored notification.
func (s *Store) NotificationDecide(ctx context.Context, q Querier, id int64, d Decision) error {
	_, err := q.ExecContext(ctx, `UPDATE notifications SET verdict = $2, reason = $3, event_id = $4, out_trade_no = $5,
		channel_trade_no = $6, decided_at = $7 WHERE id = $1`,
		id, d.Verdict, d.Reason, d.EventID, d.OutTradeNo, d.ChannelTradeNo, nullTime(d.At))
	if err != nil {
		return fmt.Errorf("store: decide notification %d: %w", id, err)
	}
	return nil
}

// NotificationGet returns a stored notification.
func (s *Store) NotificationGet(ctx context.Context, q Querier, id int64) (Notification, error) {
	var n Notification
	var decided sql.NullTime
	err := q.QueryRowContext(ctx, `SELECT id, channel, received_at, remote_addr, headers, body, verdict, reason, event_id,
		out_trade_no, channel_trade_no, decided_at FROM notifications WHERE id = $1`, id).Scan(
		&n.ID, &n.Channel, &n.ReceivedAt, &n.RemoteAddr, &n.Headers, &n.Body, &n.Verdict, &n.Reason, &n.EventID,
		&n.OutTradeNo, &n.ChannelTradeNo, &decided)
	n.DecidedAt = decided.Time
	return n, notFound(err, "notification")
}
