package ereceiptsim

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/payername"
	"finepay/sandbox/internal/shanghai"
	"finepay/shared/gm"
)

// MaxData bounds the unit's signed receipt data.
const MaxData = 8 << 10

// ReceiptData is the receipt data the issuing unit signs (docs/partners.md): a JSON object sent
// base64-encoded, so that the signature covers exactly the bytes signed.
type ReceiptData struct {
	Version      int        `json:"version"`
	Kind         string     `json:"kind"`
	Name         string     `json:"name"`
	ReceiptCode  string     `json:"receipt_code"`
	ReceiptNo    string     `json:"receipt_no"`
	OriginalCode string     `json:"original_code,omitempty"`
	OriginalNo   string     `json:"original_no,omitempty"`
	FormNo       string     `json:"form_no"`
	PayCode      string     `json:"pay_code"`
	OrderNo      string     `json:"order_no"`
	Payer        string     `json:"payer"`
	UnitCode     string     `json:"unit_code"`
	UnitName     string     `json:"unit_name"`
	Items        []DataItem `json:"items"`
	Amount       int64      `json:"amount"`
	PaidAt       string     `json:"paid_at"`
	Reason       string     `json:"reason,omitempty"`
	Issuer       string     `json:"issuer"`
	SignedAt     string     `json:"signed_at"`
}

// DataItem is one line of a receipt.
type DataItem struct {
	ItemCode string `json:"item_code"`
	ItemName string `json:"item_name"`
	Amount   int64  `json:"amount"`
}

// IssueRequest is the body of POST /ereceipt/v1/receipts.
type IssueRequest struct {
	FormNo        string `json:"form_no"`
	PayCode       string `json:"pay_code"`
	OrderNo       string `json:"order_no"`
	PayerNameEnc  string `json:"payer_name_enc"`
	UnitCode      string `json:"unit_code"`
	ItemCode      string `json:"item_code"`
	Amount        int64  `json:"amount"`
	Fine          int64  `json:"fine"`
	LateFee       int64  `json:"late_fee"`
	PaidAt        string `json:"paid_at"`
	ReceiptCode   string `json:"receipt_code"`
	ReceiptNo     string `json:"receipt_no"`
	Data          string `json:"data"`
	UnitSignature string `json:"unit_signature"`
}

// RedRequest is the body of POST /ereceipt/v1/red-receipts.
type RedRequest struct {
	OriginalCode  string `json:"original_code"`
	OriginalNo    string `json:"original_no"`
	ReceiptCode   string `json:"receipt_code"`
	ReceiptNo     string `json:"receipt_no"`
	Reason        string `json:"reason"`
	Data          string `json:"data"`
	UnitSignature string `json:"unit_signature"`
}

// IssueResponse is the answer to POST /ereceipt/v1/receipts and /red-receipts: the receipt.
type IssueResponse struct {
	Kind          string `json:"kind"`
	ReceiptCode   string `json:"receipt_code"`
	ReceiptNo     string `json:"receipt_no"`
	CheckCode     string `json:"check_code"`
	IssuedAt      string `json:"issued_at"`
	Amount        int64  `json:"amount"`
	PayerMasked   string `json:"payer_masked"`
	OriginalCode  string `json:"original_code,omitempty"`
	OriginalNo    string `json:"original_no,omitempty"`
	Data          string `json:"data"`
	UnitSignature string `json:"unit_signature"`
	Seal          string `json:"seal"`
	Layout        string `json:"layout"`
}

func response(r *Receipt) IssueResponse {
	return IssueResponse{
		Kind: r.Kind, ReceiptCode: r.ReceiptCode, ReceiptNo: r.ReceiptNo, CheckCode: r.CheckCode, IssuedAt: r.IssuedAt,
		Amount: r.Amount, PayerMasked: r.PayerMasked, OriginalCode: r.OriginalCode, OriginalNo: r.OriginalNo,
		Data: base64.StdEncoding.EncodeToString(r.Data), UnitSignature: r.UnitSignature, Seal: r.Seal,
		Layout: base64.StdEncoding.EncodeToString(r.Layout),
	}
}

