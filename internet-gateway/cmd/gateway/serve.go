package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/ferry/inbox"
	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/internet-gateway/internal/alipay"
	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/cashier"
	"finepay/internet-gateway/internal/channel"
	"finepay/internet-gateway/internal/kv"
	"finepay/internet-gateway/internal/order"
	"finepay/internet-gateway/internal/payment"
	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/unionpay"
	"finepay/internet-gateway/internal/wechat"
	"finepay/shared/httpx"
	"finepay/shared/logging"
	"finepay/shared/lookup"
)

// hooks let tests observe and steer a running gateway; the zero value is production.
type hooks struct {
	now   func() time.Time       // the clock; time.Now when nil
	ready chan<- net.Addr        // receives the bound address
	inbox chan<- *inbox.Consumer // receives the consumer, to wake it
}

func openDB(ctx context.Context, url string) (*sqldb.DB, error) {
	if p, ok := strings.CutPrefix(url, "sqlite:"); ok {
		if dir := filepath.Dir(strings.SplitN(p, "?", 2)[0]); dir != "." {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
		}
	}
	return sqldb.Open(ctx, url)
}

func openKV(ctx context.Context, o options, now func() time.Time, log *slog.Logger) (kv.Store, error) {
	if o.Redis == "" {
		log.Info("no -redis: bill cache, order locks and rate limits are in-process (run one replica only)")
		return kv.NewMemory(now), nil
	}
	return kv.DialRedis(ctx, o.Redis, o.RedisPrefix, now)
}

// clients are the configured channels' clients; nil when a channel is not configured.
type clients struct {
	wechat   *wechat.Client
	alipay   *alipay.Client
	unionpay *unionpay.Client
}

// openChannels loads the keys of the configured channels and makes their clients and adapters,
// in the order of -channels.
func openChannels(o options, now func() time.Time, log *slog.Logger) ([]channel.Adapter, clients, error) {
	var cs clients
	var out []channel.Adapter
	for _, ch := range o.Channels {
		switch ch {
		case wechat.Channel:
			keys, err := wechat.LoadKeys(wechat.KeyFiles{MerchantKey: o.certPath(o.WeChatKey), MerchantCert: o.certPath(o.WeChatCert),
				PlatformCert: o.certPath(o.WeChatPlatform), APIv3Key: o.certPath(o.WeChatAPIv3Key)})
			if err != nil {
				return nil, cs, err
			}
			if cs.wechat, err = wechat.New(wechat.Config{BaseURL: o.WeChatBaseURL, AppID: o.WeChatAppID, MchID: o.WeChatMchID,
				Keys: keys, Now: now, Logger: log.With("channel", ch)}); err != nil {
				return nil, cs, err
			}
			out = append(out, wechat.NewAdapter(cs.wechat, o.notifyURL(ch)))
			log.Info("channel", "channel", ch, "base_url", o.WeChatBaseURL, "notify_url", o.notifyURL(ch),
				"merchant_serial", keys.MerchantSerial, "platform_certs", len(keys.Platform))
		case alipay.Channel:
			keys, err := alipay.LoadKeys(alipay.KeyFiles{AppKey: o.certPath(o.AlipayAppKey), AlipayKey: o.certPath(o.AlipayPublicKey)})
			if err != nil {
				return nil, cs, err
			}
			if cs.alipay, err = alipay.New(alipay.Config{GatewayURL: o.AlipayGatewayURL, AppID: o.AlipayAppID, Keys: keys, Now: now,
				Logger: log.With("channel", ch)}); err != nil {
				return nil, cs, err
			}
			out = append(out, alipay.NewAdapter(cs.alipay, o.notifyURL(ch)))
			log.Info("channel", "channel", ch, "gateway_url", o.AlipayGatewayURL, "notify_url", o.notifyURL(ch), "app_id", o.AlipayAppID)
		case unionpay.Channel:
			keys, err := unionpay.LoadKeys(unionpay.KeyFiles{MerchantKey: o.certPath(o.UnionPayMerchantKey),
				MerchantCert: o.certPath(o.UnionPayMerchantCert), RootCert: o.certPath(o.UnionPayRootCert),
				MiddleCert: o.certPath(o.UnionPayMiddleCert)})
			if err != nil {
				return nil, cs, err
			}
			if cs.unionpay, err = unionpay.New(unionpay.Config{BaseURL: o.UnionPayBaseURL, MerID: o.UnionPayMerID, Keys: keys, Now: now,
				Logger: log.With("channel", ch)}); err != nil {
				return nil, cs, err
			}
			out = append(out, unionpay.NewAdapter(cs.unionpay, o.notifyURL(ch)))
			log.Info("channel", "channel", ch, "base_url", o.UnionPayBaseURL, "back_url", o.notifyURL(ch), "mer_id", o.UnionPayMerID,
				"cert_id", keys.CertID)
		}
	}
	return out, cs, nil
}

