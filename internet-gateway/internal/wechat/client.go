package wechat

import (
	"bytes"
	"context"
	"crypto/rand"
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

	"finepay/shared/bizdate"
)

// maxResponse bounds the size of an API answer.
const maxResponse = 1 << 20

// Config configures a Client.
type Config struct {
	BaseURL string // e.g. https://api.mch.weixin.qq.com, or the sandbox
	AppID   string
	MchID   string
	Keys    Keys
	// HTTPClient carries the requests; nil makes one with a 10 s timeout.
	HTTPClient *http.Client
	// QueryRetries bounds the retries of idempotent calls (order query) after a transport
	// error or a 5xx; 2 when zero, none when negative. Other calls are never retried.
	QueryRetries int
	// RetryWait is the first wait between retries (doubling up to 2 s); 200ms when zero.
	RetryWait time.Duration
	Now       func() time.Time
	Rand      io.Reader
	Logger    *slog.Logger
}

// Client calls WeChat Pay API v3. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	appID    string
	mchID    string
	apiV3Key []byte
	signer   signer
	verifier *Verifier
	once     *retryablehttp.Client // non-idempotent calls: one attempt
	retrying *retryablehttp.Client // idempotent calls
	log      *slog.Logger
}

// New returns a client.
func New(cfg Config) (*Client, error) {
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("wechat: base URL %q must be http(s)://host", cfg.BaseURL)
	}
	if cfg.Keys.MerchantKey == nil || cfg.Keys.MerchantSerial == "" || len(cfg.Keys.Platform) == 0 || len(cfg.Keys.APIv3Key) != 32 {
		return nil, errors.New("wechat: the merchant key and serial, platform certificates and a 32-byte APIv3 key are required")
	}
	if cfg.AppID == "" || cfg.MchID == "" {
		return nil, errors.New("wechat: appid and mchid are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
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
	c := &Client{
		base:     base,
		appID:    cfg.AppID,
		mchID:    cfg.MchID,
		apiV3Key: cfg.Keys.APIv3Key,
		signer:   signer{mchID: cfg.MchID, serial: cfg.Keys.MerchantSerial, key: cfg.Keys.MerchantKey, now: cfg.Now, rand: cfg.Rand},
		verifier: NewVerifier(cfg.Keys.Platform, cfg.Now),
		log:      cfg.Logger,
	}
	mk := func(retries int) *retryablehttp.Client {
		return &retryablehttp.Client{
			HTTPClient:   cfg.HTTPClient,
			Logger:       cfg.Logger,
			RetryWaitMin: cfg.RetryWait,
			RetryWaitMax: 2 * time.Second,
			RetryMax:     retries,
			CheckRetry:   retryPolicy,
			Backoff:      retryablehttp.DefaultBackoff,
			ErrorHandler: retryablehttp.PassthroughErrorHandler,
			PrepareRetry: c.resign, // a retry carries a fresh timestamp and nonce
		}
	}
	c.once = mk(0)
	c.retrying = mk(max(cfg.QueryRetries, 0))
	return c, nil
}

// retryPolicy retries transport errors and 5xx answers (but 501), never a cancelled call.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return true, nil
	}
	return resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented, nil
}

func (c *Client) resign(r *http.Request) error {
	var body []byte
	if r.GetBody != nil {
		rc, err := r.GetBody()
		if err != nil {
			return err
		}
		body, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	auth, err := c.signer.authorization(r.Method, r.URL.RequestURI(), body)
	if err != nil {
		return err
	}
	r.Header = r.Header.Clone() // the previous attempt's request shares the map
	r.Header.Set("Authorization", auth)
	return nil
}

// response is a verified (or failed) API answer.
type response struct {
	status   int
	body     []byte
	verified bool
	verr     error
}

// call sends a signed request and reads the answer, verifying its platform signature.
func (c *Client) call(ctx context.Context, idempotent bool, method, path string, query url.Values, payload any) (response, error) {
	u := *c.base
	u.Path = c.base.Path + path
	if query != nil {
		u.RawQuery = query.Encode()
	}
	var body []byte
	if payload != nil {
		var err error
		if body, err = json.Marshal(payload); err != nil {
			return response{}, err
		}
	}
	var rbody any
	if body != nil {
		rbody = body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, u.String(), rbody)
	if err != nil {
		return response{}, fmt.Errorf("wechat: %w", err)
	}
	auth, err := c.signer.authorization(method, req.URL.RequestURI(), body)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "finepay-gateway")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.once
	if idempotent {
		hc = c.retrying
	}
	resp, err := hc.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("wechat: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return response{}, fmt.Errorf("wechat: %s %s: read answer: %w", method, path, err)
	}
	if len(raw) > maxResponse {
		return response{}, fmt.Errorf("wechat: %s %s: answer larger than %d bytes", method, path, maxResponse)
	}
	r := response{status: resp.StatusCode, body: raw}
	r.verr = c.verifier.Verify(resp.Header, raw)
	r.verified = r.verr == nil
	if resp.StatusCode/100 == 2 && !r.verified {
		c.log.Warn("wechat: unsigned or forged answer", "method", method, "path", path, "status", resp.StatusCode, "err", r.verr)
		return r, fmt.Errorf("%w: %s %s: %w", ErrForged, method, path, r.verr)
	}
	if resp.StatusCode/100 != 2 {
		return r, r.apiError()
	}
	return r, nil
}

