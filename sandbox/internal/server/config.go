package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"finepay/sandbox/internal/alipaysim"
	"finepay/sandbox/internal/unionpaysim"
	"finepay/sandbox/internal/wechatsim"
)

// Config is the sandbox's configuration. Each flag can also be set by an environment variable;
// an explicit flag wins over the variable, which wins over the default.
type Config struct {
	Listen    string
	CertsDir  string
	PublicURL string
	// PublicURLSet records that PublicURL was given; otherwise it follows the bound port.
	PublicURLSet bool

	WeChatAppID         string
	WeChatMchID         string
	WeChatMerchantName  string
	WeChatScheduleScale float64
	WeChatDuplicates    int
	WeChatNotifyWorkers int
	WeChatNotifyTimeout time.Duration

	AlipayAppID          string
	AlipaySellerID       string
	AlipayScheduleScale  float64
	AlipayDuplicateRate  float64
	AlipayOutOfOrderRate float64

	UnionPayMerID          string
	UnionPaySchedule       []time.Duration
	UnionPayScheduleScale  float64
	UnionPayDuplicateRate  float64
	UnionPayOutOfOrderRate float64

	// CoreURL is the core's base URL, for the simulators that call its partner API.
	CoreURL string
	// WindowAPIToken is the window platform's bearer token at the core's window API.
	WindowAPIToken string
	// BankCode is the simulated agency bank's institution code (flow P3).
	BankCode string

	// PartnerCallers are the node names whose NAME-sign.pem is loaded from CertsDir.
	PartnerCallers []string
	// PartnerFingerprints, when not empty, are the only caller certificates accepted.
	PartnerFingerprints []string

	LogLevel        slog.Level
	ShutdownTimeout time.Duration
}

// Option is one configuration setting: its flag, environment variable, default and meaning.
type Option struct {
	Flag, Env, Default, Usage string
}

