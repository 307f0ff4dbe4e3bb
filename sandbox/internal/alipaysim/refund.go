package alipaysim

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/shanghai"
)

// Refund modes: how the refunds requested after POST /_sandbox/alipay/refund-mode behave.
const (
	ModeSuccess    = "success"    // refunded at once: fund_change Y
	ModeProcessing = "processing" // fund_change N; the query answers REFUND_PROCESSING once, then REFUND_SUCCESS
	ModeAbnormal   = "abnormal"   // ACQ.SYSTEM_ERROR (result unknown) until POST /_sandbox/alipay/refunds/{no}/resolve refunds it
	ModeClosed     = "closed"     // refused: ACQ.REASON_TRADE_REFUND_FEE_ERR, nothing paid back
	ModeTimeout    = "timeout"    // refunded (fund_change Y), but the first request is never answered
)

// RefundModes lists the modes.
var RefundModes = []string{ModeSuccess, ModeProcessing, ModeAbnormal, ModeClosed, ModeTimeout}

// Refund statuses of alipay.trade.fastpay.refund.query. REFUND_PROCESSING is the sandbox's
// answer for a refund not finished (see the README).
const (
	RefundSuccess    = "REFUND_SUCCESS"
	RefundProcessing = "REFUND_PROCESSING"
)

const timeoutHold = 30 * time.Second

type refund struct {
	o            *order
	OutRequestNo string
	Amount       int64
	Reason       string
	Status       string // "", REFUND_PROCESSING, REFUND_SUCCESS
	Mode         string
	Requests     int
	Queries      int
	At           time.Time
}

type refundBiz struct {
	OutTradeNo   string `json:"out_trade_no"`
	TradeNo      string `json:"trade_no"`
	RefundAmount string `json:"refund_amount"`
	RefundReason string `json:"refund_reason"`
	OutRequestNo string `json:"out_request_no"`
}

// refunded is the money paid back for an order; under s.mu.
func (s *Sim) refunded(o *order) int64 {
	var n int64
	for _, r := range s.refunds {
		if r.o == o && r.Status == RefundSuccess {
			n += r.Amount
		}
	}
	return n
}

