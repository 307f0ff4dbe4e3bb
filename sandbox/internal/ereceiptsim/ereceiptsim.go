// Package ereceiptsim simulates the finance e-receipt platform (财政电子票据) as docs/partners.md
// specifies it: one receipt per payment form, with an 8-digit code, a 10-digit sequential number,
// a 6-character check code and the finance supervision seal (财政监制章), an SM2 signature by the
// sandbox's signing key; and verification (查验).
//
// The routes are meant to sit behind partnerapi.Guard, which verifies and signs the envelope.
package ereceiptsim

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/payername"
	"finepay/sandbox/internal/shanghai"
)

// Signer makes the seal; *gm.PrivateKey is one.
type Signer interface {
	Sign(rand io.Reader, msg []byte) ([]byte, error)
}

// FormInfo is what the platform knows of a payment form from the non-tax system.
type FormInfo struct {
	PayCode  string
	UnitCode string
	UnitName string
	ItemCode string
	ItemName string
	Fine     int64
}

// Config configures the simulator.
type Config struct {
	// Key signs the seal: the sandbox's signing key.
	Key Signer
	// Decrypter opens payer_name_enc: the sandbox's encryption key.
	Decrypter payername.Decrypter
	// Forms looks a form up in the non-tax system. Nil accepts any form.
	Forms func(formNo string) (FormInfo, bool)
	Now   func() time.Time
	Rand  io.Reader
	Log   *slog.Logger
}

// Receipt is an issued e-receipt.
type Receipt struct {
	ReceiptCode string `json:"receipt_code"`
	ReceiptNo   string `json:"receipt_no"`
	CheckCode   string `json:"check_code"`
	IssuedAt    string `json:"issued_at"`
	Amount      int64  `json:"amount"`
	Fine        int64  `json:"fine"`
	LateFee     int64  `json:"late_fee"`
	PayerMasked string `json:"payer_masked"`
	Seal        string `json:"seal"`
	FormNo      string `json:"form_no"`
	PayCode     string `json:"pay_code"`
	OrderNo     string `json:"order_no"`
	UnitCode    string `json:"unit_code"`
	UnitName    string `json:"unit_name"`
	ItemCode    string `json:"item_code"`
	ItemName    string `json:"item_name"`
	PaidAt      string `json:"paid_at"`
	// Requests counts the issue requests answered with this receipt, the first included.
	Requests int `json:"requests"`
}

// State is what the simulator holds, for /_sandbox/state.
type State struct {
	Receipts []Receipt `json:"receipts"`
}

// Sim is the simulator. Its methods are safe for concurrent use.
type Sim struct {
	key   Signer
	dec   payername.Decrypter
	forms func(string) (FormInfo, bool)
	now   func() time.Time
	rand  io.Reader
	log   *slog.Logger

	mu       sync.Mutex
	receipts []*Receipt
	byForm   map[string]*Receipt
	byNumber map[string]*Receipt // code + number
	seq      map[string]int      // by receipt code
}