// serve wires the gateway together and runs it until ctx ends.
func serve(ctx context.Context, o options, migrateOnly bool, stdout io.Writer, h hooks) error {
	log := logging.New(stdout, o.LogLevel, "gateway")
	now := h.now
	if now == nil {
		now = time.Now
	}
	if err := o.check(); err != nil {
		return err
	}
	db, err := openDB(ctx, o.DB)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := store.Migrate(ctx, db); err != nil {
		return err
	}
	if migrateOnly {
		log.Info("migrations applied", "dialect", string(db.Dialect))
		return nil
	}
	adapters, clients, err := openChannels(o, now, log)
	if err != nil {
		return err
	}
	cache, err := openKV(ctx, o, now, log)
	if err != nil {
		return err
	}
	defer cache.Close()

	e, reg := httpx.New(httpx.Options{Service: "gateway", Logger: log, Ready: func(ctx context.Context) error {
		return errors.Join(db.PingContext(ctx), cache.Ping(ctx))
	}})
	if o.TrustProxy {
		e.IPExtractor = echo.ExtractIPFromXFFHeader()
	} else {
		e.IPExtractor = echo.ExtractIPDirect()
	}
	reg.MustRegister(outbox.NewBacklogCollector(db, "gateway"))

	st := store.New(db)
	bills := bill.New(bill.Config{Store: st, Cache: cache, CacheTTL: o.CacheTTL, Now: now, Logger: log})
	recorder := payment.NewRecorder(payment.RecorderConfig{Store: st, Outbox: outbox.New(o.Lanes), Bills: bills,
		Now: now, Logger: log, Registry: reg})
	poller := payment.NewPoller(payment.PollerConfig{Store: st, Recorder: recorder, Adapters: adapters,
		After: o.OrderQueryAfter, MaxInterval: o.OrderQueryMaxDelay, Now: now, Logger: log})
	orders := order.New(order.Config{Store: st, Bills: bills, Locks: cache, Channels: adapters, Retirer: poller,
		Now: now, Logger: log, Registry: reg})
	nc := payment.NotificationsConfig{Store: st, Recorder: recorder, Now: now, Logger: log, Registry: reg}
	if clients.wechat != nil {
		nc.WeChat = clients.wechat
	}
	if clients.alipay != nil {
		nc.Alipay = clients.alipay
	}
	if clients.unionpay != nil {
		nc.UnionPay = clients.unionpay
	}
	notes := payment.NewNotifications(nc)
	refunds := newRefunds(o, st, clients, now, log, reg)
	handlers := bills.Handlers()
	for typ, h := range refunds.Handlers() {
		handlers[typ] = h
	}
	consumer := inbox.NewConsumer(inbox.Config{DB: db, Handlers: handlers, Logger: log, Now: now, Registry: reg})
	sandboxPay := map[string]string{}
	for ch, u := range map[string]string{"wechat": o.SandboxPayURL, "alipay": o.AlipaySandboxPayURL, "unionpay": o.UnionPaySandboxPayURL} {
		if u != "" {
			sandboxPay[ch] = u
		}
	}
	lookupKey, err := lookup.LoadOptionalKey(o.lookupKeyPath(), log, "the lookup page by decision number is not served")
	if err != nil {
		return err
	}
	pages, err := cashier.New(cashier.Config{Bills: bills, Orders: orders, Limiter: cache, PageLimit: o.RateLimit,
		PollLimit: o.RateLimitPoll, SandboxPay: sandboxPay, PublicURL: o.PublicURL,
		SecureCookies: strings.HasPrefix(o.PublicURL, "https:"), Now: now, Logger: log,
		LookupKey: lookupKey, LookupLimit: o.RateLimitLookup, LookupDecisionLimit: o.RateLimitLookupDN, Registry: reg})
	if err != nil {
		return err
	}
	pages.Register(e)
	if clients.wechat != nil {
		e.POST("/notify/wechat", notes.HandleWeChatHTTP)
	}
	if clients.alipay != nil {
		e.POST("/notify/alipay", notes.HandleAlipayHTTP)
	}
	if clients.unionpay != nil {
		e.POST("/notify/unionpay", notes.HandleUnionPayHTTP)
		e.POST("/notify/unionpay/refund", refunds.HandleUnionPayHTTP)
	}
	if clients.wechat != nil {
		e.POST("/notify/wechat/refund", refunds.HandleWeChatHTTP)
	}
	if h.inbox != nil {
		h.inbox <- consumer
	}

	log.Info("starting", "db", string(db.Dialect), "redis", o.Redis != "", "channels", strings.Join(o.Channels, ","))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { consumer.Run(ctx) })
	wg.Go(func() { poller.Run(ctx) })
	wg.Go(func() { refunds.Run(ctx) })
	err = httpx.Serve(ctx, log, o.Listen, e, h.ready)
	cancel()
	wg.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}
