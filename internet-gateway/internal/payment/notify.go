package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/wechat"
	"finepay/shared/money"
)

// Rejection reasons, the reason label of gateway_notifications_rejected_total.
const (
	ReasonSignature    = "signature"
	ReasonSerial       = "serial"
	ReasonTimestamp    = "timestamp"
	ReasonDecrypt      = "decrypt"
	ReasonInvalid      = "invalid"
	ReasonUnknownOrder = "unknown_order"
	ReasonAmount       = "amount"
)

// Rejected is the error of a notification that is forged or invalid. It was stored with
// verdict rejected; the channel is answered 4xx.
type Rejected struct {
	Reason string
	Cause  error
}

func (e *Rejected) Error() string {
	return "payment: notification rejected (" + e.Reason + "): " + e.Cause.Error()
}
func (e *Rejected) Unwrap() error { return e.Cause }

// reasonOf maps a verification failure to its reason.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, wechat.ErrSerial):
		return ReasonSerial
	case errors.Is(err, wechat.ErrTimestamp):
		return ReasonTimestamp
	case errors.Is(err, wechat.ErrSignature):
		return ReasonSignature
	case errors.Is(err, wechat.ErrDecrypt):
		return ReasonDecrypt
	case errors.Is(err, ErrUnknownOrder):
		return ReasonUnknownOrder
	case errors.Is(err, ErrAmount):
		return ReasonAmount
	default:
		return ReasonInvalid
	}
}

// Opener verifies and decrypts WeChat notifications (implemented by *wechat.Client).
type Opener interface {
	OpenNotification(h http.Header, body []byte) (wechat.Notification, wechat.Transaction, error)
}

// Raw is a notification request as received.
type Raw struct {
	RemoteAddr string
	Header     http.Header
	Body       []byte
	Truncated  bool // the body was longer than the limit and was cut
}

// NotificationsConfig configures Notifications.
type NotificationsConfig struct {
	Store    *store.Store
	Recorder *Recorder
	WeChat   Opener
	AppID    string
	MchID    string
	Now      func() time.Time
	Logger   *slog.Logger
	Registry prometheus.Registerer // gets the notification counters; nil = none
}

// Notifications handles channel notifications: store raw, verify, record.
type Notifications struct {
	store    *store.Store
	recorder *Recorder
	wechat   Opener
	now      func() time.Time
	log      *slog.Logger
	received *prometheus.CounterVec
	rejected *prometheus.CounterVec
}

// NewNotifications returns the notification handler.
func NewNotifications(cfg NotificationsConfig) *Notifications {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifications{store: cfg.Store, recorder: cfg.Recorder, wechat: cfg.WeChat, now: cfg.Now, log: cfg.Logger,
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_notifications_received_total",
			Help: "Channel notifications received (stored raw), by channel."}, []string{"channel"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_notifications_rejected_total",
			Help: "Channel notifications rejected as forged or invalid, by channel and reason."}, []string{"channel", "reason"}),
	}
	// Start every series at zero, so that an alert on the rejection rate sees it before the
	// first forged notification arrives.
	n.received.WithLabelValues("wechat")
	for _, r := range []string{ReasonSignature, ReasonSerial, ReasonTimestamp, ReasonDecrypt, ReasonInvalid, ReasonUnknownOrder, ReasonAmount} {
		n.rejected.WithLabelValues("wechat", r)
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(n.received, n.rejected)
	}
	return n
}

// Verdict is the outcome of an accepted notification.
type Verdict struct {
	NotificationID int64 // row in notifications
	Duplicate      bool
	Payment        store.Payment
}

// privateHeaders are not stored with a notification.
var privateHeaders = map[string]bool{"Cookie": true, "Authorization": true}

