// Package alipay is the gateway's client of the Alipay open platform for face-to-face QR
// payments (当面付): alipay.trade.precreate, alipay.trade.query and alipay.trade.close, and the
// asynchronous payment notifications.
//
// Requests are forms POSTed to the gateway URL (gateway.do) with the common parameters app_id,
// method, format, charset, sign_type, timestamp, version (and notify_url for precreate) and the
// business parameters as the JSON text biz_content. They are signed RSA2: every parameter but
// sign with a non-empty value, sorted by name, joined as k=v with &, signed SHA256withRSA with
// the application's private key, base64. Answers are JSON objects holding the method's
// "*_response" object and sign, a signature by Alipay's key over the text of that object exactly
// as received (the raw bytes are taken out of the answer, never re-marshalled); an answer with
// code 10000 that does not verify is treated as forged.
//
// Notifications are forms POSTed to notify_url; sign and sign_type are dropped, the other
// non-empty values URL-decoded, sorted and joined the same way, and RSA2-verified with Alipay's
// public key. The merchant answers the body "success" once the notification is acted on;
// anything else makes Alipay resend (4m, 10m, 10m, 1h, 2h, 6h, 15h).
package alipay

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"finepay/shared/bizdate"
)

// Channel is the channel name of Alipay in orders, payments and messages.
const Channel = "alipay"

// Protocol constants.
const (
	SignType = "RSA2"
	Charset  = "utf-8"
	Format   = "JSON"
	Version  = "1.0"
	// TimeLayout is how the open platform writes times (Asia/Shanghai).
	TimeLayout = "2006-01-02 15:04:05"
	// CodeSuccess is the code of a successful call.
	CodeSuccess = "10000"
)

// Methods used.
const (
	MethodPrecreate = "alipay.trade.precreate"
	MethodQuery     = "alipay.trade.query"
	MethodClose     = "alipay.trade.close"
)

// Trade statuses.
const (
	StatusWaitBuyerPay  = "WAIT_BUYER_PAY"
	StatusTradeClosed   = "TRADE_CLOSED"
	StatusTradeSuccess  = "TRADE_SUCCESS"
	StatusTradeFinished = "TRADE_FINISHED"
)

// Sub-codes the client acts on.
const (
	SubCodeTradeNotExist    = "ACQ.TRADE_NOT_EXIST"
	SubCodeTradeStatusError = "ACQ.TRADE_STATUS_ERROR"
	SubCodeTradeHasSuccess  = "ACQ.TRADE_HAS_SUCCESS"
	SubCodeTradeHasClose    = "ACQ.TRADE_HAS_CLOSE"
)

// Verification failures. Each notification rejection wraps exactly one of them.
var (
	ErrSignature = errors.New("alipay: signature does not verify")
	ErrInvalid   = errors.New("alipay: invalid content")
)

// ErrForged is wrapped (with the verification failure) when a successful answer is not validly
// signed by Alipay.
var ErrForged = errors.New("alipay: answer not signed by Alipay")

// ErrTradeNotExist is returned by Query for a trade Alipay does not know. A precreated order
// becomes a trade only once the payer has scanned its code.
var ErrTradeNotExist = errors.New("alipay: trade does not exist")

// APIError is an answer with a code other than 10000.
type APIError struct {
	Method   string
	Code     string
	Msg      string
	SubCode  string
	SubMsg   string
	Verified bool // the answer carried a valid signature
}

func (e *APIError) Error() string {
	v := ""
	if !e.Verified {
		v = " (unsigned)"
	}
	return fmt.Sprintf("alipay: %s: %s %s %s %s%s", e.Method, e.Code, e.Msg, e.SubCode, e.SubMsg, v)
}

// reTradeNo matches order and trade numbers: at most 48 characters, so that a message ID
// "pay:alipay:<trade_no>" fits the envelope's 64.
var reTradeNo = regexp.MustCompile(`^[A-Za-z0-9_-]{1,48}$`)

// parseTime reads an open-platform time (Asia/Shanghai).
func parseTime(s string) (time.Time, error) {
	return time.ParseInLocation(TimeLayout, s, bizdate.Location)
}

// formatTime writes an open-platform time (Asia/Shanghai).
func formatTime(t time.Time) string { return t.In(bizdate.Location).Format(TimeLayout) }
