// Package wechattest is the other side of WeChat Pay API v3 for the gateway's tests: RSA keys
// and certificates made in a temporary directory, a fake API server on httptest that checks the
// merchant's signatures and signs its answers with the platform key, and signed, encrypted
// payment notifications. Its signing and encryption are written here, independently of package
// wechat, so that the two check each other. Only test code imports it.
package wechattest

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"finepay/internet-gateway/internal/wechat"
)

// Defaults of the merchant.
const (
	AppID = "wxd678efh567hg6787"
	MchID = "1900000001"
)

// PKI is a merchant's and a platform's keys and certificates, and the APIv3 key, written to Dir.
type PKI struct {
	Dir          string
	Files        wechat.KeyFiles
	MerchantKey  *rsa.PrivateKey
	MerchantCert *x509.Certificate
	PlatformKey  *rsa.PrivateKey
	PlatformCert *x509.Certificate
	// StrangerKey and StrangerCert are a platform key pair the merchant does not trust.
	StrangerKey  *rsa.PrivateKey
	StrangerCert *x509.Certificate
	APIv3Key     []byte
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

// NewPKI makes the keys (generated once per process) and fresh certificates, and writes the
// files wechat.LoadKeys reads into a temporary directory.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	keys, err := rsaKeys()
	if err != nil {
		tb.Fatal(err)
	}
	p := &PKI{Dir: tb.TempDir(), MerchantKey: keys[0], PlatformKey: keys[1], StrangerKey: keys[2]}
	p.MerchantCert = selfSigned(tb, p.MerchantKey, "1900000001 merchant")
	p.PlatformCert = selfSigned(tb, p.PlatformKey, "Tenpay platform")
	p.StrangerCert = selfSigned(tb, p.StrangerKey, "stranger")
	p.APIv3Key = []byte(hex.EncodeToString(randomBytes(16)))
	p.Files = wechat.KeyFiles{
		MerchantKey:  filepath.Join(p.Dir, "wechat-merchant.key"),
		MerchantCert: filepath.Join(p.Dir, "wechat-merchant.pem"),
		PlatformCert: filepath.Join(p.Dir, "wechat-platform.pem"),
		APIv3Key:     filepath.Join(p.Dir, "wechat-apiv3.key"),
	}
	der, err := x509.MarshalPKCS8PrivateKey(p.MerchantKey)
	if err != nil {
		tb.Fatal(err)
	}
	write(tb, p.Files.MerchantKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	write(tb, p.Files.MerchantCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.MerchantCert.Raw}))
	write(tb, p.Files.PlatformCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.PlatformCert.Raw}))
	write(tb, p.Files.APIv3Key, p.APIv3Key)
	return p
}

// Keys loads the files as the gateway does.
func (p *PKI) Keys(tb testing.TB) wechat.Keys {
	tb.Helper()
	k, err := wechat.LoadKeys(p.Files)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// PlatformSerial is the serial of the trusted platform certificate.
func (p *PKI) PlatformSerial() string { return serial(p.PlatformCert) }

// MerchantSerial is the serial of the merchant certificate.
func (p *PKI) MerchantSerial() string { return serial(p.MerchantCert) }

func serial(c *x509.Certificate) string { return fmt.Sprintf("%X", c.SerialNumber) }

func selfSigned(tb testing.TB, k *rsa.PrivateKey, cn string) *x509.Certificate {
	tb.Helper()
	sn := new(big.Int).SetBytes(randomBytes(20))
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func write(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// SignWith returns platform headers for body, signed by key under serial at ts.
func SignWith(key *rsa.PrivateKey, serial string, ts time.Time, body []byte) http.Header {
	tsText := strconv.FormatInt(ts.Unix(), 10)
	nonce := hex.EncodeToString(randomBytes(16))
	msg := tsText + "\n" + nonce + "\n" + string(body) + "\n"
	sum := sha256.Sum256([]byte(msg))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	h := http.Header{}
	h.Set("Wechatpay-Timestamp", tsText)
	h.Set("Wechatpay-Nonce", nonce)
	h.Set("Wechatpay-Signature", base64.StdEncoding.EncodeToString(sig))
	h.Set("Wechatpay-Serial", serial)
	h.Set("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
	return h
}

// Sign returns platform headers for body signed by the trusted platform key at ts.
func (p *PKI) Sign(ts time.Time, body []byte) http.Header {
	return SignWith(p.PlatformKey, p.PlatformSerial(), ts, body)
}

// Paid describes a successful transaction for a notification or a query answer.
type Paid struct {
	AppID         string // AppID when empty
	MchID         string // MchID when empty
	OutTradeNo    string
	TransactionID string
	Total         int64
	Currency      string // CNY when empty
	TradeState    string // SUCCESS when empty
	SuccessTime   time.Time
}

// Transaction renders the plaintext transaction of p.
func (p Paid) Transaction() map[string]any {
	if p.AppID == "" {
		p.AppID = AppID
	}
	if p.MchID == "" {
		p.MchID = MchID
	}
	if p.Currency == "" {
		p.Currency = "CNY"
	}
	if p.TradeState == "" {
		p.TradeState = "SUCCESS"
	}
	return map[string]any{
		"appid": p.AppID, "mchid": p.MchID, "out_trade_no": p.OutTradeNo, "transaction_id": p.TransactionID,
		"trade_type": "NATIVE", "trade_state": p.TradeState, "trade_state_desc": "支付成功", "bank_type": "OTHERS",
		"attach": "", "success_time": p.SuccessTime.In(shanghai).Format(time.RFC3339),
		"payer":  map[string]any{"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
		"amount": map[string]any{"total": p.Total, "payer_total": p.Total, "currency": p.Currency, "payer_currency": p.Currency},
	}
}

var shanghai = time.FixedZone("CST", 8*3600)

// NotificationBody returns a TRANSACTION.SUCCESS notification with id whose resource is the
// transaction of p, encrypted under the APIv3 key.
func (p *PKI) NotificationBody(id string, tx Paid) []byte {
	plain, err := json.Marshal(tx.Transaction())
	if err != nil {
		panic(err)
	}
	return p.NotificationOf(id, plain)
}

// NotificationOf returns a notification whose resource is plain, encrypted under the APIv3 key.
func (p *PKI) NotificationOf(id string, plain []byte) []byte {
	nonce := hex.EncodeToString(randomBytes(6)) // 12 characters
	block, err := aes.NewCipher(p.APIv3Key)
	if err != nil {
		panic(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	ct := gcm.Seal(nil, []byte(nonce), plain, []byte("transaction"))
	body, err := json.Marshal(map[string]any{
		"id": id, "create_time": time.Now().In(shanghai).Format(time.RFC3339), "resource_type": "encrypt-resource",
		"event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
		"resource": map[string]any{"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
			"ciphertext": base64.StdEncoding.EncodeToString(ct), "associated_data": "transaction", "nonce": nonce},
	})
	if err != nil {
		panic(err)
	}
	return body
}