// HandleWeChat handles a WeChat Pay notification: (a) store it raw in its own committed write;
// (b) verify signature, serial and timestamp, decrypt and validate it, check that the order
// exists and the amount is the order's; (c) record the payment (one transaction, see
// Recorder.Record). A forged or invalid notification returns *Rejected (and changed nothing
// but its own row); any other error is a storage failure, after which the channel must resend.
func (n *Notifications) HandleWeChat(ctx context.Context, raw Raw) (Verdict, error) {
	hdr := http.Header{}
	for k, v := range raw.Header {
		if !privateHeaders[http.CanonicalHeaderKey(k)] {
			hdr[k] = v
		}
	}
	hjson, err := json.Marshal(hdr)
	if err != nil {
		return Verdict{}, err
	}
	id, err := n.store.NotificationInsert(ctx, n.store.DB, store.Notification{
		Channel: wechat.Channel, ReceivedAt: n.now(), RemoteAddr: raw.RemoteAddr, Headers: string(hjson), Body: raw.Body,
	})
	if err != nil {
		return Verdict{}, err
	}
	n.received.WithLabelValues(wechat.Channel).Inc()
	v := Verdict{NotificationID: id}

	if raw.Truncated {
		return v, n.reject(ctx, id, fmt.Errorf("%w: body larger than %d bytes", wechat.ErrInvalid, wechat.MaxNotification), "", "", "")
	}
	note, tx, err := n.wechat.OpenNotification(raw.Header, raw.Body)
	if err != nil {
		return v, n.reject(ctx, id, err, note.ID, tx.OutTradeNo, tx.TransactionID)
	}
	paidAt, err := tx.CheckPaid(tx.AppID, tx.MchID) // validated by OpenNotification; this returns the time
	if err != nil {
		return v, n.reject(ctx, id, err, note.ID, tx.OutTradeNo, tx.TransactionID)
	}
	res, err := n.recorder.Record(ctx, Confirmation{
		Channel: wechat.Channel, ChannelTradeNo: tx.TransactionID, OrderNo: tx.OutTradeNo,
		Amount: money.Fen(tx.Amount.Total), PaidAt: paidAt, NotificationID: note.ID, Source: store.SourceNotification,
	})
	if errors.Is(err, ErrUnknownOrder) || errors.Is(err, ErrAmount) {
		return v, n.reject(ctx, id, err, note.ID, tx.OutTradeNo, tx.TransactionID)
	}
	if err != nil {
		return v, err
	}
	v.Duplicate, v.Payment = res.Duplicate, res.Payment
	verdict := store.VerdictAccepted
	if res.Duplicate {
		verdict = store.VerdictDuplicate
	}
	if err := n.store.NotificationDecide(ctx, n.store.DB, id, store.Decision{Verdict: verdict, EventID: note.ID,
		OutTradeNo: tx.OutTradeNo, ChannelTradeNo: tx.TransactionID, At: n.now()}); err != nil {
		// The payment is committed; only the bookkeeping of this delivery is missing.
		n.log.Error("payment: record notification verdict", "notification", id, "verdict", verdict, "err", err)
	}
	return v, nil
}

// reject records a rejection and returns it as *Rejected, or the storage error.
func (n *Notifications) reject(ctx context.Context, id int64, cause error, eventID, outTradeNo, tradeNo string) error {
	reason := reasonOf(cause)
	n.rejected.WithLabelValues(wechat.Channel, reason).Inc()
	n.log.Warn("payment: notification rejected", "notification", id, "channel", wechat.Channel, "reason", reason, "err", cause)
	detail := clean(cause.Error(), 500)
	if err := n.store.NotificationDecide(ctx, n.store.DB, id, store.Decision{Verdict: store.VerdictRejected,
		Reason: reason + ": " + detail, EventID: clean(eventID, 64), OutTradeNo: clean(outTradeNo, 64), ChannelTradeNo: clean(tradeNo, 64),
		At: n.now()}); err != nil {
		return err
	}
	return &Rejected{Reason: reason, Cause: cause}
}

// clean bounds text copied from unverified input to n bytes of valid UTF-8 without NUL, which
// every engine stores as text.
func clean(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "")
}
