// Package payment records confirmed channel payments (flows P1/P2, and the duplicate detection
// of R5). The gateway ferries a payment.confirmed message for every verified channel payment;
// the inbox consumer hands it to HandleConfirmed inside the consumer's transaction, which:
//
//   - ignores a replay: the same message ID, or the same channel and channel trade number, is
//     already recorded (unique indexes are the final arbiter);
//   - records the payment as a duplicate when its violation serial is already paid by another
//     payment (kept, never lost, for the R5 refund flow), or as unmatched when there is no such
//     bill or the fine differs;
//   - otherwise records it, marks the bill paid and queues three durable tasks in the same
//     transaction: report to the non-tax system, report to the window platform (or, for a bill
//     a partner asked for, to that partner: a ResultRouter, such as P1's 12123 platform), issue
//     the e-receipt.
package payment

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/pii"
	"finepay/intranet-core/internal/police"
	"finepay/intranet-core/internal/task"
	"finepay/intranet-core/internal/window"
	"finepay/shared/envelope"
	"finepay/shared/gm"
)

// Results of a recorded payment (the payments.result column).
const (
	ResultRecorded  = "recorded"
	ResultDuplicate = "duplicate"
	ResultUnmatched = "unmatched"
)

// Task kinds queued for a recorded payment; their key is the order number.
const (
	KindNonTaxReport = "nontax.report"
	KindWindowReport = "window.report"
	// KindPoliceReport reports a bank payment (flow P3) to the police business system; the
	// non-tax report follows it.
	KindPoliceReport = "police.report"
)

// ChannelBank is the channel of payments collected by agency banks (flow P3): reported to the
// police business system first, then to the non-tax system, and not to the window platform.
const ChannelBank = "bank"

// PoliceReporter reports payment results to the police business system; *police.Client is one.
type PoliceReporter interface {
	ReportPaymentResult(ctx context.Context, requestID string, r police.PaymentResult) error
}

// NonTaxReporter reports payments; *nontax.Client is one.
type NonTaxReporter interface {
	ReportPayment(ctx context.Context, requestID string, r nontax.PaymentReport) error
}

// WindowReporter reports payment results; *window.Client is one.
type WindowReporter interface {
	ReportPaymentResult(ctx context.Context, requestID string, r window.PaymentResult) error
}

// Config configures a Service.
type Config struct {
	DB            *sqldb.DB
	Vault         *pii.Vault    // opens the party name for the e-receipt request
	PartnerEncKey *gm.PublicKey // encrypts payer_name_enc
	NonTax        NonTaxReporter
	Window        WindowReporter
	Police        PoliceReporter // flow P3; nil when no police business system is configured
	Now           func() time.Time
	Rand          io.Reader
	Logger        *slog.Logger
	Registry      prometheus.Registerer
	// Queued is called after tasks were queued (e.g. the task runner's Wake).
	Queued func()
	// Routers send a payment's result to the system a bill came from (the 12123 platform for
	// P1); a bill no router claims reports to the window platform.
	Routers []ResultRouter
	// OnDuplicate runs in the transaction that records a duplicate payment (flow R5 starts its
	// refund there, so that a duplicate is never recorded without its refund).
	OnDuplicate func(ctx context.Context, tx *sql.Tx, p Record) error
}

// ResultRouter decides where the result of a recorded payment goes, besides the non-tax system
// and the e-receipt: it returns the tasks reporting p (which paid b) to the system b came from,
// queued in tx with the others, and whether they replace the window platform's report.
type ResultRouter interface {
	ResultTasks(ctx context.Context, tx *sql.Tx, b bill.Record, p Record) (specs []task.Spec, replacesWindow bool, err error)
}

// Service records payments and runs the reporting tasks.
type Service struct{ cfg Config }

// NewService returns a service. core_payments_recorded_total{result} (counted from the
// payments table, so exact across restarts and replicas) is registered with cfg.Registry.
func NewService(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(&countCollector{db: cfg.DB})
	}
	return &Service{cfg: cfg}
}

// Record is a row of the payments table.
type Record struct {
	ID              int64
	MessageID       string
	BillNo          string
	ViolationSerial string
	OrderNo         string
	Channel         string
	ChannelTradeNo  string
	Amount          int64
	Fine            int64
	LateFee         int64
	PaidAt          time.Time
	NotificationID  string
	Result          string
	Reason          string
	RecordedAt      time.Time
}

// HandleConfirmed is the inbox handler of payment.confirmed.
func (s *Service) HandleConfirmed(ctx context.Context, tx *sql.Tx, env envelope.Envelope) error {
	pl, err := env.Decode()
	if err != nil {
		return err
	}
	p, ok := pl.(*envelope.PaymentConfirmed)
	if !ok {
		return fmt.Errorf("payment: %s is not payment.confirmed", env.Type)
	}
	_, _, err = s.RecordConfirmed(ctx, tx, Confirmed{MessageID: env.ID, BillNo: p.BillNo, OrderNo: p.OrderNo,
		Channel: p.Channel, ChannelTradeNo: p.ChannelTradeNo, Amount: p.Amount, Fine: p.Fine, LateFee: p.LateFee,
		PaidAt: p.PaidAt, NotificationID: p.NotificationID})
	return err
}

