// Package bankpay is flow P3, agency bank by decision number: the core acts as the traffic
// police front system (交警综合前置系统) for the finance adapter (适配器), through which the agency
// banks' non-tax systems reach it. Its partner API (mounted at /partner/v1/bank behind
// partnerin.Guard, caller bankadapter) has three calls:
//
//   - query: what a decision owes. The core asks the police business system for the decision,
//     has the non-tax system issue the payment form (through the bill service, one bill per
//     decision), and answers the identification code and the amount due on the business day
//     (fine and late fee separately, the shared penalty rule).
//   - payments: a bank's payment result, idempotent by the bank's serial number. It is checked
//     against what is owed on the day of payment (a different amount is refused and recorded in
//     bank_refusals), then recorded through payment.RecordConfirmed as channel "bank", like any
//     channel payment: a second payment of a violation already paid another way is a duplicate
//     (R5), kept and never lost. The police business system is told first, then the non-tax
//     system (durable tasks, the second queued when the first is done).
//   - reconciliations: the bank's end-of-day file, pre-reconciled against the core's records
//     (matched, bank_only, core_only, amount_mismatch) and forwarded to the non-tax system.
package bankpay

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/payment"
	"finepay/intranet-core/internal/police"
	"finepay/intranet-core/internal/task"
	"finepay/shared/bizdate"
	"finepay/shared/gm"
	"finepay/shared/httpx"
	"finepay/shared/money"
	"finepay/shared/penalty"
)

// KindNonTaxRecon forwards a pre-reconciliation to the non-tax system; its key is
// BANK_CODE-YYYY-MM-DD.
const KindNonTaxRecon = "nontax.bank-recon"

// Error codes of the bank adapter API (besides the envelope's, docs/partners.md).
const (
	CodeDecisionNotFound   = "DECISION_NOT_FOUND"
	CodeDecisionPaid       = "DECISION_PAID"
	CodePayCodeMismatch    = "PAY_CODE_MISMATCH"
	CodeAmountMismatch     = "AMOUNT_MISMATCH"
	CodeBankSerialConflict = "BANK_SERIAL_CONFLICT"
	CodeInvalidFile        = "INVALID_FILE"
	CodeFileDigest         = "FILE_DIGEST_MISMATCH"
	CodeReconConflict      = "RECONCILIATION_CONFLICT"
	CodePoliceUnavailable  = "POLICE_UNAVAILABLE"
	CodeNonTaxUnavailable  = "NONTAX_UNAVAILABLE"
	CodeUpstreamInvalid    = "UPSTREAM_INVALID"
)

// Decisions looks decisions up at the police business system; *police.Client is one.
type Decisions interface {
	Decision(ctx context.Context, requestID, decisionNo string) (police.Decision, error)
}

// Bills creates bills; *bill.Service is one.
type Bills interface {
	Create(ctx context.Context, actor string, req bill.CreateRequest) (bill.View, bool, error)
}

// Decrypter opens the fields the police system encrypts to the core; *gm.PrivateKey is one.
type Decrypter interface {
	Decrypt(ciphertext []byte) ([]byte, error)
}

// ReconReporter sends reconciliations to the non-tax system; *nontax.Client is one.
type ReconReporter interface {
	ReportReconciliation(ctx context.Context, requestID string, r nontax.Reconciliation) error
}

// Config configures a Service.
type Config struct {
	DB       *sqldb.DB
	Police   Decisions
	Bills    Bills
	Payments *payment.Service
	// Key opens party_name_enc and plate_enc of the police system's answers (core-enc.key).
	Key    Decrypter
	NonTax ReconReporter
	Now    func() time.Time
	Logger *slog.Logger
	// Queued is called after tasks were queued (the task runner's Wake).
	Queued func()
}

// Service answers the bank adapter.
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

