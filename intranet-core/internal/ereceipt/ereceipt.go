// Package ereceipt is the client of the finance e-receipt platform (财政电子票据): it has the
// receipt of a payment issued and checks the finance supervision seal (财政监制章) on it before
// the receipt is accepted. The message shapes follow docs/partners.md; the real interface
// document replaces this package.
package ereceipt

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"finepay/intranet-core/internal/partner"
	"finepay/shared/gm"
)

// PathReceipts is where receipts are issued.
const PathReceipts = "/ereceipt/v1/receipts"

// Errors of Issue.
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

// Request asks for the receipt of a payment.
type Request struct {
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

// Receipt is an issued e-receipt.
type Receipt struct {
	ReceiptCode string `json:"receipt_code"` // 8 digits
	ReceiptNo   string `json:"receipt_no"`   // 10 digits
	CheckCode   string `json:"check_code"`   // 6 characters
	IssuedAt    string `json:"issued_at"`    // RFC 3339
	Amount      int64  `json:"amount"`
	PayerMasked string `json:"payer_masked"`
	Seal        string `json:"seal"` // base64 SM2 signature by the finance key
}

// SealString is what the seal signs: code, number, check code, amount and issue time, one per
// line.
func SealString(r Receipt) []byte {
	return []byte(r.ReceiptCode + "\n" + r.ReceiptNo + "\n" + r.CheckCode + "\n" + strconv.FormatInt(r.Amount, 10) + "\n" + r.IssuedAt)
}

var (
	reCode  = regexp.MustCompile(`^[0-9]{8}$`)
	reNo    = regexp.MustCompile(`^[0-9]{10}$`)
	reCheck = regexp.MustCompile(`^[A-Za-z0-9]{6}$`)
)

// Issue has the receipt of a payment issued. The answer is accepted only when it is signed by
// the platform, is a well-formed receipt for the requested amount, and its seal verifies.
func (c *Client) Issue(ctx context.Context, requestID string, r Request) (Receipt, error) {
	var rc Receipt
	if err := c.p.PostJSON(ctx, PathReceipts, requestID, r, &rc); err != nil {
		return Receipt{}, err
	}
	if err := c.Check(rc, r.Amount); err != nil {
		return Receipt{}, err
	}
	return rc, nil
}

// Check verifies a receipt's form, amount and seal.
func (c *Client) Check(rc Receipt, amount int64) error {
	switch {
	case !reCode.MatchString(rc.ReceiptCode):
		return fmt.Errorf("%w: receipt_code %q", ErrBadAnswer, rc.ReceiptCode)
	case !reNo.MatchString(rc.ReceiptNo):
		return fmt.Errorf("%w: receipt_no %q", ErrBadAnswer, rc.ReceiptNo)
	case !reCheck.MatchString(rc.CheckCode):
		return fmt.Errorf("%w: check_code %q", ErrBadAnswer, rc.CheckCode)
	case rc.Amount != amount:
		return fmt.Errorf("%w: receipt for %d fen, paid %d", ErrBadAnswer, rc.Amount, amount)
	case len(rc.PayerMasked) > 64:
		return fmt.Errorf("%w: payer_masked too long", ErrBadAnswer)
	}
	if _, err := time.Parse(time.RFC3339, rc.IssuedAt); err != nil {
		return fmt.Errorf("%w: issued_at %q", ErrBadAnswer, rc.IssuedAt)
	}
	sig, err := base64.StdEncoding.DecodeString(rc.Seal)
	if err != nil {
		return fmt.Errorf("%w: not base64", ErrBadSeal)
	}
	if err := c.sealKey.Verify(SealString(rc), sig); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSeal, err)
	}
	return nil
}
