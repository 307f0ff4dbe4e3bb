package unionpay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"finepay/internet-gateway/internal/channel"
)

// Refund transaction types.
const (
	TxnTypeRefund    = "04"
	TxnSubTypeRefund = "00"
)

// RefundRequest is a refund (退货, txnType 04) of a consume, identified by merId, OrderID and
// TxnTime like any transaction; OrigQryID is the consume's queryId.
type RefundRequest struct {
	OrderID   string    // the refund number, 8–40 letters or digits, the same on every retry
	TxnTime   time.Time // fixed at the first request, sent again on every retry
	OrigQryID string
	Amount    int64 // fen
	BackURL   string
}

// Refund sends a refund request once. A respCode 00 answer means UnionPay accepted it; the result
// comes by a backUrl notification and by query (Query with the refund's orderId and txnTime).
// It returns the answer's fields for storage.
func (c *Client) Refund(ctx context.Context, r RefundRequest) (map[string]string, error) {
	if !reOrderID.MatchString(r.OrderID) {
		return nil, fmt.Errorf("%w: orderId %q must be 8-40 letters or digits", ErrInvalid, r.OrderID)
	}
	ans, err := c.call(ctx, false, PathBackTrans, map[string]string{
		"txnType": TxnTypeRefund, "txnSubType": TxnSubTypeRefund, "bizType": BizType, "channelType": ChannelType,
		"accessType": AccessType, "orderId": r.OrderID, "txnTime": TxnTime(r.TxnTime), "txnAmt": fmt.Sprint(r.Amount),
		"origQryId": r.OrigQryID, "backUrl": r.BackURL,
	})
	if err != nil {
		return stored(ans), err
	}
	if ans["orderId"] != r.OrderID || ans["txnTime"] != TxnTime(r.TxnTime) {
		return stored(ans), fmt.Errorf("%w: refund answer is about %.40q/%.14q", ErrInvalid, ans["orderId"], ans["txnTime"])
	}
	return stored(ans), nil
}

// OpenRefundNotification parses and verifies a backUrl notification of a refund: everything
// OpenNotification checks, then txnType 04 and a well-formed origQryId (ErrInvalid).
func (c *Client) OpenRefundNotification(body []byte) (Notification, error) {
	n, err := c.OpenNotification(body)
	if err != nil {
		return n, err
	}
	if n.TxnType != TxnTypeRefund {
		return n, fmt.Errorf("%w: txnType %.4q is not a refund", ErrInvalid, n.TxnType)
	}
	f, _ := ParseForm(body) // parsed by OpenNotification already
	if !reQueryID.MatchString(f["origQryId"]) {
		return n, fmt.Errorf("%w: origQryId %.48q", ErrInvalid, f["origQryId"])
	}
	return n, nil
}

// RefundAdapter is UnionPay as a channel.RefundAdapter.
type RefundAdapter struct {
	client  *Client
	backURL string
}

// NewRefundAdapter returns the refund adapter of c; refunds are requested with backURL.
func NewRefundAdapter(c *Client, backURL string) *RefundAdapter {
	return &RefundAdapter{client: c, backURL: backURL}
}

// Name implements channel.RefundAdapter.
func (a *RefundAdapter) Name() string { return Channel }

// Refund implements channel.RefundAdapter: respCode 00 is an accepted refund, processing until a
// notification or a query says how it ended; 03/04/05 leave it unknown (queried next); a format
// or business refusal (10–39) fails it.
func (a *RefundAdapter) Refund(ctx context.Context, r channel.Refund) (channel.RefundOutcome, error) {
	if !reOrderID.MatchString(r.RefundNo) {
		return channel.RefundOutcome{Status: channel.RefundFailed, Detail: "refund number not accepted by UnionPay (8-40 letters or digits)"}, nil
	}
	ans, err := a.client.Refund(ctx, RefundRequest{OrderID: r.RefundNo, TxnTime: r.TxnTime, OrigQryID: r.ChannelTradeNo,
		Amount: int64(r.Amount), BackURL: a.backURL})
	var ae *APIError
	if errors.As(err, &ae) && ae.Verified {
		st := channel.RefundUnknown
		if len(ae.RespCode) == 2 && ae.RespCode >= "10" && ae.RespCode <= "39" && ae.RespCode != RespNoSuchTxn {
			st = channel.RefundFailed
		}
		return channel.RefundOutcome{Status: st, Detail: "respCode " + ae.RespCode + " " + ae.RespMsg, Raw: Encode(ans)}, nil
	}
	if err != nil {
		return channel.RefundOutcome{}, err
	}
	return channel.RefundOutcome{Status: channel.RefundProcessing, ChannelRefundNo: validID(ans["queryId"]),
		Detail: "respCode 00 accepted", Raw: Encode(ans)}, nil
}

// QueryRefund implements channel.RefundAdapter: origRespCode 00/A6 refunded; 03/04/05
// processing; another failed; a transaction UnionPay does not know is channel.ErrRefundNotFound.
func (a *RefundAdapter) QueryRefund(ctx context.Context, r channel.Refund) (channel.RefundOutcome, error) {
	res, ans, err := a.client.Query(ctx, r.RefundNo, r.TxnTime)
	switch {
	case errors.Is(err, ErrNoSuchTransaction):
		return channel.RefundOutcome{}, fmt.Errorf("%w: %w", channel.ErrRefundNotFound, err)
	case err != nil:
		return channel.RefundOutcome{}, err
	}
	o := channel.RefundOutcome{ChannelRefundNo: validID(res.QueryID), Detail: "origRespCode " + res.OrigRespCode + " " + res.OrigRespMsg,
		Raw: Encode(ans)}
	switch {
	case res.Paid():
		o.Status, o.Amount, o.At = channel.RefundSuccess, res.TxnAmt, res.PaidAt
	case Processing(res.OrigRespCode):
		o.Status = channel.RefundProcessing
	default:
		o.Status = channel.RefundFailed
	}
	return o, nil
}

func validID(s string) string {
	if reQueryID.MatchString(s) {
		return s
	}
	return ""
}
