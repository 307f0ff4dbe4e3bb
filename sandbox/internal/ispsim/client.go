package ispsim

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/partnersig"
	"finepay/sandbox/internal/shanghai"
)

// Payment is what a payer (or a test) asks the platform to pay: the decision as the platform
// knows it. Amounts are fen.
type Payment struct {
	// ISPOrderNo is the platform's order number; empty: a new one.
	ISPOrderNo      string `json:"isp_order_no,omitempty"`
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	PartyName       string `json:"party_name"`
	Plate           string `json:"plate"`
	Fine            int64  `json:"fine"`
	ServedDate      string `json:"served_date"`
	UnitCode        string `json:"unit_code"`
	ItemCode        string `json:"item_code"`
	LateFeeApplies  *bool  `json:"late_fee_applies,omitempty"`
	// AmountDue overrides the amount the platform computes (to test the core's check).
	AmountDue *int64 `json:"amount_due,omitempty"`
	// RequestID is sent as X-FP-Request-Id; empty: a new one.
	RequestID string `json:"request_id,omitempty"`
}

// Answer is the core's verified answer to one request.
type Answer struct {
	Status    int             `json:"status"`
	RequestID string          `json:"request_id"`
	Replayed  bool            `json:"replayed"`
	Body      json.RawMessage `json:"answer"`
}

// ErrCore: the core did not answer, or its answer was not signed by it.
var ErrCore = errors.New("ispsim: no valid answer from the core")

// graceDays and dailyPercent are the late-fee rule as the platform reads the law: nothing for
// 15 days after service, then 3% of the fine a day, never more than the fine.
const (
	graceDays    = 15
	dailyPercent = 3
)

// LateFee is the late fee due on the Asia/Shanghai day of now for a fine served on served
// (YYYY-MM-DD); fractions of a fen are dropped.
func LateFee(fine int64, served string, now time.Time, applies bool) int64 {
	d, err := shanghai.ParseDate(served)
	if err != nil || !applies || fine <= 0 {
		return 0
	}
	today, _ := shanghai.ParseDate(shanghai.Date(now))
	days := int64(today.Sub(d).Hours()/24+0.5) - graceDays
	if days <= 0 {
		return 0
	}
	if days > 100/dailyPercent+1 {
		return fine
	}
	return min(fine*dailyPercent*days/100, fine)
}

// newID returns prefix, today's date and n random digits.
func (s *Sim) newID(prefix string, n int) (string, error) {
	max := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
	v, err := randInt(s.cfg.Rand, max)
	if err != nil {
		return "", err
	}
	d := s.cfg.Now().In(shanghai.Location).Format("20060102")
	return fmt.Sprintf("%s%s%0*d", prefix, d, n, v), nil
}

func randInt(r io.Reader, max *big.Int) (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return new(big.Int).Mod(new(big.Int).SetBytes(b), max), nil
}

