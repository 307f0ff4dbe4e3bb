package alipaysim

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
	OutTradeNo    string         `json:"out_trade_no"`
	TradeNo       string         `json:"trade_no"`
	Subject       string         `json:"subject"`
	Total         int64          `json:"total"` // fen
	TotalAmount   string         `json:"total_amount"`
	NotifyURL     string         `json:"notify_url"`
	TimeExpire    string         `json:"time_expire,omitempty"`
	CreatedAt     string         `json:"created_at"`
	QRCode        string         `json:"qr_code"`
	PayURL        string         `json:"pay_url"`
	TradeStatus   string         `json:"trade_status"`
	GmtPayment    string         `json:"gmt_payment,omitempty"`
	DropNotify    bool           `json:"drop_notifications"`
	Notifications []resend.State `json:"notifications,omitempty"`
	// Refunded is the money paid back (its refunds that succeeded), fen; Refunds its refunds.
	Refunded int64         `json:"refunded"`
	Refunds  []RefundState `json:"refunds,omitempty"`
}

// Snapshot copies the orders and their notifications, oldest first.
func (s *Sim) Snapshot() []OrderState {
	s.mu.Lock()
	now := s.now()
	out := make([]OrderState, 0, len(s.orders))
	var ds [][]*resend.Delivery
	for _, o := range s.orders {
		o.settle(now)
		st := OrderState{OutTradeNo: o.OutTradeNo, TradeNo: o.TradeNo, Subject: o.Subject, Total: o.Total, TotalAmount: o.TotalAmount,
			NotifyURL: o.NotifyURL, TimeExpire: o.TimeExpire, CreatedAt: shanghai.Time(o.CreatedAt), QRCode: o.qrCode(),
			PayURL: s.payURL(o), TradeStatus: o.Status, DropNotify: o.drop, Refunded: s.refunded(o), Refunds: s.refundStates(o)}
		if !o.PaidAt.IsZero() {
			st.GmtPayment = shanghai.Time(o.PaidAt)
		}
		out = append(out, st)
		ds = append(ds, append([]*resend.Delivery(nil), o.deliveries...))
	}
	s.mu.Unlock()
	for i := range out {
		for _, d := range ds[i] {
			out[i].Notifications = append(out[i].Notifications, s.queue.State(d))
		}
	}
	return out
}

// Notification returns the last notification of an order exactly as sent (URL, headers, form
// body) with its attempts, so that a test can replay a genuine notification.
func (s *Sim) Notification(outTradeNo string) (resend.State, error) {
	s.mu.Lock()
	o, ok := s.byTrade[outTradeNo]
	var d *resend.Delivery
	if ok && len(o.deliveries) > 0 {
		d = o.deliveries[len(o.deliveries)-1]
	}
	s.mu.Unlock()
	if d == nil {
		return resend.State{}, ErrNotFound
	}
	return s.queue.State(d), nil
}

func (s *Sim) handleNotification(c echo.Context) error {
	st, err := s.Notification(c.Param("out_trade_no"))
	if err != nil {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "no notification for this order: unknown or not paid")
	}
	return c.JSON(http.StatusOK, st)
}

// DropNotifications makes the order's notifications never arrive: those not sent yet are
// dropped, and a payment to come sends none.
func (s *Sim) DropNotifications(outTradeNo string) error {
	s.mu.Lock()
	o, ok := s.byTrade[outTradeNo]
	if !ok {
		s.mu.Unlock()
		return ErrNotFound
	}
	o.drop = true
	ds := append([]*resend.Delivery(nil), o.deliveries...)
	s.mu.Unlock()
	for _, d := range ds {
		s.queue.Drop(d)
	}
	s.log.Info("alipay notifications of the order will be dropped", "out_trade_no", outTradeNo)
	return nil
}

func (s *Sim) handleDrop(c echo.Context) error {
	if err := s.DropNotifications(c.Param("out_trade_no")); errors.Is(err, ErrNotFound) {
		return apierr.New(http.StatusNotFound, "ACQ.TRADE_NOT_EXIST", "交易不存在")
	}
	return c.JSON(http.StatusOK, map[string]any{"out_trade_no": c.Param("out_trade_no"), "drop_notifications": true})
}

type metrics struct {
	orders    *prometheus.CounterVec
	sent      prometheus.Counter
	acked     prometheus.Counter
	abandoned prometheus.Counter
}

func (m *metrics) init(reg prometheus.Registerer) error {
	m.orders = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sandbox", Subsystem: "alipay", Name: "orders_total",
		Help: "Alipay orders by event: created, paid, closed."}, []string{"event"})
	m.sent = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sandbox", Subsystem: "alipay", Name: "notifications_sent_total",
		Help: "Notification requests sent, duplicates and resends included."})
	m.acked = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sandbox", Subsystem: "alipay", Name: "notifications_acknowledged_total",
		Help: "Notifications the merchant answered success."})
	m.abandoned = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sandbox", Subsystem: "alipay", Name: "notifications_abandoned_total",
		Help: "Notifications given up after the last resend."})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.orders, m.sent, m.acked, m.abandoned} {
		if err := reg.Register(c); err != nil {
			return errors.Join(errors.New("alipaysim: registering metrics"), err)
		}
	}
	return nil
}
