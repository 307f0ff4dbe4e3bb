// Package ereceipt is the client of the finance e-receipt platform (财政电子票据), flow E1: it
// has the receipt of a payment issued from the issuing unit's signed receipt data and checks the
// finance supervision seal (财政监制章) on it before the receipt is accepted; it red-flushes
// (红冲) a receipt; it reads the stock handed down to the units and takes it into stock (入库),
// reports usage for write-off (核销), and reads the unit and item master data. The message
// shapes follow docs/partners.md; the real interface document replaces this package.
package ereceipt

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"finepay/intranet-core/internal/partner"
	"finepay/shared/gm"
)

// Paths of the platform.
const (
	PathReceipts    = "/ereceipt/v1/receipts"
	PathRedReceipts = "/ereceipt/v1/red-receipts"
	PathAllocations = "/ereceipt/v1/stock/allocations"
	PathAcceptances = "/ereceipt/v1/stock/acceptances"
	PathWriteOffs   = "/ereceipt/v1/writeoffs"
	PathMasterData  = "/ereceipt/v1/master-data"
)

// Kinds of receipt.
const (
	KindBlue = "blue"
	KindRed  = "red"
)

// MaxData and MaxLayout bound the signed receipt data and the layout file.
const (
	MaxData   = 8 << 10
	MaxLayout = 24 << 10
)

// Errors of Issue and RedFlush.
var (
	// ErrBadSeal: the receipt's seal does not verify with the finance signing key.
	ErrBadSeal = errors.New("ereceipt: receipt seal invalid")
	// ErrBadAnswer: the signed answer does not hold a well-formed receipt for the request.
	ErrBadAnswer = errors.New("ereceipt: unexpected answer")
)

// Client calls the e-receipt platform.
type Client struct {
	p       *partner.Client
	sealKey *gm.PublicKey
}

// New returns a client. sealKey verifies the finance supervision seal (the platform's signing
// key).
func New(p *partner.Client, sealKey *gm.PublicKey) *Client { return &Client{p: p, sealKey: sealKey} }

// Data is the receipt data the issuing unit signs: every element of the receipt but those the
// platform adds (check code, issue time, seal). It is sent as the exact JSON bytes signed.
type Data struct {
	Version      int    `json:"version"` // 1
	Kind         string `json:"kind"`    // blue or red
	Name         string `json:"name"`    // the receipt's name
	ReceiptCode  string `json:"receipt_code"`
	ReceiptNo    string `json:"receipt_no"`
	OriginalCode string `json:"original_code,omitempty"` // red: the receipt reversed
	OriginalNo   string `json:"original_no,omitempty"`
	FormNo       string `json:"form_no"`
	PayCode      string `json:"pay_code"`
	OrderNo      string `json:"order_no"`
	Payer        string `json:"payer"` // masked: full names never leave the intranet in clear
	UnitCode     string `json:"unit_code"`
	UnitName     string `json:"unit_name"`
	Items        []Item `json:"items"`
	Amount       int64  `json:"amount"`
	PaidAt       string `json:"paid_at"`
	Reason       string `json:"reason,omitempty"` // red: why
	Issuer       string `json:"issuer"`           // 开票人
	SignedAt     string `json:"signed_at"`
}

// Item is one line of a receipt.
type Item struct {
	ItemCode string `json:"item_code"`
	ItemName string `json:"item_name"`
	Amount   int64  `json:"amount"`
}

// Sign encodes d and signs the bytes with the unit's key.
func Sign(signer gm.Signer, rnd io.Reader, d Data) (data []byte, signature string, err error) {
	data, err = json.Marshal(d)
	if err != nil {
		return nil, "", fmt.Errorf("ereceipt: encode data: %w", err)
	}
	if len(data) > MaxData {
		return nil, "", fmt.Errorf("ereceipt: receipt data of %d bytes exceeds %d", len(data), MaxData)
	}
	sig, err := signer.Sign(rnd, data)
	if err != nil {
		return nil, "", fmt.Errorf("ereceipt: unit signature: %w", err)
	}
	return data, base64.StdEncoding.EncodeToString(sig), nil
}

