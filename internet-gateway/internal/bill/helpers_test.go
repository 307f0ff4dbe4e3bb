package bill_test

import (
	"time"

	"finepay/internet-gateway/internal/payment"
	"finepay/internet-gateway/internal/store"
)

func paymentOf(o store.Order, tradeNo string, at time.Time) payment.Confirmation {
	return payment.Confirmation{Channel: "wechat", ChannelTradeNo: tradeNo, OrderNo: o.OrderNo, Amount: o.Amount, PaidAt: at,
		NotificationID: "EV", Source: store.SourceNotification}
}