// QueryAnswer is what a decision owes on a business day.
type QueryAnswer struct {
	DecisionNo   string `json:"decision_no"`
	PayCode      string `json:"pay_code"`
	FormNo       string `json:"form_no"`
	Fine         int64  `json:"fine"`
	LateFee      int64  `json:"late_fee"`
	Amount       int64  `json:"amount"`
	BusinessDate string `json:"business_date"`
	ValidUntil   string `json:"valid_until"`
	ServedDate   string `json:"served_date"`
	DueDate      string `json:"due_date"`
	UnitCode     string `json:"unit_code"`
	UnitName     string `json:"unit_name"`
	ItemCode     string `json:"item_code"`
	ItemName     string `json:"item_name"`
	PartyMasked  string `json:"party_masked"`
	PlateMasked  string `json:"plate_masked"`
}

// Query answers what a decision owes today.
func (s *Service) Query(ctx context.Context, caller string, req QueryRequest) (QueryAnswer, error) {
	if err := req.Validate(); err != nil {
		return QueryAnswer{}, err
	}
	rid, err := partner.NewRequestID(nil)
	if err != nil {
		return QueryAnswer{}, err
	}
	d, err := s.cfg.Police.Decision(ctx, rid, req.DecisionNo)
	var pe *partner.Error
	switch {
	case errors.As(err, &pe) && pe.Status == http.StatusNotFound:
		return QueryAnswer{}, httpx.NewError(http.StatusNotFound, CodeDecisionNotFound,
			fmt.Sprintf("the police business system knows no decision %s", req.DecisionNo))
	case err != nil:
		return QueryAnswer{}, httpx.Wrap(http.StatusServiceUnavailable, CodePoliceUnavailable,
			"the police business system did not answer the decision; retry", err)
	case d.Status == "paid":
		return QueryAnswer{}, httpx.NewError(http.StatusConflict, CodeDecisionPaid, fmt.Sprintf("decision %s is already paid", req.DecisionNo))
	}
	b, err := bill.BillGetActiveByDecision(ctx, s.cfg.DB, req.DecisionNo)
	if errors.Is(err, bill.ErrNotFound) {
		b, err = s.createBill(ctx, caller, d)
	}
	if err != nil {
		return QueryAnswer{}, err
	}
	if b.Status != bill.StatusUnpaid {
		return QueryAnswer{}, httpx.NewError(http.StatusConflict, CodeDecisionPaid, fmt.Sprintf("decision %s is already paid", req.DecisionNo))
	}
	today := bizdate.Of(s.cfg.Now())
	fine, late, total := owed(b, today)
	s.cfg.Logger.Info("bank query answered", "caller", caller, "decision_no", b.DecisionNo, "bank_code", req.BankCode,
		"amount", total, "late_fee", late)
	return QueryAnswer{
		DecisionNo: b.DecisionNo, PayCode: b.PayCode, FormNo: b.FormNo, Fine: int64(fine), LateFee: int64(late),
		Amount: int64(total), BusinessDate: today.String(), ValidUntil: partner.FormatTime(today.End()),
		ServedDate: b.ServedDate, DueDate: b.DueDate, UnitCode: b.UnitCode, UnitName: b.UnitName, ItemCode: b.ItemCode,
		ItemName: b.ItemName, PartyMasked: b.PartyMasked, PlateMasked: b.PlateMasked,
	}, nil
}

// owed is what a bill owes on a business day.
func owed(b bill.Record, day bizdate.Date) (fine, late, total money.Fen) {
	served, err := bizdate.Parse(b.ServedDate)
	if err != nil {
		return money.Fen(b.Fine), 0, money.Fen(b.Fine)
	}
	return penalty.Due(money.Fen(b.Fine), served, day, b.LateFeeApplies)
}

