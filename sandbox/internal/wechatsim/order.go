package wechatsim

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/shanghai"
)

// Trade states.
const (
	StateNotPay  = "NOTPAY"
	StateSuccess = "SUCCESS"
	StateClosed  = "CLOSED"
)

var stateDesc = map[string]string{
	StateNotPay:  "订单未支付",
	StateSuccess: "支付成功",
	StateClosed:  "订单已关闭",
}

type order struct {
	AppID       string
	MchID       string
	Description string
	OutTradeNo  string
	Attach      string
	NotifyURL   string
	Total       int64
	Currency    string
	TimeExpire  string // as sent
	expire      time.Time
	CreatedAt   time.Time
	PR          string

	State         string
	TransactionID string
	BankType      string
	SuccessTime   string
	OpenID        string
	ClosedAt      time.Time

	note *notification
}

func (o *order) codeURL() string { return "weixin://wxpay/bizpayurl/up?pr=" + o.PR }

func (o *order) expired(now time.Time) bool { return !o.expire.IsZero() && now.After(o.expire) }

// Transaction is the transaction JSON of a query answer and of a notification's plaintext.
type Transaction struct {
	AppID          string    `json:"appid"`
	MchID          string    `json:"mchid"`
	OutTradeNo     string    `json:"out_trade_no"`
	TransactionID  string    `json:"transaction_id,omitempty"`
	TradeType      string    `json:"trade_type"`
	TradeState     string    `json:"trade_state"`
	TradeStateDesc string    `json:"trade_state_desc"`
	BankType       string    `json:"bank_type,omitempty"`
	Attach         string    `json:"attach"`
	SuccessTime    string    `json:"success_time,omitempty"`
	Payer          *Payer    `json:"payer,omitempty"`
	Amount         TxnAmount `json:"amount"`
}

// Payer identifies who paid.
type Payer struct {
	OpenID string `json:"openid"`
}

// TxnAmount is the amount block of a transaction, in fen.
type TxnAmount struct {
	Total         int64  `json:"total"`
	PayerTotal    *int64 `json:"payer_total,omitempty"`
	Currency      string `json:"currency"`
	PayerCurrency string `json:"payer_currency"`
}

func (o *order) transaction() Transaction {
	t := Transaction{
		AppID: o.AppID, MchID: o.MchID, OutTradeNo: o.OutTradeNo, TransactionID: o.TransactionID,
		TradeType: "NATIVE", TradeState: o.State, TradeStateDesc: stateDesc[o.State], BankType: o.BankType,
		Attach: o.Attach, SuccessTime: o.SuccessTime,
		Amount: TxnAmount{Total: o.Total, Currency: o.Currency, PayerCurrency: o.Currency},
	}
	if o.State == StateSuccess {
		t.Payer = &Payer{OpenID: o.OpenID}
		pt := o.Total
		t.Amount.PayerTotal = &pt
	}
	return t
}

// NativeRequest is the body of POST /v3/pay/transactions/native.
type NativeRequest struct {
	AppID         string          `json:"appid"`
	MchID         string          `json:"mchid"`
	Description   string          `json:"description"`
	OutTradeNo    string          `json:"out_trade_no"`
	TimeExpire    string          `json:"time_expire,omitempty"`
	Attach        string          `json:"attach,omitempty"`
	NotifyURL     string          `json:"notify_url"`
	GoodsTag      string          `json:"goods_tag,omitempty"`
	SupportFapiao bool            `json:"support_fapiao,omitempty"`
	Amount        NativeAmount    `json:"amount"`
	Detail        json.RawMessage `json:"detail,omitempty"`
	SceneInfo     json.RawMessage `json:"scene_info,omitempty"`
	SettleInfo    json.RawMessage `json:"settle_info,omitempty"`
}

// NativeAmount is the amount of an order: total in fen, currency CNY.
type NativeAmount struct {
	Total    int64  `json:"total"`
	Currency string `json:"currency,omitempty"`
}

var outTradeNoPattern = regexp.MustCompile(`^[A-Za-z0-9_\-|*]{6,32}$`)

