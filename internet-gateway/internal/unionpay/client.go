package unionpay

import (
	"context"
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

// maxResponse bounds the size of an answer.
const maxResponse = 1 << 20

// Config configures a Client.
type Config struct {
	// BaseURL is UnionPay's gateway: https://gateway.95516.com in production, the sandbox in
	// development. The endpoints' paths (PathBackTrans, PathQuery) are appended to it.
	BaseURL string
	MerID   string
	Keys    Keys
	// HTTPClient carries the requests; nil makes one with a 10 s timeout.
	HTTPClient *http.Client
	// QueryRetries bounds the retries of queries after a transport error or a 5xx; 2 when zero,
	// none when negative. Consume orders are never retried.
	QueryRetries int
	// RetryWait is the first wait between retries (doubling up to 2 s); 200ms when zero.
	RetryWait time.Duration
	Now       func() time.Time
	Logger    *slog.Logger
}

// Client calls UnionPay. It is safe for concurrent use.
type Client struct {
	base     string
	merID    string
	keys     Keys
	verifier *Verifier
	once     *retryablehttp.Client
	retrying *retryablehttp.Client
	log      *slog.Logger
}

// New returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("unionpay: base URL %q must be http(s)://host[/path]", cfg.BaseURL)
	}
	if cfg.Keys.MerchantKey == nil || cfg.Keys.CertID == "" || cfg.Keys.Roots == nil || cfg.Keys.Middles == nil {
		return nil, errors.New("unionpay: the merchant key and certId and the UnionPay root and middle certificates are required")
	}
	if cfg.MerID == "" {
		return nil, errors.New("unionpay: merId is required")
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
	return &Client{base: u.String(), merID: cfg.MerID, keys: cfg.Keys, verifier: NewVerifier(cfg.Keys.Roots, cfg.Keys.Middles, cfg.Now),
		once: mk(0), retrying: mk(max(cfg.QueryRetries, 0)), log: cfg.Logger}, nil
}

// MerID returns the merchant number.
func (c *Client) MerID() string { return c.merID }

// Verifier returns the verifier of UnionPay's signatures.
func (c *Client) Verifier() *Verifier { return c.verifier }

func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return true, nil
	}
	return resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented, nil
}