// createBill makes the decision's bill from the police system's data (the non-tax system
// issues the form).
func (s *Service) createBill(ctx context.Context, caller string, d police.Decision) (bill.Record, error) {
	name, err1 := s.open(d.PartyNameEnc)
	plate, err2 := s.open(d.PlateEnc)
	if err := errors.Join(err1, err2); err != nil {
		return bill.Record{}, httpx.Wrap(http.StatusBadGateway, CodeUpstreamInvalid,
			"the police business system's answer could not be opened", err)
	}
	applies := d.LateFeeApplies
	_, _, err := s.cfg.Bills.Create(ctx, "bank-adapter:"+caller, bill.CreateRequest{
		DecisionNo: d.DecisionNo, ViolationSerial: d.ViolationSerial, PartyName: name, Plate: plate, Fine: d.Fine,
		ServedDate: d.ServedDate, UnitCode: d.UnitCode, ItemCode: d.ItemCode, LateFeeApplies: &applies,
	})
	var ve *bill.ValidationError
	switch {
	case errors.As(err, &ve):
		return bill.Record{}, httpx.Wrap(http.StatusBadGateway, CodeUpstreamInvalid,
			"the police business system's decision is not valid: "+ve.Error(), err)
	case errors.Is(err, bill.ErrNonTax):
		return bill.Record{}, httpx.Wrap(http.StatusServiceUnavailable, CodeNonTaxUnavailable,
			"the non-tax system did not issue the payment form; retry", err)
	case err != nil && !errors.Is(err, bill.ErrConflict):
		return bill.Record{}, err
	}
	return bill.BillGetActiveByDecision(ctx, s.cfg.DB, d.DecisionNo)
}

func (s *Service) open(enc string) (string, error) {
	ct, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", fmt.Errorf("not base64: %w", err)
	}
	pt, err := s.cfg.Key.Decrypt(ct)
	if err != nil {
		return "", err
	}
	return string(pt), nil
}

// PaymentAnswer is the answer to a payment result.
type PaymentAnswer struct {
	Status     string `json:"status"` // accepted
	Result     string `json:"result"` // paid, or duplicate (the decision was already paid: R5 refund)
	BankCode   string `json:"bank_code"`
	BankSerial string `json:"bank_serial"`
	DecisionNo string `json:"decision_no"`
	OrderNo    string `json:"order_no"`
	Amount     int64  `json:"amount"`
	// Repeated is true when the serial had been reported before; nothing changed.
	Repeated bool `json:"repeated"`
}

// bankRow is a row of bank_payments.
type bankRow struct {
	DecisionNo, BillNo, PayCode, OrderNo, InputHash, Result, BizDate string
	Amount                                                           int64
}

func (s *Service) findBankPayment(ctx context.Context, q bill.Querier, code, serial string) (bankRow, error) {
	var r bankRow
	err := q.QueryRowContext(ctx, `SELECT decision_no, bill_no, pay_code, order_no, input_hash, result, biz_date, amount
		FROM bank_payments WHERE bank_code = $1 AND bank_serial = $2`, code, serial).
		Scan(&r.DecisionNo, &r.BillNo, &r.PayCode, &r.OrderNo, &r.InputHash, &r.Result, &r.BizDate, &r.Amount)
	return r, err
}

func hashOf(s string) string {
	d := gm.SM3([]byte(s))
	return hex.EncodeToString(d[:])
}

func (s *Service) repeat(r bankRow, req PaymentRequest) (PaymentAnswer, error) {
	if r.InputHash != hashOf(req.canonical()) {
		return PaymentAnswer{}, httpx.NewError(http.StatusConflict, CodeBankSerialConflict,
			fmt.Sprintf("bank serial %s of bank %s was already reported with different data", req.BankSerial, req.BankCode))
	}
	return PaymentAnswer{Status: "accepted", Result: answerResult(r.Result), BankCode: req.BankCode, BankSerial: req.BankSerial,
		DecisionNo: r.DecisionNo, OrderNo: r.OrderNo, Amount: r.Amount, Repeated: true}, nil
}

func answerResult(result string) string {
	if result == payment.ResultRecorded {
		return "paid"
	}
	return result
}

