package wechattest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a fake WeChat Pay API: Native orders, query and close. It checks every request's
// merchant signature (401 SIGN_ERROR otherwise) and signs every answer with the platform key.
type Server struct {
	*httptest.Server
	PKI *PKI
	Now func() time.Time

	// Forge makes answers signed by the untrusted stranger key instead of the platform key.
	Forge atomic.Bool
	// Fail5xx answers the next n requests with 500 SYSTEM_ERROR.
	Fail5xx atomic.Int32
	// OnNative, when set, runs inside each Native order request before it is answered.
	OnNative func(outTradeNo string)

	mu         sync.Mutex
	orders     map[string]*Order
	requests   map[string]int // by "METHOD route"
	txnSeq     int
	refunds    map[string]*Refund // by out_refund_no
	refundMode string
}

// Order is an order as the fake server holds it.
type Order struct {
	OutTradeNo    string
	Description   string
	Attach        string
	NotifyURL     string
	TimeExpire    string
	Total         int64
	CodeURL       string
	State         string // NOTPAY, SUCCESS, CLOSED
	TransactionID string
	SuccessTime   time.Time
}

// NewServer starts a fake API on clock now (time.Now when nil); it is closed when the test ends.
func NewServer(tb testing.TB, p *PKI, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	s := &Server{PKI: p, Now: now, orders: map[string]*Order{}, requests: map[string]int{}, refunds: map[string]*Refund{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

// Requests returns how many requests of a route ("POST native", "GET query", "POST close") came.
func (s *Server) Requests(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[route]
}

// Order returns a copy of an order, or nil.
func (s *Server) Order(outTradeNo string) *Order {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[outTradeNo]
	if !ok {
		return nil
	}
	c := *o
	return &c
}

// Pay marks an order paid at the server's clock and returns the transaction as a notification
// would carry it.
func (s *Server) Pay(outTradeNo string) Paid {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orders[outTradeNo]
	if o == nil {
		panic("wechattest: pay an unknown order " + outTradeNo)
	}
	if o.State != "SUCCESS" {
		s.txnSeq++
		o.State, o.SuccessTime = "SUCCESS", s.Now()
		o.TransactionID = fmt.Sprintf("4200%06d%018d", s.txnSeq, time.Now().UnixNano()%1e18)
	}
	return Paid{OutTradeNo: o.OutTradeNo, TransactionID: o.TransactionID, Total: o.Total, SuccessTime: o.SuccessTime}
}

// SetState forces an order's trade state (e.g. CLOSED).
func (s *Server) SetState(outTradeNo, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.orders[outTradeNo]; o != nil {
		o.State = state
	}
}

func (s *Server) count(route string) {
	s.mu.Lock()
	s.requests[route]++
	s.mu.Unlock()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if n := s.Fail5xx.Load(); n > 0 && s.Fail5xx.CompareAndSwap(n, n-1) {
		s.count(r.Method + " failed")
		s.answer(w, http.StatusInternalServerError, map[string]string{"code": "SYSTEM_ERROR", "message": "try again"})
		return
	}
	if err := s.checkRequest(r, body); err != nil {
		s.count(r.Method + " unauthorized")
		s.answer(w, http.StatusUnauthorized, map[string]string{"code": "SIGN_ERROR", "message": err.Error()})
		return
	}
	const prefix = "/v3/pay/transactions/out-trade-no/"
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v3/refund/domestic/refunds":
		s.count("POST refund")
		s.refund(w, r, body)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v3/refund/domestic/refunds/"):
		s.count("GET refund")
		s.queryRefund(w, strings.TrimPrefix(r.URL.Path, "/v3/refund/domestic/refunds/"))
	case r.Method == http.MethodPost && r.URL.Path == "/v3/pay/transactions/native":
		s.count("POST native")
		s.native(w, body)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, prefix):
		s.count("GET query")
		s.query(w, strings.TrimPrefix(r.URL.Path, prefix), r.URL.Query().Get("mchid"))
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, prefix) && strings.HasSuffix(r.URL.Path, "/close"):
		s.count("POST close")
		s.close(w, strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, prefix), "/close"))
	default:
		s.answer(w, http.StatusNotFound, map[string]string{"code": "NOT_FOUND", "message": "no such API"})
	}
}

