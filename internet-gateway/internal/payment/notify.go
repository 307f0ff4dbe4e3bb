package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/internet-gateway/internal/alipay"
	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/unionpay"
	"finepay/internet-gateway/internal/wechat"
	"finepay/shared/clip"
	"finepay/shared/money"
)

// Rejection reasons, the reason label of gateway_notifications_rejected_total.
const (
	ReasonSignature    = "signature"
	ReasonSerial       = "serial"
	ReasonTimestamp    = "timestamp"
	ReasonCertificate  = "certificate"
	ReasonDecrypt      = "decrypt"
	ReasonInvalid      = "invalid"
	ReasonUnknownOrder = "unknown_order"
	ReasonAmount       = "amount"
	ReasonUnconfirmed  = "unconfirmed"
)

// reasons of each channel, so that every series starts at zero.
var reasons = map[string][]string{
	wechat.Channel:   {ReasonSignature, ReasonSerial, ReasonTimestamp, ReasonDecrypt, ReasonInvalid, ReasonUnknownOrder, ReasonAmount},
	alipay.Channel:   {ReasonSignature, ReasonInvalid, ReasonUnknownOrder, ReasonAmount},
	unionpay.Channel: {ReasonSignature, ReasonCertificate, ReasonInvalid, ReasonUnknownOrder, ReasonAmount, ReasonUnconfirmed},
}

// ErrUnconfirmed is a UnionPay success notification that the confirming query contradicts.
var ErrUnconfirmed = errors.New("payment: the channel's query does not confirm the notification")

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

// Transient is the error of a notification that could not be decided now (the confirming query
// failed or the payment is still processing): nothing was recorded and the channel must resend.
type Transient struct{ Cause error }

func (e *Transient) Error() string {
	return "payment: notification not decided yet: " + e.Cause.Error()
}
func (e *Transient) Unwrap() error { return e.Cause }

// reasonOf maps a verification failure to its reason.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, wechat.ErrSerial):
		return ReasonSerial
	case errors.Is(err, wechat.ErrTimestamp):
		return ReasonTimestamp
	case errors.Is(err, wechat.ErrSignature), errors.Is(err, alipay.ErrSignature), errors.Is(err, unionpay.ErrSignature):
		return ReasonSignature
	case errors.Is(err, unionpay.ErrCertificate):
		return ReasonCertificate
	case errors.Is(err, wechat.ErrDecrypt):
		return ReasonDecrypt
	case errors.Is(err, ErrUnknownOrder):
		return ReasonUnknownOrder
	case errors.Is(err, ErrAmount):
		return ReasonAmount
	case errors.Is(err, ErrUnconfirmed):
		return ReasonUnconfirmed
	default:
		return ReasonInvalid
	}
}

// Opener verifies and decrypts WeChat notifications (implemented by *wechat.Client).
type Opener interface {
	OpenNotification(h http.Header, body []byte) (wechat.Notification, wechat.Transaction, error)
}

// AlipayOpener verifies Alipay notifications (implemented by *alipay.Client).
type AlipayOpener interface {
	OpenNotification(body []byte) (alipay.Notification, error)
}

// UnionPayOpener verifies UnionPay notifications and confirms them by a query (implemented by
// *unionpay.Client).
type UnionPayOpener interface {
	OpenNotification(body []byte) (unionpay.Notification, error)
	Query(ctx context.Context, orderID string, txnTime time.Time) (unionpay.Result, map[string]string, error)
}

// Raw is a notification request as received.
type Raw struct {
	RemoteAddr string
	Header     http.Header
	Body       []byte
	Truncated  bool // the body was longer than the limit and was cut
}

// NotificationsConfig configures Notifications. A channel whose opener is nil is not served.
type NotificationsConfig struct {
	Store    *store.Store
	Recorder *Recorder
	WeChat   Opener
	Alipay   AlipayOpener
	UnionPay UnionPayOpener
	Now      func() time.Time
	Logger   *slog.Logger
	Registry prometheus.Registerer // gets the notification counters; nil = none
}