// Pay records a bank's payment result.
func (s *Service) Pay(ctx context.Context, caller string, req PaymentRequest) (PaymentAnswer, error) {
	now := s.cfg.Now()
	paidAt, err := req.Validate(now)
	if err != nil {
		return PaymentAnswer{}, err
	}
	if r, err := s.findBankPayment(ctx, s.cfg.DB, req.BankCode, req.BankSerial); err == nil {
		return s.repeat(r, req)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return PaymentAnswer{}, err
	}
	b, err := bill.BillGetActiveByDecision(ctx, s.cfg.DB, req.DecisionNo)
	if errors.Is(err, bill.ErrNotFound) {
		return PaymentAnswer{}, s.refuse(ctx, req, 0, http.StatusNotFound, CodeDecisionNotFound,
			fmt.Sprintf("decision %s has no payment form at the core: query it first", req.DecisionNo))
	}
	if err != nil {
		return PaymentAnswer{}, err
	}
	day := bizdate.Of(paidAt)
	fine, late, total := owed(b, day)
	if req.PayCode != b.PayCode {
		return PaymentAnswer{}, s.refuse(ctx, req, int64(total), http.StatusUnprocessableEntity, CodePayCodeMismatch,
			fmt.Sprintf("pay_code %s is not the payment identification code of decision %s", req.PayCode, req.DecisionNo))
	}
	if req.Amount != int64(total) || req.Fine != int64(fine) || req.LateFee != int64(late) {
		return PaymentAnswer{}, s.refuse(ctx, req, int64(total), http.StatusUnprocessableEntity, CodeAmountMismatch,
			fmt.Sprintf("decision %s owes %d fen on %s (fine %d, late fee %d); the result reports %d (fine %d, late fee %d)",
				req.DecisionNo, total, day, fine, late, req.Amount, req.Fine, req.LateFee))
	}

	channelTrade := req.BankCode + "-" + req.BankSerial
	orderNo := "BK-" + channelTrade
	var ans PaymentAnswer
	err = s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		rec, _, err := s.cfg.Payments.RecordConfirmed(ctx, tx, payment.Confirmed{
			MessageID: "bank:" + req.BankCode + ":" + req.BankSerial, BillNo: b.BillNo, OrderNo: orderNo,
			Channel: payment.ChannelBank, ChannelTradeNo: channelTrade, Amount: req.Amount, Fine: req.Fine,
			LateFee: req.LateFee, PaidAt: paidAt, NotificationID: caller,
		})
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO bank_payments (bank_code, bank_serial, decision_no, bill_no, pay_code, order_no,
			amount, fine, late_fee, paid_at, biz_date, input_hash, payment_id, result, received_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING`,
			req.BankCode, req.BankSerial, req.DecisionNo, b.BillNo, req.PayCode, orderNo, req.Amount, req.Fine, req.LateFee,
			paidAt.UTC(), day.String(), hashOf(req.canonical()), rec.ID, rec.Result, now.UTC())
		if err != nil {
			return fmt.Errorf("bankpay: store: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errRace
		}
		ans = PaymentAnswer{Status: "accepted", Result: answerResult(rec.Result), BankCode: req.BankCode,
			BankSerial: req.BankSerial, DecisionNo: req.DecisionNo, OrderNo: orderNo, Amount: req.Amount}
		return nil
	})
	if errors.Is(err, errRace) || errors.Is(err, payment.ErrConflict) || sqldb.IsUniqueViolation(err) {
		// A concurrent report of the same serial won; answer as its repeat.
		if r, ferr := s.findBankPayment(ctx, s.cfg.DB, req.BankCode, req.BankSerial); ferr == nil {
			return s.repeat(r, req)
		}
		return PaymentAnswer{}, httpx.Wrap(http.StatusConflict, "REQUEST_IN_PROGRESS", "a concurrent report is being recorded; retry", err)
	}
	if err != nil {
		return PaymentAnswer{}, err
	}
	s.cfg.Logger.Info("bank payment recorded", "caller", caller, "bank_code", req.BankCode, "bank_serial", req.BankSerial,
		"decision_no", req.DecisionNo, "amount", req.Amount, "result", ans.Result)
	return ans, nil
}

var errRace = errors.New("bankpay: bank serial recorded concurrently")

// refuse records a refused payment result and returns the error to answer.
func (s *Service) refuse(ctx context.Context, req PaymentRequest, owedAmount int64, status int, code, msg string) error {
	s.cfg.Logger.Warn("bank payment result refused", "bank_code", req.BankCode, "bank_serial", req.BankSerial,
		"decision_no", req.DecisionNo, "amount", req.Amount, "owed", owedAmount, "code", code)
	if _, err := s.cfg.DB.ExecContext(ctx, `INSERT INTO bank_refusals (bank_code, bank_serial, decision_no, amount, owed, code, reason, received_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, req.BankCode, req.BankSerial, req.DecisionNo, req.Amount, owedAmount, code, msg,
		s.cfg.Now().UTC()); err != nil {
		return fmt.Errorf("bankpay: record refusal: %w", err)
	}
	return httpx.NewError(status, code, msg)
}

// Reconcile pre-reconciles a bank's end-of-day file.
func (s *Service) Reconcile(ctx context.Context, caller string, req ReconRequest) (nontax.Reconciliation, error) {
	day, err := req.Validate(bizdate.Of(s.cfg.Now()))
	if err != nil {
		return nontax.Reconciliation{}, err
	}
	digest := hashOf(req.File)
	if digest != req.FileSM3 {
		return nontax.Reconciliation{}, httpx.NewError(http.StatusBadRequest, CodeFileDigest, "file_sm3 is not the SM3 digest of file")
	}
	f, err := ParseFile(req.File)
	if err != nil {
		return nontax.Reconciliation{}, httpx.Wrap(http.StatusBadRequest, CodeInvalidFile, err.Error(), err)
	}
	if f.BankCode != req.BankCode || f.Date != day.String() {
		return nontax.Reconciliation{}, httpx.NewError(http.StatusBadRequest, CodeInvalidFile,
			fmt.Sprintf("the file's header is for bank %s on %s, the request for bank %s on %s", f.BankCode, f.Date, req.BankCode, day))
	}
	if r, ok, err := s.storedRecon(ctx, req.BankCode, day.String(), digest); ok || err != nil {
		return r, err
	}
	r, err := s.compare(ctx, f, digest)
	if err != nil {
		return nontax.Reconciliation{}, err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nontax.Reconciliation{}, err
	}
	key := req.BankCode + "-" + day.String()
	err = s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO bank_reconciliations (bank_code, biz_date, file_sm3, status, result, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, req.BankCode, day.String(), digest, r.Status, string(body), s.cfg.Now().UTC()); err != nil {
			return err
		}
		_, err := task.Enqueue(ctx, tx, s.cfg.Now(), task.Spec{Kind: KindNonTaxRecon, Key: key,
			RequestID: partner.StableRequestID("ntr", key), Payload: r})
		return err
	})
	if sqldb.IsUniqueViolation(err) {
		if r, ok, err := s.storedRecon(ctx, req.BankCode, day.String(), digest); ok || err != nil {
			return r, err
		}
	}
	if err != nil {
		return nontax.Reconciliation{}, fmt.Errorf("bankpay: store reconciliation: %w", err)
	}
	if s.cfg.Queued != nil {
		s.cfg.Queued()
	}
	s.cfg.Logger.Info("bank end-of-day file pre-reconciled", "caller", caller, "bank_code", req.BankCode, "business_date", day.String(),
		"status", r.Status, "matched", r.Matched, "bank_only", r.BankOnly, "core_only", r.CoreOnly, "amount_mismatch", r.AmountMismatch)
	return r, nil
}

