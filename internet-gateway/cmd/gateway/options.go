package main

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"finepay/shared/config"
)

// options are the gateway's configuration, read by newOptions' flags (and their GATEWAY_
// variables).
type options struct {
	Listen          string
	DB              string
	Redis           string
	RedisPrefix     string
	PublicURL       string
	Certs           string
	WeChatBaseURL   string
	WeChatAppID     string
	WeChatMchID     string
	WeChatNotifyURL string
	WeChatKey       string
	WeChatCert      string
	WeChatPlatform  string
	WeChatAPIv3Key  string
	SandboxPayURL   string

	Channels []string

	AlipayGatewayURL    string
	AlipayAppID         string
	AlipayAppKey        string
	AlipayPublicKey     string
	AlipayNotifyURL     string
	AlipaySandboxPayURL string

	UnionPayBaseURL       string
	UnionPayMerID         string
	UnionPayMerchantKey   string
	UnionPayMerchantCert  string
	UnionPayRootCert      string
	UnionPayMiddleCert    string
	UnionPayBackURL       string
	UnionPaySandboxPayURL string

	Lanes              int
	OrderQueryAfter    time.Duration
	OrderQueryMaxDelay time.Duration
	RefundQueryAfter   time.Duration
	RefundQueryMax     time.Duration
	RateLimit          int
	RateLimitPoll      int
	LookupKeyFile      string
	RateLimitLookup    int
	RateLimitLookupDN  int
	TrustProxy         bool
	CacheTTL           time.Duration
	LogLevel           string
}

