package unionpaysim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/resend"
	"finepay/sandbox/internal/shanghai"
)

// Refund modes: how the refunds (txnType 04) requested after POST /_sandbox/unionpay/refund-mode
// behave. A refund answered respCode 00 is accepted; its result is notified to backUrl and
// answered by query (origRespCode).
const (
	ModeSuccess    = "success"    // refunded at once: origRespCode 00, notified
	ModeProcessing = "processing" // origRespCode 05 at the first query, 00 from the second (then notified)
	ModeAbnormal   = "abnormal"   // answered respCode 03 (result unknown); 05 until POST /_sandbox/unionpay/refunds/{orderId}/resolve
	ModeClosed     = "closed"     // accepted, then failed: origRespCode 01, notified with respCode 01
	ModeTimeout    = "timeout"    // refunded and notified, but the first request is never answered
)

// RefundModes lists the modes.
var RefundModes = []string{ModeSuccess, ModeProcessing, ModeAbnormal, ModeClosed, ModeTimeout}

const timeoutHold = 30 * time.Second

type refund struct {
	o         *order // the consume refunded
	OrderID   string
	TxnTime   string
	TxnAmt    int64
	BackURL   string
	QueryID   string
	Mode      string
	Code      string // origRespCode: 05 processing, 00 refunded, 01 failed
	TraceNo   string
	TraceTime string
	Requests  int
	Queries   int
	delivery  *resend.Delivery
}

// refunded is the money paid back for an order; under s.mu.
func (s *Sim) refunded(o *order) int64 {
	var n int64
	for _, r := range s.refunds {
		if r.o == o && r.Code == "00" {
			n += r.TxnAmt
		}
	}
	return n
}

// handleRefund answers a refund request (txnType 04, txnSubType 00) at backTransReq.do.
func (s *Sim) handleRefund(c echo.Context, f map[string]string) error {
	_, ok := parseTxnTime(f["txnTime"])
	switch {
	case f["txnSubType"] != "00":
		return s.answerError(c, f, &respError{"12", "交易类型错误: a refund is txnType 04, txnSubType 00"})
	case !orderIDPattern.MatchString(f["orderId"]):
		return s.answerError(c, f, formatError("orderId must be 8-40 letters or digits"))
	case !ok:
		return s.answerError(c, f, formatError("txnTime must be YYYYMMDDhhmmss"))
	case !amountPattern.MatchString(f["txnAmt"]):
		return s.answerError(c, f, formatError("txnAmt must be a positive amount in fen"))
	case f["origQryId"] == "":
		return s.answerError(c, f, formatError("origQryId is required"))
	case !checkURL(f["backUrl"]):
		return s.answerError(c, f, formatError("backUrl must be an absolute http(s) URL"))
	}
	amount, _ := strconv.ParseInt(f["txnAmt"], 10, 64)
	rnd, err := randomDigits(s.cfg.Rand, 7)
	if err != nil {
		return err
	}
	now := s.now()
	key := f["orderId"] + "/" + f["txnTime"]
	s.mu.Lock()
	var orig *order
	for _, o := range s.orders {
		if o.Paid && o.QueryID == f["origQryId"] {
			orig = o
		}
	}
	if orig == nil {
		s.mu.Unlock()
		return s.answerError(c, f, &respError{"35", "原交易不存在或状态不正确"})
	}
	r, seen := s.refunds[key]
	if seen && (r.o != orig || r.TxnAmt != amount) {
		s.mu.Unlock()
		return s.answerError(c, f, &respError{"12", "重复交易"})
	}
	var note bool
	if !seen {
		var pending int64
		for _, x := range s.refunds {
			if x.o == orig && x.Code != "01" {
				pending += x.TxnAmt
			}
		}
		if pending+amount > orig.TxnAmt {
			s.mu.Unlock()
			return s.answerError(c, f, &respError{"31", "退货金额超过原交易可退金额"})
		}
		mode := s.refundMode
		if mode == "" {
			mode = ModeSuccess
		}
		r = &refund{o: orig, OrderID: f["orderId"], TxnTime: f["txnTime"], TxnAmt: amount, BackURL: f["backUrl"], Mode: mode, Code: "05",
			QueryID: now.In(shanghai.Location).Format(txnLayout) + rnd}
		s.refunds[key] = r
		switch mode {
		case ModeSuccess, ModeTimeout:
			note = s.finishRefund(r, "00")
		case ModeClosed:
			note = s.finishRefund(r, "01")
		}
		s.log.Info("unionpay refund requested", "order_id", r.OrderID, "orig_qry_id", orig.QueryID, "txn_amt", amount, "mode", mode)
	}
	r.Requests++
	hang := r.Mode == ModeTimeout && r.Requests == 1
	busy := r.Mode == ModeAbnormal && r.Code == "05"
	queryID := r.QueryID
	s.mu.Unlock()
	if note {
		s.notifyRefund(r)
	}
	if hang {
		t := time.NewTimer(timeoutHold)
		defer t.Stop()
		select {
		case <-c.Request().Context().Done():
		case <-t.C:
		}
		return s.answerError(c, f, &respError{"03", "交易通讯超时，请发起查询交易"})
	}
	if busy {
		return s.answerError(c, f, &respError{"03", "交易通讯超时，请发起查询交易"})
	}
	return s.answer(c, f, map[string]string{"respCode": "00", "respMsg": "成功[0000000]", "queryId": queryID,
		"origQryId": f["origQryId"], "txnAmt": f["txnAmt"]})
}