// storedRecon returns the reconciliation already made for the bank and day: ok with the same
// file, 409 with another.
func (s *Service) storedRecon(ctx context.Context, bank, day, digest string) (nontax.Reconciliation, bool, error) {
	var sum, result string
	err := s.cfg.DB.QueryRowContext(ctx, `SELECT file_sm3, result FROM bank_reconciliations WHERE bank_code = $1 AND biz_date = $2`,
		bank, day).Scan(&sum, &result)
	if errors.Is(err, sql.ErrNoRows) {
		return nontax.Reconciliation{}, false, nil
	}
	if err != nil {
		return nontax.Reconciliation{}, false, err
	}
	if sum != digest {
		return nontax.Reconciliation{}, false, httpx.NewError(http.StatusConflict, CodeReconConflict,
			fmt.Sprintf("bank %s's file for %s was already reconciled, with a different content", bank, day))
	}
	var r nontax.Reconciliation
	if err := json.Unmarshal([]byte(result), &r); err != nil {
		return nontax.Reconciliation{}, false, err
	}
	return r, true, nil
}

// compare classifies every line of the file and every payment of the core on that day.
func (s *Service) compare(ctx context.Context, f File, digest string) (nontax.Reconciliation, error) {
	rows, err := s.cfg.DB.QueryContext(ctx, `SELECT bank_serial, decision_no, pay_code, order_no, amount FROM bank_payments
		WHERE bank_code = $1 AND biz_date = $2 ORDER BY bank_serial`, f.BankCode, f.Date)
	if err != nil {
		return nontax.Reconciliation{}, err
	}
	type corePay struct {
		decision, payCode, orderNo string
		amount                     int64
	}
	ours := map[string]corePay{}
	var order []string
	for rows.Next() {
		var serial string
		var c corePay
		if err := rows.Scan(&serial, &c.decision, &c.payCode, &c.orderNo, &c.amount); err != nil {
			rows.Close()
			return nontax.Reconciliation{}, err
		}
		ours[serial] = c
		order = append(order, serial)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nontax.Reconciliation{}, err
	}
	r := nontax.Reconciliation{ReconID: "R" + f.BankCode + "-" + f.Date, Source: "bank", BankCode: f.BankCode,
		BusinessDate: f.Date, FileSM3: digest, Items: []nontax.ReconciliationItem{}}
	inFile := map[string]bool{}
	for _, l := range f.Lines {
		inFile[l.BankSerial] = true
		r.TotalBank += l.Amount
		it := nontax.ReconciliationItem{BankSerial: l.BankSerial, DecisionNo: l.DecisionNo, PayCode: l.PayCode, BankAmount: l.Amount}
		c, ok := ours[l.BankSerial]
		if !ok {
			// Perhaps recorded under another business day (paid just before midnight).
			var row bankRow
			row, err := s.findBankPayment(ctx, s.cfg.DB, f.BankCode, l.BankSerial)
			switch {
			case err == nil:
				c, ok = corePay{decision: row.DecisionNo, payCode: row.PayCode, orderNo: row.OrderNo, amount: row.Amount}, true
			case !errors.Is(err, sql.ErrNoRows):
				return nontax.Reconciliation{}, err
			}
		}
		switch {
		case !ok:
			it.Class = "bank_only"
			r.BankOnly++
		case c.amount != l.Amount:
			it.Class, it.OrderNo, it.CoreAmount = "amount_mismatch", c.orderNo, c.amount
			r.AmountMismatch++
		default:
			it.Class, it.OrderNo, it.CoreAmount = "matched", c.orderNo, c.amount
			r.Matched++
		}
		r.Items = append(r.Items, it)
	}
	for _, serial := range order {
		c := ours[serial]
		r.TotalCore += c.amount
		if inFile[serial] {
			continue
		}
		r.CoreOnly++
		r.Items = append(r.Items, nontax.ReconciliationItem{Class: "core_only", BankSerial: serial, DecisionNo: c.decision,
			PayCode: c.payCode, OrderNo: c.orderNo, CoreAmount: c.amount})
	}
	r.Status = "balanced"
	if r.BankOnly+r.CoreOnly+r.AmountMismatch > 0 {
		r.Status = "differences"
	}
	return r, nil
}

// HandleNonTaxRecon is the task.Handler of KindNonTaxRecon.
func (s *Service) HandleNonTaxRecon(ctx context.Context, t task.Task) (task.Finish, error) {
	var r nontax.Reconciliation
	if err := t.Decode(&r); err != nil {
		return nil, task.Permanent(err)
	}
	err := s.cfg.NonTax.ReportReconciliation(ctx, t.RequestID, r)
	if partner.IsFinal(err) {
		return nil, task.Permanent(err)
	}
	return nil, err
}