// newOptions defines the flags on a new set; the returned function reads the options after
// the set's Parse.
func newOptions() (*config.Set, func() options) {
	s := config.New("gateway", "GATEWAY")
	listen := s.String("listen", ":8080", "address of the HTTP server (cashier pages, /notify/wechat, /notify/alipay, /notify/unionpay, /healthz, /readyz, /metrics); :0 picks a free port, logged as {\"msg\":\"listening\",\"addr\":...}")
	db := s.String("db", "sqlite:var/gateway.db", "database URL: postgres://... or sqlite:PATH")
	redisURL := s.String("redis", "", "Redis URL (redis://127.0.0.1:6379/0) for the bill cache, order locks and rate limits; empty: in-process (one replica only)")
	prefix := s.String("redis-prefix", "fp:gw:", "prefix of every Redis key")
	public := s.String("public-url", "http://127.0.0.1:8080", "public base URL of the gateway (https in production: the CSRF cookie is then Secure)")
	certs := s.String("certs", "certs", "directory of keys and certificates; the bare file names of the key and certificate flags are looked up in it")
	base := s.String("wechat-base-url", "http://127.0.0.1:8070", "base URL of WeChat Pay API v3 (https://api.mch.weixin.qq.com in production, the sandbox in development)")
	appid := s.String("wechat-appid", "wxd678efh567hg6787", "WeChat Pay appid")
	mchid := s.String("wechat-mchid", "1900000001", "WeChat Pay merchant ID (mchid)")
	notify := s.String("wechat-notify-url", "", "notify_url of WeChat orders; empty: public-url + /notify/wechat")
	key := s.String("wechat-merchant-key", "wechat-merchant.key", "merchant API private key (RSA, PKCS#8 PEM) that signs requests")
	cert := s.String("wechat-merchant-cert", "wechat-merchant.pem", "merchant API certificate; its serial number is the serial_no of requests")
	platform := s.String("wechat-platform-cert", "wechat-platform.pem", "WeChat Pay platform certificate(s), PEM; verify answers and notifications (Wechatpay-Serial)")
	apiv3 := s.String("wechat-apiv3-key", "wechat-apiv3.key", "file holding the 32-character APIv3 key that decrypts notification resources")
	sandbox := s.String("sandbox-pay-url", "", "when set (e.g. http://127.0.0.1:8070/wechat/pay), the WeChat QR page links to it with ?pr=<pr of code_url> (id sandbox-pay), for paying in the simulator")
	channels := s.String("channels", "wechat,alipay,unionpay", "comma-separated payment channels to offer (wechat, alipay, unionpay), in the cashier's order; only their keys are loaded")
	aliGateway := s.String("alipay-gateway-url", "http://127.0.0.1:8070/alipay/gateway.do", "Alipay open platform gateway (https://openapi.alipay.com/gateway.do in production, the sandbox in development)")
	aliApp := s.String("alipay-app-id", "2021004100000001", "Alipay app_id of the merchant application")
	aliKey := s.String("alipay-app-key", "alipay-app.key", "the application's RSA private key (PKCS#8 PEM) that signs requests (RSA2)")
	aliPub := s.String("alipay-public-key", "alipay-platform.pem", "Alipay's public key (a CERTIFICATE or PUBLIC KEY PEM) that verifies answers and notifications")
	aliNotify := s.String("alipay-notify-url", "", "notify_url of Alipay orders; empty: public-url + /notify/alipay")
	aliSandbox := s.String("alipay-sandbox-pay-url", "", "when set (e.g. http://127.0.0.1:8070/alipay/pay), the Alipay QR page links to it with ?code=<last path segment of qr_code> (id sandbox-pay)")
	upBase := s.String("unionpay-base-url", "http://127.0.0.1:8070/unionpay", "UnionPay ACP gateway, to which /gateway/api/backTransReq.do and /gateway/api/queryTrans.do are appended (https://gateway.95516.com in production)")
	upMer := s.String("unionpay-mer-id", "777290058110048", "UnionPay merchant number (merId)")
	upKey := s.String("unionpay-merchant-key", "unionpay-merchant.key", "the merchant's RSA signing key (PKCS#8 PEM)")
	upCert := s.String("unionpay-merchant-cert", "unionpay-merchant.pem", "the merchant's signing certificate; its serial number in decimal is the certId of requests")
	upRoot := s.String("unionpay-root-cert", "unionpay-root.pem", "UnionPay root certificate(s), PEM: signPubKeyCert must chain to one")
	upMiddle := s.String("unionpay-middle-cert", "unionpay-middle.pem", "UnionPay middle certificate(s), PEM, between the root and signPubKeyCert")
	upBack := s.String("unionpay-back-url", "", "backUrl of UnionPay orders; empty: public-url + /notify/unionpay")
	upSandbox := s.String("unionpay-sandbox-pay-url", "", "when set (e.g. http://127.0.0.1:8070/unionpay/pay), the UnionPay QR page links to it with ?code=<last path segment of qrCode> (id sandbox-pay)")
	lanes := s.Int("lanes", 16, "outbox lanes per direction (ferry partitions); payments of different bills commit in parallel on different lanes")
	after := s.Duration("order-query-after", time.Minute, "orders still unpaid this long after creation are queried at their channel, again after as long, then after twice as long each time (up to -order-query-max-interval) until paid, closed or expired")
	maxDelay := s.Duration("order-query-max-interval", 30*time.Minute, "the longest wait between two queries of an unpaid order (an order is queried again just after its expiry, then closed)")
	refundAfter := s.Duration("refund-query-after", 30*time.Second, "a refund the channel is processing, or whose request got no answer, is queried (with the same refund number) this long after, then after twice as long each time up to -refund-query-max-interval, until final")
	refundMax := s.Duration("refund-query-max-interval", 30*time.Minute, "the longest wait between two queries of a refund that is not final")
	rate := s.Int("rate-limit", 60, "cashier page requests per client IP per minute; more get 429")
	ratePoll := s.Int("rate-limit-poll", 300, "status polls (GET /q/{token}/status) per client IP per minute")
	lookupKey := s.String("lookup-key-file", "lookup.key", "32-byte key (hex) shared with the core, of the hash by which the lookup page (/lookup, /api/v1/lookup) finds a bill by decision number and plate's last four characters; absent file: no lookup page (a warning); empty: off")
	rateLookup := s.Int("rate-limit-lookup", 10, "bill lookups (POST /lookup, /api/v1/lookup) per client IP per minute; more get 429")
	rateLookupDN := s.Int("rate-limit-lookup-decision", 10, "bill lookups per decision number per hour, from any client; more get 429")
	trust := s.Bool("trust-proxy", false, "take the client IP from X-Forwarded-For set by a proxy on a private or loopback address (behind a load balancer); otherwise the peer address")
	ttl := s.Duration("cache-ttl", 15*time.Second, "how long a bill view stays cached")
	level := s.String("log-level", "info", "log level: debug, info, warn, error")
	return s, func() options {
		return options{Listen: *listen, DB: *db, Redis: *redisURL, RedisPrefix: *prefix, PublicURL: *public, Certs: *certs,
			WeChatBaseURL: *base, WeChatAppID: *appid, WeChatMchID: *mchid, WeChatNotifyURL: *notify, WeChatKey: *key,
			WeChatCert: *cert, WeChatPlatform: *platform, WeChatAPIv3Key: *apiv3, SandboxPayURL: *sandbox,
			Channels:         splitList(*channels),
			AlipayGatewayURL: *aliGateway, AlipayAppID: *aliApp, AlipayAppKey: *aliKey, AlipayPublicKey: *aliPub,
			AlipayNotifyURL: *aliNotify, AlipaySandboxPayURL: *aliSandbox,
			UnionPayBaseURL: *upBase, UnionPayMerID: *upMer, UnionPayMerchantKey: *upKey, UnionPayMerchantCert: *upCert,
			UnionPayRootCert: *upRoot, UnionPayMiddleCert: *upMiddle, UnionPayBackURL: *upBack, UnionPaySandboxPayURL: *upSandbox,
			Lanes: *lanes, OrderQueryAfter: *after, OrderQueryMaxDelay: *maxDelay,
			RefundQueryAfter: *refundAfter, RefundQueryMax: *refundMax, RateLimit: *rate, RateLimitPoll: *ratePoll,
			LookupKeyFile: *lookupKey, RateLimitLookup: *rateLookup, RateLimitLookupDN: *rateLookupDN,
			TrustProxy: *trust, CacheTTL: *ttl, LogLevel: *level}
	}
}