// Confirmed is a payment its channel confirmed: from the ferry (payment.confirmed) or, for the
// agency banks (channel bank), from the finance adapter.
type Confirmed struct {
	MessageID      string // unique per payment at its source
	BillNo         string
	OrderNo        string
	Channel        string
	ChannelTradeNo string
	Amount         int64
	Fine           int64
	LateFee        int64
	PaidAt         time.Time
	NotificationID string
}

// RecordConfirmed records a confirmed payment in tx, as described in the package comment, and
// returns its row. fresh is false when it was recorded before (the same message ID, or the
// same channel and trade number): the earlier row is returned and nothing changes.
func (s *Service) RecordConfirmed(ctx context.Context, tx *sql.Tx, p Confirmed) (rec Record, fresh bool, err error) {
	log := s.cfg.Logger.With("message_id", p.MessageID, "bill_no", p.BillNo, "order_no", p.OrderNo, "channel", p.Channel)

	prior, err := paymentFind(ctx, tx, p.MessageID, p.Channel, p.ChannelTradeNo)
	switch {
	case err == nil:
		log.Info("payment already recorded; redelivery ignored")
		return prior, false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return Record{}, false, fmt.Errorf("payment: replay check: %w", err)
	}

	rec = Record{MessageID: p.MessageID, BillNo: p.BillNo, OrderNo: p.OrderNo, Channel: p.Channel, ChannelTradeNo: p.ChannelTradeNo,
		Amount: p.Amount, Fine: p.Fine, LateFee: p.LateFee, PaidAt: p.PaidAt, NotificationID: p.NotificationID,
		Result: ResultRecorded, RecordedAt: s.cfg.Now().UTC()}
	b, err := bill.BillGetByNoForUpdate(ctx, s.cfg.DB, tx, p.BillNo)
	switch {
	case errors.Is(err, bill.ErrNotFound):
		rec.Result, rec.Reason = ResultUnmatched, "no such bill"
	case err != nil:
		return Record{}, false, err
	default:
		rec.ViolationSerial = b.ViolationSerial
		result, reason, err := classify(ctx, tx, b, p)
		if err != nil {
			return Record{}, false, err
		}
		rec.Result, rec.Reason = result, reason
	}
	rec.ID, err = PaymentInsert(ctx, tx, rec)
	if err != nil {
		return Record{}, false, err
	}
	switch rec.Result {
	case ResultDuplicate:
		log.Warn("duplicate payment recorded for refund", "reason", rec.Reason)
		if s.cfg.OnDuplicate != nil {
			if err := s.cfg.OnDuplicate(ctx, tx, rec); err != nil {
				return Record{}, false, err
			}
		}
		return rec, true, nil
	case ResultUnmatched:
		log.Error("unmatched payment recorded for review", "reason", rec.Reason)
		return rec, true, nil
	}
	if ok, err := bill.BillMarkPaid(ctx, tx, b.BillNo, rec.ID, p.PaidAt); err != nil {
		return Record{}, false, err
	} else if !ok {
		return Record{}, false, fmt.Errorf("payment: bill %s was not unpaid", b.BillNo)
	}
	if err := s.enqueue(ctx, tx, b, rec); err != nil {
		return Record{}, false, err
	}
	log.Info("payment recorded; bill paid", "amount", p.Amount)
	if s.cfg.Queued != nil {
		s.cfg.Queued()
	}
	return rec, true, nil
}

// classify says whether a payment pays its bill (ResultRecorded), or is a duplicate or
// unmatched, and why.
func classify(ctx context.Context, tx *sql.Tx, b bill.Record, p Confirmed) (result, reason string, err error) {
	var prior string
	err = tx.QueryRowContext(ctx, `SELECT order_no FROM payments WHERE violation_serial = $1 AND result = 'recorded'`, b.ViolationSerial).Scan(&prior)
	switch {
	case err == nil:
		return ResultDuplicate, fmt.Sprintf("violation %s already paid by order %s", b.ViolationSerial, prior), nil
	case !errors.Is(err, sql.ErrNoRows):
		return "", "", fmt.Errorf("payment: duplicate check: %w", err)
	}
	switch {
	case b.Status == bill.StatusPaid:
		return ResultDuplicate, "bill already paid", nil
	case b.Status != bill.StatusUnpaid:
		return ResultUnmatched, "bill is " + b.Status, nil
	case p.Fine != b.Fine:
		return ResultUnmatched, fmt.Sprintf("fine %d differs from the bill's %d", p.Fine, b.Fine), nil
	case p.LateFee > b.Fine:
		return ResultUnmatched, "late fee exceeds the fine", nil
	}
	return ResultRecorded, "", nil
}
