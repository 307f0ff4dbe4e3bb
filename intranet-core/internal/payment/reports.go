package payment

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/police"
	"finepay/intranet-core/internal/receipt"
	"finepay/intranet-core/internal/task"
	"finepay/intranet-core/internal/window"
)

// enqueue queues the tasks of a recorded payment in tx: the non-tax report, the e-receipt, and
// the window platform's report or what a Router puts instead. Their payloads hold the exact
// requests, so every attempt sends the same bytes under the same request ID.
func (s *Service) enqueue(ctx context.Context, tx *sql.Tx, b bill.Record, p Record) error {
	paidAt := partner.FormatTime(p.PaidAt)
	name, err := s.cfg.Vault.Open(bill.ColumnPartyName, b.BillNo, b.PartyNameEnc)
	if err != nil {
		return fmt.Errorf("payment: party name of %s: %w", b.BillNo, err)
	}
	enc, err := partner.EncryptName(s.cfg.PartnerEncKey, s.cfg.Rand, name)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	ntReport := nontax.PaymentReport{
		FormNo: b.FormNo, PayCode: b.PayCode, OrderNo: p.OrderNo, Amount: p.Amount, Fine: p.Fine, LateFee: p.LateFee,
		Channel: p.Channel, ChannelTradeNo: p.ChannelTradeNo, PaidAt: paidAt}
	issue := task.Spec{Kind: receipt.KindIssue, Key: b.BillNo, RequestID: partner.StableRequestID("rcp", b.BillNo), Payload: receipt.IssueTask{
		BillNo: b.BillNo, PaymentID: p.ID, Request: ereceipt.Request{
			FormNo: b.FormNo, PayCode: b.PayCode, OrderNo: p.OrderNo, PayerNameEnc: enc, UnitCode: b.UnitCode,
			ItemCode: b.ItemCode, Amount: p.Amount, Fine: p.Fine, LateFee: p.LateFee, PaidAt: paidAt}}}
	specs := []task.Spec{
		{Kind: KindNonTaxReport, Key: p.OrderNo, RequestID: partner.StableRequestID("ntp", p.OrderNo), Payload: ntReport},
		{Kind: KindWindowReport, Key: p.OrderNo, RequestID: partner.StableRequestID("wpr", p.OrderNo), Payload: window.PaymentResult{
			DecisionNo: b.DecisionNo, ViolationSerial: b.ViolationSerial, FormNo: b.FormNo, OrderNo: p.OrderNo,
			Amount: p.Amount, PaidAt: paidAt}},
		issue,
	}
	if p.Channel == ChannelBank {
		// Flow P3: the police business system first; the non-tax report is queued when the
		// police system has taken the result (HandlePoliceReport), never before.
		specs = []task.Spec{
			{Kind: KindPoliceReport, Key: p.OrderNo, RequestID: partner.StableRequestID("plr", p.OrderNo), Payload: PoliceReportTask{
				Result: police.PaymentResult{DecisionNo: b.DecisionNo, ViolationSerial: b.ViolationSerial, FormNo: b.FormNo,
					PayCode: b.PayCode, OrderNo: p.OrderNo, Channel: p.Channel, ChannelTradeNo: p.ChannelTradeNo,
					Amount: p.Amount, Fine: p.Fine, LateFee: p.LateFee, PaidAt: paidAt},
				NonTax: ntReport}},
			issue,
		}
	}
	for _, r := range s.cfg.Routers {
		more, replaces, err := r.ResultTasks(ctx, tx, b, p)
		if err != nil {
			return err
		}
		if replaces {
			specs = slices.DeleteFunc(specs, func(sp task.Spec) bool { return sp.Kind == KindWindowReport })
		}
		specs = append(specs, more...)
	}
	for _, sp := range specs {
		if _, err := task.Enqueue(ctx, tx, now, sp); err != nil {
			return err
		}
	}
	return nil
}

func taskError(err error) error {
	if partner.IsFinal(err) {
		return task.Permanent(err)
	}
	return err
}

// HandleNonTaxReport is the task.Handler of KindNonTaxReport.
func (s *Service) HandleNonTaxReport(ctx context.Context, t task.Task) (task.Finish, error) {
	var r nontax.PaymentReport
	if err := t.Decode(&r); err != nil {
		return nil, task.Permanent(err)
	}
	return nil, taskError(s.cfg.NonTax.ReportPayment(ctx, t.RequestID, r))
}

// HandleWindowReport is the task.Handler of KindWindowReport.
func (s *Service) HandleWindowReport(ctx context.Context, t task.Task) (task.Finish, error) {
	var r window.PaymentResult
	if err := t.Decode(&r); err != nil {
		return nil, task.Permanent(err)
	}
	return nil, taskError(s.cfg.Window.ReportPaymentResult(ctx, t.RequestID, r))
}
