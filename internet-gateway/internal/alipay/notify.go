package alipay

import (
	"fmt"
	"net/url"
	"time"

	"finepay/shared/money"
)

// MaxNotification bounds the size of a notification body.
const MaxNotification = 64 << 10

// NotifyTypeTradeStatusSync is the notify_type of trade status notifications.
const NotifyTypeTradeStatusSync = "trade_status_sync"

// Notification is a verified asynchronous notification.
type Notification struct {
	NotifyID    string
	NotifyTime  string
	AppID       string
	TradeNo     string
	OutTradeNo  string
	TradeStatus string
	TotalAmount money.Fen
	PaidAt      time.Time // gmt_payment; set when the trade is paid
}

// Paid reports whether the notification says the money was received.
func (n Notification) Paid() bool {
	return n.TradeStatus == StatusTradeSuccess || n.TradeStatus == StatusTradeFinished
}

// ParseForm reads an application/x-www-form-urlencoded body into its values, URL-decoded. A
// malformed body, or a name given twice, is ErrInvalid: a signature must never cover one value
// while the merchant acts on another.
func ParseForm(body []byte) (map[string]string, error) {
	vs, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("%w: form: %w", ErrInvalid, err)
	}
	out := make(map[string]string, len(vs))
	for k, v := range vs {
		if len(v) != 1 {
			return nil, fmt.Errorf("%w: form: %.64q given %d times", ErrInvalid, k, len(v))
		}
		out[k] = v[0]
	}
	return out, nil
}

// OpenNotification parses and verifies a notification body: the form (ErrInvalid), sign_type
// RSA2 and the signature by Alipay's key over the other non-empty values (ErrSignature), then
// the content (ErrInvalid): ours (app_id), a trade_status_sync with well-formed numbers, a known
// trade status, an amount in yuan, and for a paid trade its gmt_payment. Whether the order exists
// and the amount is right is for the caller to check.
func (c *Client) OpenNotification(body []byte) (Notification, error) {
	var n Notification
	if len(body) > MaxNotification {
		return n, fmt.Errorf("%w: body of %d bytes", ErrInvalid, len(body))
	}
	f, err := ParseForm(body)
	if err != nil {
		return n, err
	}
	n = Notification{NotifyID: f["notify_id"], NotifyTime: f["notify_time"], AppID: f["app_id"], TradeNo: f["trade_no"],
		OutTradeNo: f["out_trade_no"], TradeStatus: f["trade_status"]}
	if f["sign_type"] != SignType {
		return n, fmt.Errorf("%w: sign_type %.16q", ErrSignature, f["sign_type"])
	}
	if err := verify(c.keys.AlipayKey, []byte(Content(f, "sign", "sign_type")), f["sign"]); err != nil {
		return n, err
	}
	switch {
	case n.AppID != c.appID:
		return n, fmt.Errorf("%w: app_id %.32q is not ours", ErrInvalid, n.AppID)
	case f["notify_type"] != NotifyTypeTradeStatusSync:
		return n, fmt.Errorf("%w: notify_type %.32q", ErrInvalid, f["notify_type"])
	case f["charset"] != "" && f["charset"] != Charset && f["charset"] != "UTF-8":
		return n, fmt.Errorf("%w: charset %.16q", ErrInvalid, f["charset"])
	case n.NotifyID == "" || len(n.NotifyID) > 64:
		return n, fmt.Errorf("%w: notify_id", ErrInvalid)
	case !reTradeNo.MatchString(n.OutTradeNo) || !reTradeNo.MatchString(n.TradeNo):
		return n, fmt.Errorf("%w: out_trade_no/trade_no", ErrInvalid)
	}
	switch n.TradeStatus {
	case StatusWaitBuyerPay, StatusTradeClosed, StatusTradeSuccess, StatusTradeFinished:
	default:
		return n, fmt.Errorf("%w: trade_status %.32q", ErrInvalid, n.TradeStatus)
	}
	if n.TotalAmount, err = money.ParseYuan(f["total_amount"]); err != nil || n.TotalAmount <= 0 {
		return n, fmt.Errorf("%w: total_amount %.32q", ErrInvalid, f["total_amount"])
	}
	if n.Paid() {
		if n.PaidAt, err = parseTime(f["gmt_payment"]); err != nil {
			return n, fmt.Errorf("%w: gmt_payment %.32q", ErrInvalid, f["gmt_payment"])
		}
	}
	return n, nil
}
