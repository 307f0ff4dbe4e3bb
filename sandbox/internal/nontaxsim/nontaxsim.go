// Package nontaxsim simulates the finance department's non-tax revenue system (非税收入收缴系统)
// as docs/partners.md specifies it: it issues payment forms (非税一般缴款书) with their payment
// identification codes (缴款识别码), one per decision number, and takes payment reports.
//
// The routes are meant to sit behind partnerapi.Guard, which verifies and signs the envelope.
package nontaxsim

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/payername"
	"finepay/sandbox/internal/shanghai"
)

// DueDays is the time to pay after the decision was served (Administrative Penalty Law art. 67).
const DueDays = 15

// Config configures the simulator.
type Config struct {
	// Decrypter opens payer_name_enc: the sandbox's encryption key.
	Decrypter payername.Decrypter
	Now       func() time.Time
	Log       *slog.Logger
}

// Form is an issued payment form.
type Form struct {
	FormNo          string `json:"form_no"`
	PayCode         string `json:"pay_code"`
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	UnitCode        string `json:"unit_code"`
	UnitName        string `json:"unit_name"`
	ItemCode        string `json:"item_code"`
	ItemName        string `json:"item_name"`
	PayerMasked     string `json:"payer_masked"`
	Fine            int64  `json:"fine"`
	ServedDate      string `json:"served_date"`
	LateFeeApplies  bool   `json:"late_fee_applies"`
	DueDate         string `json:"due_date"`
	IssuedAt        string `json:"issued_at"`
	// Items are the form's items (缴款项目): the fine, and, once a payment reported one, the late
	// fee (加处罚款) as an item of its own.
	Items []Item `json:"items"`
}

// Payment is a payment reported against a form.
type Payment struct {
	FormNo         string `json:"form_no"`
	PayCode        string `json:"pay_code"`
	OrderNo        string `json:"order_no"`
	Amount         int64  `json:"amount"`
	Fine           int64  `json:"fine"`
	LateFee        int64  `json:"late_fee"`
	Channel        string `json:"channel"`
	ChannelTradeNo string `json:"channel_trade_no"`
	PaidAt         string `json:"paid_at"`
	ReceivedAt     string `json:"received_at"`
	// Duplicate marks a second paid order for a form already paid (R5: held for review).
	Duplicate bool `json:"duplicate"`
	// Reports counts the reports of this form and order, the first included.
	Reports int `json:"reports"`
	// Items split the amount: the fine item and, when one was paid, the late-fee item.
	Items []Item `json:"items"`
}

// State is what the simulator holds, for /_sandbox/state.
type State struct {
	Forms    []Form    `json:"forms"`
	Payments []Payment `json:"payments"`
}

// Sim is the simulator. Its methods are safe for concurrent use.
type Sim struct {
	dec payername.Decrypter
	now func() time.Time
	log *slog.Logger

	mu         sync.Mutex
	forms      []*Form
	byDecision map[string]*Form
	byFormNo   map[string]*Form
	payments   []*Payment
	byForm     map[string][]*Payment
	seq        map[string]int // by prefix of form_no: unit and day
	paySeq     int
}

