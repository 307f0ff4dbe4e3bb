package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
)

// Direction says which way a message type may cross.
type Direction string

// The two directions across the boundary. The value is also the prefix of the ferry lanes.
const (
	ToGateway Direction = "to-gateway" // intranet core → internet gateway
	ToCore    Direction = "to-core"    // internet gateway → intranet core
)

// Message types. Only types listed here cross the boundary (default deny).
const (
	TypeBillPublished    = "bill.published"
	TypePaymentConfirmed = "payment.confirmed"
	TypeReceiptIssued    = "receipt.issued"
	TypeRefundInstructed = "refund.instructed"
	TypeRefundResult     = "refund.result"
)

// ErrUnknownType is returned for a type that is not in the catalogue.
var ErrUnknownType = errors.New("envelope: unknown message type")

// ErrInvalidPayload is wrapped when a payload does not meet its type's schema.
var ErrInvalidPayload = errors.New("envelope: invalid payload")

// Payload is implemented by every catalogue payload.
type Payload interface {
	MessageType() string
	Validate() error
}

// Spec describes a catalogue entry.
type Spec struct {
	Type      string
	Direction Direction
	MaxSize   int            // largest accepted payload, bytes
	New       func() Payload // a zero payload to decode into
}

var catalogue = map[string]Spec{
	TypeBillPublished:    {TypeBillPublished, ToGateway, 4 << 10, func() Payload { return new(BillPublished) }},
	TypePaymentConfirmed: {TypePaymentConfirmed, ToCore, 4 << 10, func() Payload { return new(PaymentConfirmed) }},
	TypeReceiptIssued:    {TypeReceiptIssued, ToGateway, 48 << 10, func() Payload { return new(ReceiptIssued) }},
	TypeRefundInstructed: {TypeRefundInstructed, ToGateway, 4 << 10, func() Payload { return new(RefundInstructed) }},
	TypeRefundResult:     {TypeRefundResult, ToCore, 4 << 10, func() Payload { return new(RefundResult) }},
	TypeLaneGap:          {TypeLaneGap, Either, 256, func() Payload { return new(LaneGap) }},
}

// Lookup returns the catalogue entry of a type.
func Lookup(typ string) (Spec, error) {
	s, ok := catalogue[typ]
	if !ok {
		return Spec{}, fmt.Errorf("%w: %q", ErrUnknownType, typ)
	}
	return s, nil
}

