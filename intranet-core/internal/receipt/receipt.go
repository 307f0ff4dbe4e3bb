// Package receipt has the e-receipt of every paid bill issued (flow E1) and passes it on. The
// ereceipt.issue task asks the e-receipt platform for the receipt; the answer is accepted only
// when the platform's signature and the finance supervision seal verify; then, in the one
// transaction that completes the task, the receipt is stored and a ReceiptIssued message is put
// in the outbox for the gateway, so the payer can fetch it.
package receipt

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"finepay/ferry/outbox"
	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/task"
	"finepay/shared/envelope"
)

// KindIssue is the task kind that issues a receipt; its key is the bill number.
const KindIssue = "ereceipt.issue"

// IssueTask is the payload of an ereceipt.issue task. Request is fixed at enqueue time
// (payer_name_enc included), so every attempt sends the same bytes under the same request ID.
type IssueTask struct {
	BillNo    string           `json:"bill_no"`
	PaymentID int64            `json:"payment_id"`
	Request   ereceipt.Request `json:"request"`
}

// Issuer issues receipts; *ereceipt.Client is one.
type Issuer interface {
	Issue(ctx context.Context, requestID string, r ereceipt.Request) (ereceipt.Receipt, error)
}

// Config configures a Service.
type Config struct {
	Issuer Issuer
	Outbox *outbox.Outbox
	Now    func() time.Time
	Logger *slog.Logger
}

// Service runs ereceipt.issue tasks.
type Service struct{ cfg Config }

// NewService returns a service.
func NewService(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg}
}

// HandleIssue is the task.Handler of KindIssue.
func (s *Service) HandleIssue(ctx context.Context, t task.Task) (task.Finish, error) {
	var it IssueTask
	if err := t.Decode(&it); err != nil {
		return nil, task.Permanent(err)
	}
	rc, err := s.cfg.Issuer.Issue(ctx, t.RequestID, it.Request)
	if err != nil {
		if partner.IsFinal(err) {
			return nil, task.Permanent(err)
		}
		return nil, err
	}
	issuedAt, err := time.Parse(time.RFC3339, rc.IssuedAt)
	if err != nil {
		return nil, fmt.Errorf("receipt: issued_at: %w", err)
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO receipts (bill_no, payment_id, order_no, receipt_code, receipt_no, check_code, amount, payer_masked, issued_at, seal, stored_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
			it.BillNo, it.PaymentID, it.Request.OrderNo, rc.ReceiptCode, rc.ReceiptNo, rc.CheckCode, rc.Amount, rc.PayerMasked,
			issuedAt.UTC(), rc.Seal, s.cfg.Now().UTC())
		if err != nil {
			return fmt.Errorf("receipt: store: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			s.cfg.Logger.Warn("receipt already stored for the bill; keeping the first", "bill_no", it.BillNo)
			return nil
		}
		env, err := envelope.New("rcpt:"+it.BillNo, it.BillNo, s.cfg.Now(), &envelope.ReceiptIssued{
			BillNo: it.BillNo, OrderNo: it.Request.OrderNo, ReceiptCode: rc.ReceiptCode, ReceiptNo: rc.ReceiptNo,
			CheckCode: rc.CheckCode, Amount: rc.Amount, PayerMasked: rc.PayerMasked, IssuedAt: issuedAt,
		})
		if err != nil {
			return err
		}
		if _, err := s.cfg.Outbox.Put(ctx, tx, env); err != nil {
			return err
		}
		s.cfg.Logger.Info("receipt stored", "bill_no", it.BillNo, "receipt_code", rc.ReceiptCode, "receipt_no", rc.ReceiptNo)
		return nil
	}, nil
}
