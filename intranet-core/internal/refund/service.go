package refund

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/task"
)

// Kinds of the durable tasks that move a refund along; their key is the refund number.
const (
	KindApply    = "refund.apply"    // apply to the e-receipt platform
	KindReview   = "refund.review"   // ask the non-tax system for its review, until decided
	KindInstruct = "refund.instruct" // hand the refund to the channel (through the gateway) or the bank
	KindReport   = "refund.report"   // tell the non-tax system and the route's party the outcome
)

// Application is what the e-receipt platform is asked: refund this payment of this receipt.
type Application struct {
	RefundNo    string `json:"refund_no"`
	Route       string `json:"route"`
	FormNo      string `json:"form_no"`
	OrderNo     string `json:"order_no"`
	ReceiptCode string `json:"receipt_code"`
	ReceiptNo   string `json:"receipt_no"`
	PaidAmount  int64  `json:"paid_amount"`
	Amount      int64  `json:"amount"`
	Reason      string `json:"reason"`
}

// Review decisions of the non-tax system.
const (
	ReviewPending  = "pending"
	ReviewApproved = "approved"
	ReviewRejected = "rejected"
)

// Outcome is the end of a refund as reported to the parties.
type Outcome struct {
	RefundNo   string `json:"refund_no"`
	Route      string `json:"route"`
	FormNo     string `json:"form_no"`
	OrderNo    string `json:"order_no"`
	Amount     int64  `json:"amount"`
	Status     string `json:"status"` // refunded, failed or rejected
	ChannelRef string `json:"channel_refund_id"`
	At         string `json:"at"`
}

// Applier applies for refunds at the e-receipt platform.
type Applier interface {
	ApplyRefund(ctx context.Context, requestID string, a Application) error
}

// Reviewer answers the non-tax system's review decision on a refund.
type Reviewer interface {
	RefundReview(ctx context.Context, requestID, refundNo string) (decision, note string, err error)
}

// Reporter tells one party a refund's outcome.
type Reporter interface {
	ReportRefund(ctx context.Context, requestID string, o Outcome) error
}

// Instructor hands an approved refund to whoever pays it back, inside tx: the gateway (an outbox
// message for the channel call) or the bank adapter.
type Instructor interface {
	InstructRefund(ctx context.Context, tx *sql.Tx, r Refund) error
}

// PaymentFacts are the payment's facts a refund application needs.
type PaymentFacts func(ctx context.Context, q Querier, r Refund) (formNo, receiptCode, receiptNo string, paid int64, err error)

// Config configures a Service.
type Config struct {
	DB          *sqldb.DB
	Applier     Applier
	Reviewer    Reviewer
	Instructors map[string]Instructor // by payment channel; "" is the default
	// Reporters are told the outcome: NonTax always, Route[r] for refunds of route r.
	NonTax Reporter
	Route  map[Route]Reporter
	Facts  PaymentFacts
	// OnRefunded runs in the transaction that records a refund as refunded (red-flush the receipt).
	OnRefunded func(ctx context.Context, tx *sql.Tx, r Refund) error
	Now        func() time.Time
	Logger     *slog.Logger
	Queued     func() // called after tasks were queued
}

// Service moves refunds through their states with durable tasks.
type Service struct {
	cfg   Config
	store *Store
}

// NewService returns a service.
func NewService(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, store: NewStore(cfg.DB, cfg.Now)}
}

// Store returns the service's store.
func (s *Service) Store() *Store { return s.store }

// Handlers are the task handlers of the service, by kind.
func (s *Service) Handlers() map[string]task.Handler {
	return map[string]task.Handler{KindApply: s.handleApply, KindReview: s.handleReview, KindInstruct: s.handleInstruct, KindReport: s.handleReport}
}

type refTask struct {
	RefundNo string `json:"refund_no"`
}

func (s *Service) enqueue(ctx context.Context, tx *sql.Tx, kind, prefix string, refundNo string, payload any) error {
	if payload == nil {
		payload = refTask{RefundNo: refundNo}
	}
	_, err := task.Enqueue(ctx, tx, s.cfg.Now(), task.Spec{Kind: kind, Key: refundNo,
		RequestID: partner.StableRequestID(prefix, refundNo), Payload: payload})
	return err
}

func (s *Service) queued() {
	if s.cfg.Queued != nil {
		s.cfg.Queued()
	}
}