// Submit sends p to the core and records the order with the core's answer.
func (s *Sim) Submit(ctx context.Context, p Payment) (Order, Answer, error) {
	var err error
	if p.ISPOrderNo == "" {
		if p.ISPOrderNo, err = s.newID("ISP", 10); err != nil {
			return Order{}, Answer{}, err
		}
	}
	if p.RequestID == "" {
		if p.RequestID, err = s.newID("isp-", 12); err != nil {
			return Order{}, Answer{}, err
		}
	}
	applies := p.LateFeeApplies == nil || *p.LateFeeApplies
	due := p.Fine + LateFee(p.Fine, p.ServedDate, s.cfg.Now(), applies)
	if p.AmountDue != nil {
		due = *p.AmountDue
	}
	ct, err := s.cfg.Keys.CoreEnc.Encrypt(s.cfg.Rand, []byte(p.PartyName))
	if err != nil {
		return Order{}, Answer{}, fmt.Errorf("ispsim: encrypt the name: %w", err)
	}
	body, err := json.Marshal(map[string]any{
		"isp_order_no": p.ISPOrderNo, "decision_no": p.DecisionNo, "violation_serial": p.ViolationSerial,
		"party_name_enc": base64.StdEncoding.EncodeToString(ct), "plate": p.Plate, "fine": p.Fine,
		"served_date": p.ServedDate, "unit_code": p.UnitCode, "item_code": p.ItemCode, "late_fee_applies": applies,
		"amount_due": due,
	})
	if err != nil {
		return Order{}, Answer{}, err
	}
	a, err := s.call(ctx, http.MethodPost, "/partner/v1/isp/payments", p.RequestID, body)
	if err != nil {
		return Order{}, Answer{}, err
	}
	o := Order{ISPOrderNo: p.ISPOrderNo, DecisionNo: p.DecisionNo, AmountDue: due, SubmittedAt: shanghai.Time(s.cfg.Now()), HTTPStatus: a.Status}
	if a.Status/100 == 2 {
		var st struct {
			BillNo     string `json:"bill_no"`
			CashierURL string `json:"cashier_url"`
			Status     string `json:"status"`
			AmountDue  int64  `json:"amount_due"`
		}
		if err := json.Unmarshal(a.Body, &st); err != nil {
			return Order{}, a, fmt.Errorf("%w: %v", ErrCore, err)
		}
		o.BillNo, o.CashierURL, o.Status = st.BillNo, st.CashierURL, st.Status
	} else {
		var e apierr.Body
		_ = json.Unmarshal(a.Body, &e)
		o.Code, o.Message = e.Code, e.Message
	}
	s.mu.Lock()
	if prev, ok := s.byOrder[o.ISPOrderNo]; ok {
		if a.Status/100 == 2 || prev.HTTPStatus/100 != 2 {
			*prev = o
		}
	} else {
		s.orders = append(s.orders, &o)
		s.byOrder[o.ISPOrderNo] = &o
	}
	s.mu.Unlock()
	s.cfg.Log.Info("12123 payment submitted", "isp_order_no", o.ISPOrderNo, "decision_no", o.DecisionNo, "status", a.Status, "code", o.Code)
	return o, a, nil
}

// Query asks the core for the state of an order.
func (s *Sim) Query(ctx context.Context, ispOrderNo string) (Answer, error) {
	rid, err := s.newID("isq-", 12)
	if err != nil {
		return Answer{}, err
	}
	return s.call(ctx, http.MethodGet, "/partner/v1/isp/payments/"+ispOrderNo, rid, nil)
}

// call sends one signed request to the core and verifies its answer. A missing answer, a 5xx
// or 409 REQUEST_IN_PROGRESS is tried again (up to three times in all) with the same request
// ID, as the envelope allows.
func (s *Sim) call(ctx context.Context, method, path, rid string, body []byte) (Answer, error) {
	var last error
	for attempt := 1; attempt <= 3; attempt++ {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return Answer{}, ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		a, err := s.once(ctx, method, path, rid, body)
		if err != nil {
			last = err
			continue
		}
		if a.Status >= 500 || (a.Status == http.StatusConflict && bytes.Contains(a.Body, []byte(`"REQUEST_IN_PROGRESS"`))) {
			last = fmt.Errorf("ispsim: the core answered %d: %s", a.Status, a.Body)
			if attempt < 3 {
				continue
			}
		}
		return a, nil
	}
	return Answer{}, fmt.Errorf("%w: %v", ErrCore, last)
}

func (s *Sim) once(ctx context.Context, method, path, rid string, body []byte) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.cfg.CoreURL+path, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := partnersig.SignRequest(req, body, App, rid, s.cfg.Now(), s.cfg.Key, s.cfg.Rand); err != nil {
		return Answer{}, err
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("%w: %v", ErrCore, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Answer{}, fmt.Errorf("%w: %v", ErrCore, err)
	}
	if err := partnersig.VerifyResponse(resp.Header, "core", rid, resp.StatusCode, rb, s.cfg.Now(), s.cfg.Keys.CoreSign); err != nil {
		return Answer{}, fmt.Errorf("%w: %v", ErrCore, err)
	}
	if !json.Valid(rb) {
		return Answer{}, fmt.Errorf("%w: the answer is not JSON", ErrCore)
	}
	return Answer{Status: resp.StatusCode, RequestID: rid, Replayed: resp.Header.Get("X-FP-Replayed") == "true", Body: rb}, nil
}
