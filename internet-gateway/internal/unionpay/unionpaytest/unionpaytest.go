// Package unionpaytest is the other side of UnionPay ACP 5.1.0 for the gateway's tests: a
// UnionPay root and middle CA, UnionPay's signing certificate and the merchant's, written to a
// temporary directory; a fake gateway on httptest that checks the merchant's signatures and
// signs its answers; and signed notifications. Its signing is written here, independently of
// package unionpay, so that the two check each other. Only test code imports it.
package unionpaytest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
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

	"finepay/internet-gateway/internal/unionpay"
)

// MerID is the merchant of the tests.
const MerID = "777290058110048"

// Chain is a CA chain and the signing certificate it issued.
type Chain struct {
	Root, Middle *x509.Certificate
	SignKey      *rsa.PrivateKey
	Sign         *x509.Certificate
	SignPEM      string
}

// PKI is the merchant's and UnionPay's keys, written to Dir.
type PKI struct {
	Dir         string
	Files       unionpay.KeyFiles
	MerchantKey *rsa.PrivateKey
	Merchant    *x509.Certificate
	UnionPay    Chain
	// Stranger is a chain the merchant does not trust, whose signer also names UnionPay.
	Stranger Chain
	// Impostor is a certificate issued by the trusted middle CA to someone else than UnionPay.
	Impostor Chain
}

var rsaKeys = sync.OnceValues(func() ([]*rsa.PrivateKey, error) {
	var out []*rsa.PrivateKey
	for range 5 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
})

