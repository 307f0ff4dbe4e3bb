package wechattest

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Refund modes of the fake (SetRefundMode), for the refunds requested after it is set.
const (
	RefundModeSuccess    = "success"    // SUCCESS at once
	RefundModeProcessing = "processing" // PROCESSING; SUCCESS from the second query on
	RefundModeAbnormal   = "abnormal"   // ABNORMAL until SetRefundStatus
	RefundModeClosed     = "closed"     // CLOSED
	RefundModeTimeout    = "timeout"    // the refund is made (SUCCESS), but the first request is never answered
)

// Refund is a refund as the fake holds it.
type Refund struct {
	OutRefundNo   string
	OutTradeNo    string
	TransactionID string
	RefundID      string
	Reason        string
	NotifyURL     string
	Refund        int64
	Total         int64
	Status        string
	SuccessTime   time.Time
	Mode          string
	Requests      int // refund requests with this out_refund_no
	Queries       int
}

// SetRefundMode sets how refunds requested from now on behave.
func (s *Server) SetRefundMode(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refundMode = mode
}

// SetRefundStatus forces a refund's status (SUCCESS sets its success time).
func (s *Server) SetRefundStatus(outRefundNo, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.refunds[outRefundNo]; r != nil {
		r.Status = status
		if status == "SUCCESS" {
			r.SuccessTime = s.Now()
		}
	}
}

// RefundOf returns a copy of a refund, or nil.
func (s *Server) RefundOf(outRefundNo string) *Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refunds[outRefundNo]
	if !ok {
		return nil
	}
	c := *r
	return &c
}

// Refunded is the money given back for an order: the sum of its SUCCESS refunds.
func (s *Server) Refunded(outTradeNo string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, r := range s.refunds {
		if r.OutTradeNo == outTradeNo && r.Status == "SUCCESS" {
			n += r.Refund
		}
	}
	return n
}