// Notifications handles channel notifications: verify, then record the payment and store the
// notification as received, with its verdict.
type Notifications struct {
	store    *store.Store
	recorder *Recorder
	wechat   Opener
	alipay   AlipayOpener
	unionpay UnionPayOpener
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
	n := &Notifications{store: cfg.Store, recorder: cfg.Recorder, wechat: cfg.WeChat, alipay: cfg.Alipay, unionpay: cfg.UnionPay,
		now: cfg.Now, log: cfg.Logger,
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_notifications_received_total",
			Help: "Channel notifications received (stored raw), by channel."}, []string{"channel"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_notifications_rejected_total",
			Help: "Channel notifications rejected as forged or invalid, by channel and reason."}, []string{"channel", "reason"}),
	}
	// Start every series at zero, so that an alert on the rejection rate sees it before the
	// first forged notification arrives.
	for _, ch := range n.Channels() {
		n.received.WithLabelValues(ch)
		for _, r := range reasons[ch] {
			n.rejected.WithLabelValues(ch, r)
		}
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(n.received, n.rejected)
	}
	return n
}

// Channels lists the channels whose notifications are served.
func (n *Notifications) Channels() []string {
	var out []string
	if n.wechat != nil {
		out = append(out, wechat.Channel)
	}
	if n.alipay != nil {
		out = append(out, alipay.Channel)
	}
	if n.unionpay != nil {
		out = append(out, unionpay.Channel)
	}
	return out
}

// Verdict is the outcome of an accepted notification.
type Verdict struct {
	NotificationID int64 // row in notifications
	Duplicate      bool
	// Ignored is set for a genuine notification that asks for nothing (a trade not paid, a
	// failed payment): it is answered as received.
	Ignored bool
	Payment store.Payment
}

// privateHeaders are not stored with a notification.
var privateHeaders = map[string]bool{"Cookie": true, "Authorization": true}

// opened is what a verified notification asks for: a payment to record, or nothing (ignore
// says why).
type opened struct {
	conf                         Confirmation
	ignore                       string
	eventID, outTradeNo, tradeNo string
}

// handle runs the steps every channel shares: (a) open the notification in memory (verify and
// check, per channel); (b) store it with its verdict: an accepted one (or a duplicate) in the
// transaction that records its payment (see Recorder.Record), a rejected or ignored one in a
// transaction of its own that changes nothing else. A forged or invalid notification returns
// *Rejected (and changed nothing but its own row); *Transient asks the channel to resend; any
// other error is a storage failure, after which the channel must resend.
//
// Every delivery is stored as received (headers and body) with what was decided about it, but
// only when its outcome commits: if the process dies before that commit, nothing of the
// delivery is recorded, and since the channel was not answered 2xx it resends the notification.
// A delivery that cannot be decided now (Transient) or whose payment could not be stored is
// stored with verdict received, so that each delivery still leaves its row.
func (n *Notifications) handle(ctx context.Context, ch string, raw Raw, limit int, open func(ctx context.Context) (opened, error)) (Verdict, error) {
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
	row := store.Notification{Channel: ch, ReceivedAt: n.now(), RemoteAddr: raw.RemoteAddr, Headers: string(hjson), Body: raw.Body}

	if raw.Truncated {
		return n.reject(ctx, row, fmt.Errorf("body larger than %d bytes", limit), opened{})
	}
	o, err := open(ctx)
	var tr *Transient
	switch {
	case errors.As(err, &tr):
		v, serr := n.storeAlone(ctx, row, store.VerdictReceived, clip.Text(err.Error(), 500), o)
		n.log.Warn("payment: notification not decided, the channel will resend", "notification", v.NotificationID, "channel", ch, "err", err)
		if serr != nil {
			return v, serr
		}
		return v, err
	case err != nil:
		return n.reject(ctx, row, err, o)
	}
	if o.ignore != "" {
		v, err := n.storeAlone(ctx, row, store.VerdictIgnored, clip.Text(o.ignore, 500), o)
		v.Ignored = true
		return v, err
	}
	// The notification's row, with its verdict, is committed with the payment, in its transaction.
	note := decided(row, store.VerdictAccepted, "", o, n.now()) // or duplicate, see Recorder.record
	res, id, err := n.recorder.record(ctx, o.conf, &note)
	switch {
	case errors.Is(err, ErrUnknownOrder) || errors.Is(err, ErrAmount):
		return n.reject(ctx, row, err, o)
	case err != nil:
		// The payment's transaction rolled back: keep the delivery as received, undecided.
		sv, serr := n.storeAlone(ctx, row, store.VerdictReceived, clip.Text("not recorded: "+err.Error(), 500), o)
		if serr != nil {
			n.log.Error("payment: store undecided notification", "channel", ch, "err", serr)
		}
		return sv, err
	}
	n.received.WithLabelValues(ch).Inc()
	return Verdict{NotificationID: id, Duplicate: res.Duplicate, Payment: res.Payment}, nil
}

