package payment

import (
	"context"
	"database/sql"
	"fmt"

	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/police"
	"finepay/intranet-core/internal/task"
)

// PoliceReportTask is the payload of KindPoliceReport: the result for the police business
// system, and the non-tax report queued once the police system has it.
type PoliceReportTask struct {
	Result police.PaymentResult `json:"result"`
	NonTax nontax.PaymentReport `json:"nontax"`
}

// HandlePoliceReport is the task.Handler of KindPoliceReport. When the police business system
// has taken the result, the non-tax report is queued in the transaction that completes the task.
func (s *Service) HandlePoliceReport(ctx context.Context, t task.Task) (task.Finish, error) {
	var r PoliceReportTask
	if err := t.Decode(&r); err != nil {
		return nil, task.Permanent(err)
	}
	if s.cfg.Police == nil {
		return nil, task.Permanent(fmt.Errorf("payment: no police business system client for %s", t.Key))
	}
	if err := s.cfg.Police.ReportPaymentResult(ctx, t.RequestID, r.Result); err != nil {
		return nil, taskError(err)
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := task.Enqueue(ctx, tx, s.cfg.Now(), task.Spec{Kind: KindNonTaxReport, Key: r.NonTax.OrderNo,
			RequestID: partner.StableRequestID("ntp", r.NonTax.OrderNo), Payload: r.NonTax})
		if err == nil && s.cfg.Queued != nil {
			s.cfg.Queued()
		}
		return err
	}, nil
}
