package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"finepay/ferry/inbox"
	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/bankpay"
	"finepay/intranet-core/internal/bankrefund"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/console"
	"finepay/intranet-core/internal/coredb"
	"finepay/intranet-core/internal/ereceipt"
	"finepay/intranet-core/internal/isp"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/partnerin"
	"finepay/intranet-core/internal/payment"
	"finepay/intranet-core/internal/pii"
	"finepay/intranet-core/internal/receipt"
	"finepay/intranet-core/internal/refund"
	"finepay/intranet-core/internal/refundflow"
	"finepay/intranet-core/internal/task"
	"finepay/intranet-core/internal/window"
	"finepay/shared/envelope"
	"finepay/shared/gm"
	"finepay/shared/httpx"
	"finepay/shared/logging"
	"finepay/shared/lookup"
)

// keys are the SM2 keys and certificates the core works with.
type keys struct {
	sign        *gm.PrivateKey
	partnerSign *gm.PublicKey
	unitSign    *gm.PrivateKey // signs e-receipt data
	partnerEnc  *gm.PublicKey
	callers     []partnerin.Caller
}

// loadKeys reads the signing key and the certificates and checks them: the signing
// certificate matches the key, and every certificate is issued by the CA and valid now.
func loadKeys(o options) (keys, error) {
	var k keys
	ca, err := gm.LoadCertificate(o.certPath(o.CACert))
	if err != nil {
		return k, fmt.Errorf("CA certificate: %w", err)
	}
	k.sign, err = gm.LoadPrivateKey(o.certPath(o.SignKey))
	if err != nil {
		return k, fmt.Errorf("signing key: %w", err)
	}
	certs := map[string]*gm.Certificate{}
	for _, f := range []struct{ what, name string }{
		{"signing certificate", o.SignCert}, {"partner signing certificate", o.PartnerSignCert}, {"partner encryption certificate", o.PartnerEncCert},
	} {
		c, err := gm.LoadCertificate(o.certPath(f.name))
		if err != nil {
			return k, fmt.Errorf("%s: %w", f.what, err)
		}
		if err := c.VerifySignedBy(ca); err != nil {
			return k, fmt.Errorf("%s %s: %w", f.what, o.certPath(f.name), err)
		}
		certs[f.what] = c
	}
	if !certs["signing certificate"].PublicKey().Equal(k.sign.Public()) {
		return k, fmt.Errorf("signing certificate %s does not match the key %s", o.certPath(o.SignCert), o.certPath(o.SignKey))
	}
	for _, item := range strings.Split(o.PartnerCallers, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, file, ok := strings.Cut(item, "=")
		if !ok || name == "" || file == "" {
			return k, fmt.Errorf("-partner-callers: %q is not NAME=CERT", item)
		}
		c, err := gm.LoadCertificate(o.certPath(file))
		if err != nil {
			return k, fmt.Errorf("partner caller %s: %w", name, err)
		}
		if err := c.VerifySignedBy(ca); err != nil {
			return k, fmt.Errorf("partner caller %s certificate %s: %w", name, o.certPath(file), err)
		}
		k.callers = append(k.callers, partnerin.Caller{Name: name, Key: c.PublicKey()})
	}
	if k.unitSign, err = loadUnitKey(o, ca); err != nil {
		return k, err
	}
	k.partnerSign = certs["partner signing certificate"].PublicKey()
	k.partnerEnc = certs["partner encryption certificate"].PublicKey()
	return k, nil
}

// loadUnitKey reads the issuing unit's e-receipt signing key and checks its certificate against
// the key and the CA.
func loadUnitKey(o options, ca *gm.Certificate) (*gm.PrivateKey, error) {
	key, err := gm.LoadPrivateKey(o.certPath(o.UnitSignKey))
	if err != nil {
		return nil, fmt.Errorf("unit signing key (make certs adds it): %w", err)
	}
	c, err := gm.LoadCertificate(o.certPath(o.UnitSignCert))
	if err != nil {
		return nil, fmt.Errorf("unit signing certificate: %w", err)
	}
	if err := c.VerifySignedBy(ca); err != nil {
		return nil, fmt.Errorf("unit signing certificate %s: %w", o.certPath(o.UnitSignCert), err)
	}
	if !c.PublicKey().Equal(key.Public()) {
		return nil, fmt.Errorf("unit signing certificate %s does not match the key %s", o.certPath(o.UnitSignCert), o.certPath(o.UnitSignKey))
	}
	return key, nil
}

