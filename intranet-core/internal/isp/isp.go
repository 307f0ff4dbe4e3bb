// Package isp is flow P1 on the core: the partner API of the Public Security Internet Service
// Platform (公安互联网服务平台, behind the 交管12123 app and the 122 website) and the push of payment
// results back to it.
//
// The platform submits a payment for a decision (POST /partner/v1/isp/payments, through the
// signed envelope of package partnerin): the core asks the non-tax system for the payment form
// and identification code, builds the bill, publishes it to the gateway through the ferry (all
// in package bill) and answers with the cashier URL, to which the app sends the payer. The
// platform's order number (isp_order_no) is remembered with the bill: the same order again
// answers the same bill; another order for the same decision answers the same bill too (one
// bill per decision) until it is paid, and is refused with ALREADY_PAID after.
//
// When a payment of such a bill is recorded, Service (a payment.ResultRouter) queues, in the
// same transaction, a durable task that pushes the result to the platform
// (POST /isp/v1/payment-results), retried with backoff under one request ID until the platform
// accepts it; for a bill the platform asked for, that push replaces the window platform's
// report. The platform can ask for an order's state at any time
// (GET /partner/v1/isp/payments/{isp_order_no}).
package isp

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/payment"
	"finepay/intranet-core/internal/pii"
	"finepay/intranet-core/internal/task"
	"finepay/shared/bizdate"
)

// KindResultPush is the durable task pushing a payment result to the platform; its key is our
// order number.
const KindResultPush = "isp.result"

// PathResults is where the platform takes payment results.
const PathResults = "/isp/v1/payment-results"

// Errors of the service, mapped to the API's codes by HTTPError.
var (
	// ErrOrderConflict: the platform order number was used with other fields.
	ErrOrderConflict = errors.New("isp: the order number was submitted with other fields")
	// ErrAlreadyPaid: the decision's bill is paid; a new platform order cannot pay it again.
	ErrAlreadyPaid = errors.New("isp: the decision is already paid")
	// ErrAmountMismatch: the platform's amount due is not the core's.
	ErrAmountMismatch = errors.New("isp: amount due differs")
	// ErrNotFound: no such platform order.
	ErrNotFound = errors.New("isp: no such order")
)

// Config configures a Service.
type Config struct {
	DB    *sqldb.DB
	Bills *bill.Service
	// Vault keys the hash of a request's fields (never stored in clear).
	Vault *pii.Vault
	// Key opens party_name_enc: the core's encryption key.
	Key Decrypter
	// Platform is the signed client that pushes results to the platform.
	Platform *partner.Client
	Now      func() time.Time
	Logger   *slog.Logger
}

// Service serves the platform's requests and pushes results to it.
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

// Actor is the bills' created_by of a bill a platform caller asked for.
func Actor(caller string) string { return "partner:" + caller }

// State is a platform order as the API renders it: the bill, what is due today, and once paid
// the payment, the e-receipt and where the result push is.
type State struct {
	ISPOrderNo string
	Created    bool // the order is new (Submit only)
	Bill       bill.View
	// Push is the state of the result push: "" before the payment, then pending, running, done
	// or dead.
	Push string
}

