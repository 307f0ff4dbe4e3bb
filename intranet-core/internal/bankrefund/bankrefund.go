// Package bankrefund is the agency bank's leg of flow R4, the refund of a bank-channel payment
// (P3). Once the non-tax system has approved the refund, the refund service's instruct step
// calls Instructor inside its transaction: it queues a durable task refund.bank whose payload is
// the instruction (bank code, the bank's serial number of the original payment, the refund
// number and amount). The task asks the finance adapter to have the bank refund
// (POST /adapter/v1/refunds, signed as the core, the same request ID and body on every attempt)
// and then reads the bank's state of the refund back (GET /adapter/v1/refunds/{refund_no}):
//
//   - accepted and processing: the task tries again later (backoff), until the refund is final;
//   - no answer, or the adapter could not reach the bank: the refund moves to unknown and the
//     instruction is repeated with the same refund number, which the bank takes as the same
//     refund: never a second one;
//   - success or failed: the result is applied to the refund (red-flush and reports follow).
//
// The adapter also pushes the bank's result as soon as it has it, to the core's partner API
// (POST /partner/v1/bank/refund-results, behind partnerin.Guard): validated, checked against the
// refund (its bank payment, its amount, its state), applied through the refund service in one
// transaction, and recorded, accepted or refused, in bank_refund_results. A repeated result
// changes nothing.
package bankrefund

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/refund"
	"finepay/intranet-core/internal/task"
	"finepay/shared/clip"
)

// KindInstruct is the durable task that instructs the bank and follows the refund until it is
// final; its key is the refund number.
const KindInstruct = "refund.bank"

// PathAdapterRefunds is where the finance adapter takes refund instructions; the bank's state
// of one refund is at PathAdapterRefunds + "/" + refund_no.
const PathAdapterRefunds = "/adapter/v1/refunds"

// Bank statuses of a refund, as the adapter reports them.
const (
	StatusProcessing = refund.ResultProcessing
	StatusSuccess    = refund.ResultSuccess
	StatusFailed     = refund.ResultFailed
)

// Instruction is the body of POST /adapter/v1/refunds: refund this bank payment.
type Instruction struct {
	RefundNo   string `json:"refund_no"`
	BankCode   string `json:"bank_code"`
	BankSerial string `json:"bank_serial"`
	OrderNo    string `json:"order_no"`
	PaidAmount int64  `json:"paid_amount"`
	Amount     int64  `json:"amount"`
	Reason     string `json:"reason"`
}

// Result is a bank's word on a refund: the body of POST /partner/v1/bank/refund-results, and the
// adapter's answer to GET /adapter/v1/refunds/{refund_no}.
type Result struct {
	RefundNo       string `json:"refund_no"`
	BankCode       string `json:"bank_code"`
	BankSerial     string `json:"bank_serial"`
	Status         string `json:"status"` // processing (query only), success or failed
	BankRefundNo   string `json:"bank_refund_no"`
	RefundedAmount int64  `json:"refunded_amount"`
	At             string `json:"at"`
	Detail         string `json:"detail"`
}

// Instructor implements refund.Instructor for bank payments: it queues the refund.bank task in
// the transaction that marks the refund sent.
type Instructor struct {
	Now func() time.Time
}

// InstructRefund implements refund.Instructor.
func (in Instructor) InstructRefund(ctx context.Context, tx *sql.Tx, r refund.Refund) error {
	var ins Instruction
	err := tx.QueryRowContext(ctx, `SELECT b.bank_code, b.bank_serial, p.amount FROM bank_payments b
		JOIN payments p ON p.id = b.payment_id WHERE b.payment_id = $1`, r.PaymentID).Scan(&ins.BankCode, &ins.BankSerial, &ins.PaidAmount)
	if errors.Is(err, sql.ErrNoRows) {
		return task.Permanent(fmt.Errorf("bankrefund: payment %d of refund %s was not collected by a bank", r.PaymentID, r.RefundNo))
	}
	if err != nil {
		return fmt.Errorf("bankrefund: bank payment of %s: %w", r.RefundNo, err)
	}
	ins.RefundNo, ins.OrderNo, ins.Amount, ins.Reason = r.RefundNo, r.OrderNo, r.Amount, reasonText(r.Reason)
	now := time.Now
	if in.Now != nil {
		now = in.Now
	}
	_, err = task.Enqueue(ctx, tx, now(), task.Spec{Kind: KindInstruct, Key: r.RefundNo,
		RequestID: partner.StableRequestID("rbk", r.RefundNo), Payload: ins})
	return err
}

// maxReason bounds the reason sent to the bank, in bytes.
const maxReason = 240

func reasonText(s string) string {
	r := []rune(s)
	for len(string(r)) > maxReason {
		r = r[:len(r)-1]
	}
	return string(r)
}

// Adapter is the finance adapter as the core calls it; *Client is one.
type Adapter interface {
	Instruct(ctx context.Context, requestID string, in Instruction) error
	Status(ctx context.Context, requestID, refundNo string) (Result, error)
}

// Client calls the finance adapter.
type Client struct{ p *partner.Client }