// Options lists every setting, in the order of the README's table.
var Options = []Option{
	{"listen", "SANDBOX_LISTEN", ":8070", "address to listen on; port 0 picks a free port"},
	{"certs", "SANDBOX_CERTS", "certs", "directory of the development PKI (go run ./shared/cmd/fpcerts -dir DIR)"},
	{"public-url", "SANDBOX_PUBLIC_URL", "http://127.0.0.1:8070", "base URL of the sandbox in page links; follows the bound port when not set"},
	{"wechat-appid", "SANDBOX_WECHAT_APPID", wechatsim.DefaultAppID, "WeChat appid of the merchant"},
	{"wechat-mchid", "SANDBOX_WECHAT_MCHID", wechatsim.DefaultMchID, "WeChat merchant number"},
	{"wechat-merchant-name", "SANDBOX_WECHAT_MERCHANT_NAME", wechatsim.DefaultMerchantName, "merchant name on the payer pages (WeChat, Alipay and UnionPay)"},
	{"wechat-schedule-scale", "SANDBOX_WECHAT_SCHEDULE_SCALE", "1", "multiplier of the notification resend schedule (0.001 in tests)"},
	{"wechat-duplicates", "SANDBOX_WECHAT_DUPLICATES", "1", "copies of each notification sent at once"},
	{"wechat-notify-workers", "SANDBOX_WECHAT_NOTIFY_WORKERS", "16", "notification rounds in flight at most, per channel simulator"},
	{"wechat-notify-timeout", "SANDBOX_WECHAT_NOTIFY_TIMEOUT", "5s", "timeout of one notification request, for every channel simulator"},
	{"alipay-app-id", "SANDBOX_ALIPAY_APP_ID", alipaysim.DefaultAppID, "Alipay app_id of the merchant application"},
	{"alipay-seller-id", "SANDBOX_ALIPAY_SELLER_ID", alipaysim.DefaultSellerID, "the merchant's Alipay user ID (seller_id of notifications)"},
	{"alipay-schedule-scale", "SANDBOX_ALIPAY_SCHEDULE_SCALE", "1", "multiplier of Alipay's resend schedule 4m, 10m, 10m, 1h, 2h, 6h, 15h (0.001 in tests)"},
	{"alipay-duplicate-rate", "SANDBOX_ALIPAY_DUPLICATE_RATE", "0", "probability (0-1) that a notification round is sent twice within a second"},
	{"alipay-out-of-order-rate", "SANDBOX_ALIPAY_OUT_OF_ORDER_RATE", "0", "probability (0-1) that a payment is notified TRADE_FINISHED first and TRADE_SUCCESS after it"},
	{"unionpay-mer-id", "SANDBOX_UNIONPAY_MER_ID", unionpaysim.DefaultMerID, "UnionPay merchant number (merId)"},
	{"unionpay-schedule", "SANDBOX_UNIONPAY_SCHEDULE", unionpaysim.DefaultSchedule, "UnionPay's resend schedule: comma-separated waits, N*d for N times d"},
	{"unionpay-schedule-scale", "SANDBOX_UNIONPAY_SCHEDULE_SCALE", "1", "multiplier of the UnionPay resend schedule (0.001 in tests)"},
	{"unionpay-duplicate-rate", "SANDBOX_UNIONPAY_DUPLICATE_RATE", "0", "probability (0-1) that a notification round is sent twice within a second"},
	{"unionpay-out-of-order-rate", "SANDBOX_UNIONPAY_OUT_OF_ORDER_RATE", "0", "probability (0-1) that a notification is held back up to the first resend interval, so that later ones overtake it"},
	{"core-url", "SANDBOX_CORE_URL", "http://127.0.0.1:8090", "base URL of the core, whose partner API (/partner/v1) the simulated callers use (the finance adapter for the agency bank, the 12123 platform)"},
	{"window-api-token", "SANDBOX_WINDOW_API_TOKEN", "", "bearer token of the window platform at the core's window API (the core's -api-token), with which the window simulator sends refund instructions (R2); empty: sent without one, the core refuses them"},
	{"bank-code", "SANDBOX_BANK_CODE", "104100000004", "institution code of the simulated agency bank (3-12 digits)"},
	{"partner-callers", "SANDBOX_PARTNER_CALLERS", "core", "comma-separated node names allowed to call the finance and police simulators"},
	{"partner-fingerprints", "SANDBOX_PARTNER_FINGERPRINTS", "", "comma-separated accepted caller certificate fingerprints (sm3:...); empty accepts the callers' certificates as loaded"},
	{"log-level", "SANDBOX_LOG_LEVEL", "info", "debug, info, warn or error"},
	{"shutdown-timeout", "SANDBOX_SHUTDOWN_TIMEOUT", "10s", "how long a graceful shutdown may take"},
}

