package alipay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"finepay/shared/money"
)

// maxResponse bounds the size of an API answer.
const maxResponse = 1 << 20

// Config configures a Client.
type Config struct {
	// GatewayURL is the open platform's gateway, https://openapi.alipay.com/gateway.do in
	// production, the sandbox in development.
	GatewayURL string
	AppID      string
	Keys       Keys
	// HTTPClient carries the requests; nil makes one with a 10 s timeout.
	HTTPClient *http.Client
	// QueryRetries bounds the retries of trade queries after a transport error or a 5xx; 2
	// when zero, none when negative. Other calls are never retried.
	QueryRetries int
	// RetryWait is the first wait between retries (doubling up to 2 s); 200ms when zero.
	RetryWait time.Duration
	Now       func() time.Time
	Logger    *slog.Logger
}

// Client calls the Alipay open platform. It is safe for concurrent use.
type Client struct {
	gateway  string
	appID    string
	keys     Keys
	now      func() time.Time
	once     *retryablehttp.Client
	retrying *retryablehttp.Client
	log      *slog.Logger
}

// New returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.GatewayURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("alipay: gateway URL %q must be http(s)://host/...", cfg.GatewayURL)
	}
	if cfg.Keys.AppKey == nil || cfg.Keys.AlipayKey == nil {
		return nil, errors.New("alipay: the application key and Alipay's public key are required")
	}
	if cfg.AppID == "" {
		return nil, errors.New("alipay: app_id is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.QueryRetries == 0 {
		cfg.QueryRetries = 2
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = 200 * time.Millisecond
	}
	mk := func(retries int) *retryablehttp.Client {
		return &retryablehttp.Client{
			HTTPClient: cfg.HTTPClient, Logger: cfg.Logger, RetryWaitMin: cfg.RetryWait, RetryWaitMax: 2 * time.Second,
			RetryMax: retries, CheckRetry: retryPolicy, Backoff: retryablehttp.DefaultBackoff,
			ErrorHandler: retryablehttp.PassthroughErrorHandler,
		}
	}
	return &Client{gateway: cfg.GatewayURL, appID: cfg.AppID, keys: cfg.Keys, now: cfg.Now,
		once: mk(0), retrying: mk(max(cfg.QueryRetries, 0)), log: cfg.Logger}, nil
}

// AppID returns the application's ID.
func (c *Client) AppID() string { return c.appID }

// retryPolicy retries transport errors and 5xx answers, never a cancelled call.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return true, nil
	}
	return resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented, nil
}

// result is the common part of every *_response object.
type result struct {
	Code    string `json:"code"`
	Msg     string `json:"msg"`
	SubCode string `json:"sub_code"`
	SubMsg  string `json:"sub_msg"`
}

// Params are the signed parameters of a request, as sent (for tests and logs).
type Params map[string]string

// request builds the signed parameters of a call.
func (c *Client) request(method string, biz any, extra map[string]string) (Params, error) {
	bizJSON, err := json.Marshal(biz)
	if err != nil {
		return nil, err
	}
	p := Params{
		"app_id": c.appID, "method": method, "format": Format, "charset": Charset, "sign_type": SignType,
		"timestamp": formatTime(c.now()), "version": Version, "biz_content": string(bizJSON),
	}
	for k, v := range extra {
		p[k] = v
	}
	s, err := sign(c.keys.AppKey, Content(p, "sign"))
	if err != nil {
		return nil, err
	}
	p["sign"] = s
	return p, nil
}

