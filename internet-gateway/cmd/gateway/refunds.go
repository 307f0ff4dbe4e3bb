package main

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/outbox"
	"finepay/internet-gateway/internal/alipay"
	"finepay/internet-gateway/internal/channel"
	"finepay/internet-gateway/internal/refund"
	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/unionpay"
	"finepay/internet-gateway/internal/wechat"
)

// newRefunds wires the refund service over the configured channels: refunds are requested with
// the refund notification URLs public-url + /notify/wechat/refund and /notify/unionpay/refund
// (the orders' notification URLs + /refund).
func newRefunds(o options, st *store.Store, cs clients, now func() time.Time, log *slog.Logger, reg prometheus.Registerer) *refund.Service {
	cfg := refund.Config{Store: st, Outbox: outbox.New(o.Lanes), After: o.RefundQueryAfter, MaxInterval: o.RefundQueryMax,
		Now: now, Logger: log, Registry: reg}
	var adapters []channel.RefundAdapter
	if cs.wechat != nil {
		adapters = append(adapters, wechatRefunds(cs, o))
		cfg.WeChat = cs.wechat
	}
	if cs.alipay != nil {
		adapters = append(adapters, alipay.NewRefundAdapter(cs.alipay))
	}
	if cs.unionpay != nil {
		adapters = append(adapters, unionpayRefunds(cs, o))
		cfg.UnionPay = cs.unionpay
	}
	cfg.Adapters = adapters
	return refund.New(cfg)
}

func wechatRefunds(cs clients, o options) channel.RefundAdapter {
	return wechat.NewRefundAdapter(cs.wechat, o.refundNotifyURL(wechat.Channel))
}

func unionpayRefunds(cs clients, o options) channel.RefundAdapter {
	return unionpay.NewRefundAdapter(cs.unionpay, o.refundNotifyURL(unionpay.Channel))
}
