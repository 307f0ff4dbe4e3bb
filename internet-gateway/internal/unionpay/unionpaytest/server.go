package unionpaytest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a fake UnionPay gateway: consume QR codes (backTransReq.do) and queries
// (queryTrans.do). It checks every request's signature by the merchant key named by certId and
// signs every answer with UnionPay's key, writing answers as raw name=value text.
type Server struct {
	*httptest.Server
	PKI *PKI
	Now func() time.Time

	// Forge signs answers with the stranger chain.
	Forge atomic.Bool
	// Fail5xx answers the next n requests with HTTP 503.
	Fail5xx atomic.Int32
	// OnConsume, when set, runs inside each consume request before it is answered.
	OnConsume func(orderID string)

	mu         sync.Mutex
	orders     map[string]*Order
	requests   map[string]int
	seq        int
	refunds    map[string]*Refund // by orderId (the refund number)
	refundMode string
}

// Order is an order as the fake server holds it.
type Order struct {
	OrderID    string
	TxnTime    string
	TxnAmt     string
	Amount     int64
	BackURL    string
	PayTimeout string
	QRCode     string
	RiskInfo   string
	// OrigRespCode is "" until the payer pays, then 00 (or what SetResult forced).
	OrigRespCode string
	QueryID      string
	PaidAt       time.Time
}