// NewClient returns a client over p (the adapter's base URL, -bank-adapter-url).
func NewClient(p *partner.Client) *Client { return &Client{p: p} }

// ErrBadAnswer: the adapter's signed answer is not what the protocol says.
var ErrBadAnswer = errors.New("bankrefund: unexpected answer of the adapter")

// Instruct asks the adapter to have the bank refund; nil means the bank accepted the refund.
func (c *Client) Instruct(ctx context.Context, requestID string, in Instruction) error {
	var ans struct {
		Status   string `json:"status"`
		RefundNo string `json:"refund_no"`
	}
	if err := c.p.PostJSON(ctx, PathAdapterRefunds, requestID, in, &ans); err != nil {
		return err
	}
	if ans.Status != "accepted" || ans.RefundNo != in.RefundNo {
		return fmt.Errorf("%w: instruction %s answered %q for %q", ErrBadAnswer, in.RefundNo, ans.Status, ans.RefundNo)
	}
	return nil
}

// Status reads the bank's state of a refund.
func (c *Client) Status(ctx context.Context, requestID, refundNo string) (Result, error) {
	resp, err := c.p.Do(ctx, http.MethodGet, PathAdapterRefunds+"/"+url.PathEscape(refundNo), requestID, nil)
	if err != nil {
		return Result{}, err
	}
	var r Result
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	if err := r.validate(false); err != nil || r.RefundNo != refundNo {
		return Result{}, fmt.Errorf("%w: state of %s: %v", ErrBadAnswer, refundNo, err)
	}
	return r, nil
}

// Results applies results to refunds; *refund.Service is one.
type Results interface {
	ApplyResult(ctx context.Context, tx *sql.Tx, refundNo, result, channelRef, actor, detail string) error
}

// AdapterCaller is the partner API caller allowed to push refund results (X-FP-App).
const AdapterCaller = "bankadapter"

// Config configures a Service.
type Config struct {
	DB      *sqldb.DB
	Adapter Adapter
	Refunds Results
	// Callers may push results; [AdapterCaller] when empty.
	Callers []string
	Now     func() time.Time
	Logger  *slog.Logger
}

// Service runs the refund.bank task and takes the adapter's results.
type Service struct {
	cfg     Config
	callers map[string]bool
}

// NewService returns a service.
func NewService(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Callers) == 0 {
		cfg.Callers = []string{AdapterCaller}
	}
	s := &Service{cfg: cfg, callers: map[string]bool{}}
	for _, c := range cfg.Callers {
		s.callers[c] = true
	}
	return s
}

// ErrPending makes the refund.bank task ask again later: the bank is processing the refund.
var ErrPending = errors.New("bankrefund: the bank is processing the refund")

// HandleInstruct is the task.Handler of KindInstruct.
func (s *Service) HandleInstruct(ctx context.Context, t task.Task) (task.Finish, error) {
	var in Instruction
	if err := t.Decode(&in); err != nil {
		return nil, task.Permanent(err)
	}
	ref, err := refund.Get(ctx, s.cfg.DB, in.RefundNo)
	if errors.Is(err, refund.ErrNotFound) {
		return nil, task.Permanent(err)
	}
	if err != nil {
		return nil, err
	}
	if ref.State.Final() {
		return nil, nil // the adapter's push came first
	}
	log := s.cfg.Logger.With("refund_no", in.RefundNo, "attempt", t.Attempt)
	// The same request ID and body on every attempt: the adapter answers a repeat with its first
	// answer, and the bank takes the same refund number as the same refund.
	if err := s.cfg.Adapter.Instruct(ctx, t.RequestID, in); err != nil {
		if partner.IsFinal(err) {
			// Not left "sent": the refund shows as unknown (alerted on, core_refunds{state="unknown"})
			// for an operator to settle with the bank. Not failed: a refusal does not prove the bank
			// never took this refund number.
			log.Error("the adapter refused the refund instruction; needs an operator", "err", err)
			if ref.State != refund.Unknown {
				s.move(ctx, log, ref, refund.ResultUnknown, "the adapter refused the instruction ("+err.Error()+"); an operator must settle the refund with the bank")
			}
			return nil, task.Permanent(fmt.Errorf("bankrefund: instruction %s refused: %w", in.RefundNo, err))
		}
		s.move(ctx, log, ref, refund.ResultUnknown, "the adapter gave no answer to the instruction; it is repeated with the same refund number")
		return nil, fmt.Errorf("bankrefund: instruction %s: %w", in.RefundNo, err)
	}
	res, err := s.cfg.Adapter.Status(ctx, partner.StableRequestID("rbq", in.RefundNo), in.RefundNo)
	if err != nil {
		return nil, fmt.Errorf("bankrefund: state of %s at the bank: %w", in.RefundNo, err)
	}
	if res.Status == StatusProcessing {
		if ref.State == refund.Unknown {
			s.move(ctx, log, ref, refund.ResultProcessing, "the bank accepted the refund and is processing it")
		}
		return nil, ErrPending
	}
	return nil, s.applyQueried(ctx, log, res)
}

