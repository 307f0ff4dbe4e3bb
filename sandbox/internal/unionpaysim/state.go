package unionpaysim

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/resend"
	"finepay/sandbox/internal/shanghai"
)

// OrderState is an order as /_sandbox/state shows it.
type OrderState struct {
	OrderID      string        `json:"order_id"`
	TxnTime      string        `json:"txn_time"`
	TxnAmt       int64         `json:"txn_amt"` // fen
	BackURL      string        `json:"back_url"`
	FrontURL     string        `json:"front_url,omitempty"`
	PayTimeout   string        `json:"pay_timeout,omitempty"`
	CreatedAt    string        `json:"created_at"`
	QRCode       string        `json:"qr_code"`
	PayURL       string        `json:"pay_url"`
	Paid         bool          `json:"paid"`
	QueryID      string        `json:"query_id,omitempty"`
	TraceTime    string        `json:"trace_time,omitempty"`
	DropNotify   bool          `json:"drop_notifications"`
	Notification *resend.State `json:"notification,omitempty"`
	// Refunded is the money paid back (its refunds with origRespCode 00), fen; Refunds its refunds.
	Refunded int64         `json:"refunded"`
	Refunds  []RefundState `json:"refunds,omitempty"`
}

// Snapshot copies the orders and their notifications, oldest first.
func (s *Sim) Snapshot() []OrderState {
	s.mu.Lock()
	out := make([]OrderState, 0, len(s.orders))
	var ds []*resend.Delivery
	for _, o := range s.orders {
		out = append(out, OrderState{OrderID: o.OrderID, TxnTime: o.TxnTime, TxnAmt: o.TxnAmt, BackURL: o.BackURL,
			FrontURL: o.FrontURL, PayTimeout: o.PayTimeout, CreatedAt: shanghai.Time(o.CreatedAt), QRCode: o.qrCode(),
			PayURL: s.payURL(o), Paid: o.Paid, QueryID: o.QueryID, TraceTime: o.TraceTime, DropNotify: o.drop,
			Refunded: s.refunded(o), Refunds: s.refundStates(o)})
		ds = append(ds, o.delivery)
	}
	s.mu.Unlock()
	for i, d := range ds {
		if d != nil {
			st := s.queue.State(d)
			out[i].Notification = &st
		}
	}
	return out
}

// Notification returns the notification of the latest order with orderId exactly as sent (URL,
// headers, form body) with its attempts, so that a test can replay a genuine notification.
func (s *Sim) Notification(orderID string) (resend.State, error) {
	s.mu.Lock()
	o, ok := s.byOrder[orderID]
	var d *resend.Delivery
	if ok {
		d = o.delivery
	}
	s.mu.Unlock()
	if d == nil {
		return resend.State{}, ErrNotFound
	}
	return s.queue.State(d), nil
}

func (s *Sim) handleNotification(c echo.Context) error {
	st, err := s.Notification(c.Param("order_id"))
	if err != nil {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "no notification for this order: unknown or not paid")
	}
	return c.JSON(http.StatusOK, st)
}

// DropNotifications makes the notification of the latest order with orderId never arrive.
func (s *Sim) DropNotifications(orderID string) error {
	s.mu.Lock()
	o, ok := s.byOrder[orderID]
	if !ok {
		s.mu.Unlock()
		return ErrNotFound
	}
	o.drop = true
	d := o.delivery
	s.mu.Unlock()
	if d != nil {
		s.queue.Drop(d)
	}
	s.log.Info("unionpay notifications of the order will be dropped", "order_id", orderID)
	return nil
}

func (s *Sim) handleDrop(c echo.Context) error {
	if err := s.DropNotifications(c.Param("order_id")); errors.Is(err, ErrNotFound) {
		return apierr.New(http.StatusNotFound, "34", "查无此交易")
	}
	return c.JSON(http.StatusOK, map[string]any{"order_id": c.Param("order_id"), "drop_notifications": true})
}

type metrics struct {
	orders    *prometheus.CounterVec
	sent      prometheus.Counter
	acked     prometheus.Counter
	abandoned prometheus.Counter
}

func (m *metrics) init(reg prometheus.Registerer) error {
	m.orders = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sandbox", Subsystem: "unionpay", Name: "orders_total",
		Help: "UnionPay orders by event: created, paid."}, []string{"event"})
	m.sent = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sandbox", Subsystem: "unionpay", Name: "notifications_sent_total",
		Help: "Notification requests sent, duplicates and resends included."})
	m.acked = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sandbox", Subsystem: "unionpay", Name: "notifications_acknowledged_total",
		Help: "Notifications the merchant answered HTTP 200."})
	m.abandoned = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sandbox", Subsystem: "unionpay", Name: "notifications_abandoned_total",
		Help: "Notifications given up after the last resend."})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.orders, m.sent, m.acked, m.abandoned} {
		if err := reg.Register(c); err != nil {
			return errors.Join(errors.New("unionpaysim: registering metrics"), err)
		}
	}
	return nil
}
