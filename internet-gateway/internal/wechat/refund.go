package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"time"
	"unicode/utf8"

	"finepay/internet-gateway/internal/channel"
	"finepay/shared/money"
)

// Refund statuses (status of an answer, refund_status of a notification).
const (
	RefundSuccess    = "SUCCESS"
	RefundClosed     = "CLOSED"     // final failure
	RefundProcessing = "PROCESSING" // accepted, not finished
	RefundAbnormal   = "ABNORMAL"   // not final: the payer's account could not take the money
)

// Event types of refund notifications (the names are not fixed by a public document; these are
// the ones commonly used) and the resource's associated data.
const (
	EventRefundSuccess  = "REFUND.SUCCESS"
	EventRefundAbnormal = "REFUND.ABNORMAL"
	EventRefundClosed   = "REFUND.CLOSED"
	OriginalTypeRefund  = "refund"
)

// ErrRefundNotExist is returned by QueryRefund for a refund WeChat does not know (a signed 404
// RESOURCE_NOT_EXISTS).
var ErrRefundNotExist = errors.New("wechat: refund does not exist")

// reRefundNo matches out_refund_no (our refund number) and refund_id.
var reRefundNo = regexp.MustCompile(`^[A-Za-z0-9_*@|-]{1,64}$`)

// RefundRequest is a refund of (part of) a paid transaction.
type RefundRequest struct {
	OutRefundNo   string
	TransactionID string // the payment; out_trade_no is sent too
	OutTradeNo    string
	Reason        string
	NotifyURL     string
	Refund        int64 // fen
	Total         int64 // fen, the transaction's total
}

type refundBody struct {
	TransactionID string `json:"transaction_id,omitempty"`
	OutTradeNo    string `json:"out_trade_no,omitempty"`
	OutRefundNo   string `json:"out_refund_no"`
	Reason        string `json:"reason,omitempty"`
	NotifyURL     string `json:"notify_url,omitempty"`
	Amount        struct {
		Refund   int64  `json:"refund"`
		Total    int64  `json:"total"`
		Currency string `json:"currency"`
	} `json:"amount"`
}

// RefundInfo is a refund as an answer (status) or a notification (refund_status) describes it.
type RefundInfo struct {
	MchID               string `json:"mchid,omitempty"`
	RefundID            string `json:"refund_id"`
	OutRefundNo         string `json:"out_refund_no"`
	TransactionID       string `json:"transaction_id"`
	OutTradeNo          string `json:"out_trade_no"`
	Channel             string `json:"channel,omitempty"`
	UserReceivedAccount string `json:"user_received_account,omitempty"`
	SuccessTime         string `json:"success_time,omitempty"`
	CreateTime          string `json:"create_time,omitempty"`
	Status              string `json:"status,omitempty"`
	RefundStatus        string `json:"refund_status,omitempty"`
	Amount              struct {
		Total       int64  `json:"total"`
		Refund      int64  `json:"refund"`
		PayerTotal  int64  `json:"payer_total"`
		PayerRefund int64  `json:"payer_refund"`
		Currency    string `json:"currency,omitempty"`
	} `json:"amount"`
}

// State is the refund's status, from an answer or a notification.
func (r RefundInfo) State() string {
	if r.Status != "" {
		return r.Status
	}
	return r.RefundStatus
}

// Check validates a refund about outRefundNo (when not empty): identifiers well formed, a known
// status, a positive refund amount, and for a success its success_time, which it returns.
func (r RefundInfo) Check(outRefundNo string) (time.Time, error) {
	switch {
	case outRefundNo != "" && r.OutRefundNo != outRefundNo:
		return time.Time{}, fmt.Errorf("%w: the refund is %.64q, not %s", ErrInvalid, r.OutRefundNo, outRefundNo)
	case !reRefundNo.MatchString(r.OutRefundNo) || !reRefundNo.MatchString(r.RefundID):
		return time.Time{}, fmt.Errorf("%w: out_refund_no/refund_id", ErrInvalid)
	case !reTradeNo.MatchString(r.OutTradeNo) || !reTradeNo.MatchString(r.TransactionID):
		return time.Time{}, fmt.Errorf("%w: out_trade_no/transaction_id", ErrInvalid)
	case r.Amount.Refund <= 0 || r.Amount.Total < r.Amount.Refund:
		return time.Time{}, fmt.Errorf("%w: refund amount %d of %d", ErrInvalid, r.Amount.Refund, r.Amount.Total)
	}
	switch r.State() {
	case RefundSuccess:
		at, err := time.Parse(time.RFC3339, r.SuccessTime)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: success_time %.40q", ErrInvalid, r.SuccessTime)
		}
		return at, nil
	case RefundClosed, RefundProcessing, RefundAbnormal:
		return time.Time{}, nil
	}
	return time.Time{}, fmt.Errorf("%w: refund status %.32q", ErrInvalid, r.State())
}

