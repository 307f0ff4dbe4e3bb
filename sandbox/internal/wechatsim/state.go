package wechatsim

import (
	"time"

	"finepay/sandbox/internal/shanghai"
)

// OrderState is an order as /_sandbox/state shows it.
type OrderState struct {
	OutTradeNo    string             `json:"out_trade_no"`
	Description   string             `json:"description"`
	Total         int64              `json:"total"`
	Attach        string             `json:"attach"`
	NotifyURL     string             `json:"notify_url"`
	TimeExpire    string             `json:"time_expire,omitempty"`
	CreatedAt     string             `json:"created_at"`
	CodeURL       string             `json:"code_url"`
	PayURL        string             `json:"pay_url"`
	TradeState    string             `json:"trade_state"`
	TransactionID string             `json:"transaction_id,omitempty"`
	SuccessTime   string             `json:"success_time,omitempty"`
	OpenID        string             `json:"openid,omitempty"`
	Notification  *NotificationState `json:"notification,omitempty"`
	// Refunded is the money paid back (its SUCCESS refunds), fen; Refunds its refunds.
	Refunded int64         `json:"refunded"`
	Refunds  []RefundState `json:"refunds,omitempty"`
}

// NotificationState is the delivery state of an order's notification.
type NotificationState struct {
	URL          string    `json:"url"`
	Acknowledged bool      `json:"acknowledged"`
	Abandoned    bool      `json:"abandoned"`
	NextAt       string    `json:"next_at,omitempty"`
	Attempts     []Attempt `json:"attempts"`
}

// Snapshot copies the orders and their notifications, oldest first.
func (s *Sim) Snapshot() []OrderState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]OrderState, 0, len(s.orders))
	for _, o := range s.orders {
		st := OrderState{
			OutTradeNo: o.OutTradeNo, Description: o.Description, Total: o.Total, Attach: o.Attach,
			NotifyURL: o.NotifyURL, TimeExpire: o.TimeExpire, CreatedAt: shanghai.Time(o.CreatedAt),
			CodeURL: o.codeURL(), PayURL: s.payURL(o), TradeState: o.State, TransactionID: o.TransactionID,
			SuccessTime: o.SuccessTime, OpenID: o.OpenID, Refunded: s.refunded(o), Refunds: s.refundStates(o),
		}
		if n := o.note; n != nil {
			st.Notification = &NotificationState{
				URL: n.url, Acknowledged: n.acknowledged, Abandoned: n.abandoned,
				Attempts: append([]Attempt{}, n.attempts...),
			}
			if !n.nextAt.IsZero() {
				st.Notification.NextAt = shanghai.Time(n.nextAt)
			}
		}
		out = append(out, st)
	}
	return out
}

// NotificationRecord is the last notification request of an order, exactly as sent, so that a
// test can replay a genuine notification.
type NotificationRecord struct {
	URL          string            `json:"url"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	Acknowledged bool              `json:"acknowledged"`
	Attempts     []Attempt         `json:"attempts"`
}

// Notification returns the notification record of a paid order.
func (s *Sim) Notification(outTradeNo string) (NotificationRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byTrade[outTradeNo]
	if !ok || o.note == nil {
		return NotificationRecord{}, ErrNotFound
	}
	n := o.note
	r := NotificationRecord{
		URL: n.url, Headers: map[string]string{}, Body: string(n.body), Acknowledged: n.acknowledged,
		Attempts: append([]Attempt{}, n.attempts...),
	}
	for k, v := range n.lastHeader {
		if len(v) > 0 {
			r.Headers[k] = v[0]
		}
	}
	return r, nil
}

func parseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339, s) }