// call sends a signed request and returns the method's response object exactly as received,
// verified: a code 10000 that does not verify is ErrForged; another code is an *APIError.
func (c *Client) call(ctx context.Context, idempotent bool, method string, biz any, extra map[string]string) (json.RawMessage, error) {
	p, err := c.request(method, biz, extra)
	if err != nil {
		return nil, err
	}
	form := url.Values{}
	for k, v := range p {
		form.Set(k, v)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.gateway, []byte(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("alipay: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=utf-8")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "finepay-gateway")
	hc := c.once
	if idempotent {
		hc = c.retrying
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("alipay: %s: %w", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("alipay: %s: read answer: %w", method, err)
	}
	if len(raw) > maxResponse {
		return nil, fmt.Errorf("alipay: %s: answer larger than %d bytes", method, maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("alipay: %s: HTTP %d", method, resp.StatusCode)
	}
	node, signature, err := ResponseNode(raw, method)
	if err != nil {
		return nil, err
	}
	var r result
	if err := json.Unmarshal(node, &r); err != nil {
		return nil, fmt.Errorf("%w: %s answer: %w", ErrInvalid, method, err)
	}
	verr := fmt.Errorf("%w: no sign", ErrSignature)
	if signature != "" {
		verr = verify(c.keys.AlipayKey, node, signature)
	}
	if r.Code == CodeSuccess && verr != nil {
		c.log.Warn("alipay: unsigned or forged answer", "method", method, "err", verr)
		return nil, fmt.Errorf("%w: %s: %w", ErrForged, method, verr)
	}
	if r.Code != CodeSuccess {
		return node, &APIError{Method: method, Code: r.Code, Msg: r.Msg, SubCode: r.SubCode, SubMsg: r.SubMsg, Verified: verr == nil}
	}
	return node, nil
}

// ResponseNode takes the "<method>_response" object (or "error_response") out of an answer as
// the exact bytes received, and the answer's sign.
func ResponseNode(raw []byte, method string) (json.RawMessage, string, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&top); err != nil {
		return nil, "", fmt.Errorf("%w: answer is not a JSON object: %w", ErrInvalid, err)
	}
	node, ok := top[strings.ReplaceAll(method, ".", "_")+"_response"]
	if !ok {
		if node, ok = top["error_response"]; !ok {
			return nil, "", fmt.Errorf("%w: answer holds no %s response", ErrInvalid, method)
		}
	}
	if len(node) == 0 || node[0] != '{' {
		return nil, "", fmt.Errorf("%w: %s response is not an object", ErrInvalid, method)
	}
	var signature string
	if s, ok := top["sign"]; ok {
		if err := json.Unmarshal(s, &signature); err != nil {
			return nil, "", fmt.Errorf("%w: sign is not a string", ErrInvalid)
		}
	}
	return node, signature, nil
}

// PrecreateRequest is a face-to-face QR order.
type PrecreateRequest struct {
	OutTradeNo string
	Subject    string
	Total      money.Fen
	TimeExpire time.Time // written as yyyy-MM-dd HH:mm:ss in Asia/Shanghai
	NotifyURL  string
}

type precreateBiz struct {
	OutTradeNo  string `json:"out_trade_no"`
	TotalAmount string `json:"total_amount"`
	Subject     string `json:"subject"`
	TimeExpire  string `json:"time_expire"`
}

// Precreate places a QR order (alipay.trade.precreate) and returns its qr_code. It is not
// retried: a failed call leaves the order to the caller.
func (c *Client) Precreate(ctx context.Context, r PrecreateRequest) (string, error) {
	node, err := c.call(ctx, false, MethodPrecreate, precreateBiz{OutTradeNo: r.OutTradeNo, TotalAmount: r.Total.Yuan(),
		Subject: r.Subject, TimeExpire: formatTime(r.TimeExpire)}, map[string]string{"notify_url": r.NotifyURL})
	if err != nil {
		return "", err
	}
	var out struct {
		OutTradeNo string `json:"out_trade_no"`
		QRCode     string `json:"qr_code"`
	}
	if err := json.Unmarshal(node, &out); err != nil || out.OutTradeNo != r.OutTradeNo || out.QRCode == "" {
		return "", fmt.Errorf("%w: precreate answer %.200s", ErrInvalid, node)
	}
	return out.QRCode, nil
}

// Trade is a trade as alipay.trade.query answers it.
type Trade struct {
	TradeNo     string
	OutTradeNo  string
	TradeStatus string
	TotalAmount money.Fen
	SendPayDate time.Time // when it was paid; zero when not
}

// Paid reports whether the money was received.
func (t Trade) Paid() bool {
	return t.TradeStatus == StatusTradeSuccess || t.TradeStatus == StatusTradeFinished
}

type queryAnswer struct {
	TradeNo     string `json:"trade_no"`
	OutTradeNo  string `json:"out_trade_no"`
	TradeStatus string `json:"trade_status"`
	TotalAmount string `json:"total_amount"`
	SendPayDate string `json:"send_pay_date"`
}

// Query queries a trade by our order number (alipay.trade.query). A trade Alipay does not know
// gives ErrTradeNotExist. It also returns the answer's response object, without the buyer's
// fields, for storage. Transport errors and 5xx answers are retried a few times.
func (c *Client) Query(ctx context.Context, outTradeNo string) (Trade, []byte, error) {
	node, err := c.call(ctx, true, MethodQuery, map[string]string{"out_trade_no": outTradeNo}, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Verified && ae.SubCode == SubCodeTradeNotExist {
		return Trade{}, node, fmt.Errorf("%w: %s", ErrTradeNotExist, outTradeNo)
	}
	if err != nil {
		return Trade{}, node, err
	}
	var a queryAnswer
	if err := json.Unmarshal(node, &a); err != nil {
		return Trade{}, node, fmt.Errorf("%w: query answer: %w", ErrInvalid, err)
	}
	t := Trade{TradeNo: a.TradeNo, OutTradeNo: a.OutTradeNo, TradeStatus: a.TradeStatus}
	if t.OutTradeNo != outTradeNo {
		return t, node, fmt.Errorf("%w: query answer is about %.64q", ErrInvalid, t.OutTradeNo)
	}
	switch t.TradeStatus {
	case StatusWaitBuyerPay, StatusTradeClosed, StatusTradeSuccess, StatusTradeFinished:
	default:
		return t, node, fmt.Errorf("%w: trade_status %.32q", ErrInvalid, t.TradeStatus)
	}
	if t.TotalAmount, err = money.ParseYuan(a.TotalAmount); err != nil || t.TotalAmount <= 0 {
		return t, node, fmt.Errorf("%w: total_amount %.32q", ErrInvalid, a.TotalAmount)
	}
	if t.Paid() {
		if !reTradeNo.MatchString(t.TradeNo) {
			return t, node, fmt.Errorf("%w: trade_no %.64q", ErrInvalid, t.TradeNo)
		}
		if t.SendPayDate, err = parseTime(a.SendPayDate); err != nil {
			return t, node, fmt.Errorf("%w: send_pay_date %.32q", ErrInvalid, a.SendPayDate)
		}
	}
	return t, withoutBuyer(node), nil
}

// Close closes an unpaid trade (alipay.trade.close).
func (c *Client) Close(ctx context.Context, outTradeNo string) error {
	_, err := c.call(ctx, false, MethodClose, map[string]string{"out_trade_no": outTradeNo}, nil)
	return err
}

// withoutBuyer drops the buyer's fields (buyer_logon_id, buyer_user_id, ...) from a response
// object before it is stored: the gateway keeps nothing personal beyond masked names and plates.
func withoutBuyer(node []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(node, &m) != nil {
		return node
	}
	for k := range m {
		if strings.HasPrefix(k, "buyer_") {
			delete(m, k)
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return node
	}
	return out
}