// finishRefund sets a refund's result (00 refunded, 01 failed) and reports whether to notify it;
// under s.mu.
func (s *Sim) finishRefund(r *refund, code string) bool {
	if r.Code == code {
		return false
	}
	s.seq++
	local := s.now().In(shanghai.Location)
	r.Code, r.TraceNo, r.TraceTime = code, fmt.Sprintf("%06d", s.seq%1000000), local.Format("0102150405")
	return true
}

// notifyRefund sends a refund's result to its backUrl on UnionPay's schedule.
func (s *Sim) notifyRefund(r *refund) {
	s.mu.Lock()
	f := map[string]string{
		"version": "5.1.0", "encoding": "UTF-8", "bizType": "000000", "txnType": "04", "txnSubType": "00", "accessType": "0",
		"merId": s.cfg.MerID, "orderId": r.OrderID, "txnTime": r.TxnTime, "txnAmt": strconv.FormatInt(r.TxnAmt, 10),
		"currencyCode": "156", "queryId": r.QueryID, "origQryId": r.o.QueryID, "traceNo": r.TraceNo, "traceTime": r.TraceTime,
		"settleAmt": strconv.FormatInt(r.TxnAmt, 10), "settleCurrencyCode": "156", "settleDate": r.TraceTime[:4],
		"respCode": r.Code, "respMsg": map[string]string{"00": "成功[0000000]", "01": "交易失败"}[r.Code],
	}
	err := s.cfg.Keys.sign(f)
	s.mu.Unlock()
	if err != nil {
		s.log.Error("unionpay refund notification", "order_id", r.OrderID, "err", err)
		return
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	h.Set("User-Agent", "Mozilla/4.0 (FinePay sandbox; UnionPay notification)")
	d := s.queue.Add("refund:"+r.OrderID, resend.Request{URL: r.BackURL, Header: h, Body: encodeForm(f)}, acknowledged, 0, false)
	s.mu.Lock()
	r.delivery = d
	s.mu.Unlock()
}

// queryRefund answers a query of a refund; under s.mu. A processing-mode refund is refunded
// (and notified) at its second query.
func (s *Sim) queryRefund(r *refund) map[string]string {
	r.Queries++
	if r.Mode == ModeProcessing && r.Code == "05" && r.Queries >= 2 && s.finishRefund(r, "00") {
		go s.notifyRefund(r)
	}
	a := map[string]string{"respCode": "00", "respMsg": "成功[0000000]", "origRespCode": r.Code,
		"origRespMsg": map[string]string{"00": "成功[0000000]", "01": "交易失败", "05": "交易处理中"}[r.Code],
		"queryId":     r.QueryID, "origQryId": r.o.QueryID, "txnAmt": strconv.FormatInt(r.TxnAmt, 10), "currencyCode": "156"}
	if r.Code != "05" {
		a["traceNo"], a["traceTime"], a["settleDate"] = r.TraceNo, r.TraceTime, r.TraceTime[:4]
	}
	return a
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

// ResolveRefund makes the (latest) refund with orderId that is still processing refunded, and
// notifies it.
func (s *Sim) ResolveRefund(orderID string) bool {
	s.mu.Lock()
	var r *refund
	for _, x := range s.refunds {
		if x.OrderID == orderID && (r == nil || x.TxnTime > r.TxnTime) {
			r = x
		}
	}
	note := r != nil && r.Code == "05" && s.finishRefund(r, "00")
	s.mu.Unlock()
	if note {
		s.notifyRefund(r)
	}
	return r != nil
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
	if !s.ResolveRefund(c.Param("order_id")) {
		return c.JSON(http.StatusNotFound, map[string]string{"code": "NOT_FOUND"})
	}
	return c.NoContent(http.StatusNoContent)
}

// RefundState is a refund as /_sandbox/state shows it (within its order).
type RefundState struct {
	OrderID      string        `json:"order_id"`
	TxnTime      string        `json:"txn_time"`
	TxnAmt       int64         `json:"txn_amt"`
	QueryID      string        `json:"query_id"`
	OrigRespCode string        `json:"orig_resp_code"`
	Mode         string        `json:"mode"`
	Requests     int           `json:"requests"`
	Queries      int           `json:"queries"`
	Notification *resend.State `json:"notification,omitempty"`
}

// refundStates lists an order's refunds; under s.mu (the notifications' states are not taken
// here: resend has its own lock, see RefundNotification).
func (s *Sim) refundStates(o *order) []RefundState {
	var out []RefundState
	for _, r := range s.refunds {
		if r.o == o {
			out = append(out, RefundState{OrderID: r.OrderID, TxnTime: r.TxnTime, TxnAmt: r.TxnAmt, QueryID: r.QueryID,
				OrigRespCode: r.Code, Mode: r.Mode, Requests: r.Requests, Queries: r.Queries})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].OrderID+out[i].TxnTime < out[j].OrderID+out[j].TxnTime })
	return out
}

// RefundNotification returns the delivery state of the (latest) refund with orderId.
func (s *Sim) RefundNotification(orderID string) (resend.State, <-chan struct{}, error) {
	s.mu.Lock()
	var d *resend.Delivery
	for _, x := range s.refunds {
		if x.OrderID == orderID && x.delivery != nil {
			d = x.delivery
		}
	}
	s.mu.Unlock()
	if d == nil {
		return resend.State{}, nil, ErrNotFound
	}
	return s.queue.State(d), d.Done(), nil
}
