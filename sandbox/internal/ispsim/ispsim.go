// Package ispsim simulates the Public Security Internet Service Platform (公安互联网服务平台, behind
// the 交管12123 app and the 122 website) in flow P1, as docs/partners.md specifies it ("Core
// partner API: 12123 platform"):
//
//   - as a caller of the core: it submits a payment for a decision (POST /partner/v1/isp/payments
//     on the core) signed as X-FP-App isp12123 with the sandbox's signing key, the party's name
//     SM2-encrypted to the core's encryption certificate, the amount due computed by its own
//     reading of the late-fee rule; it verifies the core's signed answer and sends the payer to
//     the cashier URL; it can query an order's state (GET /partner/v1/isp/payments/{no});
//   - as a partner: it takes the payment results the core pushes (POST /isp/v1/payment-results,
//     behind partnerapi.Guard), once per platform order however often they are pushed.
//
// A payer starts at GET /isp/, the "12123 app" page, or a test at POST /_sandbox/isp/payments.
// It imports nothing from the core.
package ispsim

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/partnersig"
	"finepay/sandbox/internal/shanghai"
	"finepay/shared/gm"
)

// App is the platform's node name in X-FP-App of its requests to the core.
const App = "isp12123"

// Files read by LoadKeys from the certificates directory.
const (
	FileCoreSignCert = "core-sign.pem"
	FileCoreEncCert  = "core-enc.pem"
)

// Keys are what the platform needs of the core: its signing certificate's key (verifies the
// core's answers) and its encryption certificate's key (party_name_enc is encrypted to it).
type Keys struct {
	CoreSign *gm.PublicKey
	CoreEnc  *gm.PublicKey
}

// LoadKeys reads core-sign.pem and core-enc.pem from dir; both must be issued by ca.pem.
func LoadKeys(dir string) (Keys, error) {
	var k Keys
	ca, err := gm.LoadCertificate(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return k, fmt.Errorf("ispsim: %w", err)
	}
	for _, f := range []struct {
		name string
		dst  **gm.PublicKey
	}{{FileCoreSignCert, &k.CoreSign}, {FileCoreEncCert, &k.CoreEnc}} {
		c, err := gm.LoadCertificate(filepath.Join(dir, f.name))
		if err != nil {
			return k, fmt.Errorf("ispsim: %w", err)
		}
		if err := c.VerifySignedBy(ca); err != nil {
			return k, fmt.Errorf("ispsim: %s: %w", f.name, err)
		}
		*f.dst = c.PublicKey()
	}
	return k, nil
}

// Config configures the simulator.
type Config struct {
	// CoreURL is the base URL of the core (its partner API is under /partner/v1/isp).
	CoreURL string
	// Key signs the platform's requests (sandbox-sign.key; the core lists it for isp12123).
	Key  partnersig.Signer
	Keys Keys
	// Client calls the core; nil: a client with a 30 s timeout.
	Client *http.Client
	Now    func() time.Time
	Rand   io.Reader
	Log    *slog.Logger
}

// Order is a payment the platform submitted, with the core's answer.
type Order struct {
	ISPOrderNo  string `json:"isp_order_no"`
	DecisionNo  string `json:"decision_no"`
	AmountDue   int64  `json:"amount_due"`
	SubmittedAt string `json:"submitted_at"`
	// HTTPStatus and Code are the core's answer: 200/201, or the error's status and code.
	HTTPStatus int    `json:"http_status"`
	Code       string `json:"code,omitempty"`
	Message    string `json:"message,omitempty"`
	BillNo     string `json:"bill_no,omitempty"`
	CashierURL string `json:"cashier_url,omitempty"`
	Status     string `json:"status,omitempty"`
}

// Result is a payment result the core pushed.
type Result struct {
	ResultRequest
	ReceivedAt string `json:"received_at"`
	// Reports counts the pushes of this result, the first included.
	Reports int `json:"reports"`
}

// State is what the simulator holds, for /_sandbox/state.
type State struct {
	Orders  []Order  `json:"isp_orders"`
	Results []Result `json:"isp_results"`
}

// Sim is the simulator. Its methods are safe for concurrent use.
type Sim struct {
	cfg Config

	mu      sync.Mutex
	orders  []*Order
	byOrder map[string]*Order
	results []*Result
	byISP   map[string]*Result
}

// New returns an empty simulator.
func New(cfg Config) *Sim {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	cfg.CoreURL = strings.TrimRight(cfg.CoreURL, "/")
	return &Sim{cfg: cfg, byOrder: map[string]*Order{}, byISP: map[string]*Result{}}
}