// Request asks for the receipt of a payment. The first fields are fixed when the payment is
// recorded; the receipt number and the signed data are added from the unit's stock before the
// first attempt and kept for every retry.
type Request struct {
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
	ReceiptCode   string `json:"receipt_code,omitempty"`
	ReceiptNo     string `json:"receipt_no,omitempty"`
	Data          string `json:"data,omitempty"` // base64 of the signed Data
	UnitSignature string `json:"unit_signature,omitempty"`
}

// RedRequest asks for the red receipt of an issued one.
type RedRequest struct {
	OriginalCode  string `json:"original_code"`
	OriginalNo    string `json:"original_no"`
	ReceiptCode   string `json:"receipt_code"`
	ReceiptNo     string `json:"receipt_no"`
	Reason        string `json:"reason"`
	Data          string `json:"data"`
	UnitSignature string `json:"unit_signature"`
}

// Receipt is an issued e-receipt, blue or red, as the platform answers it.
type Receipt struct {
	Kind          string `json:"kind"`
	ReceiptCode   string `json:"receipt_code"` // 8 digits
	ReceiptNo     string `json:"receipt_no"`   // 10 digits
	CheckCode     string `json:"check_code"`   // 6 characters
	IssuedAt      string `json:"issued_at"`    // RFC 3339
	Amount        int64  `json:"amount"`
	PayerMasked   string `json:"payer_masked"`
	OriginalCode  string `json:"original_code,omitempty"`
	OriginalNo    string `json:"original_no,omitempty"`
	Data          string `json:"data"` // base64, as the unit signed it
	UnitSignature string `json:"unit_signature"`
	Seal          string `json:"seal"`   // base64 SM2 signature by the finance key
	Layout        string `json:"layout"` // base64 PDF
}

// SealString is what the seal signs: code, number, check code, amount, issue time, the SM3
// digest (hex) of the unit's signed data and the unit's signature, one per line.
func SealString(r Receipt, data []byte) []byte {
	d := gm.SM3(data)
	return []byte(strings.Join([]string{r.ReceiptCode, r.ReceiptNo, r.CheckCode, strconv.FormatInt(r.Amount, 10), r.IssuedAt,
		hex.EncodeToString(d[:]), r.UnitSignature}, "\n"))
}

var (
	reCode  = regexp.MustCompile(`^[0-9]{8}$`)
	reNo    = regexp.MustCompile(`^[0-9]{10}$`)
	reCheck = regexp.MustCompile(`^[A-Za-z0-9]{6}$`)
)

// Issue has the receipt of a payment issued. The answer is accepted only when it is signed by
// the platform, is the receipt of the request (its number, amount and the unit's signed data),
// and its seal verifies.
func (c *Client) Issue(ctx context.Context, requestID string, r Request) (Receipt, error) {
	var rc Receipt
	if err := c.p.PostJSON(ctx, PathReceipts, requestID, r, &rc); err != nil {
		return Receipt{}, err
	}
	if rc.Kind != KindBlue {
		return Receipt{}, fmt.Errorf("%w: kind %q", ErrBadAnswer, rc.Kind)
	}
	if err := c.Check(rc, r.ReceiptCode, r.ReceiptNo, r.Amount, r.Data, r.UnitSignature); err != nil {
		return Receipt{}, err
	}
	return rc, nil
}

// RedFlush has the red receipt of an issued receipt made. A repeated red-flush of the same
// receipt answers the same red receipt.
func (c *Client) RedFlush(ctx context.Context, requestID string, r RedRequest, amount int64) (Receipt, error) {
	var rc Receipt
	if err := c.p.PostJSON(ctx, PathRedReceipts, requestID, r, &rc); err != nil {
		return Receipt{}, err
	}
	if rc.Kind != KindRed || rc.OriginalCode != r.OriginalCode || rc.OriginalNo != r.OriginalNo {
		return Receipt{}, fmt.Errorf("%w: not the red receipt of %s %s", ErrBadAnswer, r.OriginalCode, r.OriginalNo)
	}
	if err := c.Check(rc, r.ReceiptCode, r.ReceiptNo, amount, r.Data, r.UnitSignature); err != nil {
		return Receipt{}, err
	}
	return rc, nil
}

