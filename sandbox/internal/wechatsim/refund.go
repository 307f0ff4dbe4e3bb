package wechatsim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/shanghai"
)

// Refund statuses.
const (
	RefundSuccess    = "SUCCESS"
	RefundClosed     = "CLOSED"
	RefundProcessing = "PROCESSING"
	RefundAbnormal   = "ABNORMAL"
)

// Refund modes: how the refunds requested after POST /_sandbox/wechat/refund-mode behave.
const (
	ModeSuccess    = "success"    // SUCCESS at once (answer and notification)
	ModeProcessing = "processing" // PROCESSING; SUCCESS at the second query (then notified)
	ModeAbnormal   = "abnormal"   // ABNORMAL (notified) until POST /_sandbox/wechat/refunds/{no}/resolve
	ModeClosed     = "closed"     // CLOSED (notified): the refund failed, nothing paid back
	ModeTimeout    = "timeout"    // made at once (SUCCESS, notified), but the first request is never answered
)

// RefundModes lists the modes.
var RefundModes = []string{ModeSuccess, ModeProcessing, ModeAbnormal, ModeClosed, ModeTimeout}

// timeoutHold bounds how long a request of a timeout-mode refund is held without an answer
// when the merchant does not give up first.
const timeoutHold = 30 * time.Second

var outRefundNoPattern = regexp.MustCompile(`^[A-Za-z0-9_\-|*@]{1,64}$`)

type refund struct {
	o           *order
	OutRefundNo string
	RefundID    string
	Reason      string
	NotifyURL   string
	Refund      int64
	Status      string
	Mode        string
	CreatedAt   time.Time
	SuccessTime time.Time
	Requests    int
	Queries     int
	notes       []*notification
}

// RefundRequest is the body of POST /v3/refund/domestic/refunds.
type RefundRequest struct {
	TransactionID string          `json:"transaction_id,omitempty"`
	OutTradeNo    string          `json:"out_trade_no,omitempty"`
	OutRefundNo   string          `json:"out_refund_no"`
	Reason        string          `json:"reason,omitempty"`
	NotifyURL     string          `json:"notify_url,omitempty"`
	FundsAccount  string          `json:"funds_account,omitempty"`
	Amount        RefundAmountReq `json:"amount"`
	GoodsDetail   json.RawMessage `json:"goods_detail,omitempty"`
}

// RefundAmountReq is the amount of a refund request, fen.
type RefundAmountReq struct {
	Refund   int64           `json:"refund"`
	Total    int64           `json:"total"`
	Currency string          `json:"currency"`
	From     json.RawMessage `json:"from,omitempty"`
}

// RefundInfo is a refund as answers and notification plaintexts carry it.
type RefundInfo struct {
	MchID               string       `json:"mchid,omitempty"`
	RefundID            string       `json:"refund_id"`
	OutRefundNo         string       `json:"out_refund_no"`
	TransactionID       string       `json:"transaction_id"`
	OutTradeNo          string       `json:"out_trade_no"`
	Channel             string       `json:"channel"`
	UserReceivedAccount string       `json:"user_received_account"`
	SuccessTime         string       `json:"success_time,omitempty"`
	CreateTime          string       `json:"create_time"`
	Status              string       `json:"status,omitempty"`
	RefundStatus        string       `json:"refund_status,omitempty"`
	Amount              RefundAmount `json:"amount"`
}

// RefundAmount is the amount block of a refund, fen.
type RefundAmount struct {
	Total       int64  `json:"total"`
	Refund      int64  `json:"refund"`
	PayerTotal  int64  `json:"payer_total"`
	PayerRefund int64  `json:"payer_refund"`
	Currency    string `json:"currency"`
}

