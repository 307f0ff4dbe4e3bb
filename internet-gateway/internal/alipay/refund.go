package alipay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"finepay/internet-gateway/internal/channel"
	"finepay/shared/money"
)

// Refund methods.
const (
	MethodRefund      = "alipay.trade.refund"
	MethodRefundQuery = "alipay.trade.fastpay.refund.query"
)

// Refund statuses of alipay.trade.fastpay.refund.query. REFUND_SUCCESS is Alipay's; an answer
// without refund data means the refund does not exist. REFUND_PROCESSING is what the sandbox
// answers while a refund whose request answered fund_change N is not finished (Alipay's own
// documents leave this case open: such a refund is queried until REFUND_SUCCESS).
const (
	RefundStatusSuccess    = "REFUND_SUCCESS"
	RefundStatusProcessing = "REFUND_PROCESSING"
)

// Sub-codes of refund requests after which no money moved and none will for this request.
var refundRefusals = map[string]bool{
	"ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": true, "ACQ.REASON_TRADE_REFUND_FEE_ERR": true, "ACQ.TRADE_NOT_EXIST": true,
	"ACQ.TRADE_STATUS_ERROR": true, "ACQ.TRADE_HAS_FINISHED": true, "ACQ.TRADE_HAS_CLOSE": true,
	"ACQ.INVALID_PARAMETER": true, "ACQ.REFUND_FEE_ERROR": true, "ACQ.ONLINE_TRADE_VOUCHER_NOT_ALLOW_REFUND": true,
}

var reRequestNo = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// RefundAnswer is the verified answer of alipay.trade.refund.
type RefundAnswer struct {
	TradeNo      string `json:"trade_no"`
	OutTradeNo   string `json:"out_trade_no"`
	FundChange   string `json:"fund_change"`
	RefundFee    string `json:"refund_fee"` // the trade's total refunded so far, yuan
	GmtRefundPay string `json:"gmt_refund_pay"`
}

// RefundQueryAnswer is the verified answer of alipay.trade.fastpay.refund.query.
type RefundQueryAnswer struct {
	TradeNo      string `json:"trade_no"`
	OutTradeNo   string `json:"out_trade_no"`
	OutRequestNo string `json:"out_request_no"`
	TotalAmount  string `json:"total_amount"`
	RefundAmount string `json:"refund_amount"`
	RefundStatus string `json:"refund_status"`
	GmtRefundPay string `json:"gmt_refund_pay"`
}

// RefundRequest is a refund of (part of) a paid trade.
type RefundRequest struct {
	OutTradeNo   string
	TradeNo      string
	OutRequestNo string // the refund number, the same on every retry
	Amount       money.Fen
	Reason       string
}

// Refund requests a refund (alipay.trade.refund), once. The same out_request_no again after a
// success changes nothing and answers fund_change N.
func (c *Client) Refund(ctx context.Context, r RefundRequest) (RefundAnswer, json.RawMessage, error) {
	var a RefundAnswer
	node, err := c.call(ctx, false, MethodRefund, map[string]string{"out_trade_no": r.OutTradeNo, "trade_no": r.TradeNo,
		"refund_amount": r.Amount.Yuan(), "refund_reason": r.Reason, "out_request_no": r.OutRequestNo}, nil)
	if err != nil {
		return a, node, err
	}
	if err := json.Unmarshal(node, &a); err != nil {
		return a, node, fmt.Errorf("%w: refund answer: %w", ErrInvalid, err)
	}
	if a.OutTradeNo != r.OutTradeNo || (a.TradeNo != "" && a.TradeNo != r.TradeNo) || (a.FundChange != "Y" && a.FundChange != "N") {
		return a, node, fmt.Errorf("%w: refund answer about %.64q/%.64q, fund_change %.4q", ErrInvalid, a.OutTradeNo, a.TradeNo, a.FundChange)
	}
	return a, withoutBuyer(node), nil
}

// QueryRefund queries a refund (alipay.trade.fastpay.refund.query) by the trade and the refund
// number. Transport errors and 5xx answers are retried a few times.
func (c *Client) QueryRefund(ctx context.Context, outTradeNo, outRequestNo string) (RefundQueryAnswer, json.RawMessage, error) {
	var a RefundQueryAnswer
	node, err := c.call(ctx, true, MethodRefundQuery, map[string]string{"out_trade_no": outTradeNo, "out_request_no": outRequestNo}, nil)
	if err != nil {
		return a, node, err
	}
	if err := json.Unmarshal(node, &a); err != nil {
		return a, node, fmt.Errorf("%w: refund query answer: %w", ErrInvalid, err)
	}
	return a, withoutBuyer(node), nil
}

