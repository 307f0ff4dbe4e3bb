package alipaytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a fake Alipay gateway.do: precreate, query and close. It checks every request's
// RSA2 signature by the application key (an error answer otherwise) and signs every answer with
// Alipay's key.
type Server struct {
	*httptest.Server
	PKI *PKI
	Now func() time.Time

	// Forge signs answers with the stranger key instead of Alipay's.
	Forge atomic.Bool
	// Fail5xx answers the next n requests with HTTP 502.
	Fail5xx atomic.Int32
	// Unscanned makes queries and closes of orders nobody has paid answer ACQ.TRADE_NOT_EXIST,
	// as Alipay does until the payer scans the code.
	Unscanned atomic.Bool
	// OnPrecreate, when set, runs inside each precreate before it is answered.
	OnPrecreate func(outTradeNo string)

	mu         sync.Mutex
	orders     map[string]*Order
	requests   map[string]int
	seq        int
	refunds    map[string]*Refund // by out_request_no
	refundMode string
}

// Order is an order as the fake server holds it.
type Order struct {
	OutTradeNo  string
	TotalAmount string
	Subject     string
	TimeExpire  string
	NotifyURL   string
	QRCode      string
	Status      string // WAIT_BUYER_PAY, TRADE_SUCCESS, TRADE_CLOSED
	TradeNo     string
	PaidAt      time.Time
	Total       int64
}

