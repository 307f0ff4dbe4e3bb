package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"

	"finepay/internet-gateway/internal/channel"
	"finepay/shared/money"
)

// Adapter is WeChat Pay as a channel.Adapter: Native orders with their notify_url, queries and
// closes by out_trade_no.
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

// Create implements channel.Adapter: a Native order whose attach is the bill number and whose
// time_expire is the order's expiry; it returns the code_url.
func (a *Adapter) Create(ctx context.Context, o channel.Order) (string, error) {
	return a.client.CreateNative(ctx, NativeOrder{OutTradeNo: o.OrderNo, Description: truncate(o.Subject, 127), Attach: o.BillNo,
		NotifyURL: a.notifyURL, Total: int64(o.Amount), TimeExpire: o.ExpiresAt})
}

// Query implements channel.Adapter. A paid transaction must be ours and well formed; its
// stored answer loses the payer block.
func (a *Adapter) Query(ctx context.Context, o channel.Order) (channel.Trade, error) {
	tx, raw, err := a.client.QueryOrder(ctx, o.OrderNo)
	switch {
	case errors.Is(err, ErrOrderNotExist):
		return channel.Trade{State: channel.StateNotFound}, nil
	case err != nil:
		return channel.Trade{}, err
	}
	switch {
	case tx.Paid():
		at, err := tx.CheckPaid(a.client.appID, a.client.mchID)
		if err != nil {
			return channel.Trade{}, err
		}
		return channel.Trade{State: channel.StatePaid, TradeNo: tx.TransactionID, Amount: money.Fen(tx.Amount.Total), PaidAt: at,
			Raw: withoutPayer(raw)}, nil
	case tx.TradeState == StateClosed || tx.TradeState == StateRevoked || tx.TradeState == StatePayError:
		return channel.Trade{State: channel.StateClosed}, nil
	}
	return channel.Trade{State: channel.StateOpen}, nil
}

// Close implements channel.Adapter; a paid order gives channel.ErrPaid.
func (a *Adapter) Close(ctx context.Context, o channel.Order) error {
	err := a.client.CloseOrder(ctx, o.OrderNo)
	var ae *APIError
	if errors.As(err, &ae) && ae.Verified && ae.Status == http.StatusBadRequest && ae.Code == "ORDERPAID" {
		return fmt.Errorf("%w: %s", channel.ErrPaid, o.OrderNo)
	}
	return err
}

// truncate cuts s to at most n bytes of whole characters.
func truncate(s string, n int) string {
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// withoutPayer drops the payer (the payer's openid) from a query answer before it is stored:
// the gateway keeps nothing personal beyond masked names and plates. Notifications need no such
// step, as their resource stays encrypted.
func withoutPayer(raw []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	if _, ok := m["payer"]; !ok {
		return raw
	}
	delete(m, "payer")
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}
