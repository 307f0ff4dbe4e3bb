package alipaysim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"finepay/sandbox/internal/resend"
	"finepay/sandbox/internal/shanghai"
)

// Trade statuses.
const (
	WaitBuyerPay  = "WAIT_BUYER_PAY"
	TradeSuccess  = "TRADE_SUCCESS"
	TradeFinished = "TRADE_FINISHED"
	TradeClosed   = "TRADE_CLOSED"
)

// timeLayout is how the open platform writes times (Asia/Shanghai).
const timeLayout = "2006-01-02 15:04:05"

type order struct {
	OutTradeNo  string
	TradeNo     string
	Subject     string
	Total       int64  // fen
	TotalAmount string // yuan, as the merchant sent it
	NotifyURL   string
	TimeExpire  string // as sent (time_expire, or timeout_express)
	expire      time.Time
	Code        string // the token at the end of qr_code
	Status      string
	CreatedAt   time.Time
	PaidAt      time.Time
	ClosedAt    time.Time
	BuyerID     string
	BuyerLogon  string

	drop       bool // notifications are dropped (POST /_sandbox/alipay/orders/{no}/drop-notifications)
	deliveries []*resend.Delivery
}

func (o *order) qrCode() string { return "https://qr.alipay.com/" + o.Code }

// settle closes an unpaid order whose time has passed, as Alipay does at the timeout.
func (o *order) settle(now time.Time) {
	if o.Status == WaitBuyerPay && !o.expire.IsZero() && now.After(o.expire) {
		o.Status, o.ClosedAt = TradeClosed, o.expire
	}
}

// yuanPattern is an amount in yuan with at most two decimals.
var yuanPattern = regexp.MustCompile(`^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$`)

// parseYuan reads an amount in yuan into fen.
func parseYuan(s string) (int64, bool) {
	if !yuanPattern.MatchString(s) {
		return 0, false
	}
	whole, frac, _ := strings.Cut(s, ".")
	w, _ := strconv.ParseInt(whole, 10, 64)
	frac = (frac + "00")[:2]
	f, _ := strconv.ParseInt(frac, 10, 64)
	return w*100 + f, true
}

// yuan writes fen as yuan with two decimals.
func yuan(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

var (
	outTradeNoPattern = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)
	expressPattern    = regexp.MustCompile(`^([1-9][0-9]{0,3})([mhd])$`)
)

// apiError is a business answer other than 10000.
type apiError struct {
	Code, Msg, SubCode, SubMsg string
}

func (e *apiError) Error() string { return e.Code + " " + e.SubCode + ": " + e.SubMsg }

func invalidParam(format string, args ...any) *apiError {
	return &apiError{Code: "40004", Msg: "Business Failed", SubCode: "ACQ.INVALID_PARAMETER", SubMsg: "参数无效: " + fmt.Sprintf(format, args...)}
}

func business(subCode, subMsg string) *apiError {
	return &apiError{Code: "40004", Msg: "Business Failed", SubCode: subCode, SubMsg: subMsg}
}

// precreateBiz is the biz_content of alipay.trade.precreate.
type precreateBiz struct {
	OutTradeNo     string `json:"out_trade_no"`
	TotalAmount    string `json:"total_amount"`
	Subject        string `json:"subject"`
	TimeExpire     string `json:"time_expire"`
	TimeoutExpress string `json:"timeout_express"`
	Body           string `json:"body"`
}