// New builds an envelope carrying p. The payload is encoded with encoding/json (the field order
// of a struct is fixed, so the bytes are deterministic for a given value).
func New(id, key string, created time.Time, p Payload) (Envelope, error) {
	if err := p.Validate(); err != nil {
		return Envelope{}, fmt.Errorf("%w: %s: %w", ErrInvalidPayload, p.MessageType(), err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return Envelope{}, err
	}
	e := Envelope{ID: id, Type: p.MessageType(), Key: key, CreatedAt: created.UTC().Truncate(time.Microsecond), Payload: b}
	if err := e.Check(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// Check validates the envelope against the catalogue: the type is listed, the payload within
// its size limit and valid against its schema (unknown, repeated or differently cased member
// names, trailing data and invalid UTF-8 are refused).
func (e Envelope) Check() error {
	_, err := e.Decode()
	return err
}

// Decode validates the envelope and returns its payload.
func (e Envelope) Decode() (Payload, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	s, err := Lookup(e.Type)
	if err != nil {
		return nil, err
	}
	if len(e.Payload) > s.MaxSize {
		return nil, fmt.Errorf("%w: %s payload of %d bytes exceeds %d", ErrInvalidPayload, e.Type, len(e.Payload), s.MaxSize)
	}
	p := s.New()
	// One JSON object and nothing after it; member names exactly as the struct tags spell them,
	// none unknown, none twice; strings valid UTF-8 (the defaults of encoding/json/v2, which
	// decodes these about three times faster than encoding/json's Decoder).
	if err := jsonv2.Unmarshal(e.Payload, p, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPayload, e.Type, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPayload, e.Type, err)
	}
	return p, nil
}

// Lane returns the ferry lane for a message of type typ with key: the direction's prefix and a
// partition of the key, so that messages with one key always travel in one lane, in order.
func Lane(typ, key string, partitions int) (string, error) {
	s, err := Lookup(typ)
	if err != nil {
		return "", err
	}
	if s.Direction == Either {
		return "", fmt.Errorf("envelope: %s is not queued by services and has no lane of its own", typ)
	}
	if partitions < 1 {
		partitions = 1
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return string(s.Direction) + "." + strconv.Itoa(int(h.Sum32()%uint32(partitions))), nil
}

// The fields' character classes, checked with plain loops rather than regular expressions: every
// message is checked where it is queued and again where it is received, so these run for every
// message the ferry carries.
var (
	isDigit    = func(c byte) bool { return '0' <= c && c <= '9' }
	isAlnum    = func(c byte) bool { return isDigit(c) || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' }
	isIdent    = func(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }
	reChannels = map[string]bool{"wechat": true, "alipay": true, "unionpay": true}
)

// of reports whether s has between lo and hi bytes, each in the class.
func of(s string, lo, hi int, class func(byte) bool) bool {
	if len(s) < lo || len(s) > hi {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !class(s[i]) {
			return false
		}
	}
	return true
}

// digits: ^[0-9]+$.
func digits(s string) bool { return of(s, 1, len(s), isDigit) }

// ident: ^[A-Za-z0-9_-]{1,64}$, the catalogue's identifiers.
func ident(s string) bool { return of(s, 1, 64, isIdent) }

// token: ^[A-Za-z0-9_-]{22,64}$, a cashier URL token.
func token(s string) bool { return of(s, 22, 64, isIdent) }

// date: ^[0-9]{4}-[0-9]{2}-[0-9]{2}$.
func date(s string) bool {
	return len(s) == 10 && s[4] == '-' && s[7] == '-' && of(s[:4], 4, 4, isDigit) && of(s[5:7], 2, 2, isDigit) && of(s[8:], 2, 2, isDigit)
}

func need(ok bool, what string) error {
	if !ok {
		return errors.New(what)
	}
	return nil
}

// BillPublished is the payer's view of a payable bill, published by the core to the gateway. It
// holds only what a payer needs to see: no full name, no ID data.
type BillPublished struct {
	BillNo         string    `json:"bill_no"`
	Token          string    `json:"token"` // the cashier URL token (/q/{token}), ≥128 random bits
	DecisionNo     string    `json:"decision_no"`
	PartyMasked    string    `json:"party_masked"`
	PlateMasked    string    `json:"plate_masked"`
	Fine           int64     `json:"fine"` // fen
	ServedDate     string    `json:"served_date"`
	LateFeeApplies bool      `json:"late_fee_applies"`
	UnitName       string    `json:"unit_name"`
	ItemName       string    `json:"item_name"`
	FormNo         string    `json:"form_no"`
	PayCode        string    `json:"pay_code"`
	IssuedAt       time.Time `json:"issued_at"`
	// LookupHash, optional, lets a payer find the bill on the gateway by decision number and the
	// plate's last four characters: lowercase hex of the keyed HMAC-SM3 of package
	// finepay/shared/lookup. Omitted when empty, so that a bill without it encodes as before.
	LookupHash string `json:"lookup_hash,omitempty"`
}

// MessageType implements Payload.
func (*BillPublished) MessageType() string { return TypeBillPublished }

// Validate implements Payload.
func (b *BillPublished) Validate() error {
	return errors.Join(
		need(ident(b.BillNo), "bill_no"),
		need(token(b.Token), "token"),
		need(digits(b.DecisionNo) && len(b.DecisionNo) >= 15 && len(b.DecisionNo) <= 20, "decision_no"),
		need(len(b.PartyMasked) <= 64 && len(b.PlateMasked) <= 32, "masked fields"),
		need(b.Fine > 0 && b.Fine <= 100_000_000, "fine"),
		need(date(b.ServedDate), "served_date"),
		need(ident(b.FormNo) && ident(b.PayCode), "form_no/pay_code"),
		need(len(b.UnitName) <= 128 && len(b.ItemName) <= 128, "names"),
		need(!b.IssuedAt.IsZero(), "issued_at"),
		need(b.LookupHash == "" || validLookupHash(b.LookupHash), "lookup_hash"),
	)
}

// validLookupHash reports whether s is 64 lowercase hex characters.
func validLookupHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// PaymentConfirmed is a verified channel payment, ferried from the gateway to the core.
type PaymentConfirmed struct {
	BillNo         string    `json:"bill_no"`
	OrderNo        string    `json:"order_no"`
	Channel        string    `json:"channel"`
	ChannelTradeNo string    `json:"channel_trade_no"`
	Amount         int64     `json:"amount"`   // fen, total paid
	Fine           int64     `json:"fine"`     // fen
	LateFee        int64     `json:"late_fee"` // fen
	PaidAt         time.Time `json:"paid_at"`
	NotificationID string    `json:"notification_id"`
}

// MessageType implements Payload.
func (*PaymentConfirmed) MessageType() string { return TypePaymentConfirmed }

// Validate implements Payload.
func (p *PaymentConfirmed) Validate() error {
	return errors.Join(
		need(ident(p.BillNo), "bill_no"),
		need(ident(p.OrderNo), "order_no"),
		need(reChannels[p.Channel], "channel"),
		need(ident(p.ChannelTradeNo), "channel_trade_no"),
		need(p.Amount > 0 && p.Fine > 0 && p.LateFee >= 0 && p.Fine+p.LateFee == p.Amount, "amounts"),
		need(!p.PaidAt.IsZero(), "paid_at"),
		need(len(p.NotificationID) <= 64, "notification_id"),
	)
}

// ReceiptIssued carries the e-receipt of a payment from the core to the gateway.
type ReceiptIssued struct {
	BillNo      string    `json:"bill_no"`
	OrderNo     string    `json:"order_no"`
	ReceiptCode string    `json:"receipt_code"`
	ReceiptNo   string    `json:"receipt_no"`
	CheckCode   string    `json:"check_code"`
	Amount      int64     `json:"amount"`
	PayerMasked string    `json:"payer_masked"`
	IssuedAt    time.Time `json:"issued_at"`
	// The signed receipt, for the payer to download (absent in messages from before E1's
	// signed receipts): Data is the receipt data exactly as the issuing unit signed it,
	// UnitSignature the unit's SM2 signature over Data, Seal the finance supervision seal
	// (base64 DER, docs/partners.md), Layout the platform's layout file (a PDF).
	Data          []byte `json:"data,omitempty"`
	UnitSignature string `json:"unit_signature,omitempty"`
	Seal          string `json:"seal,omitempty"`
	Layout        []byte `json:"layout,omitempty"`
}

// Bounds of the signed receipt in a ReceiptIssued (before base64).
const (
	MaxReceiptData   = 8 << 10
	MaxReceiptLayout = 24 << 10
)

// MessageType implements Payload.
func (*ReceiptIssued) MessageType() string { return TypeReceiptIssued }

// Validate implements Payload.
func (r *ReceiptIssued) Validate() error {
	return errors.Join(
		need(ident(r.BillNo), "bill_no"),
		need(ident(r.OrderNo), "order_no"),
		need(len(r.ReceiptCode) == 8 && digits(r.ReceiptCode), "receipt_code"),
		need(len(r.ReceiptNo) == 10 && digits(r.ReceiptNo), "receipt_no"),
		need(len(r.CheckCode) == 6, "check_code"),
		need(r.Amount > 0, "amount"),
		need(len(r.PayerMasked) <= 64, "payer_masked"),
		need(!r.IssuedAt.IsZero(), "issued_at"),
		need(len(r.Data) <= MaxReceiptData, "data"),
		need(len(r.UnitSignature) <= 200 && len(r.Seal) <= 200, "unit_signature, seal"),
		need(len(r.Layout) <= MaxReceiptLayout, "layout"),
		need((len(r.Data) == 0) == (len(r.Layout) == 0) && (len(r.Data) == 0) == (r.Seal == "") &&
			(len(r.Data) == 0) == (r.UnitSignature == ""), "data, unit_signature, seal and layout go together"),
	)
}