// New returns an empty simulator.
func New(cfg Config) *Sim {
	s := &Sim{
		dec: cfg.Decrypter, now: cfg.Now, log: cfg.Log,
		byDecision: map[string]*Form{}, byFormNo: map[string]*Form{},
		byForm: map[string][]*Payment{}, seq: map[string]int{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Register adds the routes to g, which should be mounted at /nontax/v1.
func (s *Sim) Register(g *echo.Group) {
	g.POST("/forms", s.handleForm)
	g.POST("/payments", s.handlePayment)
}

// FormRequest is the body of POST /nontax/v1/forms.
type FormRequest struct {
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	UnitCode        string `json:"unit_code"`
	ItemCode        string `json:"item_code"`
	PayerNameEnc    string `json:"payer_name_enc"`
	Fine            int64  `json:"fine"`
	ServedDate      string `json:"served_date"`
	LateFeeApplies  bool   `json:"late_fee_applies"`
}

// FormResponse is the answer to POST /nontax/v1/forms.
type FormResponse struct {
	FormNo   string `json:"form_no"`
	PayCode  string `json:"pay_code"`
	UnitName string `json:"unit_name"`
	ItemName string `json:"item_name"`
	Fine     int64  `json:"fine"`
	DueDate  string `json:"due_date"`
	IssuedAt string `json:"issued_at"`
}

func (s *Sim) handleForm(c echo.Context) error {
	var req FormRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	v.Digits("decision_no", req.DecisionNo, 15, 20)
	v.Match("violation_serial", req.ViolationSerial, field.Serial, "1-32 letters or digits")
	v.Digits("unit_code", req.UnitCode, 6, 20)
	v.Digits("item_code", req.ItemCode, 1, 20)
	v.Positive("fine", req.Fine)
	served := v.Date("served_date", req.ServedDate)
	var name string
	if v.Required("payer_name_enc", req.PayerNameEnc) {
		var err error
		if name, err = payername.Open(s.dec, req.PayerNameEnc); err != nil {
			v.Add("payer_name_enc", "%s", payername.Reason(err))
		}
	}
	if !served.IsZero() && served.After(s.now()) {
		v.Add("served_date", "must not be in the future")
	}
	if err := v.Err(); err != nil {
		return err
	}
	f := s.issue(req, name, served)
	return c.JSON(http.StatusOK, FormResponse{
		FormNo: f.FormNo, PayCode: f.PayCode, UnitName: f.UnitName, ItemName: f.ItemName,
		Fine: f.Fine, DueDate: f.DueDate, IssuedAt: f.IssuedAt,
	})
}

// issue answers the form of the decision, making it first if needed.
func (s *Sim) issue(req FormRequest, name string, served time.Time) Form {
	now := s.now().In(shanghai.Location)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.byDecision[req.DecisionNo]; ok {
		return *f
	}
	prefix := req.UnitCode[:6] + now.Format("20060102")
	s.seq[prefix]++
	s.paySeq++
	f := &Form{
		FormNo:          fmt.Sprintf("%s%06d", prefix, s.seq[prefix]%1000000),
		PayCode:         payCode(req.UnitCode[:6], now, s.paySeq),
		DecisionNo:      req.DecisionNo,
		ViolationSerial: req.ViolationSerial,
		UnitCode:        req.UnitCode,
		UnitName:        UnitName(req.UnitCode),
		ItemCode:        req.ItemCode,
		ItemName:        ItemName(req.ItemCode),
		PayerMasked:     payername.Mask(name),
		Fine:            req.Fine,
		ServedDate:      req.ServedDate,
		LateFeeApplies:  req.LateFeeApplies,
		DueDate:         shanghai.Date(served.AddDate(0, 0, DueDays)),
		IssuedAt:        shanghai.Time(now),
	}
	f.Items = []Item{fineItem(f)}
	s.forms = append(s.forms, f)
	s.byDecision[f.DecisionNo] = f
	s.byFormNo[f.FormNo] = f
	s.log.Info("non-tax form issued", "form_no", f.FormNo, "decision_no", f.DecisionNo, "fine", f.Fine)
	return *f
}

// payCode is 20 digits: the 6-digit region, yymmdd, a 7-digit sequence and a Luhn check digit.
// It differs from the form number on purpose, so that a caller mixing the two is caught.
func payCode(region string, day time.Time, seq int) string {
	body := fmt.Sprintf("%s%s%07d", region, day.Format("060102"), seq%10000000)
	return body + strconv.Itoa(luhn(body))
}

func luhn(digits string) int {
	sum := 0
	double := true
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return (10 - sum%10) % 10
}

// Form returns the form with the given number.
func (s *Sim) Form(formNo string) (Form, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.byFormNo[formNo]
	if !ok {
		return Form{}, false
	}
	return *f, true
}

// PaymentRequest is the body of POST /nontax/v1/payments.
type PaymentRequest struct {
	FormNo         string `json:"form_no"`
	PayCode        string `json:"pay_code"`
	OrderNo        string `json:"order_no"`
	Amount         int64  `json:"amount"`
	Fine           int64  `json:"fine"`
	LateFee        int64  `json:"late_fee"`
	Channel        string `json:"channel"`
	ChannelTradeNo string `json:"channel_trade_no"`
	PaidAt         string `json:"paid_at"`
}

// PaymentResponse is the answer to POST /nontax/v1/payments.
type PaymentResponse struct {
	Status string `json:"status"`
	FormNo string `json:"form_no"`
	// Duplicate is true when another order had already paid the form.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Channels are the accepted values of the channel field.
var Channels = map[string]bool{"wechat": true, "alipay": true, "unionpay": true, "bank": true}

func (s *Sim) handlePayment(c echo.Context) error {
	var req PaymentRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	v.Digits("form_no", req.FormNo, 1, 32)
	v.Digits("pay_code", req.PayCode, 1, 32)
	v.Match("order_no", req.OrderNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.Positive("amount", req.Amount)
	v.Positive("fine", req.Fine)
	v.NonNegative("late_fee", req.LateFee)
	if req.Fine > 0 && req.LateFee >= 0 && req.Amount != req.Fine+req.LateFee {
		v.Add("amount", "must equal fine + late_fee (%d)", req.Fine+req.LateFee)
	}
	if req.LateFee > req.Fine {
		v.Add("late_fee", "must not exceed the fine (Administrative Penalty Law art. 72)")
	}
	if v.Required("channel", req.Channel) && !Channels[req.Channel] {
		v.Add("channel", "must be one of wechat, alipay, unionpay, bank")
	}
	v.Match("channel_trade_no", req.ChannelTradeNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	paidAt := v.Time("paid_at", req.PaidAt)
	if !paidAt.IsZero() && paidAt.After(s.now().Add(5*time.Minute)) {
		v.Add("paid_at", "must not be in the future")
	}
	if err := v.Err(); err != nil {
		return err
	}
	p, err := s.record(req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, PaymentResponse{Status: "accepted", FormNo: p.FormNo, Duplicate: p.Duplicate})
}

func (s *Sim) record(req PaymentRequest) (Payment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.byFormNo[req.FormNo]
	if !ok {
		return Payment{}, apierr.New(http.StatusNotFound, "NOT_FOUND", "form %s was not issued by the non-tax system", req.FormNo)
	}
	var v field.Checker
	if req.PayCode != f.PayCode {
		v.Add("pay_code", "is not the payment identification code of form %s", f.FormNo)
	}
	if req.Fine != f.Fine {
		v.Add("fine", "must be the fine of the form (%d)", f.Fine)
	}
	if req.LateFee > 0 && !f.LateFeeApplies {
		v.Add("late_fee", "must be 0: no late fee applies to form %s", f.FormNo)
	}
	if err := v.Err(); err != nil {
		return Payment{}, err
	}
	prior := s.byForm[f.FormNo]
	for _, p := range prior {
		if p.OrderNo != req.OrderNo {
			continue
		}
		if p.Amount != req.Amount {
			return Payment{}, apierr.New(http.StatusConflict, "AMOUNT_CONFLICT",
				"order %s was reported for form %s with amount %d", p.OrderNo, f.FormNo, p.Amount)
		}
		p.Reports++
		return *p, nil
	}
	if len(prior) > 0 && prior[0].Amount != req.Amount {
		return Payment{}, apierr.New(http.StatusConflict, "AMOUNT_CONFLICT",
			"form %s was already reported paid with amount %d", f.FormNo, prior[0].Amount)
	}
	p := &Payment{
		FormNo: req.FormNo, PayCode: req.PayCode, OrderNo: req.OrderNo, Amount: req.Amount,
		Fine: req.Fine, LateFee: req.LateFee, Channel: req.Channel, ChannelTradeNo: req.ChannelTradeNo,
		PaidAt: req.PaidAt, ReceivedAt: shanghai.Time(s.now()), Duplicate: len(prior) > 0, Reports: 1,
		Items: paymentItems(f, req.LateFee),
	}
	if !p.Duplicate {
		f.Items = p.Items
	}
	s.payments = append(s.payments, p)
	s.byForm[f.FormNo] = append(prior, p)
	s.log.Info("non-tax payment recorded", "form_no", p.FormNo, "order_no", p.OrderNo,
		"amount", p.Amount, "duplicate", p.Duplicate)
	return *p, nil
}

// Snapshot copies the state.
func (s *Sim) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Forms: make([]Form, 0, len(s.forms)), Payments: make([]Payment, 0, len(s.payments))}
	for _, f := range s.forms {
		st.Forms = append(st.Forms, *f)
	}
	for _, p := range s.payments {
		st.Payments = append(st.Payments, *p)
	}
	return st
}

var units = map[string]string{
	"230000": "黑龙江省公安厅交通警察总队",
	"230100": "哈尔滨市公安局交通警察支队",
	"230102": "哈尔滨市公安局交通警察支队道里大队",
	"230200": "齐齐哈尔市公安局交通警察支队",
	"230600": "大庆市公安局交通警察支队",
}

var items = map[string]string{
	"103050101": "公安交通违法罚没收入",
	"103050102": "公安交通违法加处罚款收入",
}

// UnitName is the name of an executing unit (执收单位), invented for codes the sandbox does not know.
func UnitName(code string) string {
	if n, ok := units[code]; ok {
		return n
	}
	return "交通警察执收单位" + code
}

// ItemName is the name of a revenue item (收入项目).
func ItemName(code string) string {
	if n, ok := items[code]; ok {
		return n
	}
	return "罚没收入" + code
}

// MasterData returns copies of the units and revenue items the sandbox knows, by code: the
// master data the e-receipt platform hands out.
func MasterData() (unitNames, itemNames map[string]string) {
	unitNames, itemNames = map[string]string{}, map[string]string{}
	for k, v := range units {
		unitNames[k] = v
	}
	for k, v := range items {
		itemNames[k] = v
	}
	return unitNames, itemNames
}