// RefundAdapter is Alipay as a channel.RefundAdapter.
type RefundAdapter struct{ client *Client }

// NewRefundAdapter returns the refund adapter of c.
func NewRefundAdapter(c *Client) *RefundAdapter { return &RefundAdapter{client: c} }

// Name implements channel.RefundAdapter.
func (a *RefundAdapter) Name() string { return Channel }

// Refund implements channel.RefundAdapter: fund_change Y is a success (Alipay refunds
// synchronously); N is a refund that moved no money in this call (a repeat of one that
// succeeded before, or one not finished): it is settled by a query.
func (a *RefundAdapter) Refund(ctx context.Context, r channel.Refund) (channel.RefundOutcome, error) {
	if !reRequestNo.MatchString(r.RefundNo) {
		return channel.RefundOutcome{Status: channel.RefundFailed, Detail: "out_request_no not accepted by Alipay"}, nil
	}
	ans, raw, err := a.client.Refund(ctx, RefundRequest{OutTradeNo: r.OrderNo, TradeNo: r.ChannelTradeNo, OutRequestNo: r.RefundNo,
		Amount: r.Amount, Reason: r.Reason})
	var ae *APIError
	if errors.As(err, &ae) && ae.Verified {
		st := channel.RefundUnknown // ACQ.SYSTEM_ERROR and the like: try again with the same number
		if refundRefusals[ae.SubCode] {
			st = channel.RefundFailed
		}
		return channel.RefundOutcome{Status: st, Detail: clip(ae.Code + " " + ae.SubCode + " " + ae.SubMsg), Raw: raw}, nil
	}
	if err != nil {
		return channel.RefundOutcome{}, err
	}
	if ans.FundChange != "Y" {
		// Confirm by query what this request did.
		return a.QueryRefund(ctx, r)
	}
	at, err := parseTime(ans.GmtRefundPay)
	if err != nil {
		return channel.RefundOutcome{}, fmt.Errorf("%w: gmt_refund_pay %.32q", ErrInvalid, ans.GmtRefundPay)
	}
	return channel.RefundOutcome{Status: channel.RefundSuccess, ChannelRefundNo: ans.TradeNo, Amount: r.Amount, At: at,
		Detail: "fund_change Y", Raw: raw}, nil
}

// QueryRefund implements channel.RefundAdapter: no refund data means no such refund.
func (a *RefundAdapter) QueryRefund(ctx context.Context, r channel.Refund) (channel.RefundOutcome, error) {
	ans, raw, err := a.client.QueryRefund(ctx, r.OrderNo, r.RefundNo)
	var ae *APIError
	if errors.As(err, &ae) && ae.Verified && ae.SubCode == SubCodeTradeNotExist {
		return channel.RefundOutcome{}, fmt.Errorf("%w: %w", channel.ErrRefundNotFound, err)
	}
	if err != nil {
		return channel.RefundOutcome{}, err
	}
	if ans.OutRequestNo == "" && ans.RefundAmount == "" && ans.RefundStatus == "" {
		return channel.RefundOutcome{}, fmt.Errorf("%w: %s", channel.ErrRefundNotFound, r.RefundNo)
	}
	if ans.OutRequestNo != r.RefundNo || ans.OutTradeNo != r.OrderNo {
		return channel.RefundOutcome{}, fmt.Errorf("%w: refund query answer about %.64q/%.64q", ErrInvalid, ans.OutTradeNo, ans.OutRequestNo)
	}
	o := channel.RefundOutcome{ChannelRefundNo: ans.TradeNo, Detail: "refund_status " + ans.RefundStatus, Raw: raw}
	switch ans.RefundStatus {
	case RefundStatusSuccess:
		amount, err := money.ParseYuan(ans.RefundAmount)
		if err != nil || amount <= 0 {
			return channel.RefundOutcome{}, fmt.Errorf("%w: refund_amount %.32q", ErrInvalid, ans.RefundAmount)
		}
		if !reTradeNo.MatchString(ans.TradeNo) {
			return channel.RefundOutcome{}, fmt.Errorf("%w: trade_no %.64q", ErrInvalid, ans.TradeNo)
		}
		o.Status, o.Amount = channel.RefundSuccess, amount
		if o.At, err = parseTime(ans.GmtRefundPay); err != nil {
			o.At = time.Time{} // gmt_refund_pay is optional: the caller uses the time it learnt it
		}
	case RefundStatusProcessing:
		o.Status = channel.RefundProcessing
	default:
		o.Status = channel.RefundUnknown
	}
	return o, nil
}

func clip(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
