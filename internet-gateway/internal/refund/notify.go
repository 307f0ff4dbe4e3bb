package refund

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/internet-gateway/internal/channel"
	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/unionpay"
	"finepay/internet-gateway/internal/wechat"
	"finepay/shared/clip"
	"finepay/shared/httpx"
)

// WeChatOpener verifies and decrypts WeChat refund notifications (implemented by *wechat.Client).
type WeChatOpener interface {
	OpenRefundNotification(h http.Header, body []byte) (wechat.Notification, wechat.RefundInfo, error)
}

// UnionPayOpener verifies UnionPay refund notifications (implemented by *unionpay.Client).
type UnionPayOpener interface {
	OpenRefundNotification(body []byte) (unionpay.Notification, error)
}

// Channel names of refund notifications in the notifications table.
const (
	NotificationWeChat   = "wechat.refund"
	NotificationUnionPay = "unionpay.refund"
)

// Rejection reasons of refund notifications.
const (
	ReasonSignature     = "signature"
	ReasonSerial        = "serial"
	ReasonTimestamp     = "timestamp"
	ReasonCertificate   = "certificate"
	ReasonDecrypt       = "decrypt"
	ReasonInvalid       = "invalid"
	ReasonUnknownRefund = "unknown_refund"
)

// errUnknownRefund is a notification of a refund the gateway never requested.
var errUnknownRefund = errors.New("refund: no such refund requested here")

// errTransient is a notification that could not be decided now (the confirming query failed):
// the channel must resend.
var errTransient = errors.New("refund: notification not decided yet")

func reasonOf(err error) string {
	switch {
	case errors.Is(err, wechat.ErrSerial):
		return ReasonSerial
	case errors.Is(err, wechat.ErrTimestamp):
		return ReasonTimestamp
	case errors.Is(err, wechat.ErrSignature), errors.Is(err, unionpay.ErrSignature):
		return ReasonSignature
	case errors.Is(err, unionpay.ErrCertificate):
		return ReasonCertificate
	case errors.Is(err, wechat.ErrDecrypt):
		return ReasonDecrypt
	case errors.Is(err, errUnknownRefund):
		return ReasonUnknownRefund
	}
	return ReasonInvalid
}

// Rejected is the error of a forged or invalid refund notification (stored, verdict rejected).
type Rejected struct {
	Reason string
	Cause  error
}

func (e *Rejected) Error() string {
	return "refund: notification rejected (" + e.Reason + "): " + e.Cause.Error()
}
func (e *Rejected) Unwrap() error { return e.Cause }

// NoteVerdict is what a refund notification did.
type NoteVerdict struct {
	NotificationID int64
	Duplicate      bool // genuine, but told nothing new
}

// noted is what a verified notification says: of which refund, and (once confirmed) the outcome.
type noted struct {
	refundNo, eventID, channelRefundNo string
	outcome                            channel.RefundOutcome
}

var privateHeaders = map[string]bool{"Cookie": true, "Authorization": true}

