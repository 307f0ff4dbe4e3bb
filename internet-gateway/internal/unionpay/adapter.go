package unionpay

import (
	"context"
	"errors"
	"fmt"

	"finepay/internet-gateway/internal/channel"
)

// Adapter is UnionPay as a channel.Adapter: consume QR codes with their backUrl, and queries by
// orderId and txnTime (the order's creation time).
type Adapter struct {
	client  *Client
	backURL string
}

// NewAdapter returns the channel adapter of c; orders are placed with backURL.
func NewAdapter(c *Client, backURL string) *Adapter { return &Adapter{client: c, backURL: backURL} }

// Name implements channel.Adapter.
func (a *Adapter) Name() string { return Channel }

// Client returns the underlying client.
func (a *Adapter) Client() *Client { return a.client }

// Create implements channel.Adapter: a consume QR code payable until the order's expiry
// (payTimeout), txnTime being the order's creation time.
func (a *Adapter) Create(ctx context.Context, o channel.Order) (string, error) {
	return a.client.Consume(ctx, ConsumeRequest{OrderID: o.OrderNo, TxnTime: o.CreatedAt, Amount: o.Amount,
		PayTimeout: o.ExpiresAt, Subject: o.Subject, BackURL: a.backURL})
}

// Query implements channel.Adapter. A transaction whose origRespCode is 00 or A6 is paid; one
// still processing, or whose payment attempt failed, stays open (the payer may scan the code
// again until payTimeout); one UnionPay does not know is channel.StateNotFound.
func (a *Adapter) Query(ctx context.Context, o channel.Order) (channel.Trade, error) {
	r, ans, err := a.client.Query(ctx, o.OrderNo, o.CreatedAt)
	switch {
	case errors.Is(err, ErrNoSuchTransaction):
		return channel.Trade{State: channel.StateNotFound}, nil
	case err != nil:
		return channel.Trade{}, err
	case r.Paid():
		return channel.Trade{State: channel.StatePaid, TradeNo: r.QueryID, Amount: r.TxnAmt, PaidAt: r.PaidAt, Raw: Encode(ans)}, nil
	}
	return channel.Trade{State: channel.StateOpen}, nil
}

// Close implements channel.Adapter. ACP offers no way to close an unpaid QR code (it stops
// being payable at its payTimeout, 23:59:59 of its day); Close queries the order, so that a
// payment is never overlooked: paid gives channel.ErrPaid, anything else nil.
func (a *Adapter) Close(ctx context.Context, o channel.Order) error {
	t, err := a.Query(ctx, o)
	switch {
	case err != nil:
		return err
	case t.State == channel.StatePaid:
		return fmt.Errorf("%w: %s", channel.ErrPaid, o.OrderNo)
	}
	return nil
}
