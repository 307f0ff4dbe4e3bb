package unionpaysim

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"finepay/sandbox/internal/resend"
	"finepay/sandbox/internal/shanghai"
)

// txnLayout is the layout of txnTime and payTimeout (Asia/Shanghai).
const txnLayout = "20060102150405"

type order struct {
	OrderID    string
	TxnTime    string
	TxnAmt     int64 // fen
	BackURL    string
	FrontURL   string // for a front transaction: where the payer returns
	PayTimeout string
	expire     time.Time
	Code       string // the last path segment of qrCode; also names the payer page
	Front      bool
	RiskInfo   string
	CreatedAt  time.Time

	Paid       bool
	QueryID    string
	TraceNo    string
	TraceTime  string
	SettleDate string
	PaidAt     time.Time
	result     map[string]string // the signed result, sent to backUrl (and frontUrl)

	drop     bool
	delivery *resend.Delivery
}

func (o *order) qrCode() string { return "https://qr.95516.com/00010000/" + o.Code }

func (o *order) expired(now time.Time) bool { return !o.expire.IsZero() && now.After(o.expire) }

// respError is an answer whose respCode is not 00.
type respError struct{ Code, Msg string }

func (e *respError) Error() string { return e.Code + " " + e.Msg }

func formatError(format string, args ...any) *respError {
	return &respError{"10", "报文格式错误: " + fmt.Sprintf(format, args...)}
}

var (
	orderIDPattern = regexp.MustCompile(`^[A-Za-z0-9]{8,40}$`)
	amountPattern  = regexp.MustCompile(`^[1-9][0-9]{0,11}$`)
)

func parseTxnTime(s string) (time.Time, bool) {
	if len(s) != 14 {
		return time.Time{}, false
	}
	t, err := time.ParseInLocation(txnLayout, s, shanghai.Location)
	return t, err == nil
}

func checkURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// consume makes (or finds again) the order of a consume request.
func (s *Sim) consume(f map[string]string, front bool) (*order, error) {
	txnTime, ok := parseTxnTime(f["txnTime"])
	switch {
	case !orderIDPattern.MatchString(f["orderId"]):
		return nil, formatError("orderId must be 8-40 letters or digits")
	case !ok:
		return nil, formatError("txnTime must be YYYYMMDDhhmmss")
	case !amountPattern.MatchString(f["txnAmt"]):
		return nil, formatError("txnAmt must be a positive amount in fen")
	case f["currencyCode"] != "156":
		return nil, formatError("currencyCode must be 156")
	case !checkURL(f["backUrl"]):
		return nil, formatError("backUrl must be an absolute http(s) URL")
	case front && !checkURL(f["frontUrl"]):
		return nil, formatError("frontUrl must be an absolute http(s) URL")
	case f["accessType"] != "0":
		return nil, &respError{"32", "无此交易权限: accessType must be 0 (a merchant connected directly)"}
	}
	now := s.now()
	if d := now.Sub(txnTime); d > 24*time.Hour || d < -15*time.Minute {
		return nil, formatError("txnTime is not the time of the order")
	}
	var expire time.Time
	if p := f["payTimeout"]; p != "" {
		t, ok := parseTxnTime(p)
		if !ok || !t.After(now) {
			return nil, formatError("payTimeout must be YYYYMMDDhhmmss in the future")
		}
		expire = t
	}
	amount, _ := strconv.ParseInt(f["txnAmt"], 10, 64)
	code, err := randomDigits(s.cfg.Rand, 20)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := f["orderId"] + "/" + f["txnTime"]
	if o, ok := s.byID[key]; ok {
		if o.TxnAmt != amount || o.Paid || o.Front != front {
			return nil, &respError{"12", "重复交易"}
		}
		return o, nil
	}
	o := &order{OrderID: f["orderId"], TxnTime: f["txnTime"], TxnAmt: amount, BackURL: f["backUrl"], FrontURL: f["frontUrl"],
		PayTimeout: f["payTimeout"], expire: expire, Code: code, Front: front, RiskInfo: f["riskRateInfo"], CreatedAt: now}
	s.orders = append(s.orders, o)
	s.byID[key] = o
	s.byOrder[o.OrderID] = o
	s.byCode[o.Code] = o
	s.metrics.orders.WithLabelValues("created").Inc()
	s.log.Info("unionpay order created", "order_id", o.OrderID, "txn_amt", o.TxnAmt, "front", front, "pay_url", s.payURL(o))
	return o, nil
}

func (s *Sim) payURL(o *order) string { return s.cfg.PublicURL + "/unionpay/pay?code=" + o.Code }

