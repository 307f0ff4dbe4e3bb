package unionpay

import (
	"fmt"
	"time"

	"finepay/shared/money"
)

// MaxNotification bounds the size of a notification body.
const MaxNotification = 64 << 10

// Notification is a verified backUrl notification.
type Notification struct {
	MerID      string
	OrderID    string
	TxnTime    string
	TxnType    string
	TxnSubType string
	RespCode   string
	RespMsg    string
	QueryID    string
	TxnAmt     money.Fen
	TraceNo    string
	TraceTime  string
	SettleDate string
	PaidAt     time.Time // from traceTime, when it succeeded
}

// Succeeded reports whether the notification says the money moved (respCode 00 or A6).
func (n Notification) Succeeded() bool { return Succeeded(n.RespCode) }

// OpenNotification parses and verifies a notification body: the form (ErrInvalid), the
// signature and its certificate (ErrSignature, ErrCertificate), then the content (ErrInvalid):
// version 5.1.0, ours (merId), a well-formed orderId, txnTime, amount and queryId, and for a
// success its traceTime. Whether the order exists, the amount is right and a query confirms the
// payment is for the caller to check.
func (c *Client) OpenNotification(body []byte) (Notification, error) {
	var n Notification
	if len(body) > MaxNotification {
		return n, fmt.Errorf("%w: body of %d bytes", ErrInvalid, len(body))
	}
	f, err := ParseForm(body)
	if err != nil {
		return n, err
	}
	n = Notification{MerID: f["merId"], OrderID: f["orderId"], TxnTime: f["txnTime"], TxnType: f["txnType"],
		TxnSubType: f["txnSubType"], RespCode: f["respCode"], RespMsg: f["respMsg"], QueryID: f["queryId"],
		TraceNo: f["traceNo"], TraceTime: f["traceTime"], SettleDate: f["settleDate"]}
	if err := c.verifier.Verify(f); err != nil {
		return n, err
	}
	switch {
	case f["version"] != Version:
		return n, fmt.Errorf("%w: version %.8q", ErrInvalid, f["version"])
	case n.MerID != c.merID:
		return n, fmt.Errorf("%w: merId %.20q is not ours", ErrInvalid, n.MerID)
	case !reOrderID.MatchString(n.OrderID):
		return n, fmt.Errorf("%w: orderId %.40q", ErrInvalid, n.OrderID)
	case n.RespCode == "" || len(n.RespCode) > 4:
		return n, fmt.Errorf("%w: respCode %.8q", ErrInvalid, n.RespCode)
	case !reQueryID.MatchString(n.QueryID):
		return n, fmt.Errorf("%w: queryId %.48q", ErrInvalid, n.QueryID)
	}
	txnTime, err := parseTxnTime(n.TxnTime)
	if err != nil {
		return n, err
	}
	if n.TxnAmt, err = parseFen(f["txnAmt"]); err != nil {
		return n, err
	}
	if c := f["currencyCode"]; c != "" && c != CurrencyCode {
		return n, fmt.Errorf("%w: currencyCode %.8q", ErrInvalid, c)
	}
	if n.Succeeded() {
		if n.PaidAt, err = traceInstant(n.TraceTime, txnTime); err != nil {
			return n, err
		}
	}
	return n, nil
}
