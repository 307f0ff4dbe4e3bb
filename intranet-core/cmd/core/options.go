package main

import (
	"path/filepath"
	"strings"

	"finepay/intranet-core/internal/console"
	"finepay/shared/config"
)

// options are the core's configuration, read by newOptions' flags (and their CORE_ variables).
type options struct {
	Listen          string
	DB              string
	Certs           string
	SignKey         string
	SignCert        string
	UnitSignKey     string
	UnitSignCert    string
	CACert          string
	PartnerSignCert string
	PartnerEncCert  string
	PartnerCallers  string
	GatewayURL      string
	NonTaxURL       string
	EReceiptURL     string
	WindowURL       string
	ISPURL          string
	UnifiedURL      string
	PoliceURL       string
	BankAdapterURL  string
	EncKey          string
	DataKeyFile     string
	LookupKeyFile   string
	ConsolePassword string
	ReviewerPW      string
	ConsoleRoles    string
	APIToken        string
	Lanes           int
	TaskWorkers     int
	LogLevel        string
}

// newOptions defines the flags on a new set; the returned function reads the options after
// the set's Parse.
func newOptions() (*config.Set, func() options) {
	s := config.New("core", "CORE")
	listen := s.String("listen", ":8090", "address of the HTTP server (window API, console, /healthz, /readyz, /metrics)")
	db := s.String("db", "sqlite:var/core.db", "database URL: postgres://... or sqlite:PATH")
	certs := s.String("certs", "certs", "directory of keys and certificates; the bare file names of the key and certificate flags are looked up in it")
	signKey := s.String("sign-key", "core-sign.key", "the core's SM2 signing key (PKCS#8 PEM), signs partner requests")
	signCert := s.String("sign-cert", "core-sign.pem", "the certificate of the signing key (checked against the key and the CA)")
	unitKey := s.String("unit-sign-key", "unit-sign.key", "the issuing unit's SM2 e-receipt signing key (PKCS#8 PEM): signs the data of every e-receipt")
	unitCert := s.String("unit-sign-cert", "unit-sign.pem", "the certificate of the unit's e-receipt signing key (checked against the key and the CA)")
	caCert := s.String("ca-cert", "ca.pem", "the project CA certificate; every certificate loaded must be issued by it")
	pSign := s.String("partner-sign-cert", "sandbox-sign.pem", "the partners' signing certificate: verifies their answers and the e-receipt seal")
	pEnc := s.String("partner-enc-cert", "sandbox-enc.pem", "the partners' encryption certificate: payer_name_enc is encrypted to it")
	callers := s.String("partner-callers", "isp12123=sandbox-sign.pem,bankadapter=sandbox-sign.pem",
		"systems allowed to call the partner API (/partner/v1): comma-separated NAME=CERT, NAME being the caller's X-FP-App and CERT its signing certificate (issued by the CA); empty: the partner API refuses everyone")
	gateway := s.String("gateway-url", "http://127.0.0.1:8080", "public base URL of the cashier; QR URL = gateway-url + /q/ + token")
	nontax := s.String("nontax-url", "http://127.0.0.1:8070", "base URL of the non-tax system")
	ereceipt := s.String("ereceipt-url", "http://127.0.0.1:8070", "base URL of the e-receipt platform")
	window := s.String("window-url", "http://127.0.0.1:8070", "base URL of the window platform")
	unifiedURL := s.String("unified-url", "http://127.0.0.1:8070", "base URL of the unified public payment platform, which takes the outcome of automatic refunds of duplicate payments (R5)")
	ispURL := s.String("isp-url", "http://127.0.0.1:8070", "base URL of the 12123 Internet Service Platform, to which P1 payment results are pushed")
	policeURL := s.String("police-url", "http://127.0.0.1:8070", "base URL of the traffic police business system (交警业务系统), asked for decisions and told of bank payments (flow P3) and of the outcome of their refunds (R4)")
	adapterURL := s.String("bank-adapter-url", "http://127.0.0.1:8070", "base URL of the finance adapter (适配器) of the agency banks, which the core instructs to have the bank refund a bank payment (flow R4)")
	encKey := s.String("enc-key", "core-enc.key", "the core's SM2 encryption key (PKCS#8 PEM): opens the personal fields partners send encrypted to the core's encryption certificate (party_name_enc of the 12123 platform; party_name_enc and plate_enc of the police business system, flow P3)")
	dataKey := s.String("data-key-file", "certs/core-data.key", "16-byte SM4 data key (hex) sealing personal fields at rest; created (mode 0600, random) with a warning at first start if absent")
	lookupKey := s.String("lookup-key-file", "lookup.key", "32-byte key (hex) shared with the gateway: bills are published with the keyed hash of decision number and plate's last four characters, for the gateway's lookup page; absent file: no lookup hash (a warning); empty: off")
	consolePW := s.String("console-password", "", "initial password of the console user clerk (at least 8 characters of two kinds); empty: a random one is generated and logged once at first start")
	reviewerPW := s.String("reviewer-password", "", "initial password of the console user reviewer, who reviews the refunds the clerk starts (at least 8 characters of two kinds); empty: a random one is generated and logged once at first start")
	consoleRoles := s.String("console-roles", console.DefaultRoles, "roles of the console users: comma-separated USER=ROLE[+ROLE], ROLE clerk (look up, create bills, start refunds) or reviewer (look up, review refunds); nobody reviews a refund they asked for; a user not named has no role")
	apiToken := s.String("api-token", "", "bearer token of the window platform for /api/v1; empty: the API is open only to logged-in console sessions")
	lanes := s.Int("lanes", 4, "outbox lanes per direction (ferry partitions)")
	workers := s.Int("task-workers", 4, "concurrent durable-task workers")
	level := s.String("log-level", "info", "log level: debug, info, warn, error")
	return s, func() options {
		return options{Listen: *listen, DB: *db, Certs: *certs, SignKey: *signKey, SignCert: *signCert, CACert: *caCert,
			PartnerSignCert: *pSign, PartnerEncCert: *pEnc, PartnerCallers: *callers, GatewayURL: *gateway, NonTaxURL: *nontax, EReceiptURL: *ereceipt,
			WindowURL: *window, ISPURL: *ispURL, UnifiedURL: *unifiedURL, PoliceURL: *policeURL, BankAdapterURL: *adapterURL, EncKey: *encKey, DataKeyFile: *dataKey, LookupKeyFile: *lookupKey, ConsolePassword: *consolePW, ReviewerPW: *reviewerPW, APIToken: *apiToken, Lanes: *lanes,
			TaskWorkers: *workers, LogLevel: *level, UnitSignKey: *unitKey, UnitSignCert: *unitCert, ConsoleRoles: *consoleRoles}
	}
}

// certPath resolves a key or certificate flag: a bare file name is looked up in the certs
// directory; a path with a directory part is used as given.
func (o *options) certPath(name string) string {
	if strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator) {
		return name
	}
	return filepath.Join(o.Certs, name)
}