// NewServer starts a fake gateway on clock now (time.Now when nil), closed when the test ends.
func NewServer(tb testing.TB, p *PKI, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	s := &Server{PKI: p, Now: now, orders: map[string]*Order{}, requests: map[string]int{}, refunds: map[string]*Refund{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

// Requests returns how many requests of a kind ("consume", "query", "failed", "unauthorized")
// came.
func (s *Server) Requests(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[route]
}

// Order returns a copy of an order, or nil.
func (s *Server) Order(orderID string) *Order {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[orderID]
	if !ok {
		return nil
	}
	c := *o
	return &c
}

// Pay pays an order at the server's clock and returns it as a notification describes it.
func (s *Server) Pay(orderID string) Paid {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orders[orderID]
	if o == nil {
		panic("unionpaytest: pay an unknown order " + orderID)
	}
	if o.OrigRespCode != "00" {
		o.OrigRespCode, o.PaidAt = "00", s.Now().Truncate(time.Second)
		if o.QueryID == "" { // a transaction that was processing keeps its queryId
			s.seq++
			o.QueryID = fmt.Sprintf("%s%07d", o.PaidAt.In(shanghai).Format("20060102150405"), s.seq)
		}
	}
	t, _ := time.ParseInLocation("20060102150405", o.TxnTime, shanghai)
	return Paid{OrderID: o.OrderID, TxnTime: t, QueryID: o.QueryID, Amount: o.Amount, PaidAt: o.PaidAt}
}

// SetResult forces an order's origRespCode (e.g. 05, processing).
func (s *Server) SetResult(orderID, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.orders[orderID]; o != nil {
		o.OrigRespCode = code
		if o.QueryID == "" {
			s.seq++
			o.QueryID = fmt.Sprintf("%s%07d", s.Now().In(shanghai).Format("20060102150405"), s.seq)
		}
	}
}

func (s *Server) count(route string) {
	s.mu.Lock()
	s.requests[route]++
	s.mu.Unlock()
}

// answer writes f signed, as raw name=value text in name order.
func (s *Server) answer(w http.ResponseWriter, f map[string]string) {
	c := s.PKI.UnionPay
	if s.Forge.Load() {
		c = s.PKI.Stranger
	}
	SignWith(c, f)
	names := make([]string, 0, len(f))
	for k := range f {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, k+"="+f[k])
	}
	w.Header().Set("Content-Type", "text/html;charset=UTF-8")
	io.WriteString(w, strings.Join(parts, "&"))
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if n := s.Fail5xx.Load(); n > 0 && s.Fail5xx.CompareAndSwap(n, n-1) {
		s.count("failed")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	vs, err := url.ParseQuery(string(body))
	if err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := map[string]string{}
	for k := range vs {
		f[k] = vs.Get(k)
	}
	base := map[string]string{"version": "5.1.0", "encoding": "UTF-8", "merId": f["merId"], "orderId": f["orderId"],
		"txnTime": f["txnTime"], "txnType": f["txnType"], "txnSubType": f["txnSubType"], "bizType": f["bizType"], "accessType": "0"}
	if f["version"] != "5.1.0" || f["merId"] != MerID || s.PKI.verifyMerchant(f) != nil {
		s.count("unauthorized")
		base["respCode"], base["respMsg"] = "11", "验证签名失败"
		s.answer(w, base)
		return
	}
	switch {
	case r.URL.Path == "/gateway/api/backTransReq.do" && f["txnType"] == "01" && f["txnSubType"] == "07":
		s.count("consume")
		s.consume(w, f, base)
	case r.URL.Path == "/gateway/api/backTransReq.do" && f["txnType"] == "04":
		s.count("refund")
		s.refund(w, r, f, base)
	case r.URL.Path == "/gateway/api/queryTrans.do" && f["txnType"] == "00" && s.RefundOf(f["orderId"]) != nil:
		s.count("refund query")
		s.queryRefund(w, f, base)
	case r.URL.Path == "/gateway/api/queryTrans.do" && f["txnType"] == "00":
		s.count("query")
		s.query(w, f, base)
	default:
		base["respCode"], base["respMsg"] = "12", "交易类型错误"
		s.answer(w, base)
	}
}

func (s *Server) consume(w http.ResponseWriter, f, base map[string]string) {
	var amount int64
	if _, err := fmt.Sscan(f["txnAmt"], &amount); err != nil || amount <= 0 || f["backUrl"] == "" || len(f["txnTime"]) != 14 ||
		f["currencyCode"] != "156" || len(f["payTimeout"]) != 14 {
		base["respCode"], base["respMsg"] = "30", "报文格式错误"
		s.answer(w, base)
		return
	}
	if s.OnConsume != nil {
		s.OnConsume(f["orderId"])
	}
	s.mu.Lock()
	o, ok := s.orders[f["orderId"]]
	if !ok {
		s.seq++
		o = &Order{OrderID: f["orderId"], TxnTime: f["txnTime"], TxnAmt: f["txnAmt"], Amount: amount, BackURL: f["backUrl"],
			PayTimeout: f["payTimeout"], RiskInfo: f["riskRateInfo"], QRCode: fmt.Sprintf("https://qr.95516.com/00010000/%020d", s.seq)}
		s.orders[o.OrderID] = o
	}
	qr := o.QRCode
	s.mu.Unlock()
	base["respCode"], base["respMsg"], base["qrCode"] = "00", "成功[0000000]", qr
	base["reserved"] = "{qrCodeType=1&note=a=b}"
	s.answer(w, base)
}

func (s *Server) query(w http.ResponseWriter, f, base map[string]string) {
	o := s.Order(f["orderId"])
	if o == nil || o.TxnTime != f["txnTime"] || o.OrigRespCode == "" {
		base["respCode"], base["respMsg"] = "34", "查无此交易"
		s.answer(w, base)
		return
	}
	base["respCode"], base["respMsg"] = "00", "成功[0000000]"
	base["origRespCode"], base["origRespMsg"] = o.OrigRespCode, "成功[0000000]"
	base["queryId"], base["txnAmt"], base["currencyCode"] = o.QueryID, o.TxnAmt, "156"
	base["traceNo"] = o.QueryID[len(o.QueryID)-6:]
	at := o.PaidAt
	if at.IsZero() {
		at = s.Now()
	}
	base["traceTime"], base["settleDate"] = at.In(shanghai).Format("0102150405"), at.In(shanghai).Format("0102")
	base["accNo"] = "6216***********0018"
	s.answer(w, base)
}