func sm3Hex(b []byte) string {
	d := gm.SM3(b)
	return hex.EncodeToString(d[:])
}

var (
	reCode = regexp.MustCompile(`^[0-9]{8}$`)
	reNo   = regexp.MustCompile(`^[0-9]{10}$`)
)

// signedData checks the unit's signature over the base64 data and decodes it.
func (s *Sim) signedData(v *field.Checker, data64, sig64 string) ([]byte, *ReceiptData) {
	if !v.Required("data", data64) || !v.Required("unit_signature", sig64) {
		return nil, nil
	}
	data, err := base64.StdEncoding.DecodeString(data64)
	if err != nil || len(data) == 0 || len(data) > MaxData {
		v.Add("data", "must be base64 of at most %d bytes", MaxData)
		return nil, nil
	}
	sig, err := base64.StdEncoding.DecodeString(sig64)
	if err != nil {
		v.Add("unit_signature", "must be base64")
		return nil, nil
	}
	if s.cfg.UnitKey == nil || s.cfg.UnitKey.Verify(data, sig) != nil {
		return nil, nil
	}
	var d ReceiptData
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		v.Add("data", "is not the receipt data object: %v", err)
		return nil, nil
	}
	if _, err := dec.Token(); err != io.EOF {
		v.Add("data", "must hold exactly one JSON object")
		return nil, nil
	}
	if d.Version != 1 {
		v.Add("data", "version must be 1")
	}
	if d.Name == "" || d.Payer == "" || d.Issuer == "" || len(d.Items) == 0 {
		v.Add("data", "name, payer, issuer and items are required")
	}
	var sum int64
	for _, it := range d.Items {
		if it.ItemCode == "" || it.ItemName == "" || it.Amount <= 0 {
			v.Add("data", "every item needs item_code, item_name and amount > 0")
		}
		sum += it.Amount
	}
	if sum != d.Amount {
		v.Add("data", "the items add up to %d, amount is %d", sum, d.Amount)
	}
	v.Time("data.signed_at", d.SignedAt)
	return data, &d
}