// RegisterPartner adds the endpoint the core calls to g, which should be mounted at /isp/v1
// behind partnerapi.Guard.
func (s *Sim) RegisterPartner(g *echo.Group) {
	g.POST("/payment-results", s.handleResult)
}

// Register adds the payer's pages (/isp/...) and the test endpoints (/_sandbox/isp/...) to e.
func (s *Sim) Register(e *echo.Echo) {
	e.GET("/isp/", s.handleApp)
	e.POST("/isp/pay", s.handlePay)
	e.GET("/isp/orders/:no", s.handleOrderPage)
	e.POST("/_sandbox/isp/payments", s.handleSubmitJSON)
	e.GET("/_sandbox/isp/payments/:no", s.handleQueryJSON)
	e.POST("/_sandbox/isp/refunds", s.handleRefundJSON)
}

// ResultRequest is the body of POST /isp/v1/payment-results.
type ResultRequest struct {
	ISPOrderNo      string `json:"isp_order_no"`
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	BillNo          string `json:"bill_no"`
	FormNo          string `json:"form_no"`
	PayCode         string `json:"pay_code"`
	OrderNo         string `json:"order_no"`
	Channel         string `json:"channel"`
	ChannelTradeNo  string `json:"channel_trade_no"`
	Amount          int64  `json:"amount"`
	Fine            int64  `json:"fine"`
	LateFee         int64  `json:"late_fee"`
	PaidAt          string `json:"paid_at"`
}

func (s *Sim) handleResult(c echo.Context) error {
	var req ResultRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	v.Match("isp_order_no", req.ISPOrderNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.Digits("decision_no", req.DecisionNo, 15, 20)
	v.Match("violation_serial", req.ViolationSerial, field.Serial, "1-32 letters or digits")
	v.Match("bill_no", req.BillNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.Digits("form_no", req.FormNo, 1, 32)
	v.Required("pay_code", req.PayCode)
	v.Match("order_no", req.OrderNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.Match("channel_trade_no", req.ChannelTradeNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	switch req.Channel {
	case "wechat", "alipay", "unionpay":
	default:
		v.Add("channel", "must be wechat, alipay or unionpay")
	}
	v.Positive("amount", req.Amount)
	v.Positive("fine", req.Fine)
	v.NonNegative("late_fee", req.LateFee)
	if req.Amount != req.Fine+req.LateFee {
		v.Add("amount", "must be fine + late_fee")
	}
	v.Time("paid_at", req.PaidAt)
	if err := v.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.byISP[req.ISPOrderNo]; ok {
		if r.OrderNo != req.OrderNo || r.Amount != req.Amount || r.DecisionNo != req.DecisionNo {
			return apierr.New(http.StatusConflict, "RESULT_CONFLICT", "order %s was reported paid by order %s, decision %s, amount %d",
				r.ISPOrderNo, r.OrderNo, r.DecisionNo, r.Amount)
		}
		r.Reports++
		return c.JSON(http.StatusOK, map[string]string{"status": "accepted"})
	}
	if o, ok := s.byOrder[req.ISPOrderNo]; ok && o.DecisionNo != req.DecisionNo {
		return apierr.New(http.StatusConflict, "RESULT_CONFLICT", "order %s is for decision %s", o.ISPOrderNo, o.DecisionNo)
	}
	r := &Result{ResultRequest: req, ReceivedAt: shanghai.Time(s.cfg.Now()), Reports: 1}
	s.results = append(s.results, r)
	s.byISP[req.ISPOrderNo] = r
	if o, ok := s.byOrder[req.ISPOrderNo]; ok {
		o.Status = "paid"
	}
	s.cfg.Log.Info("12123 payment result received", "isp_order_no", r.ISPOrderNo, "order_no", r.OrderNo, "amount", r.Amount)
	return c.JSON(http.StatusOK, map[string]string{"status": "accepted"})
}

// Snapshot copies the state.
func (s *Sim) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Orders: make([]Order, 0, len(s.orders)), Results: make([]Result, 0, len(s.results))}
	for _, o := range s.orders {
		st.Orders = append(st.Orders, *o)
	}
	for _, r := range s.results {
		st.Results = append(st.Results, *r)
	}
	return st
}

// result returns the result pushed for an order, if any.
func (s *Sim) result(ispOrderNo string) (Result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byISP[ispOrderNo]
	if !ok {
		return Result{}, false
	}
	return *r, true
}

func (s *Sim) order(ispOrderNo string) (Order, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byOrder[ispOrderNo]
	if !ok {
		return Order{}, false
	}
	return *o, true
}