// handle stores a notification raw in its own write, opens it (verify, check, confirm), and
// applies the outcome: the same order as payment notifications.
func (s *Service) handle(ctx context.Context, ch, remote string, h http.Header, body []byte, truncated bool,
	open func(ctx context.Context) (noted, error)) (NoteVerdict, error) {
	hdr := http.Header{}
	for k, v := range h {
		if !privateHeaders[http.CanonicalHeaderKey(k)] {
			hdr[k] = v
		}
	}
	hjson, err := json.Marshal(hdr)
	if err != nil {
		return NoteVerdict{}, err
	}
	id, err := s.store.NotificationInsert(ctx, s.store.DB, store.Notification{Channel: ch, ReceivedAt: s.now(), RemoteAddr: remote,
		Headers: string(hjson), Body: body})
	if err != nil {
		return NoteVerdict{}, err
	}
	v := NoteVerdict{NotificationID: id}
	var n noted
	if truncated {
		err = fmt.Errorf("%w: body too large", wechat.ErrInvalid)
	} else {
		n, err = open(ctx)
	}
	decide := func(verdict, reason string) error {
		s.notes.WithLabelValues(ch, verdict).Inc()
		return s.store.NotificationDecide(ctx, s.store.DB, id, store.Decision{Verdict: verdict, Reason: clip.Text(reason, 500),
			EventID: clip.Text(n.eventID, 64), OutTradeNo: clip.Text(n.refundNo, 64), ChannelTradeNo: clip.Text(n.channelRefundNo, 64), At: s.now()})
	}
	switch {
	case errors.Is(err, errTransient):
		s.log.Warn("refund: notification not decided, the channel will resend", "notification", id, "channel", ch, "err", err)
		return v, err
	case err != nil:
		reason := reasonOf(err)
		s.log.Warn("refund: notification rejected", "notification", id, "channel", ch, "reason", reason, "err", err)
		if derr := decide(store.VerdictRejected, reason+": "+err.Error()); derr != nil {
			return v, derr
		}
		return v, &Rejected{Reason: reason, Cause: err}
	}
	_, emitted, err := s.settleReport(ctx, n.refundNo, n.outcome, SourceNotification)
	if err != nil {
		return v, err
	}
	v.Duplicate = !emitted
	verdict := store.VerdictAccepted
	if v.Duplicate {
		verdict = store.VerdictDuplicate
	}
	if err := decide(verdict, n.outcome.Detail); err != nil {
		s.log.Error("refund: record notification verdict", "notification", id, "err", err)
	}
	return v, nil
}

// HandleWeChat handles a WeChat refund notification: verify, decrypt, check that it is about a
// refund requested here (its refund number, channel and order), and apply its refund_status:
// SUCCESS refunded, CLOSED failed, ABNORMAL unknown (not final: still queried).
func (s *Service) HandleWeChat(ctx context.Context, remote string, h http.Header, body []byte, truncated bool) (NoteVerdict, error) {
	return s.handle(ctx, NotificationWeChat, remote, h, body, truncated, func(ctx context.Context) (noted, error) {
		note, info, err := s.wechat.OpenRefundNotification(h, body)
		n := noted{refundNo: info.OutRefundNo, eventID: note.ID, channelRefundNo: info.RefundID}
		if err != nil {
			return n, err
		}
		r, err := s.store.RefundGet(ctx, s.store.DB, info.OutRefundNo, false)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return n, fmt.Errorf("%w: %s", errUnknownRefund, info.OutRefundNo)
		case err != nil:
			return n, fmt.Errorf("%w: %w", errTransient, err)
		case r.Channel != wechat.Channel || r.OrderNo != info.OutTradeNo:
			return n, fmt.Errorf("%w: refund %s is of %s order %s", errUnknownRefund, r.RefundNo, r.Channel, r.OrderNo)
		}
		n.outcome, err = wechat.RefundOutcome(info, nil, toChannel(r))
		return n, err
	})
}