// Check verifies a receipt's form, its number, amount and signed data against what was asked,
// its layout file, and its seal.
func (c *Client) Check(rc Receipt, code, number string, amount int64, data, unitSignature string) error {
	switch {
	case !reCode.MatchString(rc.ReceiptCode) || rc.ReceiptCode != code:
		return fmt.Errorf("%w: receipt_code %q, asked %q", ErrBadAnswer, rc.ReceiptCode, code)
	case !reNo.MatchString(rc.ReceiptNo) || rc.ReceiptNo != number:
		return fmt.Errorf("%w: receipt_no %q, asked %q", ErrBadAnswer, rc.ReceiptNo, number)
	case !reCheck.MatchString(rc.CheckCode):
		return fmt.Errorf("%w: check_code %q", ErrBadAnswer, rc.CheckCode)
	case rc.Amount != amount:
		return fmt.Errorf("%w: receipt for %d fen, paid %d", ErrBadAnswer, rc.Amount, amount)
	case len(rc.PayerMasked) > 64:
		return fmt.Errorf("%w: payer_masked too long", ErrBadAnswer)
	case rc.Data != data || rc.UnitSignature != unitSignature:
		return fmt.Errorf("%w: the receipt does not carry the unit's signed data", ErrBadAnswer)
	}
	if _, err := time.Parse(time.RFC3339, rc.IssuedAt); err != nil {
		return fmt.Errorf("%w: issued_at %q", ErrBadAnswer, rc.IssuedAt)
	}
	layout, err := base64.StdEncoding.DecodeString(rc.Layout)
	if err != nil || len(layout) > MaxLayout || !bytes.HasPrefix(layout, []byte("%PDF-")) {
		return fmt.Errorf("%w: layout is not a PDF of at most %d bytes", ErrBadAnswer, MaxLayout)
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return fmt.Errorf("%w: data not base64", ErrBadAnswer)
	}
	sig, err := base64.StdEncoding.DecodeString(rc.Seal)
	if err != nil {
		return fmt.Errorf("%w: not base64", ErrBadSeal)
	}
	if err := c.sealKey.Verify(SealString(rc, raw), sig); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSeal, err)
	}
	return nil
}

// Allocation is a range of receipt numbers handed down to a unit.
type Allocation struct {
	AllocationID string `json:"allocation_id"`
	UnitCode     string `json:"unit_code"`
	ReceiptCode  string `json:"receipt_code"`
	StartNo      string `json:"start_no"`
	EndNo        string `json:"end_no"`
	HandedAt     string `json:"handed_at"`
	Status       string `json:"status"` // handed, in_stock
}

var reAllocation = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Valid reports whether the allocation is well formed: a code, a range of 10-digit numbers.
func (a Allocation) Valid() error {
	s, err1 := strconv.ParseInt(a.StartNo, 10, 64)
	e, err2 := strconv.ParseInt(a.EndNo, 10, 64)
	_, err3 := time.Parse(time.RFC3339, a.HandedAt)
	if !reAllocation.MatchString(a.AllocationID) || !reCode.MatchString(a.ReceiptCode) || !reNo.MatchString(a.StartNo) ||
		!reNo.MatchString(a.EndNo) || err1 != nil || err2 != nil || err3 != nil || s < 1 || e < s || len(a.UnitCode) < 6 {
		return fmt.Errorf("%w: allocation %+v", ErrBadAnswer, a)
	}
	return nil
}

// Allocations lists the number ranges handed down to the units.
func (c *Client) Allocations(ctx context.Context, requestID string) ([]Allocation, error) {
	var out struct {
		Allocations []Allocation `json:"allocations"`
	}
	if err := c.get(ctx, PathAllocations, requestID, &out); err != nil {
		return nil, err
	}
	for _, a := range out.Allocations {
		if err := a.Valid(); err != nil {
			return nil, err
		}
	}
	return out.Allocations, nil
}