func (r response) apiError() *APIError {
	e := &APIError{Status: r.status, Verified: r.verified}
	var body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(r.body, &body) == nil {
		e.Code, e.Message = body.Code, body.Message
	}
	if e.Code == "" {
		e.Code = http.StatusText(r.status)
	}
	return e
}

// NativeOrder is a Native (QR code) order request.
type NativeOrder struct {
	OutTradeNo  string
	Description string
	Attach      string
	NotifyURL   string
	Total       int64     // fen
	TimeExpire  time.Time // rendered in Asia/Shanghai, RFC 3339
}

type nativeBody struct {
	AppID       string `json:"appid"`
	MchID       string `json:"mchid"`
	Description string `json:"description"`
	OutTradeNo  string `json:"out_trade_no"`
	TimeExpire  string `json:"time_expire"`
	Attach      string `json:"attach,omitempty"`
	NotifyURL   string `json:"notify_url"`
	Amount      struct {
		Total    int64  `json:"total"`
		Currency string `json:"currency"`
	} `json:"amount"`
}

// CreateNative places a Native order and returns its code_url (weixin://wxpay/bizpayurl...).
// It is not retried: a failed call leaves the order to the caller.
func (c *Client) CreateNative(ctx context.Context, o NativeOrder) (string, error) {
	b := nativeBody{AppID: c.appID, MchID: c.mchID, Description: o.Description, OutTradeNo: o.OutTradeNo,
		TimeExpire: o.TimeExpire.In(bizdate.Location).Format(time.RFC3339), Attach: o.Attach, NotifyURL: o.NotifyURL}
	b.Amount.Total, b.Amount.Currency = o.Total, "CNY"
	r, err := c.call(ctx, false, http.MethodPost, "/v3/pay/transactions/native", nil, b)
	if err != nil {
		return "", err
	}
	var out struct {
		CodeURL string `json:"code_url"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || !strings.HasPrefix(out.CodeURL, "weixin://") {
		return "", fmt.Errorf("%w: native order answer has no code_url", ErrInvalid)
	}
	return out.CodeURL, nil
}

// QueryOrder queries a transaction by our order number. An order WeChat does not know gives
// ErrOrderNotExist. Transport errors and 5xx answers are retried a few times.
func (c *Client) QueryOrder(ctx context.Context, outTradeNo string) (Transaction, []byte, error) {
	var t Transaction
	r, err := c.call(ctx, true, http.MethodGet, "/v3/pay/transactions/out-trade-no/"+url.PathEscape(outTradeNo),
		url.Values{"mchid": {c.mchID}}, nil)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Verified && ae.Status == http.StatusNotFound && ae.Code == "ORDER_NOT_EXIST" {
			return t, r.body, fmt.Errorf("%w: %s", ErrOrderNotExist, outTradeNo)
		}
		return t, r.body, err
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	if err := dec.Decode(&t); err != nil {
		return t, r.body, fmt.Errorf("%w: query answer: %w", ErrInvalid, err)
	}
	if t.OutTradeNo != outTradeNo || t.MchID != c.mchID || t.AppID != c.appID {
		return t, r.body, fmt.Errorf("%w: query answer is about %s/%s/%s", ErrInvalid, t.AppID, t.MchID, t.OutTradeNo)
	}
	return t, r.body, nil
}

// CloseOrder closes an unpaid order.
func (c *Client) CloseOrder(ctx context.Context, outTradeNo string) error {
	_, err := c.call(ctx, false, http.MethodPost, "/v3/pay/transactions/out-trade-no/"+url.PathEscape(outTradeNo)+"/close", nil,
		map[string]string{"mchid": c.mchID})
	return err
}