// New returns an empty simulator.
func New(cfg Config) *Sim {
	s := &Sim{
		key: cfg.Key, dec: cfg.Decrypter, forms: cfg.Forms, now: cfg.Now, rand: cfg.Rand, log: cfg.Log,
		byForm: map[string]*Receipt{}, byNumber: map[string]*Receipt{}, seq: map[string]int{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Register adds the routes to g, which should be mounted at /ereceipt/v1.
func (s *Sim) Register(g *echo.Group) {
	g.POST("/receipts", s.handleIssue)
	g.GET("/verify", s.handleVerify)
}

// SealString is the message the seal signs:
// receipt_code "\n" receipt_no "\n" check_code "\n" amount "\n" issued_at.
func SealString(code, number, checkCode string, amount int64, issuedAt string) []byte {
	return []byte(strings.Join([]string{code, number, checkCode, strconv.FormatInt(amount, 10), issuedAt}, "\n"))
}

// IssueRequest is the body of POST /ereceipt/v1/receipts.
type IssueRequest struct {
	FormNo       string `json:"form_no"`
	PayCode      string `json:"pay_code"`
	OrderNo      string `json:"order_no"`
	PayerNameEnc string `json:"payer_name_enc"`
	UnitCode     string `json:"unit_code"`
	ItemCode     string `json:"item_code"`
	Amount       int64  `json:"amount"`
	Fine         int64  `json:"fine"`
	LateFee      int64  `json:"late_fee"`
	PaidAt       string `json:"paid_at"`
}

// IssueResponse is the answer to POST /ereceipt/v1/receipts.
type IssueResponse struct {
	ReceiptCode string `json:"receipt_code"`
	ReceiptNo   string `json:"receipt_no"`
	CheckCode   string `json:"check_code"`
	IssuedAt    string `json:"issued_at"`
	Amount      int64  `json:"amount"`
	PayerMasked string `json:"payer_masked"`
	Seal        string `json:"seal"`
}

func (s *Sim) handleIssue(c echo.Context) error {
	var req IssueRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	v.Digits("form_no", req.FormNo, 1, 32)
	v.Digits("pay_code", req.PayCode, 1, 32)
	v.Match("order_no", req.OrderNo, field.OrderNo, "1-64 characters [A-Za-z0-9_-]")
	v.Digits("unit_code", req.UnitCode, 6, 20)
	v.Digits("item_code", req.ItemCode, 1, 20)
	v.Positive("amount", req.Amount)
	v.Positive("fine", req.Fine)
	v.NonNegative("late_fee", req.LateFee)
	if req.Fine > 0 && req.LateFee >= 0 && req.Amount != req.Fine+req.LateFee {
		v.Add("amount", "must equal fine + late_fee (%d)", req.Fine+req.LateFee)
	}
	v.Time("paid_at", req.PaidAt)
	var name string
	if v.Required("payer_name_enc", req.PayerNameEnc) {
		var err error
		if name, err = payername.Open(s.dec, req.PayerNameEnc); err != nil {
			v.Add("payer_name_enc", "%s", payername.Reason(err))
		}
	}
	if err := v.Err(); err != nil {
		return err
	}
	r, err := s.issue(req, name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, IssueResponse{
		ReceiptCode: r.ReceiptCode, ReceiptNo: r.ReceiptNo, CheckCode: r.CheckCode, IssuedAt: r.IssuedAt,
		Amount: r.Amount, PayerMasked: r.PayerMasked, Seal: r.Seal,
	})
}

func (s *Sim) issue(req IssueRequest, name string) (Receipt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.byForm[req.FormNo]; ok {
		r.Requests++
		return *r, nil
	}
	info := FormInfo{PayCode: req.PayCode, UnitCode: req.UnitCode, ItemCode: req.ItemCode, Fine: req.Fine}
	if s.forms != nil {
		var ok bool
		if info, ok = s.forms(req.FormNo); !ok {
			return Receipt{}, apierr.New(http.StatusNotFound, "NOT_FOUND", "form %s was not issued by the non-tax system", req.FormNo)
		}
		var v field.Checker
		if req.PayCode != info.PayCode {
			v.Add("pay_code", "is not the payment identification code of form %s", req.FormNo)
		}
		if req.UnitCode != info.UnitCode {
			v.Add("unit_code", "must be the unit of form %s (%s)", req.FormNo, info.UnitCode)
		}
		if req.ItemCode != info.ItemCode {
			v.Add("item_code", "must be the item of form %s (%s)", req.FormNo, info.ItemCode)
		}
		if req.Fine != info.Fine {
			v.Add("fine", "must be the fine of form %s (%d)", req.FormNo, info.Fine)
		}
		if err := v.Err(); err != nil {
			return Receipt{}, err
		}
	}
	now := s.now().In(shanghai.Location)
	// 8 digits: 4-digit region, category 0 (non-tax), type 1 (general payment), 2-digit year.
	code := req.UnitCode[:4] + "01" + now.Format("06")
	check, err := checkCode(s.rand)
	if err != nil {
		return Receipt{}, err
	}
	if s.seq[code] >= 9999999999 {
		return Receipt{}, apierr.New(http.StatusServiceUnavailable, "STOCK_EXHAUSTED", "receipt numbers of code %s are used up", code)
	}
	s.seq[code]++
	r := &Receipt{
		ReceiptCode: code,
		ReceiptNo:   fmt.Sprintf("%010d", s.seq[code]),
		CheckCode:   check,
		IssuedAt:    shanghai.Time(now),
		Amount:      req.Amount,
		Fine:        req.Fine,
		LateFee:     req.LateFee,
		PayerMasked: payername.Mask(name),
		FormNo:      req.FormNo,
		PayCode:     req.PayCode,
		OrderNo:     req.OrderNo,
		UnitCode:    req.UnitCode,
		UnitName:    info.UnitName,
		ItemCode:    req.ItemCode,
		ItemName:    info.ItemName,
		PaidAt:      req.PaidAt,
		Requests:    1,
	}
	seal, err := s.key.Sign(s.rand, SealString(r.ReceiptCode, r.ReceiptNo, r.CheckCode, r.Amount, r.IssuedAt))
	if err != nil {
		s.seq[code]--
		return Receipt{}, fmt.Errorf("ereceiptsim: seal: %w", err)
	}
	r.Seal = base64.StdEncoding.EncodeToString(seal)
	s.receipts = append(s.receipts, r)
	s.byForm[r.FormNo] = r
	s.byNumber[r.ReceiptCode+r.ReceiptNo] = r
	s.log.Info("e-receipt issued", "receipt_code", r.ReceiptCode, "receipt_no", r.ReceiptNo,
		"form_no", r.FormNo, "amount", r.Amount)
	return *r, nil
}

const checkAlphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func checkCode(r io.Reader) (string, error) {
	b := make([]byte, 6)
	out := make([]byte, 0, 6)
	for len(out) < 6 {
		if _, err := io.ReadFull(r, b); err != nil {
			return "", fmt.Errorf("ereceiptsim: check code: %w", err)
		}
		for _, x := range b {
			// 248 = 4 × 62: reject the tail so that every character is equally likely.
			if x < 248 && len(out) < 6 {
				out = append(out, checkAlphabet[int(x)%len(checkAlphabet)])
			}
		}
	}
	return string(out), nil
}

// VerifyResponse is the answer to GET /ereceipt/v1/verify.
type VerifyResponse struct {
	Valid       bool   `json:"valid"`
	ReceiptCode string `json:"receipt_code"`
	ReceiptNo   string `json:"receipt_no"`
	IssuedAt    string `json:"issued_at"`
	Amount      int64  `json:"amount"`
	PayerMasked string `json:"payer_masked"`
	UnitName    string `json:"unit_name"`
	ItemName    string `json:"item_name"`
	Seal        string `json:"seal"`
}

var checkPattern = regexp.MustCompile(`^[0-9A-Za-z]{6}$`)

func (s *Sim) handleVerify(c echo.Context) error {
	q := c.QueryParams()
	var v field.Checker
	code, number, check := q.Get("code"), q.Get("number"), q.Get("check_code")
	v.Digits("code", code, 8, 8)
	v.Digits("number", number, 10, 10)
	v.Match("check_code", check, checkPattern, "6 letters or digits")
	var amount int64
	if v.Required("amount", q.Get("amount")) {
		n, err := strconv.ParseInt(q.Get("amount"), 10, 64)
		if err != nil || n <= 0 {
			v.Add("amount", "must be an integer > 0 (fen)")
		}
		amount = n
	}
	date := q.Get("date")
	if date != "" {
		v.Date("date", date)
	}
	if err := v.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	r, ok := s.byNumber[code+number]
	var rc Receipt
	if ok {
		rc = *r
	}
	s.mu.Unlock()
	issuedDate := ""
	if ok {
		if t, err := time.Parse(time.RFC3339, rc.IssuedAt); err == nil {
			issuedDate = shanghai.Date(t)
		}
	}
	if !ok || rc.CheckCode != check || rc.Amount != amount || (date != "" && date != issuedDate) {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "no receipt matches these elements")
	}
	return c.JSON(http.StatusOK, VerifyResponse{
		Valid: true, ReceiptCode: rc.ReceiptCode, ReceiptNo: rc.ReceiptNo, IssuedAt: rc.IssuedAt,
		Amount: rc.Amount, PayerMasked: rc.PayerMasked, UnitName: rc.UnitName, ItemName: rc.ItemName, Seal: rc.Seal,
	})
}

// Snapshot copies the state.
func (s *Sim) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Receipts: make([]Receipt, 0, len(s.receipts))}
	for _, r := range s.receipts {
		st.Receipts = append(st.Receipts, *r)
	}
	return st
}
