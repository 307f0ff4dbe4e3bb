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
	Lanes           int
	OrderQueryAfter time.Duration
	RateLimit       int
	RateLimitPoll   int
	TrustProxy      bool
	CacheTTL        time.Duration
	LogLevel        string
}

// newOptions defines the flags on a new set; the returned function reads the options after
// the set's Parse.
func newOptions() (*config.Set, func() options) {
	s := config.New("gateway", "GATEWAY")
	listen := s.String("listen", ":8080", "address of the HTTP server (cashier pages, /notify/wechat, /healthz, /readyz, /metrics); :0 picks a free port, logged as {\"msg\":\"listening\",\"addr\":...}")
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
	sandbox := s.String("sandbox-pay-url", "", "when set (e.g. http://127.0.0.1:8070/wechat/pay), the QR page links to it with ?pr=<pr of code_url> (id sandbox-pay), for paying in the simulator")
	lanes := s.Int("lanes", 4, "outbox lanes per direction (ferry partitions)")
	after := s.Duration("order-query-after", time.Minute, "orders still unpaid this long after creation are queried at WeChat (and again at this interval)")
	rate := s.Int("rate-limit", 60, "cashier page requests per client IP per minute; more get 429")
	ratePoll := s.Int("rate-limit-poll", 300, "status polls (GET /q/{token}/status) per client IP per minute")
	trust := s.Bool("trust-proxy", false, "take the client IP from X-Forwarded-For set by a proxy on a private or loopback address (behind a load balancer); otherwise the peer address")
	ttl := s.Duration("cache-ttl", 15*time.Second, "how long a bill view stays cached")
	level := s.String("log-level", "info", "log level: debug, info, warn, error")
	return s, func() options {
		return options{Listen: *listen, DB: *db, Redis: *redisURL, RedisPrefix: *prefix, PublicURL: *public, Certs: *certs,
			WeChatBaseURL: *base, WeChatAppID: *appid, WeChatMchID: *mchid, WeChatNotifyURL: *notify, WeChatKey: *key,
			WeChatCert: *cert, WeChatPlatform: *platform, WeChatAPIv3Key: *apiv3, SandboxPayURL: *sandbox, Lanes: *lanes,
			OrderQueryAfter: *after, RateLimit: *rate, RateLimitPoll: *ratePoll, TrustProxy: *trust, CacheTTL: *ttl,
			LogLevel: *level}
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

// notifyURL is the notify_url of WeChat orders.
func (o *options) notifyURL() string {
	if o.WeChatNotifyURL != "" {
		return o.WeChatNotifyURL
	}
	return strings.TrimRight(o.PublicURL, "/") + "/notify/wechat"
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
	if o.RateLimit < 1 || o.RateLimitPoll < 1 {
		return fmt.Errorf("-rate-limit and -rate-limit-poll must be positive")
	}
	return nil
}
