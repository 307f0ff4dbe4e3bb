package refund

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/sqldb"
)

// StateCollector exports core_refunds{state}: how many refunds are in each state, read from the
// database at each scrape, every state listed (0 when none). A refund the channel or bank closed
// as failed, or whose outcome is unknown, waits for an operator: alert on
// core_refunds{state="failed"} or core_refunds{state="unknown"} rising.
type StateCollector struct {
	db   *sqldb.DB
	desc *prometheus.Desc
}

// NewStateCollector returns a collector over db's refunds.
func NewStateCollector(db *sqldb.DB) *StateCollector {
	return &StateCollector{db: db, desc: prometheus.NewDesc("core_refunds",
		"Refunds in each state; failed and unknown ones wait for an operator.", []string{"state"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *StateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts := map[State]float64{}
	rows, err := c.db.QueryContext(ctx, `SELECT state, count(*) FROM refunds GROUP BY state`)
	if err == nil {
		defer rows.Close()
		for rows.Next() {
			var s State
			var n int64
			if err = rows.Scan(&s, &n); err != nil {
				break
			}
			counts[s] = float64(n)
		}
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, s := range States {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, counts[s], string(s))
	}
}
