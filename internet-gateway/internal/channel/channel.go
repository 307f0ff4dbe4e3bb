// Package channel is what the gateway's order and payment services need of a payment channel,
// in terms common to all of them: place a QR-code order, query it, close it. Each channel's
// package (wechat, alipay, unionpay) speaks its own protocol and offers an Adapter over it, so
// that one order service, one active-query loop and one cashier serve every channel.
package channel

import (
	"context"
	"errors"
	"time"

	"finepay/shared/money"
)

// Names of the channels, as orders, payments and messages carry them.
const (
	WeChat   = "wechat"
	Alipay   = "alipay"
	UnionPay = "unionpay"
)

// Known lists the channels in the order the cashier offers them.
var Known = []string{WeChat, Alipay, UnionPay}

// Order is a channel order as the adapter places, queries and closes it.
type Order struct {
	OrderNo   string // ours: out_trade_no, orderId
	BillNo    string
	Subject   string // what the payer sees in the app
	Amount    money.Fen
	CreatedAt time.Time // UnionPay identifies an order by merId, orderId and txnTime (this)
	ExpiresAt time.Time // 23:59:59 Asia/Shanghai of the day it was created
}

// State is what the channel says of an order.
type State string

// States of an order at the channel.
const (
	StateOpen     State = "open"      // not paid yet, still payable
	StatePaid     State = "paid"      // the money was received
	StateClosed   State = "closed"    // closed, revoked or failed for good: it will not be paid
	StateNotFound State = "not_found" // the channel does not know it (yet)
)

// Trade is the answer of a query.
type Trade struct {
	State   State
	TradeNo string    // the channel's trade number, when paid
	Amount  money.Fen // what was paid, when paid
	PaidAt  time.Time // when it was paid
	// Raw is the verified answer as it may be stored with the payment (personal data removed).
	Raw []byte
}

// ErrPaid is returned by Close for an order that was paid meanwhile.
var ErrPaid = errors.New("channel: the order is paid")

// Adapter places and follows QR-code orders at one channel. Every answer it returns was
// verified as the channel's own; an answer that is not is an error.
type Adapter interface {
	// Name is the channel's name (WeChat, Alipay or UnionPay).
	Name() string
	// Create places an order and returns the content of its QR code. It is not retried: a
	// failed call leaves the order to the caller.
	Create(ctx context.Context, o Order) (string, error)
	// Query asks the channel about an order. Transport errors may be retried inside.
	Query(ctx context.Context, o Order) (Trade, error)
	// Close makes an unpaid order unpayable at the channel (where the channel allows it);
	// ErrPaid when it was paid.
	Close(ctx context.Context, o Order) error
}