// Accept tells the platform that an allocation was taken into stock.
func (c *Client) Accept(ctx context.Context, requestID string, a Allocation) error {
	var out Allocation
	in := map[string]string{"allocation_id": a.AllocationID, "unit_code": a.UnitCode, "receipt_code": a.ReceiptCode,
		"start_no": a.StartNo, "end_no": a.EndNo}
	if err := c.p.PostJSON(ctx, PathAcceptances, requestID, in, &out); err != nil {
		return err
	}
	if out.AllocationID != a.AllocationID || out.Status != "in_stock" {
		return fmt.Errorf("%w: acceptance of %s answered %+v", ErrBadAnswer, a.AllocationID, out)
	}
	return nil
}

// Usage is one line of a write-off report: what a unit used of one receipt code on a day.
type Usage struct {
	UnitCode    string `json:"unit_code"`
	ReceiptCode string `json:"receipt_code"`
	FirstNo     string `json:"first_no"`
	LastNo      string `json:"last_no"`
	Issued      int64  `json:"issued"`
	Red         int64  `json:"red"`
	Void        int64  `json:"void"`
	Amount      int64  `json:"amount"`
	RedAmount   int64  `json:"red_amount"`
}

// WriteOffReport is the usage of a day (Asia/Shanghai), reported for write-off.
type WriteOffReport struct {
	Period string  `json:"period"`
	Usage  []Usage `json:"usage"`
}

// WriteOffResult is the platform's answer: written-off, or discrepancies with what it
// recorded.
type WriteOffResult struct {
	Period        string `json:"period"`
	Status        string `json:"status"`
	Discrepancies []struct {
		UnitCode    string `json:"unit_code"`
		ReceiptCode string `json:"receipt_code"`
		Field       string `json:"field"`
		Reported    string `json:"reported"`
		Recorded    string `json:"recorded"`
	} `json:"discrepancies"`
}

// WriteOff reports a day's usage.
func (c *Client) WriteOff(ctx context.Context, requestID string, r WriteOffReport) (WriteOffResult, error) {
	var out WriteOffResult
	if err := c.p.PostJSON(ctx, PathWriteOffs, requestID, r, &out); err != nil {
		return out, err
	}
	if out.Period != r.Period || (out.Status != "written-off" && out.Status != "discrepancies") {
		return out, fmt.Errorf("%w: write-off answer %+v", ErrBadAnswer, out)
	}
	return out, nil
}

// MasterData is the finance side's unit and item master data.
type MasterData struct {
	Version string `json:"version"`
	Units   []struct {
		UnitCode   string `json:"unit_code"`
		UnitName   string `json:"unit_name"`
		RegionCode string `json:"region_code"`
	} `json:"units"`
	Items []struct {
		ItemCode string `json:"item_code"`
		ItemName string `json:"item_name"`
	} `json:"items"`
}

// MasterData reads the unit and item master data.
func (c *Client) MasterData(ctx context.Context, requestID string) (MasterData, error) {
	var out MasterData
	if err := c.get(ctx, PathMasterData, requestID, &out); err != nil {
		return out, err
	}
	for _, u := range out.Units {
		if len(u.UnitCode) < 6 || u.UnitName == "" || len(u.UnitName) > 128 {
			return out, fmt.Errorf("%w: unit %+v", ErrBadAnswer, u)
		}
	}
	for _, it := range out.Items {
		if it.ItemCode == "" || it.ItemName == "" || len(it.ItemName) > 128 {
			return out, fmt.Errorf("%w: item %+v", ErrBadAnswer, it)
		}
	}
	return out, nil
}

func (c *Client) get(ctx context.Context, path, requestID string, out any) error {
	resp, err := c.p.Do(ctx, http.MethodGet, path, requestID, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadAnswer, path, err)
	}
	return nil
}
