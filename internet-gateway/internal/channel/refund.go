package channel

import (
	"context"
	"errors"
	"time"

	"finepay/shared/money"
)

// Refund is a refund as an adapter requests and queries it. RefundNo is the same on every call
// of one refund (out_refund_no, out_request_no, orderId), never another.
type Refund struct {
	RefundNo       string
	OrderNo        string // the paid order (out_trade_no, orderId)
	ChannelTradeNo string // transaction_id, trade_no, the payment's queryId (origQryId)
	PaidAmount     money.Fen
	Amount         money.Fen
	Reason         string
	// TxnTime is the refund request's time, fixed at the first call (UnionPay identifies the
	// refund by merId, orderId and txnTime).
	TxnTime time.Time
}

// Refund statuses of an outcome (those of envelope.RefundResult).
const (
	RefundProcessing = "processing"
	RefundSuccess    = "success"
	RefundFailed     = "failed"
	RefundUnknown    = "unknown"
)

// RefundOutcome is what the channel said of a refund, verified as the channel's own.
type RefundOutcome struct {
	Status          string
	ChannelRefundNo string    // the channel's refund ID, when it gave one
	Amount          money.Fen // refunded, for a success
	At              time.Time // when refunded, for a success
	Detail          string    // the channel's words (status, code, message)
	Raw             []byte    // the verified answer, for storage (personal data removed)
}

// ErrRefundNotFound is returned by QueryRefund when the channel knows no such refund: the
// request never arrived, and may be sent again with the same refund number.
var ErrRefundNotFound = errors.New("channel: no such refund")

// RefundAdapter requests and queries refunds at one channel.
type RefundAdapter interface {
	Name() string
	// Refund sends the refund request once (the caller retries with the same refund number).
	// An error means no verified answer came (transport, timeout, 5xx, forged): the outcome is
	// unknown. A refusal by the channel is an outcome with status failed, or unknown when the
	// channel's words do not settle it.
	Refund(ctx context.Context, r Refund) (RefundOutcome, error)
	// QueryRefund asks the channel about a refund; ErrRefundNotFound when it knows none.
	QueryRefund(ctx context.Context, r Refund) (RefundOutcome, error)
}
