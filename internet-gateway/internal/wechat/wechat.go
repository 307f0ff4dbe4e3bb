// Package wechat is the gateway's client of WeChat Pay API v3 for a direct merchant: Native
// (QR) orders, order query and close, and payment notifications.
//
// Every request is signed with the merchant's RSA key (Authorization:
// WECHATPAY2-SHA256-RSA2048 ...; SHA256withRSA over "METHOD\nPATH?QUERY\ntimestamp\nnonce\nbody\n").
// Every response and notification is verified with a platform certificate named by its
// Wechatpay-Serial (SHA256withRSA over "timestamp\nnonce\nraw-body\n", timestamp within five
// minutes of the clock); a 2xx response that does not verify is treated as forged. Notification
// resources are decrypted with AEAD_AES_256_GCM under the APIv3 key.
package wechat

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Channel is the channel name of WeChat Pay in orders, payments and messages.
const Channel = "wechat"

// AuthScheme is the scheme of the merchant's Authorization header.
const AuthScheme = "WECHATPAY2-SHA256-RSA2048"

// Window is how far a platform timestamp may be from the clock.
const Window = 5 * time.Minute

// Headers of platform-signed responses and notifications.
const (
	HeaderSignature = "Wechatpay-Signature"
	HeaderTimestamp = "Wechatpay-Timestamp"
	HeaderNonce     = "Wechatpay-Nonce"
	HeaderSerial    = "Wechatpay-Serial"
)

// Trade states of a transaction.
const (
	StateSuccess    = "SUCCESS"
	StateRefund     = "REFUND"
	StateNotPay     = "NOTPAY"
	StateClosed     = "CLOSED"
	StateRevoked    = "REVOKED"
	StateUserPaying = "USERPAYING"
	StatePayError   = "PAYERROR"
)

// Verification failures. Each notification rejection wraps exactly one of them.
var (
	ErrSerial    = errors.New("wechat: unknown platform certificate serial")
	ErrTimestamp = errors.New("wechat: timestamp outside the accepted window")
	ErrSignature = errors.New("wechat: platform signature does not verify")
	ErrDecrypt   = errors.New("wechat: resource does not decrypt")
	ErrInvalid   = errors.New("wechat: invalid content")
)

// ErrForged is wrapped (with the verification failure) when a 2xx response is not validly
// signed by the platform.
var ErrForged = errors.New("wechat: response not signed by the platform")

// ErrOrderNotExist is returned by QueryOrder for an order WeChat does not know (a signed 404
// ORDER_NOT_EXIST).
var ErrOrderNotExist = errors.New("wechat: order does not exist")

// APIError is an error answer of the API.
type APIError struct {
	Status   int
	Code     string
	Message  string
	Verified bool // the answer carried a valid platform signature
}

func (e *APIError) Error() string {
	v := ""
	if !e.Verified {
		v = " (unsigned)"
	}
	return fmt.Sprintf("wechat: HTTP %d %s: %s%s", e.Status, e.Code, e.Message, v)
}

// reTradeNo matches order and transaction numbers; 48 characters at most, so that a message ID
// "pay:wechat:<transaction_id>" fits the envelope's 64.
var reTradeNo = regexp.MustCompile(`^[A-Za-z0-9_-]{1,48}$`)

// Transaction is a WeChat Pay transaction, as a notification resource carries it and as a
// query answers it.
type Transaction struct {
	AppID          string `json:"appid"`
	MchID          string `json:"mchid"`
	OutTradeNo     string `json:"out_trade_no"`
	TransactionID  string `json:"transaction_id"`
	TradeType      string `json:"trade_type"`
	TradeState     string `json:"trade_state"`
	TradeStateDesc string `json:"trade_state_desc"`
	BankType       string `json:"bank_type"`
	SuccessTime    string `json:"success_time"`
	Attach         string `json:"attach"`
	Payer          struct {
		OpenID string `json:"openid"`
	} `json:"payer"`
	Amount struct {
		Total         int64  `json:"total"`
		PayerTotal    int64  `json:"payer_total"`
		Currency      string `json:"currency"`
		PayerCurrency string `json:"payer_currency"`
	} `json:"amount"`
}

// Paid reports whether the transaction's money was received (SUCCESS, or REFUND: paid and
// later refunded).
func (t Transaction) Paid() bool { return t.TradeState == StateSuccess || t.TradeState == StateRefund }

// CheckPaid validates a paid transaction for merchant appID/mchID: ours, paid, identifiers
// well formed, a positive amount in CNY, a success time. It returns the success time.
func (t Transaction) CheckPaid(appID, mchID string) (time.Time, error) {
	switch {
	case t.AppID != appID || t.MchID != mchID:
		return time.Time{}, fmt.Errorf("%w: appid/mchid %q/%q are not ours", ErrInvalid, t.AppID, t.MchID)
	case !t.Paid():
		return time.Time{}, fmt.Errorf("%w: trade_state %q", ErrInvalid, t.TradeState)
	case !reTradeNo.MatchString(t.OutTradeNo) || !reTradeNo.MatchString(t.TransactionID):
		return time.Time{}, fmt.Errorf("%w: out_trade_no/transaction_id", ErrInvalid)
	case t.Amount.Total <= 0 || t.Amount.Currency != "CNY":
		return time.Time{}, fmt.Errorf("%w: amount %d %q", ErrInvalid, t.Amount.Total, t.Amount.Currency)
	}
	at, err := time.Parse(time.RFC3339, t.SuccessTime)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: success_time %q", ErrInvalid, t.SuccessTime)
	}
	return at, nil
}
