package wechatsim

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	orders    *prometheus.CounterVec
	sent      prometheus.Counter
	acked     prometheus.Counter
	abandoned prometheus.Counter
}

func (m *metrics) init(reg prometheus.Registerer) error {
	m.orders = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sandbox", Subsystem: "wechat", Name: "orders_total",
		Help: "WeChat orders by event: created, paid, closed.",
	}, []string{"event"})
	m.sent = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "sandbox", Subsystem: "wechat", Name: "notifications_sent_total",
		Help: "Notification requests sent, duplicates and resends included.",
	})
	m.acked = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "sandbox", Subsystem: "wechat", Name: "notifications_acknowledged_total",
		Help: "Notifications the merchant acknowledged with 200 or 204.",
	})
	m.abandoned = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "sandbox", Subsystem: "wechat", Name: "notifications_abandoned_total",
		Help: "Notifications given up after the last resend.",
	})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.orders, m.sent, m.acked, m.abandoned} {
		if err := reg.Register(c); err != nil {
			return errors.Join(errors.New("wechatsim: registering metrics"), err)
		}
	}
	return nil
}