// ParseConfig reads the flags in args with environment overrides from getenv.
func ParseConfig(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(output)
	values := map[string]*string{}
	for _, o := range Options {
		values[o.Flag] = fs.String(o.Flag, o.Default, fmt.Sprintf("%s (env %s)", o.Usage, o.Env))
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, o := range Options {
		if !set[o.Flag] {
			if v := getenv(o.Env); v != "" {
				*values[o.Flag] = v
				set[o.Flag] = true
			}
		}
	}
	get := func(name string) string { return *values[name] }

	c := Config{
		Listen:              get("listen"),
		CertsDir:            get("certs"),
		PublicURL:           strings.TrimRight(get("public-url"), "/"),
		PublicURLSet:        set["public-url"],
		WeChatAppID:         get("wechat-appid"),
		WeChatMchID:         get("wechat-mchid"),
		WeChatMerchantName:  get("wechat-merchant-name"),
		AlipayAppID:         get("alipay-app-id"),
		AlipaySellerID:      get("alipay-seller-id"),
		UnionPayMerID:       get("unionpay-mer-id"),
		CoreURL:             strings.TrimRight(get("core-url"), "/"),
		WindowAPIToken:      get("window-api-token"),
		BankCode:            get("bank-code"),
		PartnerCallers:      splitList(get("partner-callers")),
		PartnerFingerprints: splitList(get("partner-fingerprints")),
	}
	var errs []error
	bad := func(name string, err error) { errs = append(errs, fmt.Errorf("-%s: %w", name, err)) }
	var err error
	if c.WeChatScheduleScale, err = strconv.ParseFloat(get("wechat-schedule-scale"), 64); err != nil || !(c.WeChatScheduleScale > 0) || math.IsInf(c.WeChatScheduleScale, 0) {
		bad("wechat-schedule-scale", errors.New("must be a number > 0"))
	}
	if c.WeChatDuplicates, err = strconv.Atoi(get("wechat-duplicates")); err != nil || c.WeChatDuplicates < 1 || c.WeChatDuplicates > 100 {
		bad("wechat-duplicates", errors.New("must be an integer from 1 to 100"))
	}
	if c.WeChatNotifyWorkers, err = strconv.Atoi(get("wechat-notify-workers")); err != nil || c.WeChatNotifyWorkers < 1 || c.WeChatNotifyWorkers > 1024 {
		bad("wechat-notify-workers", errors.New("must be an integer from 1 to 1024"))
	}
	if c.WeChatNotifyTimeout, err = time.ParseDuration(get("wechat-notify-timeout")); err != nil || c.WeChatNotifyTimeout <= 0 {
		bad("wechat-notify-timeout", errors.New("must be a duration > 0 such as 5s"))
	}
	for _, sc := range []struct {
		name string
		dst  *float64
	}{{"alipay-schedule-scale", &c.AlipayScheduleScale}, {"unionpay-schedule-scale", &c.UnionPayScheduleScale}} {
		if *sc.dst, err = strconv.ParseFloat(get(sc.name), 64); err != nil || !(*sc.dst > 0) || math.IsInf(*sc.dst, 0) {
			bad(sc.name, errors.New("must be a number > 0"))
		}
	}
	for _, r := range []struct {
		name string
		dst  *float64
	}{{"alipay-duplicate-rate", &c.AlipayDuplicateRate}, {"alipay-out-of-order-rate", &c.AlipayOutOfOrderRate},
		{"unionpay-duplicate-rate", &c.UnionPayDuplicateRate}, {"unionpay-out-of-order-rate", &c.UnionPayOutOfOrderRate}} {
		if *r.dst, err = strconv.ParseFloat(get(r.name), 64); err != nil || !(*r.dst >= 0 && *r.dst <= 1) {
			bad(r.name, errors.New("must be a probability from 0 to 1"))
		}
	}
	if c.UnionPaySchedule, err = unionpaysim.ParseSchedule(get("unionpay-schedule")); err != nil {
		bad("unionpay-schedule", errors.New("must be comma-separated durations such as 1m,2m,23*1h"))
	}
	if c.ShutdownTimeout, err = time.ParseDuration(get("shutdown-timeout")); err != nil || c.ShutdownTimeout <= 0 {
		bad("shutdown-timeout", errors.New("must be a duration > 0 such as 10s"))
	}
	if err := c.LogLevel.UnmarshalText([]byte(get("log-level"))); err != nil {
		bad("log-level", errors.New("must be debug, info, warn or error"))
	}
	if len(c.PartnerCallers) == 0 {
		bad("partner-callers", errors.New("must name at least one caller"))
	}
	for _, name := range c.PartnerCallers {
		if strings.ContainsAny(name, `/\.`) {
			bad("partner-callers", fmt.Errorf("%q is not a node name", name))
		}
	}
	for _, k := range []struct{ name, v string }{{"listen", c.Listen}, {"certs", c.CertsDir}, {"wechat-appid", c.WeChatAppID},
		{"wechat-mchid", c.WeChatMchID}, {"alipay-app-id", c.AlipayAppID}, {"alipay-seller-id", c.AlipaySellerID}, {"unionpay-mer-id", c.UnionPayMerID}} {
		if k.v == "" {
			bad(k.name, errors.New("must not be empty"))
		}
	}
	if !strings.HasPrefix(c.CoreURL, "http://") && !strings.HasPrefix(c.CoreURL, "https://") {
		bad("core-url", errors.New("must be an http(s) URL"))
	}
	if n := len(c.BankCode); n < 3 || n > 12 || strings.Trim(c.BankCode, "0123456789") != "" {
		bad("bank-code", errors.New("must be 3 to 12 digits"))
	}
	if !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://") {
		bad("public-url", errors.New("must be an http(s) URL"))
	}
	return c, errors.Join(errs...)
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