// Errors of paying.
var (
	ErrExpired = fmt.Errorf("unionpaysim: the code is no longer payable")
)

// pay pays the order found by find (under the lock) and starts its notification. Paying a paid
// order answers its result again and notifies nothing.
func (s *Sim) pay(find func() (*order, bool)) (map[string]string, error) {
	rnd, err := randomDigits(s.cfg.Rand, 7)
	if err != nil {
		return nil, err
	}
	now := s.now()
	s.mu.Lock()
	o, ok := find()
	switch {
	case !ok:
		s.mu.Unlock()
		return nil, ErrNotFound
	case o.Paid:
		r := o.result
		s.mu.Unlock()
		return r, nil
	case o.expired(now):
		s.mu.Unlock()
		return nil, ErrExpired
	}
	s.seq++
	local := now.In(shanghai.Location)
	o.Paid, o.PaidAt = true, now
	o.QueryID = local.Format(txnLayout) + rnd
	o.TraceNo = fmt.Sprintf("%06d", s.seq%1000000)
	o.TraceTime = local.Format("0102150405")
	o.SettleDate = local.Format("0102")
	f := map[string]string{
		"version": "5.1.0", "encoding": "UTF-8", "bizType": "000000", "txnType": "01", "txnSubType": "07", "accessType": "0",
		"merId": s.cfg.MerID, "orderId": o.OrderID, "txnTime": o.TxnTime, "txnAmt": strconv.FormatInt(o.TxnAmt, 10),
		"currencyCode": "156", "queryId": o.QueryID, "traceNo": o.TraceNo, "traceTime": o.TraceTime,
		"settleAmt": strconv.FormatInt(o.TxnAmt, 10), "settleCurrencyCode": "156", "settleDate": o.SettleDate,
		"respCode": "00", "respMsg": "成功[0000000]",
	}
	if o.Front {
		f["bizType"], f["txnSubType"] = "000201", "01"
	}
	if err := s.cfg.Keys.sign(f); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	o.result = f
	drop := o.drop
	s.mu.Unlock()

	s.metrics.orders.WithLabelValues("paid").Inc()
	var delay time.Duration
	if s.queue.Chance(s.cfg.OutOfOrderRate) && len(s.cfg.Schedule) > 0 {
		delay = time.Duration(s.queue.Float() * float64(s.queue.Scaled(s.cfg.Schedule[0])))
	}
	s.log.Info("unionpay order paid", "order_id", o.OrderID, "query_id", o.QueryID, "held", delay)
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	h.Set("User-Agent", "Mozilla/4.0 (FinePay sandbox; UnionPay notification)")
	d := s.queue.Add(o.OrderID, resend.Request{URL: o.BackURL, Header: h, Body: encodeForm(f)}, acknowledged, delay, drop)
	s.mu.Lock()
	o.delivery = d
	dropNow := o.drop && !drop
	s.mu.Unlock()
	if dropNow {
		s.queue.Drop(d)
	}
	return f, nil
}

// acknowledged: UnionPay takes HTTP 200 as received, whatever the body.
func acknowledged(status int, _ []byte) bool { return status == http.StatusOK }

func encodeForm(f map[string]string) []byte {
	v := url.Values{}
	for k, x := range f {
		v.Set(k, x)
	}
	return []byte(v.Encode())
}

// query answers a transaction query: 34 until the order is paid.
func (s *Sim) query(f map[string]string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.refunds[f["orderId"]+"/"+f["txnTime"]]; ok {
		return s.queryRefund(r), nil
	}
	o, ok := s.byID[f["orderId"]+"/"+f["txnTime"]]
	if !ok || !o.Paid {
		return nil, &respError{"34", "查无此交易"}
	}
	return map[string]string{
		"respCode": "00", "respMsg": "成功[0000000]", "origRespCode": "00", "origRespMsg": "成功[0000000]",
		"queryId": o.QueryID, "traceNo": o.TraceNo, "traceTime": o.TraceTime, "settleDate": o.SettleDate,
		"txnAmt": strconv.FormatInt(o.TxnAmt, 10), "settleAmt": strconv.FormatInt(o.TxnAmt, 10),
		"settleCurrencyCode": "156", "currencyCode": "156", "accNo": "6216***********0018", "payCardType": "01",
	}, nil
}

// randomDigits returns n random decimal digits.
func randomDigits(r io.Reader, n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+8)
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("unionpaysim: random: %w", err)
		}
		for _, b := range buf {
			if b < 250 && len(out) < n {
				out = append(out, '0'+b%10)
			}
		}
	}
	return string(out), nil
}