// Refund requests a refund (POST /v3/refund/domestic/refunds). It is sent once: the caller
// retries with the same out_refund_no, which WeChat treats as the same refund.
func (c *Client) Refund(ctx context.Context, r RefundRequest) (RefundInfo, []byte, error) {
	b := refundBody{TransactionID: r.TransactionID, OutTradeNo: r.OutTradeNo, OutRefundNo: r.OutRefundNo, Reason: r.Reason,
		NotifyURL: r.NotifyURL}
	b.Amount.Refund, b.Amount.Total, b.Amount.Currency = r.Refund, r.Total, "CNY"
	resp, err := c.call(ctx, false, http.MethodPost, "/v3/refund/domestic/refunds", nil, b)
	if err != nil {
		return RefundInfo{}, resp.body, err
	}
	return decodeRefund(resp.body, r.OutRefundNo)
}

// QueryRefund queries a refund by out_refund_no (GET /v3/refund/domestic/refunds/{out_refund_no}).
// A refund WeChat does not know gives ErrRefundNotExist. Transport errors and 5xx are retried.
func (c *Client) QueryRefund(ctx context.Context, outRefundNo string) (RefundInfo, []byte, error) {
	resp, err := c.call(ctx, true, http.MethodGet, "/v3/refund/domestic/refunds/"+url.PathEscape(outRefundNo), nil, nil)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Verified && ae.Status == http.StatusNotFound &&
			(ae.Code == "RESOURCE_NOT_EXISTS" || ae.Code == "ORDER_NOT_EXIST") {
			return RefundInfo{}, resp.body, fmt.Errorf("%w: %s", ErrRefundNotExist, outRefundNo)
		}
		return RefundInfo{}, resp.body, err
	}
	return decodeRefund(resp.body, outRefundNo)
}

func decodeRefund(body []byte, outRefundNo string) (RefundInfo, []byte, error) {
	var info RefundInfo
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&info); err != nil {
		return info, body, fmt.Errorf("%w: refund answer: %w", ErrInvalid, err)
	}
	if _, err := info.Check(outRefundNo); err != nil {
		return info, body, err
	}
	return info, body, nil
}

// OpenRefundNotification verifies and decrypts a refund notification: the platform signature
// (ErrSerial, ErrTimestamp, ErrSignature), the envelope, a REFUND.* event of an encrypted
// resource (ErrInvalid), the resource (ErrDecrypt), and the refund: ours (mchid), well formed,
// a known refund_status (ErrInvalid). Whether the refund is one we asked for is for the caller.
func (c *Client) OpenRefundNotification(h http.Header, body []byte) (Notification, RefundInfo, error) {
	var n Notification
	var r RefundInfo
	if len(body) > MaxNotification {
		return n, r, fmt.Errorf("%w: body of %d bytes", ErrInvalid, len(body))
	}
	if err := c.verifier.Verify(h, body); err != nil {
		return n, r, err
	}
	if err := json.Unmarshal(body, &n); err != nil {
		return n, r, fmt.Errorf("%w: notification: %w", ErrInvalid, err)
	}
	switch {
	case n.ID == "" || len(n.ID) > 64:
		return n, r, fmt.Errorf("%w: notification id", ErrInvalid)
	case n.EventType != EventRefundSuccess && n.EventType != EventRefundAbnormal && n.EventType != EventRefundClosed:
		return n, r, fmt.Errorf("%w: event %.64q", ErrInvalid, n.EventType)
	case n.ResourceType != ResourceEncrypted || n.Resource.Algorithm != AlgorithmAESGCM:
		return n, r, fmt.Errorf("%w: resource %.64q, algorithm %.64q", ErrInvalid, n.ResourceType, n.Resource.Algorithm)
	}
	plain, err := DecryptResource(c.apiV3Key, n.Resource)
	if err != nil {
		return n, r, err
	}
	if err := json.Unmarshal(plain, &r); err != nil {
		return n, r, fmt.Errorf("%w: refund: %w", ErrInvalid, err)
	}
	if r.MchID != c.mchID {
		return n, r, fmt.Errorf("%w: mchid %.32q is not ours", ErrInvalid, r.MchID)
	}
	if r.RefundStatus == "" {
		return n, r, fmt.Errorf("%w: no refund_status", ErrInvalid)
	}
	if _, err := r.Check(""); err != nil {
		return n, r, err
	}
	return n, r, nil
}

