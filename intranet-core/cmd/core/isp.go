package main

import (
	"fmt"
	"log/slog"

	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/isp"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/pii"
	"finepay/shared/gm"
)

// newISP builds flow P1, the 12123 Internet Service Platform's side of the core: the partner API
// it calls (mounted on /partner/v1/isp by serve) and the client that pushes payment results to
// it at -isp-url. The core's encryption key (-enc-key) opens the party names it sends.
func newISP(o options, db *sqldb.DB, vault *pii.Vault, bills *bill.Service,
	newPartner func(name, url string) (*partner.Client, error), log *slog.Logger) (*isp.Service, error) {
	key, err := gm.LoadPrivateKey(o.certPath(o.EncKey))
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	pc, err := newPartner("isp", o.ISPURL)
	if err != nil {
		return nil, err
	}
	return isp.NewService(isp.Config{DB: db, Bills: bills, Vault: vault, Key: key, Platform: pc,
		Logger: log.With("component", "isp")}), nil
}
