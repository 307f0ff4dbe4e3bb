package envelope

import (
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Refund statuses of a RefundResult.
const (
	// RefundProcessing: the channel accepted the refund and has not finished it.
	RefundProcessing = "processing"
	// RefundSuccess: final, the money is back with the payer.
	RefundSuccess = "success"
	// RefundFailed: final, the channel refused or closed the refund; no money moved.
	RefundFailed = "failed"
	// RefundUnknown: not final; the outcome is not known (a call timed out, or the channel
	// reports the refund abnormal). The gateway keeps querying with the same refund number.
	RefundUnknown = "unknown"
)

var refundStatuses = map[string]bool{RefundProcessing: true, RefundSuccess: true, RefundFailed: true, RefundUnknown: true}

// RefundFinal reports whether a refund status is final (success or failed).
func RefundFinal(status string) bool { return status == RefundSuccess || status == RefundFailed }

// refundNo: the refund number is fixed per refund by the core and used as the channels'
// out_refund_no / out_request_no / orderId: letters and digits only, at most 40.
func refundNo(s string) bool { return of(s, 1, 40, isAlnum) }

// The channel's own refund identifier (WeChat refund_id, UnionPay queryId, Alipay trade_no) is
// an ident.

// Bounds of the free texts of refund messages, in bytes.
const (
	MaxRefundReason = 240 // WeChat's reason is at most 80 characters, 3 bytes each in UTF-8
	MaxRefundDetail = 512
)

// plainText reports whether s is valid UTF-8 of at most n bytes without control characters.
func plainText(s string, n int) bool {
	return len(s) <= n && utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}

// RefundInstructionID is the message ID of the instruction of a refund: one per refund number.
func RefundInstructionID(refundNo string) string { return "refund:" + refundNo }

// RefundResultID is the message ID of a refund result: one per refund number and status, so that
// a repeated report of the same result deduplicates at the core's inbox (at most 62 bytes).
func RefundResultID(refundNo, status string) string { return "refund-res:" + refundNo + ":" + status }

// RefundInstructed tells the gateway to refund (part of) a channel payment along its original
// route. Message ID RefundInstructionID(refund_no), key refund_no. A repeated instruction with the
// same refund number is the same refund.
type RefundInstructed struct {
	RefundNo       string `json:"refund_no"`
	Channel        string `json:"channel"`
	OrderNo        string `json:"order_no"`         // the paid channel order (out_trade_no, orderId)
	ChannelTradeNo string `json:"channel_trade_no"` // WeChat transaction_id, Alipay trade_no, UnionPay queryId
	PaidAmount     int64  `json:"paid_amount"`      // fen, the total paid in that order
	Amount         int64  `json:"amount"`           // fen, to refund: 0 < amount ≤ paid_amount
	Reason         string `json:"reason"`           // shown to the payer by the channel
}

// MessageType implements Payload.
func (*RefundInstructed) MessageType() string { return TypeRefundInstructed }

// Validate implements Payload.
func (r *RefundInstructed) Validate() error {
	return errors.Join(
		need(refundNo(r.RefundNo), "refund_no"),
		need(reChannels[r.Channel], "channel"),
		need(ident(r.OrderNo), "order_no"),
		need(ident(r.ChannelTradeNo), "channel_trade_no"),
		need(r.PaidAmount > 0 && r.PaidAmount <= 100_000_000, "paid_amount"),
		need(r.Amount > 0 && r.Amount <= r.PaidAmount, "amount"),
		need(plainText(r.Reason, MaxRefundReason), "reason"),
	)
}

// RefundResult reports what the channel says of a refund, from the gateway to the core. Message
// ID RefundResultID(refund_no, status), key refund_no: the gateway sends each distinct status of
// a refund at most once; success and failed are final and nothing follows them.
type RefundResult struct {
	RefundNo string `json:"refund_no"`
	Channel  string `json:"channel"`
	Status   string `json:"status"` // processing | success | failed | unknown
	// ChannelRefundNo is the channel's identifier of the refund (WeChat refund_id, UnionPay
	// queryId of the refund, Alipay trade_no), when the channel has given one; required for success.
	ChannelRefundNo string `json:"channel_refund_no,omitempty"`
	// RefundedAmount is the money returned, fen: > 0 for success, 0 otherwise.
	RefundedAmount int64 `json:"refunded_amount"`
	// At is when the channel refunded (success), or when the gateway learnt the status.
	At time.Time `json:"at"`
	// Detail says why (the channel's code and message, "call timed out", ...), for people.
	Detail string `json:"detail,omitempty"`
}

// MessageType implements Payload.
func (*RefundResult) MessageType() string { return TypeRefundResult }

// Validate implements Payload.
func (r *RefundResult) Validate() error {
	success := r.Status == RefundSuccess
	return errors.Join(
		need(refundNo(r.RefundNo), "refund_no"),
		need(reChannels[r.Channel], "channel"),
		need(refundStatuses[r.Status], "status"),
		need(r.ChannelRefundNo == "" || ident(r.ChannelRefundNo), "channel_refund_no"),
		need(!success || r.ChannelRefundNo != "", "channel_refund_no of a success"),
		need(success && r.RefundedAmount > 0 && r.RefundedAmount <= 100_000_000 || !success && r.RefundedAmount == 0, "refunded_amount"),
		need(!r.At.IsZero(), "at"),
		need(plainText(r.Detail, MaxRefundDetail), "detail"),
	)
}
