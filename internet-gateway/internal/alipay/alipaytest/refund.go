package alipaytest

import (
	"net/http"
	"time"
)

// Refund modes of the fake (SetRefundMode), for the refunds requested after it is set.
const (
	RefundModeSuccess    = "success"    // fund_change Y at once
	RefundModeProcessing = "processing" // fund_change N; the query answers REFUND_PROCESSING once, then REFUND_SUCCESS
	RefundModeError      = "error"      // ACQ.SYSTEM_ERROR (result unknown) until SetRefundStatus; the refund is then made
	RefundModeRefused    = "refused"    // ACQ.REASON_TRADE_REFUND_FEE_ERR: nothing refunded
	RefundModeTimeout    = "timeout"    // the refund is made, but the first request is never answered
)

// Refund is a refund as the fake holds it.
type Refund struct {
	OutRequestNo string
	OutTradeNo   string
	TradeNo      string
	Amount       int64
	Status       string // REFUND_SUCCESS, REFUND_PROCESSING, or "" (not made)
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

// SetRefundStatus forces a refund's status (REFUND_SUCCESS sets its time).
func (s *Server) SetRefundStatus(outRequestNo, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.refunds[outRequestNo]; r != nil {
		r.Status, r.At = status, s.Now()
	}
}

// RefundOf returns a copy of a refund, or nil.
func (s *Server) RefundOf(outRequestNo string) *Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refunds[outRequestNo]
	if !ok {
		return nil
	}
	c := *r
	return &c
}

// Refunded is the money given back for a trade: the sum of its successful refunds.
func (s *Server) Refunded(outTradeNo string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, r := range s.refunds {
		if r.OutTradeNo == outTradeNo && r.Status == "REFUND_SUCCESS" {
			n += r.Amount
		}
	}
	return n
}

func (s *Server) refund(w http.ResponseWriter, req *http.Request, node string, biz map[string]string) {
	amount, ok := fen(biz["refund_amount"])
	no := biz["out_request_no"]
	if !ok || amount <= 0 || no == "" {
		s.answer(w, node, map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.INVALID_PARAMETER", "sub_msg": "参数无效"})
		return
	}
	s.mu.Lock()
	o := s.orders[biz["out_trade_no"]]
	if o == nil || o.Status != "TRADE_SUCCESS" || (biz["trade_no"] != "" && biz["trade_no"] != o.TradeNo) {
		s.mu.Unlock()
		s.answer(w, node, map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"})
		return
	}
	r, seen := s.refunds[no]
	if seen && (r.Amount != amount || r.OutTradeNo != o.OutTradeNo) {
		s.mu.Unlock()
		s.answer(w, node, map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.REASON_TRADE_REFUND_FEE_ERR", "sub_msg": "退款请求号重复，金额不一致"})
		return
	}
	mode := s.refundMode
	if seen {
		mode = r.Mode
	}
	if mode == "" {
		mode = RefundModeSuccess
	}
	if !seen {
		var done int64
		for _, x := range s.refunds {
			if x.OutTradeNo == o.OutTradeNo && x.Status != "" {
				done += x.Amount
			}
		}
		if mode == RefundModeRefused || done+amount > o.Total {
			s.mu.Unlock()
			s.answer(w, node, map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.REASON_TRADE_REFUND_FEE_ERR", "sub_msg": "退款金额超限"})
			return
		}
		r = &Refund{OutRequestNo: no, OutTradeNo: o.OutTradeNo, TradeNo: o.TradeNo, Amount: amount, Mode: mode}
		s.refunds[no] = r
	}
	r.Requests++
	fundChange := "N"
	switch {
	case r.Status != "":
		// A repeat: nothing moves again.
	case mode == RefundModeSuccess || mode == RefundModeTimeout:
		r.Status, r.At, fundChange = "REFUND_SUCCESS", s.Now(), "Y"
	case mode == RefundModeProcessing:
		r.Status = "REFUND_PROCESSING"
	case mode == RefundModeError:
		s.mu.Unlock()
		s.answer(w, node, map[string]any{"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "ACQ.SYSTEM_ERROR", "sub_msg": "系统错误"})
		return
	}
	hang := mode == RefundModeTimeout && r.Requests == 1
	c := *r
	var refunded int64
	for _, x := range s.refunds {
		if x.OutTradeNo == o.OutTradeNo && x.Status == "REFUND_SUCCESS" {
			refunded += x.Amount
		}
	}
	s.mu.Unlock()
	if hang {
		<-req.Context().Done()
		return
	}
	a := map[string]any{"code": "10000", "msg": "Success", "trade_no": c.TradeNo, "out_trade_no": c.OutTradeNo,
		"buyer_logon_id": "159****5620", "fund_change": fundChange, "refund_fee": yuan(refunded)}
	if fundChange == "Y" {
		a["gmt_refund_pay"] = c.At.In(shanghai).Format("2006-01-02 15:04:05")
	}
	s.answer(w, node, a)
}

func (s *Server) queryRefund(w http.ResponseWriter, node string, biz map[string]string) {
	s.mu.Lock()
	r, ok := s.refunds[biz["out_request_no"]]
	if ok {
		r.Queries++
		if r.Mode == RefundModeProcessing && r.Status == "REFUND_PROCESSING" && r.Queries >= 2 {
			r.Status, r.At = "REFUND_SUCCESS", s.Now()
		}
	}
	var c Refund
	if ok {
		c = *r
	}
	o := s.orders[biz["out_trade_no"]]
	s.mu.Unlock()
	if o == nil {
		s.answer(w, node, map[string]any{"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"})
		return
	}
	if !ok || c.OutTradeNo != o.OutTradeNo || c.Status == "" {
		// Alipay answers success without refund data for a refund it does not have.
		s.answer(w, node, map[string]any{"code": "10000", "msg": "Success"})
		return
	}
	a := map[string]any{"code": "10000", "msg": "Success", "trade_no": c.TradeNo, "out_trade_no": c.OutTradeNo,
		"out_request_no": c.OutRequestNo, "total_amount": o.TotalAmount, "refund_amount": yuan(c.Amount), "refund_status": c.Status}
	if c.Status == "REFUND_SUCCESS" {
		a["gmt_refund_pay"] = c.At.In(shanghai).Format("2006-01-02 15:04:05")
	}
	s.answer(w, node, a)
}