// Start records a refund request in tx; a route without a clerk's review goes straight on to
// the e-receipt platform. The same instruction again returns the refund already made.
func (s *Service) Start(ctx context.Context, tx *sql.Tx, r Request) (Refund, bool, error) {
	ref, created, err := s.store.Create(ctx, tx, r)
	if err != nil || !created {
		return ref, created, err
	}
	if !r.Route.NeedsReview() {
		if err := s.enqueue(ctx, tx, KindApply, "rfa", ref.RefundNo, nil); err != nil {
			return ref, false, err
		}
	}
	return ref, true, nil
}

// Review records a clerk's review; an approved refund goes on to the e-receipt platform, a
// rejected one ends and is reported. record, when not nil, runs in the review's transaction with
// the reviewed refund (the console's audit row): the review and it commit together or not at all.
func (s *Service) Review(ctx context.Context, refundNo, reviewer string, approve bool, note string,
	record func(ctx context.Context, tx *sql.Tx, r Refund) error) (Refund, error) {
	var ref Refund
	err := s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		ref, err = s.store.Review(ctx, tx, refundNo, reviewer, approve, note)
		if err != nil {
			return err
		}
		if record != nil {
			if err := record(ctx, tx, ref); err != nil {
				return err
			}
		}
		if approve {
			return s.enqueue(ctx, tx, KindApply, "rfa", refundNo, nil)
		}
		return s.enqueue(ctx, tx, KindReport, "rfr", refundNo, nil)
	})
	if err == nil {
		s.queued()
	}
	return ref, err
}

func (s *Service) load(ctx context.Context, t task.Task) (Refund, error) {
	var p refTask
	if err := t.Decode(&p); err != nil {
		return Refund{}, task.Permanent(err)
	}
	ref, err := Get(ctx, s.cfg.DB, p.RefundNo)
	if errors.Is(err, ErrNotFound) {
		return Refund{}, task.Permanent(err)
	}
	return ref, err
}

// handleApply applies to the e-receipt platform (the same request ID on every attempt), then
// moves the refund to applied and queues the review poll.
func (s *Service) handleApply(ctx context.Context, t task.Task) (task.Finish, error) {
	ref, err := s.load(ctx, t)
	if err != nil {
		return nil, err
	}
	if ref.State != Requested && ref.State != Reviewed {
		return nil, nil // already past this step
	}
	formNo, code, no, paid, err := s.cfg.Facts(ctx, s.cfg.DB, ref)
	if err != nil {
		return nil, err
	}
	err = s.cfg.Applier.ApplyRefund(ctx, t.RequestID, Application{RefundNo: ref.RefundNo, Route: string(ref.Route), FormNo: formNo,
		OrderNo: ref.OrderNo, ReceiptCode: code, ReceiptNo: no, PaidAmount: paid, Amount: ref.Amount, Reason: ref.Reason})
	if err != nil {
		if partner.IsFinal(err) {
			return nil, task.Permanent(err)
		}
		return nil, err
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		if _, err := s.store.Move(ctx, tx, ref.RefundNo, Applied, "ereceipt", "application accepted", ""); err != nil {
			return err
		}
		return s.enqueue(ctx, tx, KindReview, "rfv", ref.RefundNo, nil)
	}, nil
}

// ErrReviewPending makes the review task try again later.
var ErrReviewPending = errors.New("refund: the non-tax review is pending")

// handleReview asks the non-tax system for its decision until there is one.
func (s *Service) handleReview(ctx context.Context, t task.Task) (task.Finish, error) {
	ref, err := s.load(ctx, t)
	if err != nil {
		return nil, err
	}
	if ref.State != Applied {
		return nil, nil
	}
	decision, note, err := s.cfg.Reviewer.RefundReview(ctx, t.RequestID, ref.RefundNo)
	if err != nil {
		return nil, err
	}
	switch decision {
	case ReviewPending:
		return nil, ErrReviewPending
	case ReviewApproved:
		return func(ctx context.Context, tx *sql.Tx) error {
			if _, err := s.store.Move(ctx, tx, ref.RefundNo, Approved, "nontax", note, ""); err != nil {
				return err
			}
			return s.enqueue(ctx, tx, KindInstruct, "rfi", ref.RefundNo, nil)
		}, nil
	case ReviewRejected:
		return func(ctx context.Context, tx *sql.Tx) error {
			if _, err := s.store.Move(ctx, tx, ref.RefundNo, Rejected, "nontax", note, ""); err != nil {
				return err
			}
			return s.enqueue(ctx, tx, KindReport, "rfr", ref.RefundNo, nil)
		}, nil
	}
	return nil, fmt.Errorf("refund: non-tax review of %s answered %q", ref.RefundNo, decision)
}

