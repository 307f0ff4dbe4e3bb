// Package receipt runs the e-receipt life cycle of flow E1 on the core's side, which is the
// issuing unit's side (the police e-receipt connector of the tender):
//
//   - stock (票据库存): the number ranges finance hands down are taken into stock (stored, then
//     confirmed to the platform); each receipt's code and number are taken from the unit's stock
//     in order, in the transaction that records them with the receipt data the unit signs;
//   - issue (开具): the ereceipt.issue task sends the unit's signed receipt data to the e-receipt
//     platform, which checks it and adds the check code and the finance supervision seal; the
//     answer is accepted only when the platform's signature and the seal verify; then, in the one
//     transaction that completes the task, the receipt is stored and a ReceiptIssued message with
//     the signed receipt and its layout file is put in the outbox for the gateway, so the payer
//     can download it;
//   - red-flush (红冲): RedFlush (or the ereceipt.red task) has a red receipt issued for a
//     bill's receipt, from the same stock; the original is kept and marked;
//   - write-off (核销) and master data: scheduled tasks report each day's usage and keep the
//     unit and item master data in sync with finance.
//
// Exactly one receipt per payment: the task is keyed by bill, the number by bill and kind, the
// receipt by bill, and the platform answers a repeated form with its first receipt.
package receipt

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/task"
	"finepay/shared/envelope"
	"finepay/shared/gm"
)

// Task kinds of the life cycle.
const (
	KindIssue      = "ereceipt.issue"      // key: bill number
	KindRedFlush   = "ereceipt.red"        // key: bill number
	KindStock      = "ereceipt.stock"      // key: the slot (hour) or the moment stock ran out
	KindMasterData = "ereceipt.masterdata" // key: the business day
	KindWriteOff   = "ereceipt.writeoff"   // key: the business day reported
)

// ReceiptName is the name printed on the receipts the core has issued.
const ReceiptName = "黑龙江省非税收入一般缴款书（电子）"

// LateFeeItemCode is the revenue item of a late fee (加处罚款), a receipt line of its own.
const LateFeeItemCode = "103050102"

// IssueTask is the payload of an ereceipt.issue task. Request is fixed at enqueue time
// (payer_name_enc included); the receipt number and the signed data are added from the unit's
// stock before the first attempt and stored, so every attempt sends the same bytes under the
// same request ID.
type IssueTask struct {
	BillNo    string           `json:"bill_no"`
	PaymentID int64            `json:"payment_id"`
	Request   ereceipt.Request `json:"request"`
}

// Platform is the e-receipt platform; *ereceipt.Client is one.
type Platform interface {
	Issue(ctx context.Context, requestID string, r ereceipt.Request) (ereceipt.Receipt, error)
	RedFlush(ctx context.Context, requestID string, r ereceipt.RedRequest, amount int64) (ereceipt.Receipt, error)
	Allocations(ctx context.Context, requestID string) ([]ereceipt.Allocation, error)
	Accept(ctx context.Context, requestID string, a ereceipt.Allocation) error
	WriteOff(ctx context.Context, requestID string, r ereceipt.WriteOffReport) (ereceipt.WriteOffResult, error)
	MasterData(ctx context.Context, requestID string) (ereceipt.MasterData, error)
}

// Config configures a Service.
type Config struct {
	DB       *sqldb.DB
	Platform Platform
	// UnitKey signs the receipt data: the issuing unit's SM2 key (unit-sign.key).
	UnitKey gm.Signer
	Outbox  *outbox.Outbox
	// Issuer is the 开票人 named in the receipt data; "FinePay" when empty.
	Issuer string
	Now    func() time.Time
	Rand   io.Reader
	Logger *slog.Logger
}

// Service runs the life cycle's tasks.
type Service struct{ cfg Config }

// NewService returns a service.
func NewService(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "FinePay"
	}
	return &Service{cfg: cfg}
}

// Handlers returns the task handlers of the life cycle, by kind.
func (s *Service) Handlers() map[string]task.Handler {
	return map[string]task.Handler{
		KindIssue:      s.HandleIssue,
		KindRedFlush:   s.HandleRedFlush,
		KindStock:      s.HandleStock,
		KindMasterData: s.HandleMasterData,
		KindWriteOff:   s.HandleWriteOff,
	}
}

// billInfo is what a receipt takes from its bill.
type billInfo struct {
	unitCode, unitName, itemName, payerMasked string
}

