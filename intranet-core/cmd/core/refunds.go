package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/payment"
	"finepay/intranet-core/internal/receipt"
	"finepay/intranet-core/internal/refund"
)

// Paths where the parties of a refund take its outcome (docs/partners.md, "Refunds").
const (
	pathUnifiedRefundResults = "/unified/v1/refund-results"
	pathWindowRefundResults  = "/window/v1/refund-results"
	pathISPRefundResults     = "/isp/v1/refund-results"
)

// newRefunds builds the refund state machine's service: applications go to the e-receipt
// platform, reviews are asked of the non-tax system, channel refunds cross to the gateway as
// refund.instructed, outcomes go to the non-tax system and to the route's party (the 12123
// platform for R1, the window platform for R2 and R3, the unified payment platform for R5), and a
// refunded payment that paid its bill has the bill's receipt red-flushed in the same transaction.
func newRefunds(o options, db *sqldb.DB, ob *outbox.Outbox, erp, ntp, wp *partner.Client,
	newPartner func(name, url string) (*partner.Client, error), log *slog.Logger, queued func()) (*refund.Service, error) {
	up, err := newPartner("unified", o.UnifiedURL)
	if err != nil {
		return nil, err
	}
	ip, err := newPartner("isp", o.ISPURL)
	if err != nil {
		return nil, err
	}
	nt := nontax.New(ntp)
	return refund.NewService(refund.Config{DB: db,
		Applier:     ereceipt.New(erp, nil),
		Reviewer:    nt,
		Instructors: map[string]refund.Instructor{"wechat": refund.GatewayInstructor{Outbox: ob, Now: time.Now}, "alipay": refund.GatewayInstructor{Outbox: ob, Now: time.Now}, "unionpay": refund.GatewayInstructor{Outbox: ob, Now: time.Now}},
		NonTax:      nontax.NewReporter(ntp, nontax.PathRefundResults),
		Route: map[refund.Route]refund.Reporter{
			refund.R1: nontax.NewReporter(ip, pathISPRefundResults),
			refund.R2: nontax.NewReporter(wp, pathWindowRefundResults),
			refund.R3: nontax.NewReporter(wp, pathWindowRefundResults),
			refund.R5: nontax.NewReporter(up, pathUnifiedRefundResults),
		},
		Facts:      refundFacts,
		OnRefunded: redFlushOnRefund,
		Logger:     log.With("component", "refund"),
		Queued:     queued,
	}), nil
}

// refundFacts reads what a refund application names: the bill's form, the receipt of the
// payment (none for a duplicate payment, which has no receipt of its own) and the amount paid.
func refundFacts(ctx context.Context, q refund.Querier, r refund.Refund) (formNo, code, no string, paid int64, err error) {
	err = q.QueryRowContext(ctx, `SELECT b.form_no, COALESCE(rc.receipt_code, ''), COALESCE(rc.receipt_no, ''), p.amount
		FROM payments p JOIN bills b ON b.bill_no = p.bill_no LEFT JOIN receipts rc ON rc.payment_id = p.id
		WHERE p.id = $1`, r.PaymentID).Scan(&formNo, &code, &no, &paid)
	if err != nil {
		return "", "", "", 0, fmt.Errorf("refund facts of %s: %w", r.RefundNo, err)
	}
	return formNo, code, no, paid, nil
}

// redFlushOnRefund queues the red-flush of the bill's receipt when the refunded payment is the
// one that paid the bill (a duplicate payment's refund leaves the bill's receipt alone).
func redFlushOnRefund(ctx context.Context, tx *sql.Tx, r refund.Refund) error {
	var result string
	if err := tx.QueryRowContext(ctx, `SELECT result FROM payments WHERE id = $1`, r.PaymentID).Scan(&result); err != nil {
		return fmt.Errorf("refund %s: payment: %w", r.RefundNo, err)
	}
	if result != "recorded" {
		return nil
	}
	_, err := receipt.EnqueueRedFlush(ctx, tx, time.Now(), r.BillNo, "refund "+r.RefundNo)
	return err
}

// startR5 starts the automatic refund of a duplicate channel payment (flow R5) in the
// transaction that records it; the duplicate's order number is the instruction, so however
// often the confirmation is repeated there is one refund. A duplicate bank payment is left for
// the bank route (R4), which a clerk starts.
func startR5(refunds *refund.Service, log *slog.Logger) func(ctx context.Context, tx *sql.Tx, p payment.Record) error {
	return func(ctx context.Context, tx *sql.Tx, p payment.Record) error {
		if p.Channel == payment.ChannelBank {
			log.Warn("duplicate bank payment: refund it through the bank route", "order_no", p.OrderNo)
			return nil
		}
		_, _, err := refunds.Start(ctx, tx, refund.Request{PaymentID: p.ID, Route: refund.R5, InstructionID: "dup:" + p.OrderNo,
			Amount: p.Amount, Reason: "duplicate payment: " + p.Reason, RequestedBy: "core:r5"})
		return err
	}
}
