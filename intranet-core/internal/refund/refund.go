// Package refund is the one refund state machine of the core, shared by every route (R1-R5).
//
// A refund moves through explicit states:
//
//		requested ──review──▶ reviewed ──▶ applied ──▶ approved ──▶ sent ──▶ refunded
//		    │                    │            │           │    ╲      │ ▲
//		    │ (no review: R1, R5)│            │           │     ╲     ▼ │
//		    └──────────────────▶ applied      ▼           │      ▶ unknown ──▶ refunded | failed
//		    ▼                              rejected       ▼
//		 rejected                                       failed
//
//	  - requested: recorded; routes that need a clerk's review (R2, R3, R4) wait here;
//	  - reviewed: a clerk other than the one who asked approved it;
//	  - applied: the refund application went to the e-receipt platform (which forwards it to the
//	    non-tax system for review);
//	  - approved: the non-tax system approved it;
//	  - sent: the channel or bank accepted the refund and is processing it;
//	  - unknown: the channel call timed out or the channel reported an abnormal state; the refund is
//	    being queried, never re-created;
//	  - refunded, failed, rejected: final.
//
// Every change is recorded in refund_transitions with the actor that caused it. A refund's number
// (refund_no) is fixed when it is created and is the number sent to the channel or bank, so a
// retry after a timeout is the same refund. A refund never exceeds what was paid less what was
// already refunded, and a payment has at most one refund in flight.
package refund

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"finepay/ferry/sqldb"
	"finepay/shared/gm"
)

// Route is the flow a refund came by.
type Route string

// The routes of DESIGN.md §3.
const (
	R1 Route = "R1" // instruction from the 12123 platform
	R2 Route = "R2" // instruction from the window platform, after a clerk's review
	R3 Route = "R3" // a decision-notice QR payment refunded at the window
	R4 Route = "R4" // a bank-channel payment, refunded by the agency bank
	R5 Route = "R5" // automatic refund of a duplicate payment
)

// NeedsReview reports whether refunds of the route wait for a clerk's review.
func (r Route) NeedsReview() bool { return r == R2 || r == R3 || r == R4 }

// Valid reports whether r is one of the routes.
func (r Route) Valid() bool {
	switch r {
	case R1, R2, R3, R4, R5:
		return true
	}
	return false
}

// State is a refund's state.
type State string

// The states.
const (
	Requested State = "requested"
	Reviewed  State = "reviewed"
	Applied   State = "applied"
	Approved  State = "approved"
	Sent      State = "sent"
	Unknown   State = "unknown"
	Refunded  State = "refunded"
	Failed    State = "failed"
	Rejected  State = "rejected"
)

// States lists every state, in the order a refund passes them.
var States = []State{Requested, Reviewed, Applied, Approved, Sent, Unknown, Refunded, Failed, Rejected}

// Final reports whether no transition leaves s.
func (s State) Final() bool { return s == Refunded || s == Failed || s == Rejected }

// transitions lists the allowed moves.
var transitions = map[State][]State{
	Requested: {Reviewed, Applied, Rejected},
	Reviewed:  {Applied, Rejected},
	Applied:   {Approved, Rejected},
	Approved:  {Sent, Unknown, Refunded, Failed},
	Sent:      {Unknown, Refunded, Failed},
	Unknown:   {Sent, Refunded, Failed},
}