// RefundAdapter is WeChat Pay as a channel.RefundAdapter.
type RefundAdapter struct {
	client    *Client
	notifyURL string
}

// NewRefundAdapter returns the refund adapter of c; refunds are requested with notifyURL.
func NewRefundAdapter(c *Client, notifyURL string) *RefundAdapter {
	return &RefundAdapter{client: c, notifyURL: notifyURL}
}

// Name implements channel.RefundAdapter.
func (a *RefundAdapter) Name() string { return Channel }

// finalRefusals are verified error codes of a refund request after which no money moved and
// none will for this request.
var finalRefusals = map[string]bool{"PARAM_ERROR": true, "INVALID_REQUEST": true, "RESOURCE_NOT_EXISTS": true,
	"ORDER_NOT_EXIST": true, "NO_AUTH": true, "MCH_NOT_EXISTS": true, "APPID_MCHID_NOT_MATCH": true}

// Refund implements channel.RefundAdapter.
func (a *RefundAdapter) Refund(ctx context.Context, r channel.Refund) (channel.RefundOutcome, error) {
	info, raw, err := a.client.Refund(ctx, RefundRequest{OutRefundNo: r.RefundNo, TransactionID: r.ChannelTradeNo,
		OutTradeNo: r.OrderNo, Reason: truncate(r.Reason, 80), NotifyURL: a.notifyURL, Refund: int64(r.Amount), Total: int64(r.PaidAmount)})
	var ae *APIError
	if errors.As(err, &ae) && ae.Verified && ae.Status/100 == 4 {
		st := channel.RefundUnknown
		if finalRefusals[ae.Code] {
			st = channel.RefundFailed
		}
		return channel.RefundOutcome{Status: st, Detail: clip(ae.Code + " " + ae.Message), Raw: raw}, nil
	}
	if err != nil {
		return channel.RefundOutcome{}, err
	}
	return outcome(info, raw, r)
}

// QueryRefund implements channel.RefundAdapter.
func (a *RefundAdapter) QueryRefund(ctx context.Context, r channel.Refund) (channel.RefundOutcome, error) {
	info, raw, err := a.client.QueryRefund(ctx, r.RefundNo)
	if errors.Is(err, ErrRefundNotExist) {
		return channel.RefundOutcome{}, fmt.Errorf("%w: %w", channel.ErrRefundNotFound, err)
	}
	if err != nil {
		return channel.RefundOutcome{}, err
	}
	return outcome(info, raw, r)
}

// RefundOutcome maps a verified refund (answer or notification) of r to its outcome.
func RefundOutcome(info RefundInfo, raw []byte, r channel.Refund) (channel.RefundOutcome, error) {
	return outcome(info, raw, r)
}

func outcome(info RefundInfo, raw []byte, r channel.Refund) (channel.RefundOutcome, error) {
	at, err := info.Check(r.RefundNo)
	if err != nil {
		return channel.RefundOutcome{}, err
	}
	o := channel.RefundOutcome{ChannelRefundNo: info.RefundID, Detail: "refund status " + info.State(), Raw: withoutAccount(raw)}
	switch info.State() {
	case RefundSuccess:
		o.Status, o.Amount, o.At = channel.RefundSuccess, money.Fen(info.Amount.Refund), at
	case RefundProcessing:
		o.Status = channel.RefundProcessing
	case RefundClosed:
		o.Status = channel.RefundFailed
	default: // ABNORMAL: not final
		o.Status = channel.RefundUnknown
	}
	return o, nil
}

// withoutAccount drops user_received_account (the payer's card or balance) before storage.
func withoutAccount(raw []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	delete(m, "user_received_account")
	out, _ := json.Marshal(m)
	return out
}

func clip(s string) string {
	if len(s) <= 200 {
		return s
	}
	s = s[:200]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
