// Package alipaytest is the other side of the Alipay open platform for the gateway's tests: RSA
// keys written to a temporary directory, a fake gateway.do on httptest that checks the
// application's RSA2 signatures and signs its answers with Alipay's key, and signed
// notifications. Its signing is written here, independently of package alipay, so that the two
// check each other. Only test code imports it.
package alipaytest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"finepay/internet-gateway/internal/alipay"
)

// AppID is the application of the tests.
const AppID = "2021004100000001"

// SellerID is the merchant's Alipay user ID (PID).
const SellerID = "2088000000000001"

// PKI is the application's and Alipay's keys, written to Dir.
type PKI struct {
	Dir         string
	Files       alipay.KeyFiles
	AppKey      *rsa.PrivateKey
	PlatformKey *rsa.PrivateKey
	// StrangerKey is a key the application does not trust.
	StrangerKey *rsa.PrivateKey
}

var rsaKeys = sync.OnceValues(func() ([]*rsa.PrivateKey, error) {
	var out []*rsa.PrivateKey
	for range 3 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
})

// NewPKI makes the keys (generated once per process) and writes alipay-app.key/.pem and
// alipay-platform.pem (a certificate) into a temporary directory.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	return NewPKIIn(tb, tb.TempDir())
}

// NewPKIIn is NewPKI writing into dir.
func NewPKIIn(tb testing.TB, dir string) *PKI {
	tb.Helper()
	keys, err := rsaKeys()
	if err != nil {
		tb.Fatal(err)
	}
	p := &PKI{Dir: dir, AppKey: keys[0], PlatformKey: keys[1], StrangerKey: keys[2]}
	p.Files = alipay.KeyFiles{AppKey: filepath.Join(dir, "alipay-app.key"), AlipayKey: filepath.Join(dir, "alipay-platform.pem")}
	der, err := x509.MarshalPKCS8PrivateKey(p.AppKey)
	if err != nil {
		tb.Fatal(err)
	}
	write(tb, p.Files.AppKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	write(tb, filepath.Join(dir, "alipay-app.pem"), selfSigned(tb, p.AppKey, "FinePay test application"))
	write(tb, p.Files.AlipayKey, selfSigned(tb, p.PlatformKey, "Alipay test platform"))
	return p
}

// Keys loads the files as the gateway does.
func (p *PKI) Keys(tb testing.TB) alipay.Keys {
	tb.Helper()
	k, err := alipay.LoadKeys(p.Files)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func selfSigned(tb testing.TB, k *rsa.PrivateKey, cn string) []byte {
	tb.Helper()
	sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func write(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// signText is the RSA2 text of a parameter set: non-empty values but those of the named
// parameters, sorted by name, name=value joined with &.
func signText(v map[string]string, without ...string) string {
	skip := map[string]bool{}
	for _, w := range without {
		skip[w] = true
	}
	var names []string
	for k, val := range v {
		if val != "" && !skip[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = k + "=" + v[k]
	}
	return strings.Join(parts, "&")
}

// SignRSA2 returns base64 SHA256withRSA of text by key.
func SignRSA2(key *rsa.PrivateKey, text string) string {
	sum := sha256.Sum256([]byte(text))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func verifyRSA2(pub *rsa.PublicKey, text, sig string) error {
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(text))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], raw)
}

// Paid describes a trade for a notification.
type Paid struct {
	AppID       string // AppID when empty
	NotifyID    string
	OutTradeNo  string
	TradeNo     string
	Total       int64  // fen
	TotalAmount string // overrides Total when set
	Status      string // TRADE_SUCCESS when empty
	PaidAt      time.Time
}

var shanghai = time.FixedZone("CST", 8*3600)

func yuan(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

// Form returns the notification's fields, unsigned.
func (p Paid) Form() map[string]string {
	if p.AppID == "" {
		p.AppID = AppID
	}
	if p.Status == "" {
		p.Status = "TRADE_SUCCESS"
	}
	if p.NotifyID == "" {
		p.NotifyID = fmt.Sprintf("%x", sha256.Sum256([]byte(p.TradeNo+p.Status)))[:34]
	}
	amount := yuan(p.Total)
	if p.TotalAmount != "" {
		amount = p.TotalAmount
	}
	paid := p.PaidAt.In(shanghai).Format("2006-01-02 15:04:05")
	return map[string]string{
		"notify_time": paid, "notify_type": "trade_status_sync", "notify_id": p.NotifyID, "app_id": p.AppID,
		"charset": "utf-8", "version": "1.0", "trade_no": p.TradeNo, "out_trade_no": p.OutTradeNo,
		"buyer_id": "2088102177846880", "buyer_logon_id": "159****5620", "seller_id": SellerID,
		"trade_status": p.Status, "total_amount": amount, "receipt_amount": amount, "buyer_pay_amount": amount,
		"subject": "交通违法罚款", "gmt_create": paid, "gmt_payment": paid, "fund_bill_list": `[{"amount":"` + amount + `","fundChannel":"ALIPAYACCOUNT"}]`,
	}
}

// SignForm returns the form body of fields signed RSA2 by key.
func SignForm(key *rsa.PrivateKey, fields map[string]string) []byte {
	v := url.Values{}
	for k, val := range fields {
		v.Set(k, val)
	}
	v.Set("sign_type", "RSA2")
	v.Set("sign", SignRSA2(key, signText(fields, "sign", "sign_type")))
	return []byte(v.Encode())
}

// NotificationBody returns the form body of a notification of p signed by Alipay's key.
func (k *PKI) NotificationBody(p Paid) []byte { return SignForm(k.PlatformKey, p.Form()) }