// Allowed reports whether a refund may move from one state to another.
func Allowed(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Errors.
var (
	ErrNotFound        = errors.New("refund: no such refund")
	ErrPaymentNotFound = errors.New("refund: no such payment")
	ErrExceedsPaid     = errors.New("refund: amount exceeds what was paid and not yet refunded")
	ErrInFlight        = errors.New("refund: another refund of this payment is in flight")
	ErrTransition      = errors.New("refund: transition not allowed")
	ErrSameReviewer    = errors.New("refund: the reviewer must not be the person who asked")
	ErrInvalid         = errors.New("refund: invalid request")
)

// Refund is a row of the refunds table.
type Refund struct {
	ID            int64
	RefundNo      string
	PaymentID     int64
	BillNo        string
	OrderNo       string
	Channel       string
	Route         Route
	InstructionID string
	Amount        int64
	Reason        string
	State         State
	RequestedBy   string
	ReviewedBy    string
	ChannelRef    string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Transition is a row of refund_transitions.
type Transition struct {
	From, To State
	Actor    string
	Detail   string
	At       time.Time
}

// Request asks for a refund.
type Request struct {
	PaymentID int64
	Route     Route
	// InstructionID identifies the instruction within its route (the platform's request ID, the
	// duplicate payment's order number); the same instruction again is the same refund.
	InstructionID string
	Amount        int64
	Reason        string
	RequestedBy   string
}

// Store keeps refunds. Its methods that change state take the caller's transaction, so that a
// transition commits together with the work that caused it (a queued task, a recorded answer).
type Store struct {
	db  *sqldb.DB
	now func() time.Time
}

// NewStore returns a store; now nil means time.Now.
func NewStore(db *sqldb.DB, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, now: now}
}

var reInstruction = regexp.MustCompile(`^[A-Za-z0-9_:.-]{1,80}$`)

// Create records a refund in state requested, or returns the refund already made for the same
// route and instruction (created false). It refuses an amount above what is left to refund
// and a second refund while one is in flight.
func (s *Store) Create(ctx context.Context, tx *sql.Tx, r Request) (Refund, bool, error) {
	switch {
	case !r.Route.Valid():
		return Refund{}, false, fmt.Errorf("%w: route %q", ErrInvalid, r.Route)
	case !reInstruction.MatchString(r.InstructionID):
		return Refund{}, false, fmt.Errorf("%w: instruction ID %q", ErrInvalid, r.InstructionID)
	case r.Amount <= 0:
		return Refund{}, false, fmt.Errorf("%w: amount %d", ErrInvalid, r.Amount)
	case strings.TrimSpace(r.RequestedBy) == "":
		return Refund{}, false, fmt.Errorf("%w: no requester", ErrInvalid)
	}
	if old, err := get(ctx, tx, `route = $1 AND instruction_id = $2`, string(r.Route), r.InstructionID); err == nil {
		return old, false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Refund{}, false, err
	}
	var (
		paid             int64
		billNo, orderNo  string
		channel          string
		refunded, flying int64
		count            int
	)
	err := tx.QueryRowContext(ctx, `SELECT amount, bill_no, order_no, channel FROM payments WHERE id = $1`+s.db.ForUpdate(),
		r.PaymentID).Scan(&paid, &billNo, &orderNo, &channel)
	if errors.Is(err, sql.ErrNoRows) {
		return Refund{}, false, fmt.Errorf("%w: id %d", ErrPaymentNotFound, r.PaymentID)
	}
	if err != nil {
		return Refund{}, false, fmt.Errorf("refund: payment: %w", err)
	}
	err = tx.QueryRowContext(ctx, `SELECT
			COALESCE(SUM(CASE WHEN state = 'refunded' THEN amount ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN state NOT IN ('refunded', 'failed', 'rejected') THEN 1 ELSE 0 END), 0),
			count(*)
		FROM refunds WHERE payment_id = $1`, r.PaymentID).Scan(&refunded, &flying, &count)
	if err != nil {
		return Refund{}, false, fmt.Errorf("refund: refunds of payment: %w", err)
	}
	if flying > 0 {
		return Refund{}, false, ErrInFlight
	}
	if r.Amount > paid-refunded {
		return Refund{}, false, fmt.Errorf("%w: asked %d, paid %d, refunded %d", ErrExceedsPaid, r.Amount, paid, refunded)
	}
	now := s.now().UTC()
	ref := Refund{RefundNo: Number(orderNo, count+1), PaymentID: r.PaymentID, BillNo: billNo, OrderNo: orderNo,
		Channel: channel, Route: r.Route, InstructionID: r.InstructionID, Amount: r.Amount, Reason: r.Reason,
		State: Requested, RequestedBy: r.RequestedBy, CreatedAt: now, UpdatedAt: now}
	err = tx.QueryRowContext(ctx, `INSERT INTO refunds (refund_no, payment_id, bill_no, order_no, channel, route, instruction_id,
			amount, reason, state, requested_by, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id`,
		ref.RefundNo, ref.PaymentID, ref.BillNo, ref.OrderNo, ref.Channel, string(ref.Route), ref.InstructionID,
		ref.Amount, ref.Reason, string(ref.State), ref.RequestedBy, now, now).Scan(&ref.ID)
	if sqldb.IsUniqueViolation(err) {
		return Refund{}, false, ErrInFlight
	}
	if err != nil {
		return Refund{}, false, fmt.Errorf("refund: insert: %w", err)
	}
	if err := record(ctx, tx, ref.RefundNo, "", Requested, r.RequestedBy, fmt.Sprintf("%s refund of %d: %s", r.Route, r.Amount, r.Reason), now); err != nil {
		return Refund{}, false, err
	}
	return ref, true, nil
}

// Number is the refund number of the n-th refund of an order: "RF", the order number's letters
// and digits, "R" and n in at least three digits; letters and digits only, 8 to 40 characters
// (UnionPay's orderId is the narrowest: 8-40 of [0-9A-Za-z]). A longer one keeps a digest of
// the order number instead.
func Number(orderNo string, n int) string {
	var b strings.Builder
	for _, r := range orderNo {
		if (r >= '0' && r <= '9') || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') {
			b.WriteRune(r)
		}
	}
	suffix := fmt.Sprintf("R%03d", n)
	id := "RF" + b.String()
	if len(id)+len(suffix) > 40 {
		d := gm.SM3([]byte(orderNo))
		id = "RF" + hex.EncodeToString(d[:])[:40-2-len(suffix)]
	}
	return id + suffix
}

