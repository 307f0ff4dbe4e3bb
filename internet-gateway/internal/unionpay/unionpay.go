// Package unionpay is the gateway's client of UnionPay online payments (ACP 5.1.0) for QR
// consumption, where the merchant presents the code (申请消费二维码): the consume order that
// returns a qrCode, the transaction query, and the backUrl notifications.
//
// Every message is a set of fields. A request is a form POSTed to the back-transaction or query
// endpoint; an answer is "name=value&..." text whose values are not URL-encoded (a value may hold
// "{...}" with & inside); a notification is an ordinary form POSTed to backUrl. Messages are
// signed with signMethod=01: every field but signature, sorted by name, joined as name=value
// with & (empty values included, nothing encoded); the SHA-256 of that text in lowercase hex is
// signed SHA256withRSA and sent base64 as signature. The merchant names its signing certificate
// by certId (its serial number in decimal); UnionPay sends its signing certificate itself in
// signPubKeyCert, which must chain to the configured UnionPay root through the middle
// certificate and name 中国银联股份有限公司 as its owner.
//
// A notification is acted on only when respCode is 00 or A6 and a query confirms the payment;
// the merchant answers HTTP 200 once it is recorded, anything else makes UnionPay resend.
package unionpay

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"finepay/shared/bizdate"
	"finepay/shared/money"
)

// Channel is the channel name of UnionPay in orders, payments and messages.
const Channel = "unionpay"

// Protocol constants.
const (
	Version      = "5.1.0"
	Encoding     = "UTF-8"
	SignMethod   = "01" // RSA with SHA-256 and certificates
	CurrencyCode = "156"
	BizType      = "000000"
	ChannelType  = "08" // mobile
	AccessType   = "0"  // a merchant connected directly
	// TxnTimeLayout is the layout of txnTime and payTimeout (Asia/Shanghai).
	TxnTimeLayout = "20060102150405"
	// Owner is the owner named in the third @-separated field of the signing certificate's
	// common name.
	Owner = "中国银联股份有限公司"
)

// Transaction types and sub-types used.
const (
	TxnTypeQuery      = "00"
	TxnTypeConsume    = "01"
	TxnSubTypeQuery   = "00"
	TxnSubTypeQRApply = "07" // apply for a consume QR code
)

// Endpoints, relative to the base URL (https://gateway.95516.com in production).
const (
	PathBackTrans = "/gateway/api/backTransReq.do"
	PathQuery     = "/gateway/api/queryTrans.do"
)

// Response codes the client acts on.
const (
	RespSuccess        = "00"
	RespPartialSuccess = "A6" // success with a part of the amount; acted on as success
	RespNoSuchTxn      = "34" // 查无此交易
)

// Succeeded reports whether a respCode or origRespCode means the money moved.
func Succeeded(code string) bool { return code == RespSuccess || code == RespPartialSuccess }

// Processing reports whether an origRespCode means the transaction is not final yet.
func Processing(code string) bool { return code == "03" || code == "04" || code == "05" }

// Verification failures. Each notification rejection wraps exactly one of them.
var (
	ErrSignature   = errors.New("unionpay: signature does not verify")
	ErrCertificate = errors.New("unionpay: signing certificate not trusted")
	ErrInvalid     = errors.New("unionpay: invalid content")
)

// ErrForged is wrapped (with the verification failure) when a successful answer is not validly
// signed by UnionPay.
var ErrForged = errors.New("unionpay: answer not signed by UnionPay")

// ErrNoSuchTransaction is returned by Query for a transaction UnionPay does not know.
var ErrNoSuchTransaction = errors.New("unionpay: no such transaction")

// APIError is an answer with a respCode other than 00.
type APIError struct {
	Path     string
	RespCode string
	RespMsg  string
	Verified bool // the answer carried a valid signature
}

func (e *APIError) Error() string {
	v := ""
	if !e.Verified {
		v = " (unsigned)"
	}
	return fmt.Sprintf("unionpay: %s: respCode %s %s%s", e.Path, e.RespCode, e.RespMsg, v)
}

var (
	reOrderID = regexp.MustCompile(`^[A-Za-z0-9]{8,40}$`)
	// reQueryID: at most 48 characters, so that "pay:unionpay:<queryId>" fits the envelope's 64.
	reQueryID = regexp.MustCompile(`^[A-Za-z0-9]{1,48}$`)
	reTxnTime = regexp.MustCompile(`^[0-9]{14}$`)
	reAmount  = regexp.MustCompile(`^[0-9]{1,12}$`)
	reMMDD    = regexp.MustCompile(`^[0-9]{10}$`)
)

// TxnTime writes t as a txnTime (Asia/Shanghai).
func TxnTime(t time.Time) string { return t.In(bizdate.Location).Format(TxnTimeLayout) }

func parseTxnTime(s string) (time.Time, error) {
	if !reTxnTime.MatchString(s) {
		return time.Time{}, fmt.Errorf("%w: txnTime %.20q", ErrInvalid, s)
	}
	t, err := time.ParseInLocation(TxnTimeLayout, s, bizdate.Location)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: txnTime %.20q", ErrInvalid, s)
	}
	return t, nil
}

// parseFen reads txnAmt: fen as digits.
func parseFen(s string) (money.Fen, error) {
	if !reAmount.MatchString(s) {
		return 0, fmt.Errorf("%w: txnAmt %.20q", ErrInvalid, s)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%w: txnAmt %.20q", ErrInvalid, s)
	}
	return money.Fen(v), nil
}

// traceInstant reads traceTime (MMDDhhmmss, Asia/Shanghai) as the instant nearest after the
// transaction's txnTime that has those digits: the year is txnTime's, or the next when the
// trace falls in January of a December order.
func traceInstant(trace string, txn time.Time) (time.Time, error) {
	if !reMMDD.MatchString(trace) {
		return time.Time{}, fmt.Errorf("%w: traceTime %.20q", ErrInvalid, trace)
	}
	local := txn.In(bizdate.Location)
	for _, year := range []int{local.Year(), local.Year() + 1} {
		t, err := time.ParseInLocation("2006"+"0102150405", strconv.Itoa(year)+trace, bizdate.Location)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: traceTime %.20q", ErrInvalid, trace)
		}
		if !t.Before(local.Add(-24 * time.Hour)) {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: traceTime %.20q before txnTime", ErrInvalid, trace)
}