// applyQueried applies a final state read back from the bank. One that does not fit the refund
// is recorded and leaves the task dead for an operator.
func (s *Service) applyQueried(ctx context.Context, log *slog.Logger, res Result) error {
	err := s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		_, err := s.apply(ctx, tx, "query", res)
		return err
	})
	var rf *refusal
	if errors.As(err, &rf) {
		s.record(ctx, s.cfg.DB, "query", res, "refused", rf.code, rf.msg)
		log.Error("the bank's state of the refund does not fit it; needs an operator", "code", rf.code, "err", rf.msg)
		return task.Permanent(rf)
	}
	return err
}

// move records a processing or unknown word on a sent refund in its own transaction.
func (s *Service) move(ctx context.Context, log *slog.Logger, ref refund.Refund, result, detail string) {
	err := s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		return s.cfg.Refunds.ApplyResult(ctx, tx, ref.RefundNo, result, "", "core", detail)
	})
	if err != nil {
		log.Warn("refund state not recorded", "result", result, "err", err)
	}
}

// refusal is a result that does not fit its refund: answered with its code, recorded, nothing
// changed.
type refusal struct {
	status int
	code   string
	msg    string
}

func (r *refusal) Error() string { return r.code + ": " + r.msg }

// apply checks a final result (success or failed) against its refund in tx and applies it. It
// reports whether the refund already recorded it.
func (s *Service) apply(ctx context.Context, tx *sql.Tx, source string, res Result) (bool, error) {
	var no string
	err := tx.QueryRowContext(ctx, `SELECT refund_no FROM refunds WHERE refund_no = $1`+s.cfg.DB.ForUpdate(), res.RefundNo).Scan(&no)
	if errors.Is(err, sql.ErrNoRows) {
		return false, &refusal{http.StatusNotFound, CodeRefundNotFound, fmt.Sprintf("the core knows no refund %s", res.RefundNo)}
	}
	if err != nil {
		return false, err
	}
	ref, err := refund.Get(ctx, tx, res.RefundNo)
	if err != nil {
		return false, err
	}
	var code, serial string
	err = tx.QueryRowContext(ctx, `SELECT bank_code, bank_serial FROM bank_payments WHERE payment_id = $1`, ref.PaymentID).Scan(&code, &serial)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	if code != res.BankCode || serial != res.BankSerial {
		return false, &refusal{http.StatusConflict, CodeRefundMismatch,
			fmt.Sprintf("refund %s is not of payment %s of bank %s", res.RefundNo, res.BankSerial, res.BankCode)}
	}
	to := refund.Refunded
	if res.Status == StatusFailed {
		to = refund.Failed
	}
	switch {
	case ref.State == to && (to == refund.Failed || ref.ChannelRef == res.BankRefundNo && ref.Amount == res.RefundedAmount):
		s.record(ctx, tx, source, res, "repeated", "", "")
		return true, nil
	case ref.State.Final():
		return false, &refusal{http.StatusConflict, CodeResultConflict,
			fmt.Sprintf("refund %s is already %s (bank refund %q)", res.RefundNo, ref.State, ref.ChannelRef)}
	case ref.State != refund.Sent && ref.State != refund.Unknown:
		return false, &refusal{http.StatusConflict, CodeRefundNotInstructed,
			fmt.Sprintf("refund %s is %s: the bank was never instructed", res.RefundNo, ref.State)}
	case to == refund.Refunded && res.RefundedAmount != ref.Amount:
		return false, &refusal{http.StatusUnprocessableEntity, CodeAmountMismatch,
			fmt.Sprintf("refund %s is of %d fen; the bank reports %d refunded", res.RefundNo, ref.Amount, res.RefundedAmount)}
	}
	detail := "bank refund " + res.BankRefundNo
	if res.Status == StatusFailed {
		detail = "the bank could not refund: " + res.Detail
	}
	if err := s.cfg.Refunds.ApplyResult(ctx, tx, res.RefundNo, res.Status, res.BankRefundNo, "bank:"+res.BankCode, detail); err != nil {
		return false, err
	}
	s.record(ctx, tx, source, res, "applied", "", "")
	return false, nil
}

// execer is a *sqldb.DB or *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// record writes a row of bank_refund_results. A failure is logged: the answer is decided, and
// the log carries the same facts.
func (s *Service) record(ctx context.Context, q execer, source string, res Result, outcome, code, detail string) {
	if detail == "" {
		detail = res.Detail
	}
	_, err := q.ExecContext(context.WithoutCancel(ctx), `INSERT INTO bank_refund_results (refund_no, bank_code, bank_serial, source, status,
		bank_refund_no, amount, outcome, code, detail, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		clip.Text(res.RefundNo, 64), clip.Text(res.BankCode, 32), clip.Text(res.BankSerial, 64), source, clip.Text(res.Status, 16),
		clip.Text(res.BankRefundNo, 64), res.RefundedAmount, outcome, code, clip.Text(detail, 500), s.cfg.Now().UTC())
	if err != nil {
		s.cfg.Logger.Error("bank refund result not recorded", "refund_no", res.RefundNo, "outcome", outcome, "err", err)
	}
}