// validate checks a Native order request as WeChat does and returns its expiry time.
func (s *Sim) validate(r *NativeRequest) (time.Time, error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if r.AppID == "" {
		bad("appid is required")
	}
	if r.MchID == "" {
		bad("mchid is required")
	}
	if n := utf8.RuneCountInString(r.Description); n == 0 || n > 127 {
		bad("description must be 1-127 characters")
	}
	if !outTradeNoPattern.MatchString(r.OutTradeNo) {
		bad("out_trade_no must be 6-32 characters of [A-Za-z0-9_-|*]")
	}
	if utf8.RuneCountInString(r.Attach) > 128 {
		bad("attach must be at most 128 characters")
	}
	if err := checkNotifyURL(r.NotifyURL); err != nil {
		bad("notify_url %s", err)
	}
	if r.Amount.Total <= 0 {
		bad("amount.total must be an integer > 0 (fen)")
	}
	if r.Amount.Currency == "" {
		r.Amount.Currency = "CNY"
	} else if r.Amount.Currency != "CNY" {
		bad("amount.currency must be CNY")
	}
	var expire time.Time
	if r.TimeExpire != "" {
		t, err := time.Parse(time.RFC3339, r.TimeExpire)
		if err != nil {
			bad("time_expire must be RFC 3339, e.g. 2026-11-27T23:59:59+08:00")
		}
		expire = t
	}
	if len(problems) > 0 {
		return time.Time{}, apiError(http.StatusBadRequest, "PARAM_ERROR", "%s", strings.Join(problems, "; "))
	}
	if r.AppID != s.cfg.AppID {
		return time.Time{}, apiError(http.StatusBadRequest, "APPID_MCHID_NOT_MATCH", "appid %s is not bound to mchid %s", r.AppID, s.cfg.MchID)
	}
	if r.MchID != s.cfg.MchID {
		return time.Time{}, apiError(http.StatusBadRequest, "MCH_NOT_EXISTS", "mchid %s does not match the signing merchant", r.MchID)
	}
	return expire, nil
}

func checkNotifyURL(raw string) error {
	if raw == "" {
		return errors.New("is required")
	}
	if len(raw) > 256 {
		return errors.New("must be at most 256 characters")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must not carry query parameters")
	}
	return nil
}

// sameOrder reports whether a repeated request describes the order o.
func sameOrder(o *order, r *NativeRequest) bool {
	return o.AppID == r.AppID && o.Description == r.Description && o.Attach == r.Attach &&
		o.NotifyURL == r.NotifyURL && o.TimeExpire == r.TimeExpire && o.Currency == r.Amount.Currency
}