// Move changes a refund's state to to, recording actor and detail. Moving to the state it is in
// changes nothing and is not an error (a repeated message); a move the machine does not allow
// is ErrTransition. channelRef, when not empty, records the channel's or bank's refund ID.
func (s *Store) Move(ctx context.Context, tx *sql.Tx, refundNo string, to State, actor, detail, channelRef string) (Refund, error) {
	ref, err := s.lock(ctx, tx, refundNo)
	if err != nil {
		return Refund{}, err
	}
	if ref.State == to {
		return ref, nil
	}
	if !Allowed(ref.State, to) {
		return ref, fmt.Errorf("%w: %s %s → %s", ErrTransition, refundNo, ref.State, to)
	}
	return s.set(ctx, tx, ref, to, actor, detail, channelRef, "")
}

// Review records a clerk's decision on a refund waiting for review: approve moves it to
// reviewed, otherwise to rejected. The reviewer must not be the requester.
func (s *Store) Review(ctx context.Context, tx *sql.Tx, refundNo, reviewer string, approve bool, note string) (Refund, error) {
	ref, err := s.lock(ctx, tx, refundNo)
	if err != nil {
		return Refund{}, err
	}
	if strings.TrimSpace(reviewer) == "" || reviewer == ref.RequestedBy {
		return ref, ErrSameReviewer
	}
	to := Reviewed
	if !approve {
		to = Rejected
	}
	if ref.State != Requested || !ref.Route.NeedsReview() {
		return ref, fmt.Errorf("%w: %s is %s and cannot be reviewed", ErrTransition, refundNo, ref.State)
	}
	return s.set(ctx, tx, ref, to, reviewer, "review: "+note, "", reviewer)
}

