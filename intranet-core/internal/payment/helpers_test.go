package payment_test

import (
	"finepay/intranet-core/internal/coretest"
	"finepay/intranet-core/internal/partner/partnertest"
)

type (
	coretestRequest = partnertest.Request
	coretestReply   = partnertest.Reply
)

// metric reads a counter or gauge with one label from env's registry (-1 when absent).
func metric(env *coretest.Env, name, label, value string) float64 {
	mfs, err := env.Registry.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}