func openDB(ctx context.Context, url string) (*sqldb.DB, error) {
	if p, ok := strings.CutPrefix(url, "sqlite:"); ok {
		if dir := filepath.Dir(strings.SplitN(p, "?", 2)[0]); dir != "." {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
		}
	}
	return sqldb.Open(ctx, url)
}

// serve wires the core together and runs it until ctx ends.
func serve(ctx context.Context, o options, migrateOnly bool, stdout io.Writer) error {
	log := logging.New(stdout, o.LogLevel, "core")
	db, err := openDB(ctx, o.DB)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := coredb.Migrate(ctx, db); err != nil {
		return err
	}
	if migrateOnly {
		log.Info("migrations applied", "dialect", string(db.Dialect))
		return nil
	}
	k, err := loadKeys(o)
	if err != nil {
		return err
	}
	dataKey, err := pii.LoadOrCreateKey(o.DataKeyFile, rand.Reader, log)
	if err != nil {
		return err
	}
	vault, err := pii.NewVault(dataKey, rand.Reader)
	if err != nil {
		return err
	}
	if o.Lanes < 1 || o.Lanes > 64 {
		return fmt.Errorf("-lanes %d: want 1 to 64", o.Lanes)
	}
	lookupKey, err := lookup.LoadOptionalKey(o.lookupKeyPath(), log, "bills are published without a lookup hash, payers cannot find them by decision number on the gateway")
	if err != nil {
		return err
	}

	e, reg := httpx.New(httpx.Options{Service: "core", Logger: log, Ready: func(ctx context.Context) error { return db.PingContext(ctx) }})
	reg.MustRegister(outbox.NewBacklogCollector(db, "core"), refund.NewStateCollector(db))

	newPartner := func(name, url string) (*partner.Client, error) {
		return partner.New(partner.Config{BaseURL: url, App: "core", Signer: k.sign, PartnerKey: k.partnerSign,
			Retries: 2, Logger: log.With("partner", name)})
	}
	ntp, err := newPartner("nontax", o.NonTaxURL)
	if err != nil {
		return err
	}
	erp, err := newPartner("ereceipt", o.EReceiptURL)
	if err != nil {
		return err
	}
	wp, err := newPartner("window", o.WindowURL)
	if err != nil {
		return err
	}
	nt := nontax.New(ntp)
	ob := outbox.New(o.Lanes)

	bills := bill.NewService(bill.Config{DB: db, Vault: vault, Forms: nt, PartnerEncKey: k.partnerEnc, Outbox: ob,
		GatewayURL: o.GatewayURL, LookupKey: lookupKey, Logger: log, Registry: reg})
	ispSvc, err := newISP(o, db, vault, bills, newPartner, log)
	if err != nil {
		return err
	}
	pc, err := newPolice(o, newPartner)
	if err != nil {
		return err
	}
	handlers := map[string]task.Handler{}
	runner := task.NewRunner(task.Config{DB: db, Handlers: handlers, Workers: o.TaskWorkers, Logger: log, Registry: reg})
	refunds, err := newRefunds(o, db, ob, erp, ntp, wp, newPartner, log, runner.Wake)
	if err != nil {
		return err
	}
	payments := payment.NewService(payment.Config{OnDuplicate: refundflow.StartR5(refunds, log), DB: db, Vault: vault, PartnerEncKey: k.partnerEnc, NonTax: nt,
		Window: window.New(wp), Police: pc, Routers: []payment.ResultRouter{ispSvc}, Logger: log, Registry: reg, Queued: runner.Wake})
	receipts := receipt.NewService(receipt.Config{DB: db, Platform: ereceipt.New(erp, k.partnerSign), UnitKey: k.unitSign,
		Outbox: ob, Logger: log})
	handlers[payment.KindNonTaxReport] = payments.HandleNonTaxReport
	handlers[payment.KindWindowReport] = payments.HandleWindowReport
	for kind, h := range receipts.Handlers() {
		handlers[kind] = h
	}
	handlers[payment.KindPoliceReport] = payments.HandlePoliceReport
	bankSvc, err := newBank(o, db, pc, bills, payments, nt, log, runner.Wake)
	if err != nil {
		return err
	}
	handlers[bankpay.KindNonTaxRecon] = bankSvc.HandleNonTaxRecon
	handlers[isp.KindResultPush] = ispSvc.HandlePush
	for kind, h := range refunds.Handlers() {
		handlers[kind] = h
	}
	bankRefunds, err := newBankRefunds(o, db, refunds, newPartner, log)
	if err != nil {
		return err
	}
	handlers[bankrefund.KindInstruct] = bankRefunds.HandleInstruct
	consumer := inbox.NewConsumer(inbox.Config{DB: db, Logger: log, Registry: reg,
		Handlers: map[string]inbox.Handler{envelope.TypePaymentConfirmed: payments.HandleConfirmed, envelope.TypeRefundResult: refunds.HandleResult}})

	roles, err := console.ParseRoles(o.ConsoleRoles)
	if err != nil {
		return fmt.Errorf("-console-roles: %w", err)
	}
	con := console.New(console.Config{DB: db, Bills: bills, Refunds: refunds, Logger: log, Roles: roles})
	for _, u := range []struct{ name, password string }{{console.ClerkUser, o.ConsolePassword}, {console.ReviewerUser, o.ReviewerPW}} {
		pw, generated, created, err := con.EnsureUser(ctx, u.name, u.password)
		if err != nil {
			return fmt.Errorf("console user %s: %w", u.name, err)
		}
		switch {
		case generated:
			log.Warn("console user created with a generated password; it is shown only this once, change it", "user", u.name, "password", pw)
		case created:
			log.Info("console user created", "user", u.name)
		}
	}
	if o.APIToken == "" {
		log.Warn("no -api-token: the window API accepts console sessions only")
	}
	api := e.Group("/api/v1", con.APIAuth(o.APIToken))
	bill.Routes(api, bills)
	con.APIRoutes(api) // R2: the window platform's refund instructions
	con.Routes(e)
	guard, err := partnerin.New(partnerin.Config{DB: db, Node: "core", Key: k.sign, Callers: k.callers,
		Logger: log.With("component", "partner-api"), Registry: reg})
	if err != nil {
		return err
	}
	// The partner API: systems that call the core (the 12123 platform, the bank adapter) through
	// the signed envelope of docs/partners.md; each flow mounts its routes on partnerAPI.
	partnerAPI := e.Group("/partner/v1", guard.Middleware)
	isp.Routes(partnerAPI.Group("/isp"), ispSvc)                                         // P1: the 12123 platform
	isp.RefundRoutes(partnerAPI.Group("/isp"), &isp.RefundAPI{DB: db, Refunds: refunds}) // R1
	// P3: the finance adapter for the agency banks.
	bankpay.Routes(partnerAPI.Group("/bank"), bankSvc)
	bankrefund.Routes(partnerAPI.Group("/bank"), bankRefunds) // R4: the banks' refund results

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { consumer.Run(ctx) })
	wg.Go(func() { runner.Run(ctx) })
	wg.Go(func() { (&receipt.Scheduler{DB: db, Queued: runner.Wake, Logger: log}).Run(ctx) })
	err = httpx.Serve(ctx, log, o.Listen, e, nil)
	cancel()
	wg.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped", "at", time.Now().UTC().Format(time.RFC3339))
	return nil
}