func (s *Store) set(ctx context.Context, tx *sql.Tx, ref Refund, to State, actor, detail, channelRef, reviewer string) (Refund, error) {
	now := s.now().UTC()
	if channelRef == "" {
		channelRef = ref.ChannelRef
	}
	if reviewer == "" {
		reviewer = ref.ReviewedBy
	}
	res, err := tx.ExecContext(ctx, `UPDATE refunds SET state = $1, channel_ref = $2, reviewed_by = $3, updated_at = $4
		WHERE refund_no = $5 AND state = $6`, string(to), channelRef, reviewer, now, ref.RefundNo, string(ref.State))
	if err != nil {
		return ref, fmt.Errorf("refund: update: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ref, fmt.Errorf("%w: %s changed under us", ErrTransition, ref.RefundNo)
	}
	if err := record(ctx, tx, ref.RefundNo, ref.State, to, actor, detail, now); err != nil {
		return ref, err
	}
	ref.State, ref.ChannelRef, ref.ReviewedBy, ref.UpdatedAt = to, channelRef, reviewer, now
	return ref, nil
}

func (s *Store) lock(ctx context.Context, tx *sql.Tx, refundNo string) (Refund, error) {
	return get(ctx, tx, `refund_no = $1`+s.db.ForUpdate(), refundNo)
}

func record(ctx context.Context, tx *sql.Tx, refundNo string, from, to State, actor, detail string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO refund_transitions (refund_no, from_state, to_state, actor, detail, at)
		VALUES ($1, $2, $3, $4, $5, $6)`, refundNo, string(from), string(to), actor, detail, at)
	if err != nil {
		return fmt.Errorf("refund: record transition: %w", err)
	}
	return nil
}

// Querier is a *sql.DB, *sqldb.DB or *sql.Tx.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const columns = `id, refund_no, payment_id, bill_no, order_no, channel, route, instruction_id, amount, reason, state,
	requested_by, reviewed_by, channel_ref, created_at, updated_at`

func scan(sc interface{ Scan(...any) error }) (Refund, error) {
	var r Refund
	var route, state string
	err := sc.Scan(&r.ID, &r.RefundNo, &r.PaymentID, &r.BillNo, &r.OrderNo, &r.Channel, &route, &r.InstructionID,
		&r.Amount, &r.Reason, &state, &r.RequestedBy, &r.ReviewedBy, &r.ChannelRef, &r.CreatedAt, &r.UpdatedAt)
	r.Route, r.State = Route(route), State(state)
	return r, err
}

func get(ctx context.Context, q Querier, where string, args ...any) (Refund, error) {
	r, err := scan(q.QueryRowContext(ctx, `SELECT `+columns+` FROM refunds WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return Refund{}, ErrNotFound
	}
	if err != nil {
		return Refund{}, fmt.Errorf("refund: get: %w", err)
	}
	return r, nil
}

// Get returns a refund by number.
func Get(ctx context.Context, q Querier, refundNo string) (Refund, error) {
	return get(ctx, q, `refund_no = $1`, refundNo)
}

// ListByPayment returns the refunds of a payment, oldest first.
func ListByPayment(ctx context.Context, q Querier, paymentID int64) ([]Refund, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+columns+` FROM refunds WHERE payment_id = $1 ORDER BY id`, paymentID)
	if err != nil {
		return nil, fmt.Errorf("refund: list: %w", err)
	}
	defer rows.Close()
	var out []Refund
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("refund: list: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// History returns the transitions of a refund, oldest first.
func History(ctx context.Context, q Querier, refundNo string) ([]Transition, error) {
	rows, err := q.QueryContext(ctx, `SELECT from_state, to_state, actor, detail, at FROM refund_transitions
		WHERE refund_no = $1 ORDER BY id`, refundNo)
	if err != nil {
		return nil, fmt.Errorf("refund: history: %w", err)
	}
	defer rows.Close()
	var out []Transition
	for rows.Next() {
		var t Transition
		var from, to string
		if err := rows.Scan(&from, &to, &t.Actor, &t.Detail, &t.At); err != nil {
			return nil, fmt.Errorf("refund: history: %w", err)
		}
		t.From, t.To = State(from), State(to)
		out = append(out, t)
	}
	return out, rows.Err()
}

// ListAwaitingReview returns the refunds that wait for a clerk's review (state requested, of a
// route that needs one), oldest first, at most limit.
func ListAwaitingReview(ctx context.Context, q Querier, limit int) ([]Refund, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+columns+` FROM refunds WHERE state = 'requested' AND route IN ('R2', 'R3', 'R4')
		ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("refund: awaiting review: %w", err)
	}
	defer rows.Close()
	var out []Refund
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("refund: awaiting review: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
