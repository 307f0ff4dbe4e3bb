package cashier

import (
	"strings"

	"finepay/internet-gateway/internal/channel"
)

// agent is what the cashier makes of the payer's browser: the payment app it runs in, if any,
// and whether it is a phone.
type agent struct {
	app    string // channel.WeChat, channel.Alipay, channel.UnionPay or ""
	mobile bool
}

// agentOf reads a User-Agent: WeChat's in-app browser says MicroMessenger, Alipay's
// AlipayClient, UnionPay's (云闪付) UnionPay/… or CloudPay.
func agentOf(ua string) agent {
	var a agent
	switch {
	case strings.Contains(ua, "MicroMessenger"):
		a.app = channel.WeChat
	case strings.Contains(ua, "AlipayClient"):
		a.app = channel.Alipay
	case strings.Contains(ua, "UnionPay/"), strings.Contains(ua, "CloudPay"):
		a.app = channel.UnionPay
	}
	a.mobile = a.app != ""
	for _, m := range []string{"Mobile", "Android", "iPhone", "iPad", "HarmonyOS"} {
		a.mobile = a.mobile || strings.Contains(ua, m)
	}
	return a
}

// offer returns the channels to offer: inside a payment app whose channel is configured, that
// channel only (the app pays with nothing else); otherwise every configured channel.
func (a agent) offer(configured []string) []string {
	for _, c := range configured {
		if c == a.app {
			return []string{c}
		}
	}
	return configured
}

// channelText is how the pages name a channel.
type channelText struct {
	Label string // the pay button
	Title string // the QR page's title
	Hint  string // under the QR code
	App   string // the app, in "open in ..." links
}

var texts = map[string]channelText{
	channel.WeChat:   {"微信支付", "微信扫码支付", "请使用微信扫码支付", "微信"},
	channel.Alipay:   {"支付宝", "支付宝扫码支付", "请使用支付宝扫码支付", "支付宝"},
	channel.UnionPay: {"云闪付", "云闪付扫码支付", "请使用云闪付或银行App扫码支付", "云闪付"},
}

func textOf(ch string) channelText {
	if t, ok := texts[ch]; ok {
		return t
	}
	return channelText{ch, ch, ch, ch}
}