func (r *refund) info(notification bool) RefundInfo {
	i := RefundInfo{RefundID: r.RefundID, OutRefundNo: r.OutRefundNo, TransactionID: r.o.TransactionID, OutTradeNo: r.o.OutTradeNo,
		Channel: "ORIGINAL", UserReceivedAccount: "支付用户零钱", CreateTime: shanghai.Time(r.CreatedAt),
		Amount: RefundAmount{Total: r.o.Total, Refund: r.Refund, PayerTotal: r.o.Total, PayerRefund: r.Refund, Currency: "CNY"}}
	if !r.SuccessTime.IsZero() {
		i.SuccessTime = shanghai.Time(r.SuccessTime)
	}
	if notification {
		i.MchID, i.RefundStatus = r.o.MchID, r.Status
	} else {
		i.Status = r.Status
	}
	return i
}

// refunded is the money paid back for an order (its SUCCESS refunds); under s.mu.
func (s *Sim) refunded(o *order) int64 {
	var n int64
	for _, r := range s.refunds {
		if r.o == o && r.Status == RefundSuccess {
			n += r.Refund
		}
	}
	return n
}

func (s *Sim) handleRefund(c echo.Context) error {
	var req RefundRequest
	if err := decode(c.Request().Body, &req); err != nil {
		return err
	}
	switch {
	case req.TransactionID == "" && req.OutTradeNo == "":
		return apiError(http.StatusBadRequest, "PARAM_ERROR", "give transaction_id or out_trade_no")
	case !outRefundNoPattern.MatchString(req.OutRefundNo):
		return apiError(http.StatusBadRequest, "PARAM_ERROR", "out_refund_no must be 1-64 of [A-Za-z0-9_-|*@]")
	case utf8.RuneCountInString(req.Reason) > 80:
		return apiError(http.StatusBadRequest, "PARAM_ERROR", "reason must be at most 80 characters")
	case req.Amount.Refund <= 0 || req.Amount.Total <= 0 || req.Amount.Currency != "CNY":
		return apiError(http.StatusBadRequest, "PARAM_ERROR", "amount.refund and amount.total must be > 0 fen, currency CNY")
	case req.NotifyURL != "" && checkNotifyURL(req.NotifyURL) != nil:
		return apiError(http.StatusBadRequest, "PARAM_ERROR", "notify_url must be an absolute http(s) URL without query")
	}
	id, err := randomString(s.cfg.Rand, 12, digits)
	if err != nil {
		return err
	}
	now := s.now()
	s.mu.Lock()
	var o *order
	if req.TransactionID != "" {
		o = s.byTxn[req.TransactionID]
	}
	if o == nil && req.OutTradeNo != "" {
		o = s.byTrade[req.OutTradeNo]
	}
	switch {
	case o == nil || (req.OutTradeNo != "" && o.OutTradeNo != req.OutTradeNo) || (req.TransactionID != "" && o.TransactionID != req.TransactionID):
		s.mu.Unlock()
		return apiError(http.StatusNotFound, "RESOURCE_NOT_EXISTS", "订单不存在")
	case o.State != StateSuccess:
		s.mu.Unlock()
		return apiError(http.StatusBadRequest, "INVALID_REQUEST", "订单未支付，不能退款")
	case req.Amount.Total != o.Total:
		s.mu.Unlock()
		return apiError(http.StatusBadRequest, "INVALID_REQUEST", "amount.total %d is not the order's %d", req.Amount.Total, o.Total)
	}
	r, seen := s.byRefund[req.OutRefundNo]
	if seen && (r.o != o || r.Refund != req.Amount.Refund) {
		s.mu.Unlock()
		return apiError(http.StatusBadRequest, "INVALID_REQUEST", "退款单号已存在，参数不一致: out_refund_no %s", req.OutRefundNo)
	}
	var notes []*notification
	if !seen {
		var pending int64
		for _, x := range s.refunds {
			if x.o == o && x.Status != RefundClosed {
				pending += x.Refund
			}
		}
		if pending+req.Amount.Refund > o.Total {
			s.mu.Unlock()
			return apiError(http.StatusBadRequest, "NOT_ENOUGH", "申请退款金额超过订单可退金额")
		}
		mode := s.refundMode
		if mode == "" {
			mode = ModeSuccess
		}
		s.txnSeq++
		r = &refund{o: o, OutRefundNo: req.OutRefundNo, Reason: req.Reason, NotifyURL: req.NotifyURL, Refund: req.Amount.Refund,
			Mode: mode, CreatedAt: now,
			RefundID: fmt.Sprintf("5030%06d%s%s", s.txnSeq%1000000, now.In(shanghai.Location).Format("20060102"), id)}
		s.refunds = append(s.refunds, r)
		s.byRefund[r.OutRefundNo] = r
		switch mode {
		case ModeSuccess, ModeTimeout:
			notes = s.setRefundStatus(r, RefundSuccess)
		case ModeProcessing:
			r.Status = RefundProcessing
		case ModeAbnormal:
			notes = s.setRefundStatus(r, RefundAbnormal)
		case ModeClosed:
			notes = s.setRefundStatus(r, RefundClosed)
		}
		s.log.Info("wechat refund requested", "out_refund_no", r.OutRefundNo, "out_trade_no", o.OutTradeNo, "refund", r.Refund,
			"mode", mode, "status", r.Status)
	}
	r.Requests++
	hang := r.Mode == ModeTimeout && r.Requests == 1
	info := r.info(false)
	s.mu.Unlock()
	s.send(notes)
	if hang {
		// The refund is made; its request is never answered (the merchant's call times out).
		t := time.NewTimer(timeoutHold)
		defer t.Stop()
		select {
		case <-c.Request().Context().Done():
		case <-t.C:
		}
		return apiError(http.StatusGatewayTimeout, "SYSTEM_ERROR", "the sandbox held this refund request without an answer")
	}
	return c.JSON(http.StatusOK, info)
}