// decided is row with a verdict and what the notification said of itself, bounded (it may come
// from unverified input).
func decided(row store.Notification, verdict, reason string, o opened, at time.Time) store.Notification {
	row.Verdict, row.Reason = verdict, reason
	row.EventID, row.OutTradeNo, row.ChannelTradeNo = clip.Text(o.eventID, 64), clip.Text(o.outTradeNo, 64), clip.Text(o.tradeNo, 64)
	if verdict != store.VerdictReceived {
		row.DecidedAt = at
	}
	return row
}

// storeAlone stores a notification that records no payment with its verdict, in its own
// transaction (one statement).
func (n *Notifications) storeAlone(ctx context.Context, row store.Notification, verdict, reason string, o opened) (Verdict, error) {
	id, err := n.store.NotificationInsert(ctx, n.store.DB, decided(row, verdict, reason, o, n.now()))
	if err != nil {
		return Verdict{}, err
	}
	n.received.WithLabelValues(row.Channel).Inc()
	return Verdict{NotificationID: id}, nil
}

// HandleWeChat handles a WeChat Pay notification: verify signature, serial and timestamp,
// decrypt and validate it, check that the order exists and the amount is the order's, record
// the payment.
func (n *Notifications) HandleWeChat(ctx context.Context, raw Raw) (Verdict, error) {
	return n.handle(ctx, wechat.Channel, raw, wechat.MaxNotification, func(context.Context) (opened, error) {
		note, tx, err := n.wechat.OpenNotification(raw.Header, raw.Body)
		o := opened{eventID: note.ID, outTradeNo: tx.OutTradeNo, tradeNo: tx.TransactionID}
		if err != nil {
			return o, err
		}
		paidAt, err := tx.CheckPaid(tx.AppID, tx.MchID) // validated by OpenNotification; this returns the time
		if err != nil {
			return o, err
		}
		o.conf = Confirmation{Channel: wechat.Channel, ChannelTradeNo: tx.TransactionID, OrderNo: tx.OutTradeNo,
			Amount: money.Fen(tx.Amount.Total), PaidAt: paidAt, NotificationID: note.ID, Source: store.SourceNotification}
		return o, nil
	})
}

// HandleAlipay handles an Alipay notification: verify the RSA2 signature and the content; a
// paid trade (TRADE_SUCCESS or TRADE_FINISHED) of a known order for its amount is recorded;
// another trade status asks for nothing.
func (n *Notifications) HandleAlipay(ctx context.Context, raw Raw) (Verdict, error) {
	return n.handle(ctx, alipay.Channel, raw, alipay.MaxNotification, func(context.Context) (opened, error) {
		note, err := n.alipay.OpenNotification(raw.Body)
		o := opened{eventID: note.NotifyID, outTradeNo: note.OutTradeNo, tradeNo: note.TradeNo}
		if err != nil {
			return o, err
		}
		if !note.Paid() {
			o.ignore = "trade_status " + note.TradeStatus
			return o, nil
		}
		o.conf = Confirmation{Channel: alipay.Channel, ChannelTradeNo: note.TradeNo, OrderNo: note.OutTradeNo, Amount: note.TotalAmount,
			PaidAt: note.PaidAt, NotificationID: note.NotifyID, Source: store.SourceNotification}
		return o, nil
	})
}

