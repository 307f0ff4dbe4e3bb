package spool

import "github.com/prometheus/client_golang/prometheus"

// metrics are the spool's Prometheus metrics.
type metrics struct {
	full        prometheus.Gauge       // ferry_spool_full
	outBytes    prometheus.Gauge       // ferry_spool_out_bytes
	writeErrors prometheus.Counter     // ferry_spool_write_errors_total
	files       *prometheus.CounterVec // ferry_spool_files_total{kind,result}
	resends     *prometheus.CounterVec // ferry_spool_resends_total{reason}
	held        prometheus.Gauge       // ferry_spool_held_files
	missing     prometheus.Counter     // ferry_spool_missing_total
	retired     prometheus.Counter     // ferry_spool_retired_unconfirmed_total
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		full: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_spool_full",
			Help: "1 while the outgoing spool is at its bound (-spool-max-bytes) or cannot be written: new bundles wait, nothing is dropped."}),
		outBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_spool_out_bytes",
			Help: "Bytes in the outgoing spool directory not yet taken by the appliance."}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_spool_write_errors_total",
			Help: "Spool files that could not be written (full disk, read-only directory); each is retried."}),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_spool_files_total",
			Help: "Incoming spool files handled, by kind (bundle, ack, manifest, request, foreign) and result (applied, duplicate, held, rejected, ...)."},
			[]string{"kind", "result"}),
		resends: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_spool_resends_total",
			Help: "Bundles written again, by reason (timer: not acknowledged in time; request: the peer's resend request)."}, []string{"reason"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_spool_held_files",
			Help: "Verified incoming bundles waiting for an earlier bundle of their lane."}),
		missing: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_spool_missing_total",
			Help: "Times a bundle listed in the peer's manifest was found missing (dropped by the appliance)."}),
		retired: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_spool_retired_unconfirmed_total",
			Help: "One-way mode: bundles retired by age without any confirmation from the peer."}),
	}
	for _, r := range []string{"timer", "request"} {
		m.resends.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.full, m.outBytes, m.writeErrors, m.files, m.resends, m.held, m.missing, m.retired)
	}
	return m
}