// handleInstruct hands the approved refund over, in the transaction that marks it sent.
func (s *Service) handleInstruct(ctx context.Context, t task.Task) (task.Finish, error) {
	ref, err := s.load(ctx, t)
	if err != nil {
		return nil, err
	}
	if ref.State != Approved {
		return nil, nil
	}
	in, ok := s.cfg.Instructors[ref.Channel]
	if !ok {
		in, ok = s.cfg.Instructors[""]
	}
	if !ok {
		return nil, task.Permanent(fmt.Errorf("refund: no way to refund channel %q", ref.Channel))
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		if err := in.InstructRefund(ctx, tx, ref); err != nil {
			return err
		}
		_, err := s.store.Move(ctx, tx, ref.RefundNo, Sent, "core", "refund instructed", "")
		return err
	}, nil
}

// Channel results of a refund, as the gateway or the bank reports them.
const (
	ResultProcessing = "processing"
	ResultSuccess    = "success"
	ResultFailed     = "failed"
	ResultUnknown    = "unknown"
)

// ApplyResult records a result of the channel or bank in tx. A result that no longer applies (a
// late "processing" after "success") is recorded in the log and changes nothing; a final result
// queues the reports and, for a success, runs OnRefunded in the same transaction.
func (s *Service) ApplyResult(ctx context.Context, tx *sql.Tx, refundNo, result, channelRef, actor, detail string) error {
	to := map[string]State{ResultProcessing: Sent, ResultSuccess: Refunded, ResultFailed: Failed, ResultUnknown: Unknown}[result]
	if to == "" {
		return fmt.Errorf("refund: result %q of %s", result, refundNo)
	}
	before, err := s.store.lock(ctx, tx, refundNo)
	if err != nil {
		return err
	}
	if before.State == to {
		return nil
	}
	ref, err := s.store.Move(ctx, tx, refundNo, to, actor, detail, channelRef)
	if errors.Is(err, ErrTransition) {
		s.cfg.Logger.Warn("refund result ignored", "refund_no", refundNo, "state", before.State, "result", result)
		return nil
	}
	if err != nil {
		return err
	}
	if to == Refunded && s.cfg.OnRefunded != nil {
		if err := s.cfg.OnRefunded(ctx, tx, ref); err != nil {
			return err
		}
	}
	if to.Final() {
		return s.enqueue(ctx, tx, KindReport, "rfr", refundNo, nil)
	}
	return nil
}

// handleReport tells the non-tax system and the route's party a refund's outcome. Each party
// gets its own request ID, derived from the refund number, so that one that has taken the
// report answers a retry with its first answer.
func (s *Service) handleReport(ctx context.Context, t task.Task) (task.Finish, error) {
	ref, err := s.load(ctx, t)
	if err != nil {
		return nil, err
	}
	if !ref.State.Final() {
		return nil, task.Permanent(fmt.Errorf("refund: %s is %s, not final", ref.RefundNo, ref.State))
	}
	formNo, _, _, _, err := s.cfg.Facts(ctx, s.cfg.DB, ref)
	if err != nil {
		return nil, err
	}
	o := Outcome{RefundNo: ref.RefundNo, Route: string(ref.Route), FormNo: formNo, OrderNo: ref.OrderNo, Amount: ref.Amount,
		Status: string(ref.State), ChannelRef: ref.ChannelRef, At: partner.FormatTime(ref.UpdatedAt)}
	parties := []struct {
		prefix string
		r      Reporter
	}{{"rnt", s.cfg.NonTax}, {"rrt", s.cfg.Route[ref.Route]}}
	for _, p := range parties {
		if p.r == nil {
			continue
		}
		if err := p.r.ReportRefund(ctx, partner.StableRequestID(p.prefix, ref.RefundNo), o); err != nil {
			if partner.IsFinal(err) {
				return nil, task.Permanent(err)
			}
			return nil, err
		}
	}
	return nil, nil
}