// create makes the order of r, or answers the existing one for the same request.
func (s *Sim) create(r *NativeRequest, expire time.Time) (string, error) {
	pr, err := randomString(s.cfg.Rand, 22, alnum)
	if err != nil {
		return "", err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.byTrade[r.OutTradeNo]; ok {
		switch {
		case o.State == StateSuccess:
			return "", apiError(http.StatusBadRequest, "ORDERPAID", "订单已支付: out_trade_no %s is paid", o.OutTradeNo)
		case o.State == StateClosed:
			return "", apiError(http.StatusBadRequest, "ORDER_CLOSED", "订单已关闭: out_trade_no %s is closed", o.OutTradeNo)
		case o.Total != r.Amount.Total:
			return "", apiError(http.StatusBadRequest, "INVALID_REQUEST",
				"商户订单号重复: out_trade_no %s exists with amount %d", o.OutTradeNo, o.Total)
		case !sameOrder(o, r):
			return "", apiError(http.StatusBadRequest, "INVALID_REQUEST",
				"商户订单号重复: out_trade_no %s exists with other parameters", o.OutTradeNo)
		}
		return o.codeURL(), nil
	}
	if !expire.IsZero() && !expire.After(now) {
		return "", apiError(http.StatusBadRequest, "PARAM_ERROR", "time_expire is in the past")
	}
	o := &order{
		AppID: r.AppID, MchID: r.MchID, Description: r.Description, OutTradeNo: r.OutTradeNo,
		Attach: r.Attach, NotifyURL: r.NotifyURL, Total: r.Amount.Total, Currency: r.Amount.Currency,
		TimeExpire: r.TimeExpire, expire: expire, CreatedAt: now, PR: pr, State: StateNotPay,
	}
	s.orders = append(s.orders, o)
	s.byTrade[o.OutTradeNo] = o
	s.byPR[o.PR] = o
	s.metrics.orders.WithLabelValues("created").Inc()
	s.log.Info("wechat order created", "out_trade_no", o.OutTradeNo, "total", o.Total, "pay_url", s.payURL(o))
	return o.codeURL(), nil
}

func (s *Sim) payURL(o *order) string { return s.cfg.PublicURL + "/wechat/pay?pr=" + o.PR }

// lookup finds an order by out_trade_no.
func (s *Sim) lookup(outTradeNo string) (Transaction, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byTrade[outTradeNo]
	if !ok {
		return Transaction{}, errOrderNotExist()
	}
	return o.transaction(), nil
}

func (s *Sim) lookupTxn(id string) (Transaction, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byTxn[id]
	if !ok {
		return Transaction{}, errOrderNotExist()
	}
	return o.transaction(), nil
}

func errOrderNotExist() error {
	return apiError(http.StatusNotFound, "ORDER_NOT_EXIST", "订单不存在")
}

// close closes an unpaid order; closing it again changes nothing.
func (s *Sim) close(outTradeNo string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byTrade[outTradeNo]
	if !ok {
		return errOrderNotExist()
	}
	switch o.State {
	case StateSuccess:
		return apiError(http.StatusBadRequest, "ORDERPAID", "订单已支付，不能关闭")
	case StateNotPay:
		o.State = StateClosed
		o.ClosedAt = s.now()
		s.metrics.orders.WithLabelValues("closed").Inc()
		s.log.Info("wechat order closed", "out_trade_no", o.OutTradeNo)
	}
	return nil
}

// Errors of paying.
var (
	ErrClosed  = errors.New("wechatsim: the order is closed")
	ErrExpired = errors.New("wechatsim: the order has expired")
)

// pay pays the order found by find (under the lock), starting its notification. Paying a paid
// order answers its transaction again and sends nothing.
func (s *Sim) pay(find func() (*order, bool), openid string) (Transaction, error) {
	now := s.now()
	rnd, err := randomString(s.cfg.Rand, 10, digits)
	if err != nil {
		return Transaction{}, err
	}
	if openid == "" {
		if openid, err = randomString(s.cfg.Rand, 27, openidSet); err != nil {
			return Transaction{}, err
		}
		openid = "o" + openid
	}
	s.mu.Lock()
	o, ok := find()
	if !ok {
		s.mu.Unlock()
		return Transaction{}, ErrNotFound
	}
	switch {
	case o.State == StateSuccess:
		t := o.transaction()
		s.mu.Unlock()
		return t, nil
	case o.State == StateClosed:
		s.mu.Unlock()
		return Transaction{}, ErrClosed
	case o.expired(now):
		s.mu.Unlock()
		return Transaction{}, ErrExpired
	}
	s.txnSeq++
	local := now.In(shanghai.Location)
	o.State = StateSuccess
	o.TransactionID = fmt.Sprintf("4200%06d%s%s", s.txnSeq%1000000, local.Format("20060102"), rnd)
	o.SuccessTime = shanghai.Time(now)
	o.BankType = "OTHERS"
	o.OpenID = openid
	s.byTxn[o.TransactionID] = o
	t := o.transaction()
	note, err := s.newNotification(o, t)
	if err != nil {
		s.mu.Unlock()
		return Transaction{}, err
	}
	o.note = note
	s.mu.Unlock()
	s.metrics.orders.WithLabelValues("paid").Inc()
	s.log.Info("wechat order paid", "out_trade_no", o.OutTradeNo, "transaction_id", t.TransactionID, "total", t.Amount.Total)
	s.notifier.enqueue(job{due: time.Now(), outTradeNo: t.OutTradeNo})
	return t, nil
}

// Event is a notification body.
type Event struct {
	ID           string   `json:"id"`
	CreateTime   string   `json:"create_time"`
	ResourceType string   `json:"resource_type"`
	EventType    string   `json:"event_type"`
	Summary      string   `json:"summary"`
	Resource     Resource `json:"resource"`
}

// Resource is the encrypted payload of a notification.
type Resource struct {
	OriginalType   string `json:"original_type"`
	Algorithm      string `json:"algorithm"`
	Ciphertext     string `json:"ciphertext"`
	AssociatedData string `json:"associated_data"`
	Nonce          string `json:"nonce"`
}

// newNotification encrypts t into a TRANSACTION.SUCCESS event for o.
func (s *Sim) newNotification(o *order, t Transaction) (*notification, error) {
	plain, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("wechatsim: %w", err)
	}
	nonce, err := randomString(s.cfg.Rand, 12, alnum)
	if err != nil {
		return nil, err
	}
	const ad = "transaction"
	ct, err := sealResource(s.cfg.Keys.APIv3Key, []byte(nonce), plain, []byte(ad))
	if err != nil {
		return nil, err
	}
	id, err := uuid(s)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(Event{
		ID: id, CreateTime: shanghai.Time(s.now()), ResourceType: "encrypt-resource",
		EventType: "TRANSACTION.SUCCESS", Summary: "支付成功",
		Resource: Resource{
			OriginalType: "transaction", Algorithm: "AEAD_AES_256_GCM",
			Ciphertext: base64.StdEncoding.EncodeToString(ct), AssociatedData: ad, Nonce: nonce,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("wechatsim: %w", err)
	}
	return &notification{url: o.NotifyURL, body: body, done: make(chan struct{})}, nil
}

// sealResource is AEAD_AES_256_GCM with the tag appended to the ciphertext.
func sealResource(key, nonce, plaintext, ad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("wechatsim: APIv3 key: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("wechatsim: %w", err)
	}
	return gcm.Seal(nil, nonce, plaintext, ad), nil
}

func uuid(s *Sim) (string, error) {
	h, err := randomString(s.cfg.Rand, 32, "0123456789abcdef")
	if err != nil {
		return "", err
	}
	b := []byte(h)
	b[12] = '4'
	b[16] = "89ab"[strings.IndexByte("0123456789abcdef", b[16])%4]
	return fmt.Sprintf("%s-%s-%s-%s-%s", b[0:8], b[8:12], b[12:16], b[16:20], b[20:32]), nil
}

func apiError(status int, code, format string, args ...any) *apierr.Error {
	return apierr.New(status, code, format, args...)
}