// unitSignatureInvalid is the answer when the unit's signature does not verify.
func unitSignatureInvalid() error {
	return apierr.New(http.StatusBadRequest, "UNIT_SIGNATURE_INVALID", "the issuing unit's signature over data does not verify")
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
	v.Match("receipt_code", req.ReceiptCode, reCode, "8 digits")
	v.Match("receipt_no", req.ReceiptNo, reNo, "10 digits")
	var name string
	if v.Required("payer_name_enc", req.PayerNameEnc) {
		var err error
		if name, err = payername.Open(s.cfg.Decrypter, req.PayerNameEnc); err != nil {
			v.Add("payer_name_enc", "%s", payername.Reason(err))
		}
	}
	if err := v.Err(); err != nil {
		return err
	}
	data, d := s.signedData(&v, req.Data, req.UnitSignature)
	if err := v.Err(); err != nil {
		return err
	}
	if d == nil {
		return unitSignatureInvalid()
	}
	if d.Kind != KindBlue || d.ReceiptCode != req.ReceiptCode || d.ReceiptNo != req.ReceiptNo || d.FormNo != req.FormNo ||
		d.PayCode != req.PayCode || d.OrderNo != req.OrderNo || d.UnitCode != req.UnitCode || d.Amount != req.Amount ||
		d.PaidAt != req.PaidAt || d.Items[0].ItemCode != req.ItemCode || d.Items[0].Amount != req.Fine {
		return apierr.Invalid("INVALID_ARGUMENT", "data: must be a blue receipt of this request (receipt_code, receipt_no, form_no, pay_code, order_no, unit_code, amount, paid_at, and the fine as the first item)")
	}
	r, err := s.issue(req, d, data, name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Sim) issue(req IssueRequest, d *ReceiptData, data []byte, name string) (IssueResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.byForm[req.FormNo]; ok {
		r.Requests++
		return response(r), nil
	}
	info := FormInfo{PayCode: req.PayCode, UnitCode: req.UnitCode, ItemCode: req.ItemCode, Fine: req.Fine,
		UnitName: d.UnitName, ItemName: d.Items[0].ItemName}
	if s.cfg.Forms != nil {
		var ok bool
		if info, ok = s.cfg.Forms(req.FormNo); !ok {
			return IssueResponse{}, apierr.New(http.StatusNotFound, "NOT_FOUND", "form %s was not issued by the non-tax system", req.FormNo)
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
			return IssueResponse{}, err
		}
	}
	a, err := s.numberInStockLocked(req.UnitCode, req.ReceiptCode, req.ReceiptNo)
	if err != nil {
		return IssueResponse{}, err
	}
	r := &Receipt{
		Kind: KindBlue, Status: StatusValid, ReceiptCode: req.ReceiptCode, ReceiptNo: req.ReceiptNo,
		Amount: req.Amount, Fine: req.Fine, LateFee: req.LateFee, PayerMasked: payername.Mask(name),
		FormNo: req.FormNo, PayCode: req.PayCode, OrderNo: req.OrderNo, UnitCode: req.UnitCode, UnitName: info.UnitName,
		ItemCode: req.ItemCode, ItemName: info.ItemName, Items: d.Items, PaidAt: req.PaidAt,
		Data: data, UnitSignature: req.UnitSignature, Requests: 1,
	}
	if err := s.sealLocked(r); err != nil {
		return IssueResponse{}, err
	}
	a.used++
	s.receipts = append(s.receipts, r)
	s.byForm[r.FormNo] = r
	s.byNumber[r.ReceiptCode+r.ReceiptNo] = r
	s.log.Info("e-receipt issued", "receipt_code", r.ReceiptCode, "receipt_no", r.ReceiptNo, "form_no", r.FormNo, "amount", r.Amount)
	return response(r), nil
}

// numberInStockLocked finds the allocation in the unit's stock that holds a number not used yet.
func (s *Sim) numberInStockLocked(unitCode, code, number string) (*Allocation, error) {
	if _, used := s.byNumber[code+number]; used {
		return nil, apierr.Invalid("INVALID_ARGUMENT", "receipt_no: %s %s is already used by another receipt", code, number)
	}
	n := mustAtoi(number)
	for _, a := range s.allocations {
		if a.UnitCode == unitCode && a.ReceiptCode == code && a.start <= n && n <= a.end {
			if a.Status != AllocationInStock {
				return nil, apierr.Invalid("INVALID_ARGUMENT", "receipt_no: allocation %s was not taken into stock", a.AllocationID)
			}
			return a, nil
		}
	}
	return nil, apierr.Invalid("INVALID_ARGUMENT", "receipt_no: %s %s is not in the stock handed down to unit %s", code, number, unitCode)
}

// sealLocked gives r its check code, issue time, seal and layout.
func (s *Sim) sealLocked(r *Receipt) error {
	check, err := checkCode(s.cfg.Rand)
	if err != nil {
		return err
	}
	r.CheckCode = check
	r.IssuedAt = shanghai.Time(s.now())
	seal, err := s.key.Sign(s.cfg.Rand, SealString(r.ReceiptCode, r.ReceiptNo, r.CheckCode, r.Amount, r.IssuedAt, r.Data, r.UnitSignature))
	if err != nil {
		return fmt.Errorf("ereceiptsim: seal: %w", err)
	}
	r.Seal = base64.StdEncoding.EncodeToString(seal)
	if r.Layout, err = Layout(*r, s.cfg.CheckURL); err != nil {
		return fmt.Errorf("ereceiptsim: layout: %w", err)
	}
	return nil
}

func (s *Sim) handleRed(c echo.Context) error {
	var req RedRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	v.Match("original_code", req.OriginalCode, reCode, "8 digits")
	v.Match("original_no", req.OriginalNo, reNo, "10 digits")
	v.Match("receipt_code", req.ReceiptCode, reCode, "8 digits")
	v.Match("receipt_no", req.ReceiptNo, reNo, "10 digits")
	if v.Required("reason", req.Reason) && len([]rune(req.Reason)) > 200 {
		v.Add("reason", "at most 200 characters")
	}
	if err := v.Err(); err != nil {
		return err
	}
	data, d := s.signedData(&v, req.Data, req.UnitSignature)
	if err := v.Err(); err != nil {
		return err
	}
	if d == nil {
		return unitSignatureInvalid()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	orig, ok := s.byNumber[req.OriginalCode+req.OriginalNo]
	if !ok {
		return apierr.New(http.StatusNotFound, "NOT_FOUND", "no receipt %s %s", req.OriginalCode, req.OriginalNo)
	}
	if red, ok := s.redOf[orig.ReceiptCode+orig.ReceiptNo]; ok {
		red.Requests++
		return c.JSON(http.StatusOK, response(red))
	}
	if orig.Kind != KindBlue {
		return apierr.Invalid("INVALID_ARGUMENT", "original: %s %s is a red receipt", req.OriginalCode, req.OriginalNo)
	}
	if d.Kind != KindRed || d.ReceiptCode != req.ReceiptCode || d.ReceiptNo != req.ReceiptNo ||
		d.OriginalCode != orig.ReceiptCode || d.OriginalNo != orig.ReceiptNo || d.Amount != orig.Amount ||
		d.UnitCode != orig.UnitCode || d.FormNo != orig.FormNo || d.Reason != req.Reason {
		return apierr.Invalid("INVALID_ARGUMENT", "data: must be the red receipt of %s %s (kind red, receipt_code, receipt_no, original_code, original_no, the original's amount, unit_code and form_no, reason)", orig.ReceiptCode, orig.ReceiptNo)
	}
	a, err := s.numberInStockLocked(orig.UnitCode, req.ReceiptCode, req.ReceiptNo)
	if err != nil {
		return err
	}
	red := &Receipt{
		Kind: KindRed, Status: StatusValid, ReceiptCode: req.ReceiptCode, ReceiptNo: req.ReceiptNo,
		Amount: orig.Amount, Fine: orig.Fine, LateFee: orig.LateFee, PayerMasked: orig.PayerMasked,
		FormNo: orig.FormNo, PayCode: orig.PayCode, OrderNo: orig.OrderNo, UnitCode: orig.UnitCode, UnitName: orig.UnitName,
		ItemCode: orig.ItemCode, ItemName: orig.ItemName, Items: d.Items, PaidAt: orig.PaidAt,
		OriginalCode: orig.ReceiptCode, OriginalNo: orig.ReceiptNo, Reason: req.Reason,
		Data: data, UnitSignature: req.UnitSignature, Requests: 1,
	}
	if err := s.sealLocked(red); err != nil {
		return err
	}
	a.used++
	orig.Status, orig.RedCode, orig.RedNo = StatusRedFlushed, red.ReceiptCode, red.ReceiptNo
	s.receipts = append(s.receipts, red)
	s.byNumber[red.ReceiptCode+red.ReceiptNo] = red
	s.redOf[orig.ReceiptCode+orig.ReceiptNo] = red
	s.log.Info("e-receipt red-flushed", "original_code", orig.ReceiptCode, "original_no", orig.ReceiptNo,
		"receipt_code", red.ReceiptCode, "receipt_no", red.ReceiptNo)
	return c.JSON(http.StatusOK, response(red))
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