// HandleUnionPay handles a UnionPay refund notification (txnType 04): verify the signature and
// its certificate chain, check that it is about a refund requested here (orderId = refund
// number, txnTime, origQryId, amount), then confirm it by a query, whose answer is what is
// applied. A query that fails asks UnionPay to resend.
func (s *Service) HandleUnionPay(ctx context.Context, remote string, body []byte, truncated bool) (NoteVerdict, error) {
	return s.handle(ctx, NotificationUnionPay, remote, nil, body, truncated, func(ctx context.Context) (noted, error) {
		note, err := s.unionpay.OpenRefundNotification(body)
		n := noted{refundNo: note.OrderID, eventID: note.QueryID, channelRefundNo: note.QueryID}
		if err != nil {
			return n, err
		}
		f, _ := unionpay.ParseForm(body)
		r, err := s.store.RefundGet(ctx, s.store.DB, note.OrderID, false)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return n, fmt.Errorf("%w: %s", errUnknownRefund, note.OrderID)
		case err != nil:
			return n, fmt.Errorf("%w: %w", errTransient, err)
		case r.Channel != unionpay.Channel || r.TxnTime != note.TxnTime || f["origQryId"] != r.ChannelTradeNo:
			return n, fmt.Errorf("%w: refund %s (txnTime %s, origQryId %s) is not this one", errUnknownRefund, r.RefundNo, r.TxnTime, r.ChannelTradeNo)
		case note.TxnAmt != r.Amount:
			return n, fmt.Errorf("%w: txnAmt %d, refund of %d", unionpay.ErrInvalid, note.TxnAmt, r.Amount)
		}
		a, ok := s.adapters[unionpay.Channel]
		if !ok {
			return n, fmt.Errorf("%w: UnionPay refunds are not configured", errTransient)
		}
		cctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		o, err := a.QueryRefund(cctx, toChannel(r))
		if err != nil {
			return n, fmt.Errorf("%w: confirming query: %w", errTransient, err)
		}
		n.outcome = o
		return n, nil
	})
}

// readBody reads a notification body up to limit bytes, marking it truncated beyond.
func readBody(c echo.Context, limit int) ([]byte, bool, error) {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, int64(limit)+1))
	if err != nil {
		return nil, false, err
	}
	if len(body) > limit {
		return body[:limit], true, nil
	}
	return body, false, nil
}

// detached is a context that survives the channel hanging up, bounded.
func detached(c echo.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(c.Request().Context()), 15*time.Second)
}

// HandleWeChatHTTP is POST /notify/wechat/refund (the notify_url of refunds): 204 once applied
// (or told nothing new), 4xx {"code":"FAIL"} for a forged or invalid notification, 5xx when it
// could not be stored or decided, so that WeChat resends.
func (s *Service) HandleWeChatHTTP(c echo.Context) error {
	body, truncated, err := readBody(c, wechat.MaxNotification)
	if err != nil {
		return httpx.Wrap(http.StatusBadRequest, "FAIL", "unreadable body", err)
	}
	ctx, cancel := detached(c)
	defer cancel()
	_, err = s.HandleWeChat(ctx, c.Request().RemoteAddr, c.Request().Header, body, truncated)
	var rej *Rejected
	switch {
	case errors.As(err, &rej):
		status := http.StatusBadRequest
		if rej.Reason == ReasonSignature || rej.Reason == ReasonSerial || rej.Reason == ReasonTimestamp {
			status = http.StatusUnauthorized
		}
		return httpx.Wrap(status, "FAIL", "notification rejected: "+rej.Reason, err)
	case err != nil:
		return httpx.Wrap(http.StatusInternalServerError, "FAIL", "not stored, please resend", err)
	}
	return c.NoContent(http.StatusNoContent)
}

// HandleUnionPayHTTP is POST /notify/unionpay/refund (the backUrl of refunds): 200 ok once
// confirmed and applied; 400 for a forged or invalid notification; 503 when it cannot be decided
// yet and 500 when storage failed, so that UnionPay resends.
func (s *Service) HandleUnionPayHTTP(c echo.Context) error {
	body, truncated, err := readBody(c, unionpay.MaxNotification)
	if err != nil {
		return c.String(http.StatusBadRequest, "fail")
	}
	ctx, cancel := detached(c)
	defer cancel()
	_, err = s.HandleUnionPay(ctx, c.Request().RemoteAddr, body, truncated)
	var rej *Rejected
	switch {
	case errors.As(err, &rej):
		return c.String(http.StatusBadRequest, "fail: "+rej.Reason)
	case errors.Is(err, errTransient):
		return c.String(http.StatusServiceUnavailable, "retry")
	case err != nil:
		s.log.Error("refund: unionpay notification not stored", "err", err)
		return c.String(http.StatusInternalServerError, "fail")
	}
	return c.String(http.StatusOK, "ok")
}
