package main

import (
	"fmt"
	"log/slog"
	"time"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/bankrefund"
	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/refund"
	"finepay/intranet-core/internal/refundflow"
)

// Paths where the parties of a refund take its outcome (docs/partners.md, "Refunds").
const (
	pathUnifiedRefundResults = "/unified/v1/refund-results"
	pathWindowRefundResults  = "/window/v1/refund-results"
	pathISPRefundResults     = "/isp/v1/refund-results"
	pathPoliceRefundResults  = "/police/v1/refund-results"
)

// newRefunds builds the refund state machine's service: applications go to the e-receipt
// platform, reviews are asked of the non-tax system, channel refunds cross to the gateway as
// refund.instructed, bank refunds (R4) go to the finance adapter as the refund.bank task
// (package bankrefund), outcomes go to the non-tax system and to the route's party (the 12123
// platform for R1, the window platform for R2 and R3, the police business system for R4, the
// unified payment platform for R5), and a refunded payment that paid its bill has the bill's
// receipt red-flushed in the same transaction.
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
	pp, err := newPartner("police", o.PoliceURL)
	if err != nil {
		return nil, err
	}
	nt := nontax.New(ntp)
	gw := refund.GatewayInstructor{Outbox: ob, Now: time.Now}
	return refund.NewService(refund.Config{DB: db,
		Applier:     ereceipt.New(erp, nil),
		Reviewer:    nt,
		Instructors: map[string]refund.Instructor{"wechat": gw, "alipay": gw, "unionpay": gw, "bank": bankrefund.Instructor{Now: time.Now}},
		NonTax:      nontax.NewReporter(ntp, nontax.PathRefundResults),
		Route: map[refund.Route]refund.Reporter{
			refund.R1: nontax.NewReporter(ip, pathISPRefundResults),
			refund.R2: nontax.NewReporter(wp, pathWindowRefundResults),
			refund.R3: nontax.NewReporter(wp, pathWindowRefundResults),
			refund.R4: nontax.NewReporter(pp, pathPoliceRefundResults),
			refund.R5: nontax.NewReporter(up, pathUnifiedRefundResults),
		},
		Facts:      refundflow.Facts,
		OnRefunded: refundflow.RedFlushOnRefund(time.Now),
		Logger:     log.With("component", "refund"),
		Queued:     queued,
	}), nil
}

// newBankRefunds builds the bank leg of R4: the refund.bank task calls the finance adapter at
// -bank-adapter-url, and the adapter's pushed results are applied through refunds.
func newBankRefunds(o options, db *sqldb.DB, refunds *refund.Service, newPartner func(name, url string) (*partner.Client, error),
	log *slog.Logger) (*bankrefund.Service, error) {
	ap, err := newPartner("bankadapter", o.BankAdapterURL)
	if err != nil {
		return nil, fmt.Errorf("-bank-adapter-url: %w", err)
	}
	return bankrefund.NewService(bankrefund.Config{DB: db, Adapter: bankrefund.NewClient(ap), Refunds: refunds,
		Logger: log.With("flow", "R4")}), nil
}