// expiry reads time_expire or timeout_express ("90m", "2h", "1d", "1c": midnight of today).
func (s *Sim) expiry(b precreateBiz, now time.Time) (time.Time, string, error) {
	switch {
	case b.TimeExpire != "":
		t, err := time.ParseInLocation(timeLayout, b.TimeExpire, shanghai.Location)
		if err != nil {
			return time.Time{}, "", invalidParam("time_expire must be yyyy-MM-dd HH:mm:ss")
		}
		if !t.After(now) {
			return time.Time{}, "", invalidParam("time_expire is in the past")
		}
		return t, b.TimeExpire, nil
	case b.TimeoutExpress == "1c":
		y, m, d := now.In(shanghai.Location).Date()
		return time.Date(y, m, d+1, 0, 0, 0, 0, shanghai.Location).Add(-time.Second), "1c", nil
	case b.TimeoutExpress != "":
		m := expressPattern.FindStringSubmatch(b.TimeoutExpress)
		if m == nil {
			return time.Time{}, "", invalidParam("timeout_express must be 1m-15d or 1c")
		}
		n, _ := strconv.Atoi(m[1])
		unit := map[string]time.Duration{"m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
		d := time.Duration(n) * unit
		if d > 15*24*time.Hour {
			return time.Time{}, "", invalidParam("timeout_express must be at most 15d")
		}
		return now.Add(d), b.TimeoutExpress, nil
	}
	return now.Add(2 * time.Hour), "", nil // Alipay's default for precreate
}

func (s *Sim) precreate(raw, notifyURL string) (map[string]any, error) {
	var b precreateBiz
	if err := json.Unmarshal([]byte(raw), &b); err != nil {
		return nil, invalidParam("biz_content is not a JSON object")
	}
	total, ok := parseYuan(b.TotalAmount)
	switch {
	case !outTradeNoPattern.MatchString(b.OutTradeNo):
		return nil, invalidParam("out_trade_no must be 1-64 letters, digits or _")
	case !ok || total < 1 || total > 10_000_000_000:
		return nil, invalidParam("total_amount must be 0.01-100000000 yuan with at most two decimals")
	case b.Subject == "" || utf8.RuneCountInString(b.Subject) > 256 || strings.ContainsAny(b.Subject, "/=&"):
		return nil, invalidParam("subject must be 1-256 characters without / = &")
	}
	if notifyURL != "" {
		if u, err := url.Parse(notifyURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, invalidParam("notify_url must be an absolute http(s) URL")
		}
	}
	now := s.now()
	expire, expireText, err := s.expiry(b, now)
	if err != nil {
		return nil, err
	}
	code, err := randomString(s.cfg.Rand, 22, lowerAlnum)
	if err != nil {
		return nil, err
	}
	digits, err := randomString(s.cfg.Rand, 10, "0123456789")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.byTrade[b.OutTradeNo]; ok {
		o.settle(now)
		switch {
		case o.Status == TradeSuccess || o.Status == TradeFinished:
			return nil, business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
		case o.Status == TradeClosed:
			return nil, business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
		case o.Total != total || o.Subject != b.Subject:
			return nil, business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
		}
		return map[string]any{"code": "10000", "msg": "Success", "out_trade_no": o.OutTradeNo, "qr_code": o.qrCode()}, nil
	}
	s.seq++
	o := &order{OutTradeNo: b.OutTradeNo, Subject: b.Subject, Total: total, TotalAmount: b.TotalAmount, NotifyURL: notifyURL,
		TimeExpire: expireText, expire: expire, Code: "bax" + code, Status: WaitBuyerPay, CreatedAt: now,
		TradeNo: fmt.Sprintf("%s22%08d%s", now.In(shanghai.Location).Format("20060102"), s.seq%100000000, digits)}
	s.orders = append(s.orders, o)
	s.byTrade[o.OutTradeNo] = o
	s.byNo[o.TradeNo] = o
	s.byCode[o.Code] = o
	s.metrics.orders.WithLabelValues("created").Inc()
	s.log.Info("alipay order created", "out_trade_no", o.OutTradeNo, "total_amount", o.TotalAmount, "pay_url", s.payURL(o))
	return map[string]any{"code": "10000", "msg": "Success", "out_trade_no": o.OutTradeNo, "qr_code": o.qrCode()}, nil
}

func (s *Sim) payURL(o *order) string { return s.cfg.PublicURL + "/alipay/pay?code=" + o.Code }

// tradeBiz names a trade by out_trade_no or trade_no.
type tradeBiz struct {
	OutTradeNo string `json:"out_trade_no"`
	TradeNo    string `json:"trade_no"`
}

// find looks a trade up under s.mu.
func (s *Sim) find(raw string) (*order, error) {
	var b tradeBiz
	if err := json.Unmarshal([]byte(raw), &b); err != nil || (b.OutTradeNo == "" && b.TradeNo == "") {
		return nil, invalidParam("give out_trade_no or trade_no")
	}
	o, ok := s.byTrade[b.OutTradeNo]
	if b.OutTradeNo == "" {
		o, ok = s.byNo[b.TradeNo]
	}
	if !ok || (b.TradeNo != "" && o.TradeNo != b.TradeNo) {
		return nil, business("ACQ.TRADE_NOT_EXIST", "交易不存在")
	}
	return o, nil
}

func (s *Sim) query(raw string) (map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.find(raw)
	if err != nil {
		return nil, err
	}
	o.settle(s.now())
	a := map[string]any{"code": "10000", "msg": "Success", "trade_no": o.TradeNo, "out_trade_no": o.OutTradeNo,
		"trade_status": o.Status, "total_amount": yuan(o.Total)}
	if o.Status == TradeSuccess || o.Status == TradeFinished {
		a["buyer_logon_id"], a["buyer_user_id"] = o.BuyerLogon, o.BuyerID
		a["buyer_pay_amount"], a["receipt_amount"], a["invoice_amount"] = yuan(o.Total), yuan(o.Total), yuan(o.Total)
		a["send_pay_date"] = o.PaidAt.In(shanghai.Location).Format(timeLayout)
		a["fund_bill_list"] = []map[string]string{{"fund_channel": "ALIPAYACCOUNT", "amount": yuan(o.Total)}}
	}
	return a, nil
}

func (s *Sim) closeTrade(raw string) (map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.find(raw)
	if err != nil {
		return nil, err
	}
	o.settle(s.now())
	switch o.Status {
	case TradeSuccess, TradeFinished:
		return nil, business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
	case WaitBuyerPay:
		o.Status, o.ClosedAt = TradeClosed, s.now()
		s.metrics.orders.WithLabelValues("closed").Inc()
		s.log.Info("alipay order closed", "out_trade_no", o.OutTradeNo)
	}
	return map[string]any{"code": "10000", "msg": "Success", "trade_no": o.TradeNo, "out_trade_no": o.OutTradeNo}, nil
}

// Errors of paying.
var (
	ErrClosed = errors.New("alipaysim: the trade is closed")
)

// pay pays the order found by find (under the lock) and starts its notifications. Paying a
// paid order answers it again and notifies nothing.
func (s *Sim) pay(find func() (*order, bool)) (map[string]any, error) {
	buyer, err := randomString(s.cfg.Rand, 12, "0123456789")
	if err != nil {
		return nil, err
	}
	now := s.now()
	s.mu.Lock()
	o, ok := find()
	if !ok {
		s.mu.Unlock()
		return nil, ErrNotFound
	}
	o.settle(now)
	switch o.Status {
	case TradeSuccess, TradeFinished:
		a := payAnswer(o)
		s.mu.Unlock()
		return a, nil
	case TradeClosed:
		s.mu.Unlock()
		return nil, ErrClosed
	}
	o.Status, o.PaidAt = TradeSuccess, now
	o.BuyerID, o.BuyerLogon = "2088"+buyer, "159****"+buyer[8:]
	a := payAnswer(o)
	finishedFirst := s.queue.Chance(s.cfg.OutOfOrderRate)
	var reqs []resend.Request
	statuses := []string{TradeSuccess}
	if finishedFirst {
		statuses = []string{TradeFinished, TradeSuccess}
	}
	for _, st := range statuses {
		r, err := s.notification(o, st, now)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		reqs = append(reqs, r)
	}
	drop := o.drop
	s.mu.Unlock()

	s.metrics.orders.WithLabelValues("paid").Inc()
	s.log.Info("alipay order paid", "out_trade_no", o.OutTradeNo, "trade_no", o.TradeNo, "out_of_order", finishedFirst)
	var ds []*resend.Delivery
	for i, r := range reqs {
		// Out of order, TRADE_SUCCESS follows TRADE_FINISHED within a second.
		delay := time.Duration(0)
		if i > 0 {
			delay = 200*time.Millisecond + time.Duration(s.queue.Float()*float64(800*time.Millisecond))
		}
		ds = append(ds, s.queue.Add(o.OutTradeNo+"/"+statuses[i], r, acknowledged, delay, drop))
	}
	s.mu.Lock()
	o.deliveries = append(o.deliveries, ds...)
	dropNow := o.drop && !drop // the drop came while the deliveries were being added
	s.mu.Unlock()
	if dropNow {
		for _, d := range ds {
			s.queue.Drop(d)
		}
	}
	return a, nil
}

// acknowledged: Alipay takes the body "success", exactly, as received; anything else is resent.
func acknowledged(status int, body []byte) bool {
	return status == http.StatusOK && string(body) == "success"
}

func payAnswer(o *order) map[string]any {
	return map[string]any{"trade_no": o.TradeNo, "out_trade_no": o.OutTradeNo, "trade_status": o.Status,
		"total_amount": yuan(o.Total), "gmt_payment": o.PaidAt.In(shanghai.Location).Format(timeLayout)}
}

// notification builds the signed form of a trade status notification (under s.mu).
func (s *Sim) notification(o *order, status string, now time.Time) (resend.Request, error) {
	id, err := randomString(s.cfg.Rand, 34, "0123456789abcdef")
	if err != nil {
		return resend.Request{}, err
	}
	f := map[string]string{
		"notify_time": now.In(shanghai.Location).Format(timeLayout), "notify_type": "trade_status_sync", "notify_id": id,
		"app_id": s.cfg.AppID, "charset": "utf-8", "version": "1.0", "trade_no": o.TradeNo, "out_trade_no": o.OutTradeNo,
		"buyer_id": o.BuyerID, "buyer_logon_id": o.BuyerLogon, "seller_id": s.cfg.SellerID, "trade_status": status,
		"total_amount": yuan(o.Total), "receipt_amount": yuan(o.Total), "invoice_amount": yuan(o.Total),
		"buyer_pay_amount": yuan(o.Total), "point_amount": "0.00", "subject": o.Subject,
		"gmt_create":     o.CreatedAt.In(shanghai.Location).Format(timeLayout),
		"gmt_payment":    o.PaidAt.In(shanghai.Location).Format(timeLayout),
		"fund_bill_list": `[{"amount":"` + yuan(o.Total) + `","fundChannel":"ALIPAYACCOUNT"}]`,
	}
	if status == TradeFinished {
		f["gmt_close"] = f["gmt_payment"]
	}
	sig, err := rsa2(s.cfg.Keys.PlatformKey, SignString(f, "sign", "sign_type"))
	if err != nil {
		return resend.Request{}, err
	}
	form := url.Values{}
	for k, v := range f {
		form.Set(k, v)
	}
	form.Set("sign_type", "RSA2")
	form.Set("sign", sig)
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	h.Set("User-Agent", "Mozilla/4.0 (FinePay sandbox; Alipay notification)")
	return resend.Request{URL: o.NotifyURL, Header: h, Body: []byte(form.Encode())}, nil
}

const lowerAlnum = "0123456789abcdefghijklmnopqrstuvwxyz"

// randomString returns n characters of alphabet (rejection sampling, no bias).
func randomString(r io.Reader, n int, alphabet string) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+16)
	limit := 256 - 256%len(alphabet) // an int: 256 itself when len(alphabet) divides 256
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("alipaysim: random: %w", err)
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}
