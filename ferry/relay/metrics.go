package relay

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the relay's Prometheus metrics.
type Metrics struct {
	BundlesSent      *prometheus.CounterVec // ferry_bundles_sent_total{lane}
	BundlesReceived  *prometheus.CounterVec // ferry_bundles_received_total{lane}
	BundlesRejected  *prometheus.CounterVec // ferry_bundles_rejected_total{reason}
	BundlesResent    *prometheus.CounterVec // ferry_bundles_resent_total{lane}
	MessagesSent     prometheus.Counter     // ferry_messages_sent_total
	MessagesReceived prometheus.Counter     // ferry_messages_received_total
	LinkUp           prometheus.Gauge       // ferry_link_up
	GapsFilled       *prometheus.CounterVec // ferry_lane_gaps_filled_total{lane}
	GapWaiting       *prometheus.GaugeVec   // ferry_lane_gap_waiting{lane}
}

// NewMetrics makes the metrics and registers them with reg when it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BundlesSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_bundles_sent_total",
			Help: "Bundles sent (each counted once, however often it was resent), by lane."}, []string{"lane"}),
		BundlesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_bundles_received_total",
			Help: "Bundles verified and committed to the inbox, by lane."}, []string{"lane"}),
		BundlesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_bundles_rejected_total",
			Help: "Bundles and acknowledgements refused, by reason (signature, decrypt, digest, gap, ...)."}, []string{"reason"}),
		BundlesResent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_bundles_resent_total",
			Help: "Bundles sent again, by lane: after a transport error or timeout, a sequence gap the peer reported, or (DMZ) a bundle handed out again because it was not acknowledged in time."}, []string{"lane"}),
		MessagesSent: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_messages_sent_total",
			Help: "Messages sent in bundles (each counted once)."}),
		MessagesReceived: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_messages_received_total",
			Help: "Messages newly committed to the inbox."}),
		LinkUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_link_up",
			Help: "1 when the link to the peer ferry works (intranet: the last exchange succeeded; DMZ: the peer called recently)."}),
		GapsFilled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_lane_gaps_filled_total",
			Help: "Outgoing lane numbers handed out to a producer that never committed them (rolled back or died), closed with a filler, by lane."}, []string{"lane"}),
		GapWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_lane_gap_waiting",
			Help: "1 while the sender waits for a missing number of the outgoing lane (a producer still committing it, or one that will never commit it, until the gap grace closes it); else 0."}, []string{"lane"}),
	}
	// Every known reason starts at zero, so that an alert on the rate of rejections sees the
	// series before the first one happens.
	for _, reason := range []string{"limit", "signature", "decrypt", "digest", "sequence", "forbidden_type", "invalid_message", "malformed", "gap", "request", "other"} {
		m.BundlesRejected.WithLabelValues(reason)
	}
	if reg != nil {
		reg.MustRegister(m.BundlesSent, m.BundlesReceived, m.BundlesRejected, m.BundlesResent, m.MessagesSent, m.MessagesReceived, m.LinkUp, m.GapsFilled, m.GapWaiting)
	}
	return m
}
