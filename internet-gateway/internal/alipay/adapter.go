package alipay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"finepay/internet-gateway/internal/channel"
)

// Adapter is Alipay as a channel.Adapter: precreated QR orders with their notify_url, queries
// and closes by out_trade_no.
type Adapter struct {
	client    *Client
	notifyURL string
}

// NewAdapter returns the channel adapter of c; orders are placed with notifyURL.
func NewAdapter(c *Client, notifyURL string) *Adapter {
	return &Adapter{client: c, notifyURL: notifyURL}
}

// Name implements channel.Adapter.
func (a *Adapter) Name() string { return Channel }

// Client returns the underlying client.
func (a *Adapter) Client() *Client { return a.client }

// Create implements channel.Adapter: alipay.trade.precreate with time_expire the order's expiry
// and the subject without / = & (which Alipay refuses); it returns the qr_code.
func (a *Adapter) Create(ctx context.Context, o channel.Order) (string, error) {
	subject := strings.NewReplacer("/", " ", "=", " ", "&", " ").Replace(o.Subject) // Alipay refuses these in subject
	return a.client.Precreate(ctx, PrecreateRequest{OutTradeNo: o.OrderNo, Subject: truncateRunes(subject, 256),
		Total: o.Amount, TimeExpire: o.ExpiresAt, NotifyURL: a.notifyURL})
}

// Query implements channel.Adapter. A trade Alipay does not know (a precreated code nobody
// scanned yet) is channel.StateNotFound.
func (a *Adapter) Query(ctx context.Context, o channel.Order) (channel.Trade, error) {
	t, raw, err := a.client.Query(ctx, o.OrderNo)
	switch {
	case errors.Is(err, ErrTradeNotExist):
		return channel.Trade{State: channel.StateNotFound}, nil
	case err != nil:
		return channel.Trade{}, err
	}
	switch {
	case t.Paid():
		return channel.Trade{State: channel.StatePaid, TradeNo: t.TradeNo, Amount: t.TotalAmount, PaidAt: t.SendPayDate, Raw: raw}, nil
	case t.TradeStatus == StatusTradeClosed:
		return channel.Trade{State: channel.StateClosed}, nil
	}
	return channel.Trade{State: channel.StateOpen}, nil
}

// Close implements channel.Adapter: alipay.trade.close. A trade Alipay does not know (nobody
// scanned the code) has nothing to close; a trade in another state than WAIT_BUYER_PAY is looked
// at: paid gives channel.ErrPaid, closed is done.
func (a *Adapter) Close(ctx context.Context, o channel.Order) error {
	err := a.client.Close(ctx, o.OrderNo)
	var ae *APIError
	if !errors.As(err, &ae) || !ae.Verified {
		return err
	}
	switch ae.SubCode {
	case SubCodeTradeNotExist:
		return nil
	case SubCodeTradeStatusError, SubCodeTradeHasSuccess, SubCodeTradeHasClose:
		t, qerr := a.Query(ctx, o)
		switch {
		case qerr != nil:
			return errors.Join(err, qerr)
		case t.State == channel.StatePaid:
			return fmt.Errorf("%w: %s", channel.ErrPaid, o.OrderNo)
		case t.State == channel.StateClosed:
			return nil
		}
	}
	return err
}

// truncateRunes cuts s to at most n characters.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}
