package unionpaytest

import (
	"fmt"
	"net/http"
	"time"
)

// Refund modes of the fake (SetRefundMode), for the refunds requested after it is set.
const (
	RefundModeSuccess    = "success"    // refunded at once (origRespCode 00 on query)
	RefundModeProcessing = "processing" // origRespCode 05 on the first query, 00 from the second on
	RefundModeBusy       = "busy"       // the request is answered respCode 03 (result unknown), the refund is processing (05) until SetRefundResult
	RefundModeFailed     = "failed"     // accepted, then origRespCode 01 (the refund failed)
	RefundModeTimeout    = "timeout"    // refunded, but the first request is never answered
)

// Refund is a refund (txnType 04) as the fake holds it.
type Refund struct {
	OrderID      string
	TxnTime      string
	OrigQryID    string
	OrigOrderID  string
	Amount       int64
	BackURL      string
	QueryID      string
	OrigRespCode string
	At           time.Time
	Mode         string
	Requests     int
	Queries      int
}

// SetRefundMode sets how refunds requested from now on behave.
func (s *Server) SetRefundMode(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refundMode = mode
}

// SetRefundResult forces a refund's origRespCode (00 sets its time).
func (s *Server) SetRefundResult(orderID, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.refunds[orderID]; r != nil {
		r.OrigRespCode, r.At = code, s.Now().Truncate(time.Second)
	}
}

// RefundOf returns a copy of a refund, or nil.
func (s *Server) RefundOf(orderID string) *Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refunds[orderID]
	if !ok {
		return nil
	}
	c := *r
	return &c
}

// Refunded is the money given back for an order: its refunds with origRespCode 00.
func (s *Server) Refunded(orderID string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, r := range s.refunds {
		if r.OrigOrderID == orderID && r.OrigRespCode == "00" {
			n += r.Amount
		}
	}
	return n
}

func (s *Server) refund(w http.ResponseWriter, req *http.Request, f, base map[string]string) {
	var amount int64
	if _, err := fmt.Sscan(f["txnAmt"], &amount); err != nil || amount <= 0 || f["backUrl"] == "" || len(f["txnTime"]) != 14 ||
		f["origQryId"] == "" {
		base["respCode"], base["respMsg"] = "30", "报文格式错误"
		s.answer(w, base)
		return
	}
	s.mu.Lock()
	var orig *Order
	for _, o := range s.orders {
		if o.QueryID == f["origQryId"] && o.OrigRespCode == "00" {
			orig = o
		}
	}
	if orig == nil {
		s.mu.Unlock()
		base["respCode"], base["respMsg"] = "35", "原交易不存在或状态不正确"
		s.answer(w, base)
		return
	}
	r, seen := s.refunds[f["orderId"]]
	if seen && (r.TxnTime != f["txnTime"] || r.Amount != amount || r.OrigQryID != f["origQryId"]) {
		s.mu.Unlock()
		base["respCode"], base["respMsg"] = "12", "重复交易"
		s.answer(w, base)
		return
	}
	if !seen {
		var done int64
		for _, x := range s.refunds {
			if x.OrigQryID == orig.QueryID && x.OrigRespCode != "01" {
				done += x.Amount
			}
		}
		if done+amount > orig.Amount {
			s.mu.Unlock()
			base["respCode"], base["respMsg"] = "31", "退货金额超限"
			s.answer(w, base)
			return
		}
		mode := s.refundMode
		if mode == "" {
			mode = RefundModeSuccess
		}
		s.seq++
		r = &Refund{OrderID: f["orderId"], TxnTime: f["txnTime"], OrigQryID: f["origQryId"], OrigOrderID: orig.OrderID, Amount: amount,
			BackURL: f["backUrl"], Mode: mode, QueryID: fmt.Sprintf("%s%07d", s.Now().In(shanghai).Format("20060102150405"), s.seq)}
		switch mode {
		case RefundModeSuccess, RefundModeTimeout:
			r.OrigRespCode, r.At = "00", s.Now().Truncate(time.Second)
		case RefundModeFailed:
			r.OrigRespCode = "01"
		default:
			r.OrigRespCode = "05"
		}
		s.refunds[r.OrderID] = r
	}
	r.Requests++
	hang := r.Mode == RefundModeTimeout && r.Requests == 1
	busy := r.Mode == RefundModeBusy && r.OrigRespCode == "05"
	queryID := r.QueryID
	s.mu.Unlock()
	if hang {
		<-req.Context().Done()
		return
	}
	if busy {
		base["respCode"], base["respMsg"] = "03", "交易通讯超时，请发起查询交易"
		s.answer(w, base)
		return
	}
	base["respCode"], base["respMsg"], base["queryId"], base["txnAmt"] = "00", "成功[0000000]", queryID, f["txnAmt"]
	s.answer(w, base)
}

func (s *Server) queryRefund(w http.ResponseWriter, f, base map[string]string) {
	s.mu.Lock()
	r := s.refunds[f["orderId"]]
	r.Queries++
	if r.Mode == RefundModeProcessing && r.OrigRespCode == "05" && r.Queries >= 2 {
		r.OrigRespCode, r.At = "00", s.Now().Truncate(time.Second)
	}
	c := *r
	s.mu.Unlock()
	if c.TxnTime != f["txnTime"] {
		base["respCode"], base["respMsg"] = "34", "查无此交易"
		s.answer(w, base)
		return
	}
	base["respCode"], base["respMsg"] = "00", "成功[0000000]"
	base["origRespCode"], base["origRespMsg"] = c.OrigRespCode, "原交易状态"
	base["queryId"], base["txnAmt"], base["currencyCode"], base["origQryId"] = c.QueryID, fmt.Sprint(c.Amount), "156", c.OrigQryID
	base["traceNo"] = c.QueryID[len(c.QueryID)-6:]
	at := c.At
	if at.IsZero() {
		at = s.Now()
	}
	base["traceTime"], base["settleDate"] = at.In(shanghai).Format("0102150405"), at.In(shanghai).Format("0102")
	s.answer(w, base)
}

// RefundNotification returns a genuine backUrl notification of a refund as the fake holds it now.
func (s *Server) RefundNotification(orderID string) []byte {
	r := s.RefundOf(orderID)
	if r == nil {
		panic("unionpaytest: no refund " + orderID)
	}
	code := r.OrigRespCode
	at := r.At
	if at.IsZero() {
		at = s.Now()
	}
	f := map[string]string{
		"version": "5.1.0", "encoding": "UTF-8", "bizType": "000000", "txnType": "04", "txnSubType": "00", "accessType": "0",
		"merId": MerID, "orderId": r.OrderID, "txnTime": r.TxnTime, "txnAmt": fmt.Sprint(r.Amount), "currencyCode": "156",
		"queryId": r.QueryID, "origQryId": r.OrigQryID, "respCode": code, "respMsg": "退货", "settleAmt": fmt.Sprint(r.Amount),
		"settleCurrencyCode": "156", "settleDate": at.In(shanghai).Format("0102"), "traceNo": r.QueryID[len(r.QueryID)-6:],
		"traceTime": at.In(shanghai).Format("0102150405"),
	}
	return Form(SignWith(s.PKI.UnionPay, f))
}