// setRefundStatus changes a refund's status and returns its notification to send (when it has
// a notify_url); under s.mu.
func (s *Sim) setRefundStatus(r *refund, status string) []*notification {
	if r.Status == status {
		return nil
	}
	r.Status = status
	if status == RefundSuccess {
		r.SuccessTime = s.now()
	}
	if r.NotifyURL == "" {
		return nil
	}
	n, err := s.refundNotification(r)
	if err != nil {
		s.log.Error("wechat refund notification", "out_refund_no", r.OutRefundNo, "err", err)
		return nil
	}
	r.notes = append(r.notes, n)
	return []*notification{n}
}

// send queues refund notifications.
func (s *Sim) send(notes []*notification) {
	for _, n := range notes {
		s.notifier.enqueue(job{due: time.Now(), note: n})
	}
}

func (s *Sim) refundNotification(r *refund) (*notification, error) {
	plain, err := json.Marshal(r.info(true))
	if err != nil {
		return nil, err
	}
	nonce, err := randomString(s.cfg.Rand, 12, alnum)
	if err != nil {
		return nil, err
	}
	const ad = "refund"
	ct, err := sealResource(s.cfg.Keys.APIv3Key, []byte(nonce), plain, []byte(ad))
	if err != nil {
		return nil, err
	}
	id, err := uuid(s)
	if err != nil {
		return nil, err
	}
	summary := map[string]string{RefundSuccess: "退款成功", RefundAbnormal: "退款异常", RefundClosed: "退款关闭"}[r.Status]
	body, err := json.Marshal(Event{ID: id, CreateTime: shanghai.Time(s.now()), ResourceType: "encrypt-resource",
		EventType: "REFUND." + r.Status, Summary: summary,
		Resource: Resource{OriginalType: "refund", Algorithm: "AEAD_AES_256_GCM", Ciphertext: base64.StdEncoding.EncodeToString(ct),
			AssociatedData: ad, Nonce: nonce}})
	if err != nil {
		return nil, err
	}
	return &notification{url: r.NotifyURL, body: body, done: make(chan struct{})}, nil
}

