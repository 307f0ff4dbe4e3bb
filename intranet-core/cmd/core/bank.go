package main

import (
	"fmt"
	"log/slog"

	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/bankpay"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/payment"
	"finepay/intranet-core/internal/police"
	"finepay/shared/gm"
)

// newPolice returns the client of the police business system (flow P3).
func newPolice(o options, newPartner func(name, url string) (*partner.Client, error)) (*police.Client, error) {
	p, err := newPartner("police", o.PoliceURL)
	if err != nil {
		return nil, fmt.Errorf("-police-url: %w", err)
	}
	return police.New(p), nil
}

// newBank assembles flow P3, the bank adapter's API: the police system's answers carry the
// party's name and plate encrypted to the core's encryption certificate (-enc-key opens them).
func newBank(o options, db *sqldb.DB, pc *police.Client, bills *bill.Service, payments *payment.Service, nt *nontax.Client,
	log *slog.Logger, queued func()) (*bankpay.Service, error) {
	key, err := gm.LoadPrivateKey(o.certPath(o.EncKey))
	if err != nil {
		return nil, fmt.Errorf("-enc-key: %w", err)
	}
	return bankpay.NewService(bankpay.Config{DB: db, Police: pc, Bills: bills, Payments: payments, Key: key, NonTax: nt,
		Logger: log.With("flow", "P3"), Queued: queued}), nil
}