// refund answers alipay.trade.refund; hang says the request is to stay unanswered.
func (s *Sim) refund(raw string) (map[string]any, bool, error) {
	var b refundBiz
	if err := json.Unmarshal([]byte(raw), &b); err != nil {
		return nil, false, invalidParam("biz_content is not JSON")
	}
	amount, ok := parseYuan(b.RefundAmount)
	switch {
	case !ok || amount <= 0:
		return nil, false, invalidParam("refund_amount must be yuan with at most two decimals")
	case b.OutRequestNo != "" && !outTradeNoPattern.MatchString(b.OutRequestNo):
		return nil, false, invalidParam("out_request_no must be 1-64 of [A-Za-z0-9_]")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.find(raw)
	if err != nil {
		return nil, false, err
	}
	if o.Status != TradeSuccess {
		return nil, false, business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
	}
	no := b.OutRequestNo
	if no == "" {
		no = o.OutTradeNo // a full refund without a request number: Alipay uses the trade's
	}
	r, seen := s.refunds[no]
	if seen && (r.o != o || r.Amount != amount) {
		return nil, false, business("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款请求号重复，退款金额不一致")
	}
	if !seen {
		var pending int64
		for _, x := range s.refunds {
			if x.o == o && x.Status != "" {
				pending += x.Amount
			}
		}
		mode := s.refundMode
		if mode == "" {
			mode = ModeSuccess
		}
		if mode == ModeClosed || pending+amount > o.Total {
			return nil, false, business("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限")
		}
		r = &refund{o: o, OutRequestNo: no, Amount: amount, Reason: b.RefundReason, Mode: mode}
		s.refunds[no] = r
		s.log.Info("alipay refund requested", "out_request_no", no, "out_trade_no", o.OutTradeNo, "amount", amount, "mode", mode)
	}
	r.Requests++
	fundChange := "N"
	switch {
	case r.Status != "":
		// Asked again: nothing moves again.
	case r.Mode == ModeSuccess || r.Mode == ModeTimeout:
		r.Status, r.At, fundChange = RefundSuccess, s.now(), "Y"
	case r.Mode == ModeProcessing:
		r.Status = RefundProcessing
	case r.Mode == ModeAbnormal:
		return nil, false, &apiError{Code: "20000", Msg: "Service Currently Unavailable", SubCode: "ACQ.SYSTEM_ERROR", SubMsg: "系统错误"}
	}
	if r.Mode == ModeTimeout && r.Requests == 1 {
		return nil, true, nil
	}
	a := map[string]any{"code": "10000", "msg": "Success", "trade_no": o.TradeNo, "out_trade_no": o.OutTradeNo,
		"buyer_logon_id": o.BuyerLogon, "buyer_user_id": o.BuyerID, "fund_change": fundChange, "refund_fee": yuan(s.refunded(o)),
		"send_back_fee": yuan(r.Amount)}
	if fundChange == "Y" {
		a["gmt_refund_pay"] = r.At.In(shanghai.Location).Format(timeLayout)
	}
	return a, false, nil
}

// refundQuery answers alipay.trade.fastpay.refund.query: the refund, or success without refund
// data for a refund Alipay does not have.
func (s *Sim) refundQuery(raw string) (map[string]any, error) {
	var b refundBiz
	if err := json.Unmarshal([]byte(raw), &b); err != nil {
		return nil, invalidParam("biz_content is not JSON")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.find(raw)
	if err != nil {
		return nil, err
	}
	no := b.OutRequestNo
	if no == "" {
		no = o.OutTradeNo
	}
	r, ok := s.refunds[no]
	if !ok || r.o != o || r.Status == "" {
		return map[string]any{"code": "10000", "msg": "Success"}, nil
	}
	r.Queries++
	if r.Mode == ModeProcessing && r.Status == RefundProcessing && r.Queries >= 2 {
		r.Status, r.At = RefundSuccess, s.now()
	}
	a := map[string]any{"code": "10000", "msg": "Success", "trade_no": o.TradeNo, "out_trade_no": o.OutTradeNo,
		"out_request_no": r.OutRequestNo, "total_amount": yuan(o.Total), "refund_amount": yuan(r.Amount), "refund_status": r.Status}
	if r.Status == RefundSuccess {
		a["gmt_refund_pay"] = r.At.In(shanghai.Location).Format(timeLayout)
	}
	return a, nil
}

// holdUnanswered keeps a request without an answer until the merchant gives up (or a bound).
func holdUnanswered(c echo.Context) {
	t := time.NewTimer(timeoutHold)
	defer t.Stop()
	select {
	case <-c.Request().Context().Done():
	case <-t.C:
	}
}

// SetRefundMode sets how the refunds requested from now on behave (one of RefundModes).
func (s *Sim) SetRefundMode(mode string) bool {
	for _, m := range RefundModes {
		if m == mode {
			s.mu.Lock()
			s.refundMode = mode
			s.mu.Unlock()
			return true
		}
	}
	return false
}

// ResolveRefund makes a refund left abnormal (or processing) refunded.
func (s *Sim) ResolveRefund(outRequestNo string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refunds[outRequestNo]
	if !ok {
		return false
	}
	if r.Status != RefundSuccess {
		r.Status, r.At = RefundSuccess, s.now()
	}
	return true
}

func (s *Sim) handleRefundMode(c echo.Context) error {
	var req struct {
		Mode string `json:"mode"`
	}
	if err := json.NewDecoder(c.Request().Body).Decode(&req); err != nil || !s.SetRefundMode(req.Mode) {
		return c.JSON(http.StatusBadRequest, map[string]any{"code": "INVALID_MODE", "modes": RefundModes})
	}
	return c.JSON(http.StatusOK, req)
}

func (s *Sim) handleRefundResolve(c echo.Context) error {
	if !s.ResolveRefund(c.Param("out_request_no")) {
		return c.JSON(http.StatusNotFound, map[string]string{"code": "NOT_FOUND"})
	}
	return c.NoContent(http.StatusNoContent)
}

// RefundState is a refund as /_sandbox/state shows it (within its order).
type RefundState struct {
	OutRequestNo string `json:"out_request_no"`
	Amount       int64  `json:"amount"`
	Status       string `json:"status"`
	Mode         string `json:"mode"`
	Requests     int    `json:"requests"`
	Queries      int    `json:"queries"`
}

// refundStates lists an order's refunds; under s.mu.
func (s *Sim) refundStates(o *order) []RefundState {
	var out []RefundState
	for _, r := range s.refunds {
		if r.o == o {
			out = append(out, RefundState{OutRequestNo: r.OutRequestNo, Amount: r.Amount, Status: r.Status, Mode: r.Mode,
				Requests: r.Requests, Queries: r.Queries})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].OutRequestNo < out[j].OutRequestNo })
	return out
}
