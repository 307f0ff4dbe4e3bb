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
//     transaction: report to the non-tax system, report to the window platform, issue the
//     e-receipt.
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
)

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
	Now           func() time.Time
	Rand          io.Reader
	Logger        *slog.Logger
	Registry      prometheus.Registerer
	// Queued is called after tasks were queued (e.g. the task runner's Wake).
	Queued func()
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
	log := s.cfg.Logger.With("message_id", env.ID, "bill_no", p.BillNo, "order_no", p.OrderNo, "channel", p.Channel)

	var seen int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM payments WHERE message_id = $1 OR (channel = $2 AND channel_trade_no = $3)`,
		env.ID, p.Channel, p.ChannelTradeNo).Scan(&seen); err != nil {
		return fmt.Errorf("payment: replay check: %w", err)
	}
	if seen > 0 {
		log.Info("payment already recorded; redelivery ignored")
		return nil
	}

	rec := Record{MessageID: env.ID, BillNo: p.BillNo, OrderNo: p.OrderNo, Channel: p.Channel, ChannelTradeNo: p.ChannelTradeNo,
		Amount: p.Amount, Fine: p.Fine, LateFee: p.LateFee, PaidAt: p.PaidAt, NotificationID: p.NotificationID,
		Result: ResultRecorded, RecordedAt: s.cfg.Now().UTC()}
	b, err := bill.BillGetByNoForUpdate(ctx, s.cfg.DB, tx, p.BillNo)
	switch {
	case errors.Is(err, bill.ErrNotFound):
		rec.Result, rec.Reason = ResultUnmatched, "no such bill"
	case err != nil:
		return err
	default:
		rec.ViolationSerial = b.ViolationSerial
		result, reason, err := classify(ctx, tx, b, p)
		if err != nil {
			return err
		}
		rec.Result, rec.Reason = result, reason
	}
	rec.ID, err = PaymentInsert(ctx, tx, rec)
	if err != nil {
		return err
	}
	switch rec.Result {
	case ResultDuplicate:
		log.Warn("duplicate payment recorded for refund", "reason", rec.Reason)
		return nil
	case ResultUnmatched:
		log.Error("unmatched payment recorded for review", "reason", rec.Reason)
		return nil
	}
	if ok, err := bill.BillMarkPaid(ctx, tx, b.BillNo, rec.ID, p.PaidAt); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("payment: bill %s was not unpaid", b.BillNo)
	}
	if err := s.enqueue(ctx, tx, b, rec); err != nil {
		return err
	}
	log.Info("payment recorded; bill paid", "amount", p.Amount)
	if s.cfg.Queued != nil {
		s.cfg.Queued()
	}
	return nil
}

// classify says whether a payment pays its bill (ResultRecorded), or is a duplicate or
// unmatched, and why.
func classify(ctx context.Context, tx *sql.Tx, b bill.Record, p *envelope.PaymentConfirmed) (result, reason string, err error) {
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