// Submit serves a submitted payment of caller. The request must have passed Check; breq is
// what Check returned.
func (s *Service) Submit(ctx context.Context, caller string, r SubmitRequest, breq bill.CreateRequest) (State, error) {
	hash := s.inputHash(r, breq)
	if st, err := s.existing(ctx, caller, r, hash); !errors.Is(err, ErrNotFound) {
		return st, err
	}
	v, _, err := s.cfg.Bills.Create(ctx, Actor(caller), breq)
	if err != nil {
		return State{}, err
	}
	if v.Status != bill.StatusUnpaid {
		return State{}, alreadyPaid(v.DecisionNo, v.Status, v.BillNo)
	}
	if err := checkAmount(r, v); err != nil {
		return State{}, err
	}
	// The order is stored with the bill locked, as a payment is recorded: a payment recorded
	// first is seen here (the order is refused as paid), one recorded after finds the order and
	// queues the result push (ResultTasks). Without the lock a payment between the status check
	// above and this insert would be pushed to no one.
	var n int64
	err = s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
		b, err := bill.BillGetByNoForUpdate(ctx, s.cfg.DB, tx, v.BillNo)
		if err != nil {
			return err
		}
		if b.Status != bill.StatusUnpaid {
			return alreadyPaid(b.DecisionNo, b.Status, b.BillNo)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO isp_payments (caller, isp_order_no, decision_no, bill_no, input_hash, created_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (caller, isp_order_no) DO NOTHING`,
			caller, r.ISPOrderNo, v.DecisionNo, v.BillNo, hash, s.cfg.Now().UTC())
		if err != nil {
			return fmt.Errorf("isp: store order: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return State{}, err
	}
	if n == 0 {
		// A concurrent submission of the same order stored it first.
		return s.existing(ctx, caller, r, hash)
	}
	s.cfg.Logger.Info("12123 payment submitted", "caller", caller, "isp_order_no", r.ISPOrderNo, "bill_no", v.BillNo,
		"decision_no", v.DecisionNo, "amount_due", int64(v.TotalDueToday))
	return State{ISPOrderNo: r.ISPOrderNo, Created: true, Bill: v}, nil
}

// alreadyPaid refuses an order for a decision whose bill is no longer unpaid.
func alreadyPaid(decisionNo, status, billNo string) error {
	return fmt.Errorf("%w: decision %s is %s (bill %s)", ErrAlreadyPaid, decisionNo, status, billNo)
}

// existing answers an order submitted before, or ErrNotFound.
func (s *Service) existing(ctx context.Context, caller string, r SubmitRequest, hash string) (State, error) {
	row, err := ispGet(ctx, s.cfg.DB, caller, r.ISPOrderNo)
	if err != nil {
		return State{}, err
	}
	if row.inputHash != hash {
		return State{}, fmt.Errorf("%w: %s", ErrOrderConflict, r.ISPOrderNo)
	}
	st, err := s.state(ctx, row)
	if err != nil {
		return State{}, err
	}
	if st.Bill.Status == bill.StatusUnpaid {
		if err := checkAmount(r, st.Bill); err != nil {
			return State{}, err
		}
	}
	return st, nil
}

func checkAmount(r SubmitRequest, v bill.View) error {
	if r.AmountDue != int64(v.TotalDueToday) {
		return fmt.Errorf("%w: amount_due %d, but %d is due today (fine %d + late fee %d)", ErrAmountMismatch,
			r.AmountDue, int64(v.TotalDueToday), int64(v.Fine), int64(v.LateFee))
	}
	return nil
}

// inputHash is the keyed hash of the fields that make an order (amount_due, which changes
// with the day, is checked on its own).
func (s *Service) inputHash(r SubmitRequest, b bill.CreateRequest) string {
	return s.cfg.Vault.Index("isp-input", strings.Join([]string{r.ISPOrderNo, b.DecisionNo, b.ViolationSerial, b.PartyName,
		b.Plate, strconv.FormatInt(b.Fine, 10), b.ServedDate, b.UnitCode, b.ItemCode, strconv.FormatBool(b.Applies())}, "\x1f"))
}

// Get returns caller's order ispOrderNo, or ErrNotFound.
func (s *Service) Get(ctx context.Context, caller, ispOrderNo string) (State, error) {
	row, err := ispGet(ctx, s.cfg.DB, caller, ispOrderNo)
	if err != nil {
		return State{}, err
	}
	return s.state(ctx, row)
}

func (s *Service) state(ctx context.Context, row ispRow) (State, error) {
	v, err := s.cfg.Bills.Get(ctx, row.billNo)
	if err != nil {
		return State{}, err
	}
	st := State{ISPOrderNo: row.ispOrderNo, Bill: v}
	if v.Payment != nil {
		err := s.cfg.DB.QueryRowContext(ctx, `SELECT status FROM tasks WHERE kind = $1 AND task_key = $2`,
			KindResultPush, v.Payment.OrderNo).Scan(&st.Push)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return State{}, fmt.Errorf("isp: push state: %w", err)
		}
	}
	return st, nil
}

// Result is what the platform is told when a decision it asked for is paid (the body of
// POST /isp/v1/payment-results). Amounts are fen; paid_at is RFC 3339 (+08:00).
type Result struct {
	ISPOrderNo      string `json:"isp_order_no"`
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	BillNo          string `json:"bill_no"`
	FormNo          string `json:"form_no"`
	PayCode         string `json:"pay_code"`
	OrderNo         string `json:"order_no"`
	Channel         string `json:"channel"`
	ChannelTradeNo  string `json:"channel_trade_no"`
	Amount          int64  `json:"amount"`
	Fine            int64  `json:"fine"`
	LateFee         int64  `json:"late_fee"`
	PaidAt          string `json:"paid_at"`
}

// ResultTasks is the payment.ResultRouter of P1: a bill the platform asked for reports its
// payment to the platform, under the first platform order that asked for it. It replaces the
// window platform's report when the platform created the bill (a bill a clerk created first
// still reports to the window as well).
func (s *Service) ResultTasks(ctx context.Context, tx *sql.Tx, b bill.Record, p payment.Record) ([]task.Spec, bool, error) {
	var caller, orderNo string
	err := tx.QueryRowContext(ctx, `SELECT caller, isp_order_no FROM isp_payments WHERE bill_no = $1
		ORDER BY created_at, isp_order_no LIMIT 1`, b.BillNo).Scan(&caller, &orderNo)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("isp: order of bill %s: %w", b.BillNo, err)
	}
	spec := task.Spec{Kind: KindResultPush, Key: p.OrderNo, RequestID: partner.StableRequestID("isp", p.OrderNo), Payload: Result{
		ISPOrderNo: orderNo, DecisionNo: b.DecisionNo, ViolationSerial: b.ViolationSerial, BillNo: b.BillNo,
		FormNo: b.FormNo, PayCode: b.PayCode, OrderNo: p.OrderNo, Channel: p.Channel, ChannelTradeNo: p.ChannelTradeNo,
		Amount: p.Amount, Fine: p.Fine, LateFee: p.LateFee, PaidAt: partner.FormatTime(p.PaidAt),
	}}
	return []task.Spec{spec}, b.CreatedBy == Actor(caller), nil
}

// HandlePush is the task.Handler of KindResultPush: one attempt to push a result. A final
// refusal (4xx other than 408, 409, 429) makes the task dead for an operator; anything else
// is retried.
func (s *Service) HandlePush(ctx context.Context, t task.Task) (task.Finish, error) {
	var r Result
	if err := t.Decode(&r); err != nil {
		return nil, task.Permanent(err)
	}
	var a struct {
		Status string `json:"status"`
	}
	if err := s.cfg.Platform.PostJSON(ctx, PathResults, t.RequestID, r, &a); err != nil {
		if partner.IsFinal(err) {
			return nil, task.Permanent(err)
		}
		return nil, err
	}
	if a.Status != "accepted" {
		return nil, fmt.Errorf("isp: the platform answered status %q", a.Status)
	}
	s.cfg.Logger.Info("12123 payment result pushed", "isp_order_no", r.ISPOrderNo, "order_no", r.OrderNo, "attempt", t.Attempt)
	return nil, nil
}

// ispRow is a row of isp_payments.
type ispRow struct {
	caller, ispOrderNo, decisionNo, billNo, inputHash string
	createdAt                                         time.Time
}

func ispGet(ctx context.Context, db *sqldb.DB, caller, ispOrderNo string) (ispRow, error) {
	var r ispRow
	err := db.QueryRowContext(ctx, `SELECT caller, isp_order_no, decision_no, bill_no, input_hash, created_at FROM isp_payments
		WHERE caller = $1 AND isp_order_no = $2`, caller, ispOrderNo).Scan(&r.caller, &r.ispOrderNo, &r.decisionNo, &r.billNo, &r.inputHash, &r.createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%w: %s", ErrNotFound, ispOrderNo)
	}
	if err != nil {
		return r, fmt.Errorf("isp: read order: %w", err)
	}
	return r, nil
}

// today is the business date of the service's clock.
func (s *Service) today() bizdate.Date { return bizdate.Of(s.cfg.Now()) }