// HandleUnionPay handles a UnionPay backUrl notification: verify the signature and its
// certificate chain and the content; a consume with respCode 00 or A6 of a known order for its
// amount is confirmed by a query at UnionPay, then recorded; another notification asks for
// nothing. A query that fails, or a payment still processing, asks UnionPay to resend.
func (n *Notifications) HandleUnionPay(ctx context.Context, raw Raw) (Verdict, error) {
	return n.handle(ctx, unionpay.Channel, raw, unionpay.MaxNotification, func(ctx context.Context) (opened, error) {
		note, err := n.unionpay.OpenNotification(raw.Body)
		o := opened{eventID: note.QueryID, outTradeNo: note.OrderID, tradeNo: note.QueryID}
		if err != nil {
			return o, err
		}
		switch {
		case note.TxnType != unionpay.TxnTypeConsume:
			o.ignore = "txnType " + note.TxnType
			return o, nil
		case !note.Succeeded():
			o.ignore = "respCode " + note.RespCode + " " + note.RespMsg
			return o, nil
		}
		order, err := n.store.OrderGet(ctx, n.store.DB, note.OrderID, false)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && order.Channel != unionpay.Channel):
			return o, fmt.Errorf("%w: %s", ErrUnknownOrder, note.OrderID)
		case err != nil:
			return o, &Transient{Cause: err}
		case order.Amount != note.TxnAmt:
			return o, fmt.Errorf("%w: %s paid %d, order %d", ErrAmount, note.OrderID, note.TxnAmt, order.Amount)
		case note.TxnTime != unionpay.TxnTime(order.CreatedAt):
			return o, fmt.Errorf("%w: txnTime %s is not the order's", unionpay.ErrInvalid, note.TxnTime)
		}
		r, _, err := n.unionpay.Query(ctx, note.OrderID, order.CreatedAt)
		switch {
		case errors.Is(err, unionpay.ErrNoSuchTransaction):
			return o, fmt.Errorf("%w: UnionPay knows no transaction %s", ErrUnconfirmed, note.OrderID)
		case err != nil:
			return o, &Transient{Cause: fmt.Errorf("confirming query: %w", err)}
		case !r.Paid() && unionpay.Processing(r.OrigRespCode):
			return o, &Transient{Cause: fmt.Errorf("confirming query: %s still processing (%s)", note.OrderID, r.OrigRespCode)}
		case !r.Paid():
			return o, fmt.Errorf("%w: origRespCode %s", ErrUnconfirmed, r.OrigRespCode)
		case r.QueryID != note.QueryID || r.TxnAmt != note.TxnAmt:
			return o, fmt.Errorf("%w: the query answers queryId %s for %d", ErrUnconfirmed, r.QueryID, r.TxnAmt)
		}
		o.conf = Confirmation{Channel: unionpay.Channel, ChannelTradeNo: note.QueryID, OrderNo: note.OrderID, Amount: note.TxnAmt,
			PaidAt: r.PaidAt, NotificationID: note.QueryID, Source: store.SourceNotification}
		return o, nil
	})
}

// reject records a rejection (the notification's row with verdict rejected, in its own
// transaction) and returns it as *Rejected, or the storage error.
func (n *Notifications) reject(ctx context.Context, row store.Notification, cause error, o opened) (Verdict, error) {
	reason := reasonOf(cause)
	n.rejected.WithLabelValues(row.Channel, reason).Inc()
	v, err := n.storeAlone(ctx, row, store.VerdictRejected, reason+": "+clip.Text(cause.Error(), 500), o)
	n.log.Warn("payment: notification rejected", "notification", v.NotificationID, "channel", row.Channel, "reason", reason, "err", cause)
	if err != nil {
		return v, err
	}
	return v, &Rejected{Reason: reason, Cause: cause}
}