// NewServer starts a fake gateway on clock now (time.Now when nil), closed when the test ends.
// Its URL is the gateway URL.
func NewServer(tb testing.TB, p *PKI, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	s := &Server{PKI: p, Now: now, orders: map[string]*Order{}, requests: map[string]int{}, refunds: map[string]*Refund{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

// GatewayURL is the URL of the fake gateway.do.
func (s *Server) GatewayURL() string { return s.URL + "/gateway.do" }

// Requests returns how many requests of a method ("alipay.trade.precreate", "failed",
// "unauthorized") came.
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

// Pay marks an order paid at the server's clock and returns it as a notification describes it.
func (s *Server) Pay(outTradeNo string) Paid {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orders[outTradeNo]
	if o == nil {
		panic("alipaytest: pay an unknown order " + outTradeNo)
	}
	if o.Status != "TRADE_SUCCESS" {
		s.seq++
		o.Status, o.PaidAt = "TRADE_SUCCESS", s.Now()
		o.TradeNo = fmt.Sprintf("2025%s22%012d", s.Now().In(shanghai).Format("0102"), s.seq*7919+int(time.Now().UnixNano()%1e6))
	}
	return Paid{OutTradeNo: o.OutTradeNo, TradeNo: o.TradeNo, Total: o.Total, PaidAt: o.PaidAt}
}

// SetStatus forces an order's trade status.
func (s *Server) SetStatus(outTradeNo, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.orders[outTradeNo]; o != nil {
		o.Status = status
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
		s.count("failed")
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	p := map[string]string{}
	for k := range form {
		p[k] = form.Get(k)
	}
	method := p["method"]
	node := strings.ReplaceAll(method, ".", "_") + "_response"
	if p["app_id"] != AppID || p["sign_type"] != "RSA2" || p["charset"] != "utf-8" || p["version"] != "1.0" ||
		verifyRSA2(&s.PKI.AppKey.PublicKey, signText(p, "sign"), p["sign"]) != nil {
		s.count("unauthorized")
		s.answer(w, node, map[string]any{"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"})
		return
	}
	if _, err := time.ParseInLocation("2006-01-02 15:04:05", p["timestamp"], shanghai); err != nil {
		s.answer(w, node, map[string]any{"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-timestamp"})
		return
	}
	var biz map[string]string
	if err := json.Unmarshal([]byte(p["biz_content"]), &biz); err != nil {
		s.answer(w, node, map[string]any{"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-parameter"})
		return
	}
	s.count(method)
	switch method {
	case "alipay.trade.precreate":
		s.precreate(w, node, biz, p["notify_url"])
	case "alipay.trade.query":
		s.query(w, node, biz["out_trade_no"])
	case "alipay.trade.close":
		s.close(w, node, biz["out_trade_no"])
	case "alipay.trade.refund":
		s.refund(w, r, node, biz)
	case "alipay.trade.fastpay.refund.query":
		s.queryRefund(w, node, biz)
	default:
		s.answer(w, "error_response", map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method"})
	}
}

// answer writes {"<node>":{...},"sign":"..."}, the sign over the node's text as written.
func (s *Server) answer(w http.ResponseWriter, node string, v map[string]any) {
	text, _ := json.Marshal(v)
	key := s.PKI.PlatformKey
	if s.Forge.Load() {
		key = s.PKI.StrangerKey
	}
	sig, _ := json.Marshal(SignRSA2(key, string(text)))
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	fmt.Fprintf(w, `{"%s":%s,"sign":%s}`, node, text, sig)
}

func (s *Server) precreate(w http.ResponseWriter, node string, biz map[string]string, notifyURL string) {
	total, ok := fen(biz["total_amount"])
	if biz["out_trade_no"] == "" || biz["subject"] == "" || !ok || notifyURL == "" {
		s.answer(w, node, map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.INVALID_PARAMETER", "sub_msg": "参数无效"})
		return
	}
	if _, err := time.ParseInLocation("2006-01-02 15:04:05", biz["time_expire"], shanghai); err != nil {
		s.answer(w, node, map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.INVALID_PARAMETER", "sub_msg": "time_expire"})
		return
	}
	if s.OnPrecreate != nil {
		s.OnPrecreate(biz["out_trade_no"])
	}
	s.mu.Lock()
	o, ok := s.orders[biz["out_trade_no"]]
	if !ok {
		s.seq++
		o = &Order{OutTradeNo: biz["out_trade_no"], TotalAmount: biz["total_amount"], Subject: biz["subject"], Total: total,
			TimeExpire: biz["time_expire"], NotifyURL: notifyURL, Status: "WAIT_BUYER_PAY",
			QRCode: fmt.Sprintf("https://qr.alipay.com/bax%08d%x", s.seq, time.Now().UnixNano()%0xffffff)}
		s.orders[o.OutTradeNo] = o
	}
	c := *o
	s.mu.Unlock()
	if c.Status == "TRADE_SUCCESS" {
		s.answer(w, node, map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_HAS_SUCCESS", "sub_msg": "交易已被支付"})
		return
	}
	s.answer(w, node, map[string]any{"code": "10000", "msg": "Success", "out_trade_no": c.OutTradeNo, "qr_code": c.QRCode})
}

func (s *Server) query(w http.ResponseWriter, node, outTradeNo string) {
	o := s.Order(outTradeNo)
	if o == nil || (s.Unscanned.Load() && o.Status == "WAIT_BUYER_PAY") {
		s.answer(w, node, map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"})
		return
	}
	a := map[string]any{"code": "10000", "msg": "Success", "out_trade_no": o.OutTradeNo, "trade_status": o.Status,
		"total_amount": o.TotalAmount, "buyer_logon_id": "159****5620", "buyer_user_id": "2088102177846880"}
	if o.TradeNo != "" {
		a["trade_no"] = o.TradeNo
		a["send_pay_date"] = o.PaidAt.In(shanghai).Format("2006-01-02 15:04:05")
		a["buyer_pay_amount"] = o.TotalAmount
	}
	s.answer(w, node, a)
}

func (s *Server) close(w http.ResponseWriter, node, outTradeNo string) {
	s.mu.Lock()
	o, ok := s.orders[outTradeNo]
	status := ""
	if ok {
		status = o.Status
		if status == "WAIT_BUYER_PAY" && !s.Unscanned.Load() {
			o.Status = "TRADE_CLOSED"
		}
	}
	s.mu.Unlock()
	switch {
	case !ok || (s.Unscanned.Load() && status == "WAIT_BUYER_PAY"):
		s.answer(w, node, map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"})
	case status == "WAIT_BUYER_PAY":
		s.answer(w, node, map[string]any{"code": "10000", "msg": "Success", "out_trade_no": outTradeNo, "trade_no": ""})
	default:
		s.answer(w, node, map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR", "sub_msg": "交易状态不合法"})
	}
}

// fen reads yuan with exactly two decimals.
func fen(yuan string) (int64, bool) {
	var whole, cents int64
	if _, err := fmt.Sscanf(yuan, "%d.%02d", &whole, &cents); err != nil || len(yuan) < 4 || yuan[len(yuan)-3] != '.' || whole < 0 {
		return 0, false
	}
	return whole*100 + cents, true
}