// checkRequest verifies the merchant's Authorization header.
func (s *Server) checkRequest(r *http.Request, body []byte) error {
	auth := r.Header.Get("Authorization")
	params, ok := strings.CutPrefix(auth, "WECHATPAY2-SHA256-RSA2048 ")
	if !ok {
		return fmt.Errorf("scheme")
	}
	kv := map[string]string{}
	for _, part := range strings.Split(params, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("parameter %q", part)
		}
		kv[k] = strings.Trim(v, `"`)
	}
	if kv["mchid"] != MchID || kv["serial_no"] != s.PKI.MerchantSerial() {
		return fmt.Errorf("mchid %q serial %q", kv["mchid"], kv["serial_no"])
	}
	ts, err := strconv.ParseInt(kv["timestamp"], 10, 64)
	if err != nil || s.Now().Sub(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return fmt.Errorf("timestamp %q", kv["timestamp"])
	}
	sig, err := base64.StdEncoding.DecodeString(kv["signature"])
	if err != nil {
		return fmt.Errorf("signature encoding")
	}
	msg := r.Method + "\n" + r.RequestURI + "\n" + kv["timestamp"] + "\n" + kv["nonce_str"] + "\n" + string(body) + "\n"
	sum := sha256.Sum256([]byte(msg))
	if err := rsa.VerifyPKCS1v15(&s.PKI.MerchantKey.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return fmt.Errorf("signature")
	}
	return nil
}

func (s *Server) answer(w http.ResponseWriter, status int, v any) {
	var body []byte
	if v != nil {
		body, _ = json.Marshal(v)
	}
	key, serial := s.PKI.PlatformKey, s.PKI.PlatformSerial()
	if s.Forge.Load() {
		key, serial = s.PKI.StrangerKey, s.PKI.PlatformSerial()
	}
	for k, vs := range SignWith(key, serial, s.Now(), body) {
		w.Header()[k] = vs
	}
	if body != nil {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	w.Write(body)
}

func (s *Server) native(w http.ResponseWriter, body []byte) {
	var req struct {
		AppID       string `json:"appid"`
		MchID       string `json:"mchid"`
		Description string `json:"description"`
		OutTradeNo  string `json:"out_trade_no"`
		TimeExpire  string `json:"time_expire"`
		Attach      string `json:"attach"`
		NotifyURL   string `json:"notify_url"`
		Amount      struct {
			Total    int64  `json:"total"`
			Currency string `json:"currency"`
		} `json:"amount"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.AppID != AppID || req.MchID != MchID || req.OutTradeNo == "" ||
		req.Description == "" || req.NotifyURL == "" || req.Amount.Total <= 0 || req.Amount.Currency != "CNY" {
		s.answer(w, http.StatusBadRequest, map[string]string{"code": "PARAM_ERROR", "message": "bad order"})
		return
	}
	if _, err := time.Parse(time.RFC3339, req.TimeExpire); err != nil {
		s.answer(w, http.StatusBadRequest, map[string]string{"code": "PARAM_ERROR", "message": "time_expire"})
		return
	}
	if s.OnNative != nil {
		s.OnNative(req.OutTradeNo)
	}
	s.mu.Lock()
	o, ok := s.orders[req.OutTradeNo]
	if !ok {
		o = &Order{OutTradeNo: req.OutTradeNo, Description: req.Description, Attach: req.Attach, NotifyURL: req.NotifyURL,
			TimeExpire: req.TimeExpire, Total: req.Amount.Total, State: "NOTPAY",
			CodeURL: "weixin://wxpay/bizpayurl/up?pr=" + hex.EncodeToString(randomBytes(8)) + "&groupid=00"}
		s.orders[req.OutTradeNo] = o
	}
	code := o.CodeURL
	s.mu.Unlock()
	s.answer(w, http.StatusOK, map[string]string{"code_url": code})
}

func (s *Server) query(w http.ResponseWriter, outTradeNo, mchid string) {
	s.mu.Lock()
	o, ok := s.orders[outTradeNo]
	var c Order
	if ok {
		c = *o
	}
	s.mu.Unlock()
	if !ok || mchid != MchID {
		s.answer(w, http.StatusNotFound, map[string]string{"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
		return
	}
	if c.State == "SUCCESS" {
		s.answer(w, http.StatusOK, Paid{OutTradeNo: c.OutTradeNo, TransactionID: c.TransactionID, Total: c.Total,
			SuccessTime: c.SuccessTime}.Transaction())
		return
	}
	s.answer(w, http.StatusOK, map[string]any{"appid": AppID, "mchid": MchID, "out_trade_no": c.OutTradeNo,
		"trade_state": c.State, "trade_state_desc": c.State, "amount": map[string]any{"total": c.Total, "currency": "CNY"}})
}

func (s *Server) close(w http.ResponseWriter, outTradeNo string) {
	s.mu.Lock()
	o, ok := s.orders[outTradeNo]
	state := ""
	if ok {
		state = o.State
		if state == "NOTPAY" {
			o.State = "CLOSED"
		}
	}
	s.mu.Unlock()
	switch {
	case !ok:
		s.answer(w, http.StatusNotFound, map[string]string{"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
	case state == "SUCCESS":
		s.answer(w, http.StatusBadRequest, map[string]string{"code": "ORDERPAID", "message": "订单已支付"})
	default:
		s.answer(w, http.StatusNoContent, nil)
	}
}
