package isp

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"

	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/partnerin"
	"finepay/shared/bizdate"
)

// SubmitRequest is the body of POST /partner/v1/isp/payments: the platform asks for the bill of
// a decision, to send the payer to the cashier. Amounts are fen.
type SubmitRequest struct {
	// ISPOrderNo is the platform's own number of this payment, 1–64 [A-Za-z0-9_-].
	ISPOrderNo      string `json:"isp_order_no"`
	DecisionNo      string `json:"decision_no"`
	ViolationSerial string `json:"violation_serial"`
	// PartyNameEnc is the party's name, SM2-encrypted to the core's encryption certificate
	// (base64 of C1C3C2 ASN.1), never sent in clear.
	PartyNameEnc string `json:"party_name_enc"`
	Plate        string `json:"plate"`
	Fine         int64  `json:"fine"`
	ServedDate   string `json:"served_date"`
	UnitCode     string `json:"unit_code"`
	ItemCode     string `json:"item_code"`
	// LateFeeApplies: whether late fees accrue after the 15-day grace period; true when absent.
	LateFeeApplies *bool `json:"late_fee_applies,omitempty"`
	// AmountDue is the total the platform showed the payer for today (fine + late fee); it must
	// be the core's.
	AmountDue int64 `json:"amount_due"`
}

// Decrypter opens SM2 ciphertexts; *gm.PrivateKey is one.
type Decrypter interface {
	Decrypt(ciphertext []byte) ([]byte, error)
}

var reOrderNo = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidOrderNo reports whether s is a well-formed platform order number.
func ValidOrderNo(s string) bool { return reOrderNo.MatchString(s) }

// maxAmountDue is the most a decision can cost: the fine and at most as much again in late fees.
const maxAmountDue = 2 * bill.MaxFine

// Check validates every field against the business date today, opens the party's name with
// dec, and returns the bill request. Errors are one 400 INVALID_ARGUMENT naming every failing
// field (partnerin.Problems).
func (r *SubmitRequest) Check(today bizdate.Date, dec Decrypter) (bill.CreateRequest, error) {
	p := partnerin.Problems{}
	r.ISPOrderNo = strings.TrimSpace(r.ISPOrderNo)
	p.Add(!ValidOrderNo(r.ISPOrderNo), "isp_order_no", "must be 1 to 64 characters [A-Za-z0-9_-]")
	p.Add(r.AmountDue <= 0 || r.AmountDue > maxAmountDue, "amount_due", fmt.Sprintf("must be 1 to %d fen", maxAmountDue))
	name, err := openName(dec, r.PartyNameEnc)
	if err != nil {
		p.Add(true, "party_name_enc", err.Error())
	}
	req := bill.CreateRequest{
		DecisionNo: r.DecisionNo, ViolationSerial: r.ViolationSerial, PartyName: name, Plate: r.Plate, Fine: r.Fine,
		ServedDate: r.ServedDate, UnitCode: r.UnitCode, ItemCode: r.ItemCode, LateFeeApplies: r.LateFeeApplies,
	}
	req.Normalize()
	if verr := req.Validate(today); verr != nil {
		if ve, ok := verr.(*bill.ValidationError); ok {
			for _, f := range ve.Fields {
				if f.Field == "party_name" {
					if err == nil { // a name that did not open is reported once
						p.Add(true, "party_name_enc", "the name "+f.Message)
					}
					continue
				}
				p.Add(true, f.Field, f.Message)
			}
		} else {
			return req, verr
		}
	}
	return req, p.Err()
}

// openName decrypts party_name_enc.
func openName(dec Decrypter, enc string) (string, error) {
	if enc == "" {
		return "", fmt.Errorf("is required")
	}
	if len(enc) > 4096 {
		return "", fmt.Errorf("is too long")
	}
	ct, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", fmt.Errorf("must be base64")
	}
	pt, err := dec.Decrypt(ct)
	if err != nil {
		return "", fmt.Errorf("does not decrypt with the core's encryption key")
	}
	return string(pt), nil
}