func getBill(ctx context.Context, q querier, billNo string) (billInfo, error) {
	var b billInfo
	err := q.QueryRowContext(ctx, `SELECT unit_code, unit_name, item_name, party_masked FROM bills WHERE bill_no = $1`, billNo).
		Scan(&b.unitCode, &b.unitName, &b.itemName, &b.payerMasked)
	if err != nil {
		return b, fmt.Errorf("receipt: bill %s: %w", billNo, err)
	}
	return b, nil
}

// itemName is the master data's name of an item, or fallback.
func itemName(ctx context.Context, q querier, code, fallback string) string {
	var n string
	if err := q.QueryRowContext(ctx, `SELECT item_name FROM receipt_items WHERE item_code = $1`, code).Scan(&n); err != nil || n == "" {
		return fallback
	}
	return n
}

// HandleIssue is the task.Handler of KindIssue.
func (s *Service) HandleIssue(ctx context.Context, t task.Task) (task.Finish, error) {
	var it IssueTask
	if err := t.Decode(&it); err != nil {
		return nil, task.Permanent(err)
	}
	req := it.Request
	num, err := s.assign(ctx, it.BillNo, ereceipt.KindBlue, req.UnitCode, func(tx *sql.Tx, code, no string) (ereceipt.Data, error) {
		b, err := getBill(ctx, tx, it.BillNo)
		if err != nil {
			return ereceipt.Data{}, err
		}
		items := []ereceipt.Item{{ItemCode: req.ItemCode, ItemName: itemName(ctx, tx, req.ItemCode, b.itemName), Amount: req.Fine}}
		if req.LateFee > 0 {
			items = append(items, ereceipt.Item{ItemCode: LateFeeItemCode, ItemName: itemName(ctx, tx, LateFeeItemCode, "加处罚款"), Amount: req.LateFee})
		}
		return ereceipt.Data{
			Version: 1, Kind: ereceipt.KindBlue, Name: ReceiptName, ReceiptCode: code, ReceiptNo: no,
			FormNo: req.FormNo, PayCode: req.PayCode, OrderNo: req.OrderNo, Payer: b.payerMasked, UnitCode: req.UnitCode,
			UnitName: b.unitName, Items: items, Amount: req.Amount, PaidAt: req.PaidAt, Issuer: s.cfg.Issuer,
			SignedAt: partner.FormatTime(s.cfg.Now()),
		}, nil
	})
	if errors.Is(err, ErrNoStock) {
		s.askForStock(ctx)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	req.ReceiptCode, req.ReceiptNo = num.code, num.no
	req.Data, req.UnitSignature = base64.StdEncoding.EncodeToString([]byte(num.data)), num.unitSignature
	rc, err := s.cfg.Platform.Issue(ctx, t.RequestID, req)
	if err != nil {
		if partner.IsFinal(err) {
			s.void(ctx, num)
			return nil, task.Permanent(err)
		}
		return nil, err
	}
	issuedAt, err := time.Parse(time.RFC3339, rc.IssuedAt)
	if err != nil {
		return nil, fmt.Errorf("receipt: issued_at: %w", err)
	}
	layout, err := base64.StdEncoding.DecodeString(rc.Layout)
	if err != nil {
		return nil, fmt.Errorf("receipt: layout: %w", err)
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO receipts (bill_no, payment_id, order_no, receipt_code, receipt_no, check_code, amount,
			payer_masked, issued_at, seal, stored_at, data, unit_signature, layout)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING`,
			it.BillNo, it.PaymentID, req.OrderNo, rc.ReceiptCode, rc.ReceiptNo, rc.CheckCode, rc.Amount, rc.PayerMasked,
			issuedAt.UTC(), rc.Seal, s.cfg.Now().UTC(), num.data, num.unitSignature, layout)
		if err != nil {
			return fmt.Errorf("receipt: store: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			s.cfg.Logger.Warn("receipt already stored for the bill; keeping the first", "bill_no", it.BillNo)
			return nil
		}
		if err := markIssued(ctx, tx, num); err != nil {
			return err
		}
		env, err := envelope.New("rcpt:"+it.BillNo, it.BillNo, s.cfg.Now(), &envelope.ReceiptIssued{
			BillNo: it.BillNo, OrderNo: req.OrderNo, ReceiptCode: rc.ReceiptCode, ReceiptNo: rc.ReceiptNo,
			CheckCode: rc.CheckCode, Amount: rc.Amount, PayerMasked: rc.PayerMasked, IssuedAt: issuedAt,
			Data: []byte(num.data), UnitSignature: num.unitSignature, Seal: rc.Seal, Layout: layout,
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