func issue(tb testing.TB, parent *x509.Certificate, parentKey, key *rsa.PrivateKey, cn string, ca bool) *x509.Certificate {
	tb.Helper()
	sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: sn.Add(sn, big.NewInt(1)), Subject: pkix.Name{CommonName: cn},
		// Valid from long before the tests' fixed clocks to a week from now.
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Now().Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: ca}
	if ca {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func chain(tb testing.TB, caKey, signKey *rsa.PrivateKey, cn string) Chain {
	root := issue(tb, nil, nil, caKey, "UnionPay Test Root", true)
	middle := issue(tb, root, caKey, caKey, "UnionPay Test Middle", true)
	sign := issue(tb, middle, caKey, signKey, cn, false)
	return Chain{Root: root, Middle: middle, SignKey: signKey, Sign: sign, SignPEM: string(pemOf(sign))}
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// SignerCN is the common name of UnionPay's signing certificate in the tests.
const SignerCN = "041@Z20250101@中国银联股份有限公司@00000001"

// NewPKI makes the keys (generated once per process) and fresh certificates, and writes the
// files unionpay.LoadKeys reads into a temporary directory.
func NewPKI(tb testing.TB) *PKI { return NewPKIIn(tb, tb.TempDir()) }

// NewPKIIn is NewPKI writing into dir.
func NewPKIIn(tb testing.TB, dir string) *PKI {
	tb.Helper()
	keys, err := rsaKeys()
	if err != nil {
		tb.Fatal(err)
	}
	p := &PKI{Dir: dir, MerchantKey: keys[0]}
	p.UnionPay = chain(tb, keys[1], keys[2], SignerCN)
	p.Stranger = chain(tb, keys[3], keys[4], SignerCN)
	p.Impostor = Chain{Root: p.UnionPay.Root, Middle: p.UnionPay.Middle, SignKey: keys[4]}
	p.Impostor.Sign = issue(tb, p.UnionPay.Middle, keys[1], keys[4], "041@Z20250101@某某科技有限公司@00000002", false)
	p.Impostor.SignPEM = string(pemOf(p.Impostor.Sign))
	p.Merchant = issue(tb, p.UnionPay.Middle, keys[1], p.MerchantKey, "041@Z20250101@FinePay test@"+MerID, false)
	p.Files = unionpay.KeyFiles{
		MerchantKey: filepath.Join(dir, "unionpay-merchant.key"), MerchantCert: filepath.Join(dir, "unionpay-merchant.pem"),
		RootCert: filepath.Join(dir, "unionpay-root.pem"), MiddleCert: filepath.Join(dir, "unionpay-middle.pem"),
	}
	der, err := x509.MarshalPKCS8PrivateKey(p.MerchantKey)
	if err != nil {
		tb.Fatal(err)
	}
	write(tb, p.Files.MerchantKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	write(tb, p.Files.MerchantCert, pemOf(p.Merchant))
	write(tb, p.Files.RootCert, pemOf(p.UnionPay.Root))
	write(tb, p.Files.MiddleCert, pemOf(p.UnionPay.Middle))
	return p
}

// Keys loads the files as the gateway does.
func (p *PKI) Keys(tb testing.TB) unionpay.Keys {
	tb.Helper()
	k, err := unionpay.LoadKeys(p.Files)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// CertID is the certId of the merchant's requests.
func (p *PKI) CertID() string { return p.Merchant.SerialNumber.String() }

func write(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// text is the signing text: all fields but signature, sorted, k=v joined with &.
func text(f map[string]string) string {
	var names []string
	for k := range f {
		if k != "signature" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, k+"="+f[k])
	}
	return strings.Join(parts, "&")
}

func hashed(f map[string]string) []byte {
	h := sha256.Sum256([]byte(text(f)))
	sum := sha256.Sum256([]byte(hex.EncodeToString(h[:])))
	return sum[:]
}

// SignWith adds signMethod, signPubKeyCert and signature by c's signing key to f.
func SignWith(c Chain, f map[string]string) map[string]string {
	f["signMethod"] = "01"
	f["signPubKeyCert"] = c.SignPEM
	delete(f, "signature")
	sig, err := rsa.SignPKCS1v15(nil, c.SignKey, crypto.SHA256, hashed(f))
	if err != nil {
		panic(err)
	}
	f["signature"] = base64.StdEncoding.EncodeToString(sig)
	return f
}

// verifyMerchant checks a request's signature by the merchant key named by certId.
func (p *PKI) verifyMerchant(f map[string]string) error {
	if f["certId"] != p.CertID() || f["signMethod"] != "01" {
		return fmt.Errorf("certId %q signMethod %q", f["certId"], f["signMethod"])
	}
	sig, err := base64.StdEncoding.DecodeString(f["signature"])
	if err != nil {
		return err
	}
	return rsa.VerifyPKCS1v15(&p.MerchantKey.PublicKey, crypto.SHA256, hashed(f), sig)
}

var shanghai = time.FixedZone("CST", 8*3600)

// Paid describes a consume transaction for a notification.
type Paid struct {
	MerID    string // MerID when empty
	OrderID  string
	TxnTime  time.Time
	QueryID  string
	Amount   int64
	RespCode string // 00 when empty
	PaidAt   time.Time
}

// Fields returns the notification's fields, unsigned.
func (p Paid) Fields() map[string]string {
	if p.MerID == "" {
		p.MerID = MerID
	}
	if p.RespCode == "" {
		p.RespCode = "00"
	}
	return map[string]string{
		"version": "5.1.0", "encoding": "UTF-8", "bizType": "000000", "txnType": "01", "txnSubType": "07", "accessType": "0",
		"merId": p.MerID, "orderId": p.OrderID, "txnTime": p.TxnTime.In(shanghai).Format("20060102150405"),
		"txnAmt": fmt.Sprint(p.Amount), "currencyCode": "156", "queryId": p.QueryID, "respCode": p.RespCode, "respMsg": "成功[0000000]",
		"settleAmt": fmt.Sprint(p.Amount), "settleCurrencyCode": "156", "settleDate": p.PaidAt.In(shanghai).Format("0102"),
		"traceNo": p.QueryID[len(p.QueryID)-6:], "traceTime": p.PaidAt.In(shanghai).Format("0102150405"),
	}
}

// Form encodes fields as a form body.
func Form(f map[string]string) []byte {
	v := url.Values{}
	for k, x := range f {
		v.Set(k, x)
	}
	return []byte(v.Encode())
}

// NotificationBody returns a notification of p signed by UnionPay, as a form body.
func (k *PKI) NotificationBody(p Paid) []byte { return Form(SignWith(k.UnionPay, p.Fields())) }