func (s *Sim) handleRefundQuery(c echo.Context) error {
	no := pathParam(c, "out_refund_no")
	s.mu.Lock()
	r, ok := s.byRefund[no]
	if !ok {
		s.mu.Unlock()
		return apiError(http.StatusNotFound, "RESOURCE_NOT_EXISTS", "退款单不存在")
	}
	r.Queries++
	var notes []*notification
	if r.Mode == ModeProcessing && r.Status == RefundProcessing && r.Queries >= 2 {
		notes = s.setRefundStatus(r, RefundSuccess)
	}
	info := r.info(false)
	s.mu.Unlock()
	s.send(notes)
	return c.JSON(http.StatusOK, info)
}

// RefundModeRequest is the body of POST /_sandbox/wechat/refund-mode.
type RefundModeRequest struct {
	Mode string `json:"mode"`
}

func (s *Sim) handleRefundMode(c echo.Context) error {
	var req RefundModeRequest
	if err := decode(c.Request().Body, &req); err != nil {
		return err
	}
	if err := s.SetRefundMode(req.Mode); err != nil {
		return apiError(http.StatusBadRequest, "PARAM_ERROR", "%v", err)
	}
	return c.JSON(http.StatusOK, req)
}

// SetRefundMode sets how the refunds requested from now on behave (one of RefundModes).
func (s *Sim) SetRefundMode(mode string) error {
	for _, m := range RefundModes {
		if m == mode {
			s.mu.Lock()
			s.refundMode = mode
			s.mu.Unlock()
			return nil
		}
	}
	return fmt.Errorf("mode must be one of %v", RefundModes)
}

// ResolveRefund makes an abnormal or processing refund SUCCESS (as the merchant's manual handling
// of an abnormal refund would) and notifies it.
func (s *Sim) ResolveRefund(outRefundNo string) error {
	s.mu.Lock()
	r, ok := s.byRefund[outRefundNo]
	if !ok {
		s.mu.Unlock()
		return ErrNotFound
	}
	var notes []*notification
	if r.Status == RefundAbnormal || r.Status == RefundProcessing {
		notes = s.setRefundStatus(r, RefundSuccess)
	}
	s.mu.Unlock()
	s.send(notes)
	return nil
}

func (s *Sim) handleRefundResolve(c echo.Context) error {
	if err := s.ResolveRefund(pathParam(c, "out_refund_no")); err != nil {
		return apiError(http.StatusNotFound, "RESOURCE_NOT_EXISTS", "退款单不存在")
	}
	return c.NoContent(http.StatusNoContent)
}

// RefundState is a refund as /_sandbox/state shows it (within its order).
type RefundState struct {
	OutRefundNo   string               `json:"out_refund_no"`
	RefundID      string               `json:"refund_id"`
	Refund        int64                `json:"refund"`
	Status        string               `json:"status"`
	Mode          string               `json:"mode"`
	Requests      int                  `json:"requests"`
	Queries       int                  `json:"queries"`
	SuccessTime   string               `json:"success_time,omitempty"`
	Notifications []*NotificationState `json:"notifications,omitempty"`
}

// refundStates lists an order's refunds; under s.mu.
func (s *Sim) refundStates(o *order) []RefundState {
	var out []RefundState
	for _, r := range s.refunds {
		if r.o != o {
			continue
		}
		st := RefundState{OutRefundNo: r.OutRefundNo, RefundID: r.RefundID, Refund: r.Refund, Status: r.Status, Mode: r.Mode,
			Requests: r.Requests, Queries: r.Queries}
		if !r.SuccessTime.IsZero() {
			st.SuccessTime = shanghai.Time(r.SuccessTime)
		}
		for _, n := range r.notes {
			st.Notifications = append(st.Notifications, &NotificationState{URL: n.url, Acknowledged: n.acknowledged,
				Abandoned: n.abandoned, Attempts: append([]Attempt{}, n.attempts...)})
		}
		out = append(out, st)
	}
	return out
}

// RefundDone returns a channel closed when the latest notification of a refund has been
// acknowledged or abandoned.
func (s *Sim) RefundDone(outRefundNo string) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byRefund[outRefundNo]
	if !ok || len(r.notes) == 0 {
		return nil, ErrNotFound
	}
	return r.notes[len(r.notes)-1].done, nil
}