// certPath resolves a key or certificate flag: a bare file name is looked up in the certs
// directory; a path with a directory part is used as given.
func (o *options) certPath(name string) string {
	if strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator) {
		return name
	}
	return filepath.Join(o.Certs, name)
}

// notifyURL is the notification URL of a channel's orders: the flag when set, otherwise
// public-url + /notify/<channel>.
func (o *options) notifyURL(ch string) string {
	set := map[string]string{"wechat": o.WeChatNotifyURL, "alipay": o.AlipayNotifyURL, "unionpay": o.UnionPayBackURL}[ch]
	if set != "" {
		return set
	}
	return strings.TrimRight(o.PublicURL, "/") + "/notify/" + ch
}

// refundNotifyURL is the notification URL of a channel's refunds: its orders' notification URL
// + /refund (WeChat's notify_url, UnionPay's backUrl of refunds).
func (o *options) refundNotifyURL(ch string) string {
	return strings.TrimRight(o.notifyURL(ch), "/") + "/refund"
}

// has reports whether a channel is configured.
func (o *options) has(ch string) bool {
	for _, c := range o.Channels {
		if c == ch {
			return true
		}
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (o *options) check() error {
	u, err := url.Parse(o.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-public-url %q: want http(s)://host[:port]", o.PublicURL)
	}
	if o.Lanes < 1 || o.Lanes > 64 {
		return fmt.Errorf("-lanes %d: want 1 to 64", o.Lanes)
	}
	if o.OrderQueryAfter < time.Second {
		return fmt.Errorf("-order-query-after %s: want at least 1s", o.OrderQueryAfter)
	}
	if o.OrderQueryMaxDelay < o.OrderQueryAfter {
		return fmt.Errorf("-order-query-max-interval %s: want at least -order-query-after", o.OrderQueryMaxDelay)
	}
	if o.RefundQueryAfter < time.Second || o.RefundQueryMax < o.RefundQueryAfter {
		return fmt.Errorf("-refund-query-after %s, -refund-query-max-interval %s: want at least 1s and at least -refund-query-after",
			o.RefundQueryAfter, o.RefundQueryMax)
	}
	if len(o.Channels) == 0 {
		return fmt.Errorf("-channels: want at least one of wechat, alipay, unionpay")
	}
	seen := map[string]bool{}
	for _, c := range o.Channels {
		if c != "wechat" && c != "alipay" && c != "unionpay" || seen[c] {
			return fmt.Errorf("-channels %q: want distinct names among wechat, alipay, unionpay", strings.Join(o.Channels, ","))
		}
		seen[c] = true
	}
	if o.RateLimit < 1 || o.RateLimitPoll < 1 {
		return fmt.Errorf("-rate-limit and -rate-limit-poll must be positive")
	}
	if o.RateLimitLookup < 1 || o.RateLimitLookupDN < 1 {
		return fmt.Errorf("-rate-limit-lookup and -rate-limit-lookup-decision must be positive")
	}
	return nil
}