func (s *Server) refund(w http.ResponseWriter, req *http.Request, body []byte) {
	var in struct {
		TransactionID string `json:"transaction_id"`
		OutTradeNo    string `json:"out_trade_no"`
		OutRefundNo   string `json:"out_refund_no"`
		Reason        string `json:"reason"`
		NotifyURL     string `json:"notify_url"`
		Amount        struct {
			Refund   int64  `json:"refund"`
			Total    int64  `json:"total"`
			Currency string `json:"currency"`
		} `json:"amount"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.OutRefundNo == "" || in.Amount.Refund <= 0 || in.Amount.Currency != "CNY" {
		s.answer(w, http.StatusBadRequest, map[string]string{"code": "PARAM_ERROR", "message": "bad refund"})
		return
	}
	s.mu.Lock()
	o := s.orders[in.OutTradeNo]
	if o == nil || o.State != "SUCCESS" || o.TransactionID != in.TransactionID || o.Total != in.Amount.Total {
		s.mu.Unlock()
		s.answer(w, http.StatusNotFound, map[string]string{"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"})
		return
	}
	r, seen := s.refunds[in.OutRefundNo]
	if seen && (r.Refund != in.Amount.Refund || r.OutTradeNo != in.OutTradeNo) {
		s.mu.Unlock()
		s.answer(w, http.StatusBadRequest, map[string]string{"code": "INVALID_REQUEST", "message": "退款单号重复，参数不一致"})
		return
	}
	if !seen {
		var done int64
		for _, x := range s.refunds {
			if x.OutTradeNo == in.OutTradeNo && x.Status != "CLOSED" {
				done += x.Refund
			}
		}
		if done+in.Amount.Refund > o.Total {
			s.mu.Unlock()
			s.answer(w, http.StatusBadRequest, map[string]string{"code": "INVALID_REQUEST", "message": "申请退款金额超过订单可退金额"})
			return
		}
		s.txnSeq++
		mode := s.refundMode
		if mode == "" {
			mode = RefundModeSuccess
		}
		r = &Refund{OutRefundNo: in.OutRefundNo, OutTradeNo: in.OutTradeNo, TransactionID: o.TransactionID, Reason: in.Reason,
			NotifyURL: in.NotifyURL, Refund: in.Amount.Refund, Total: o.Total, Mode: mode,
			RefundID: fmt.Sprintf("5030%06d%018d", s.txnSeq, time.Now().UnixNano()%1e18)}
		switch mode {
		case RefundModeSuccess, RefundModeTimeout:
			r.Status, r.SuccessTime = "SUCCESS", s.Now()
		case RefundModeProcessing:
			r.Status = "PROCESSING"
		case RefundModeAbnormal:
			r.Status = "ABNORMAL"
		case RefundModeClosed:
			r.Status = "CLOSED"
		}
		s.refunds[in.OutRefundNo] = r
	}
	r.Requests++
	hang := r.Mode == RefundModeTimeout && r.Requests == 1
	c := *r
	s.mu.Unlock()
	if hang {
		<-req.Context().Done() // the merchant gives up; it never gets an answer
		return
	}
	// A repeat of a refund already made answers its state: no second refund.
	s.answer(w, http.StatusOK, c.Info(false))
}

func (s *Server) queryRefund(w http.ResponseWriter, outRefundNo string) {
	s.mu.Lock()
	r, ok := s.refunds[outRefundNo]
	if ok {
		r.Queries++
		if r.Mode == RefundModeProcessing && r.Status == "PROCESSING" && r.Queries >= 2 {
			r.Status, r.SuccessTime = "SUCCESS", s.Now()
		}
	}
	var c Refund
	if ok {
		c = *r
	}
	s.mu.Unlock()
	if !ok {
		s.answer(w, http.StatusNotFound, map[string]string{"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"})
		return
	}
	s.answer(w, http.StatusOK, c.Info(false))
}

// Info renders the refund as an answer (status) or, for a notification, as its plaintext
// (refund_status, mchid).
func (r Refund) Info(notification bool) map[string]any {
	m := map[string]any{"refund_id": r.RefundID, "out_refund_no": r.OutRefundNo, "transaction_id": r.TransactionID,
		"out_trade_no": r.OutTradeNo, "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
		"create_time": time.Now().In(shanghai).Format(time.RFC3339),
		"amount":      map[string]any{"total": r.Total, "refund": r.Refund, "payer_total": r.Total, "payer_refund": r.Refund, "currency": "CNY"}}
	if !r.SuccessTime.IsZero() {
		m["success_time"] = r.SuccessTime.In(shanghai).Format(time.RFC3339)
	}
	if notification {
		m["mchid"] = MchID
		m["refund_status"] = r.Status
	} else {
		m["status"] = r.Status
	}
	return m
}

// RefundNotification returns a genuine refund notification of a refund as the fake holds it now,
// and its platform headers.
func (s *Server) RefundNotification(id, outRefundNo string) (http.Header, []byte) {
	r := s.RefundOf(outRefundNo)
	if r == nil {
		panic("wechattest: no refund " + outRefundNo)
	}
	plain, err := json.Marshal(r.Info(true))
	if err != nil {
		panic(err)
	}
	body := s.PKI.EventOf(id, "REFUND."+r.Status, "refund", plain)
	return s.PKI.Sign(s.Now(), body), body
}

// EventOf returns a notification of event whose resource (original type and associated data
// originalType) is plain, encrypted under the APIv3 key.
func (p *PKI) EventOf(id, event, originalType string, plain []byte) []byte {
	nonce := hex.EncodeToString(randomBytes(6))
	block, err := aes.NewCipher(p.APIv3Key)
	if err != nil {
		panic(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	ct := gcm.Seal(nil, []byte(nonce), plain, []byte(originalType))
	body, err := json.Marshal(map[string]any{
		"id": id, "create_time": time.Now().In(shanghai).Format(time.RFC3339), "resource_type": "encrypt-resource",
		"event_type": event, "summary": "退款状态变更",
		"resource": map[string]any{"original_type": originalType, "algorithm": "AEAD_AES_256_GCM",
			"ciphertext": base64.StdEncoding.EncodeToString(ct), "associated_data": originalType, "nonce": nonce},
	})
	if err != nil {
		panic(err)
	}
	return body
}