// call signs fields, posts them to path and returns the verified answer: respCode 00 that does
// not verify is ErrForged; another respCode is an *APIError (with the answer's fields).
func (c *Client) call(ctx context.Context, idempotent bool, path string, fields map[string]string) (map[string]string, error) {
	fields["version"], fields["encoding"], fields["merId"] = Version, Encoding, c.merID
	if err := sign(c.keys.MerchantKey, c.keys.CertID, fields); err != nil {
		return nil, err
	}
	form := url.Values{}
	for k, v := range fields {
		form.Set(k, v)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.base+path, []byte(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("unionpay: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
	req.Header.Set("User-Agent", "finepay-gateway")
	hc := c.once
	if idempotent {
		hc = c.retrying
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("unionpay: %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("unionpay: %s: read answer: %w", path, err)
	}
	if len(raw) > maxResponse {
		return nil, fmt.Errorf("unionpay: %s: answer larger than %d bytes", path, maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("unionpay: %s: HTTP %d", path, resp.StatusCode)
	}
	ans, err := ParseResponse(raw)
	if err != nil {
		return nil, fmt.Errorf("unionpay: %s: %w", path, err)
	}
	verr := c.verifier.Verify(ans)
	code := ans["respCode"]
	if code == RespSuccess && verr != nil {
		c.log.Warn("unionpay: unsigned or forged answer", "path", path, "err", verr)
		return nil, fmt.Errorf("%w: %s: %w", ErrForged, path, verr)
	}
	if code != RespSuccess {
		return ans, &APIError{Path: path, RespCode: code, RespMsg: ans["respMsg"], Verified: verr == nil}
	}
	if ans["merId"] != "" && ans["merId"] != c.merID {
		return nil, fmt.Errorf("%w: %s: answer for merId %.20q", ErrInvalid, path, ans["merId"])
	}
	return ans, nil
}

// ConsumeRequest applies for a consume QR code.
type ConsumeRequest struct {
	OrderID    string    // 8–40 letters or digits
	TxnTime    time.Time // the order's time; with merId and orderId it identifies the order
	Amount     money.Fen
	PayTimeout time.Time // when the code stops being payable
	Subject    string
	BackURL    string
}

// Consume applies for a consume QR code (txnType 01, txnSubType 07) and returns it. It is not
// retried: a failed call leaves the order to the caller.
func (c *Client) Consume(ctx context.Context, r ConsumeRequest) (string, error) {
	if !reOrderID.MatchString(r.OrderID) {
		return "", fmt.Errorf("%w: orderId %q must be 8-40 letters or digits", ErrInvalid, r.OrderID)
	}
	subject := strings.NewReplacer("{", "", "}", "", "&", "", "=", "").Replace(r.Subject)
	ans, err := c.call(ctx, false, PathBackTrans, map[string]string{
		"txnType": TxnTypeConsume, "txnSubType": TxnSubTypeQRApply, "bizType": BizType, "channelType": ChannelType,
		"accessType": AccessType, "orderId": r.OrderID, "txnTime": TxnTime(r.TxnTime), "txnAmt": fmt.Sprint(int64(r.Amount)),
		"currencyCode": CurrencyCode, "backUrl": r.BackURL, "payTimeout": TxnTime(r.PayTimeout),
		"riskRateInfo": "{commodityName=" + subject + "}",
	})
	if err != nil {
		return "", err
	}
	if ans["orderId"] != r.OrderID || ans["qrCode"] == "" {
		return "", fmt.Errorf("%w: consume answer without the order's qrCode", ErrInvalid)
	}
	return ans["qrCode"], nil
}

// Result is a transaction as a query answers it.
type Result struct {
	OrderID      string
	TxnTime      string
	OrigRespCode string // the transaction's own result: 00/A6 paid, 03/04/05 processing
	OrigRespMsg  string
	QueryID      string
	TxnAmt       money.Fen
	TraceNo      string
	TraceTime    string
	SettleDate   string
	PaidAt       time.Time // from traceTime; set when paid
}

// Paid reports whether the money moved.
func (r Result) Paid() bool { return Succeeded(r.OrigRespCode) }

// Query queries a transaction by orderId and txnTime (txnType 00). A transaction UnionPay does
// not know (a signed respCode 34) gives ErrNoSuchTransaction. It also returns the answer's
// fields for storage, without certificate and signature. Transport errors and 5xx answers are
// retried a few times.
func (c *Client) Query(ctx context.Context, orderID string, txnTime time.Time) (Result, map[string]string, error) {
	ans, err := c.call(ctx, true, PathQuery, map[string]string{
		"txnType": TxnTypeQuery, "txnSubType": TxnSubTypeQuery, "bizType": BizType, "accessType": AccessType,
		"orderId": orderID, "txnTime": TxnTime(txnTime),
	})
	var ae *APIError
	if errors.As(err, &ae) && ae.Verified && ae.RespCode == RespNoSuchTxn {
		return Result{}, stored(ans), fmt.Errorf("%w: %s", ErrNoSuchTransaction, orderID)
	}
	if err != nil {
		return Result{}, stored(ans), err
	}
	r := Result{OrderID: ans["orderId"], TxnTime: ans["txnTime"], OrigRespCode: ans["origRespCode"], OrigRespMsg: ans["origRespMsg"],
		QueryID: ans["queryId"], TraceNo: ans["traceNo"], TraceTime: ans["traceTime"], SettleDate: ans["settleDate"]}
	if r.OrderID != orderID || r.TxnTime != TxnTime(txnTime) {
		return r, stored(ans), fmt.Errorf("%w: query answer is about %.40q/%.14q", ErrInvalid, r.OrderID, r.TxnTime)
	}
	if r.OrigRespCode == "" {
		return r, stored(ans), fmt.Errorf("%w: query answer without origRespCode", ErrInvalid)
	}
	if r.Paid() {
		if !reQueryID.MatchString(r.QueryID) {
			return r, stored(ans), fmt.Errorf("%w: queryId %.48q", ErrInvalid, r.QueryID)
		}
		if r.TxnAmt, err = parseFen(ans["txnAmt"]); err != nil {
			return r, stored(ans), err
		}
		if r.PaidAt, err = traceInstant(r.TraceTime, txnTime); err != nil {
			return r, stored(ans), err
		}
	}
	return r, stored(ans), nil
}

// stored is what of an answer is kept: its fields but the certificate, the signature and card
// data.
func stored(ans map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range ans {
		switch k {
		case "signPubKeyCert", "signature", "accNo", "customerInfo", "payCardNo", "payerInfo":
			continue
		}
		out[k] = v
	}
	return out
}

// Encode writes fields as a form, for storage.
func Encode(fields map[string]string) []byte {
	v := url.Values{}
	for k, x := range fields {
		v.Set(k, x)
	}
	return []byte(v.Encode())
}
