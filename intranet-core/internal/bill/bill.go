// Package bill creates and shows the payable bills of penalty decisions (flow P2). Creating a
// bill asks the non-tax system for the payment form and identification code, stores the bill
// with the party's name and plate sealed under the data key, and, in the same transaction,
// queues a BillPublished message (masked name and plate only) for the internet gateway. The
// answer carries the QR URL printed on the decision notice: the gateway's public base, /q/ and
// a random token of 192 bits, never derived from the decision number.
//
// There is one active bill per decision number (a unique index is the arbiter): creating it
// again with the same input returns the existing bill; with a different input it is refused.
package bill

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/partner"
	"finepay/intranet-core/internal/pii"
	"finepay/shared/bizdate"
	"finepay/shared/envelope"
	"finepay/shared/gm"
	"finepay/shared/lookup"
	"finepay/shared/money"
	"finepay/shared/penalty"
)

// Statuses of a bill.
const (
	StatusUnpaid    = "unpaid"
	StatusPaid      = "paid"
	StatusCancelled = "cancelled"
)

// Columns of the sealed personal fields (part of the sealing's additional data).
const (
	ColumnPartyName = "bills.party_name"
	ColumnPlate     = "bills.plate"
)

// Errors of the service.
var (
	ErrNotFound = errors.New("bill: not found")
	// ErrConflict: the decision already has an active bill created from a different input.
	ErrConflict = errors.New("bill: the decision already has a bill with different data")
	// ErrNonTax: the non-tax system did not issue a form.
	ErrNonTax = errors.New("bill: the non-tax system did not issue a payment form")
)

// FormIssuer issues payment forms; *nontax.Client is one.
type FormIssuer interface {
	IssueForm(ctx context.Context, requestID string, r nontax.FormRequest) (nontax.Form, error)
}

// Config configures a Service.
type Config struct {
	DB            *sqldb.DB
	Vault         *pii.Vault
	Forms         FormIssuer
	PartnerEncKey *gm.PublicKey // encrypts payer_name_enc for the non-tax system
	Outbox        *outbox.Outbox
	GatewayURL    string // public base of the cashier; QR URL = GatewayURL + "/q/" + token
	Now           func() time.Time
	Rand          io.Reader
	Logger        *slog.Logger
	Registry      prometheus.Registerer

	// LookupKey, when set (lookup.KeySize bytes, shared with the gateway), adds the lookup hash
	// of the decision number and the plate's last four characters to bill.published, so that
	// the payer can find the bill on the gateway by them (package finepay/shared/lookup).
	LookupKey []byte
}

// Service creates and reads bills.
type Service struct {
	cfg     Config
	created prometheus.Counter
}

// NewService returns a service; core_bills_created_total is registered with cfg.Registry.
func NewService(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.GatewayURL = strings.TrimRight(cfg.GatewayURL, "/")
	s := &Service{cfg: cfg, created: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "core_bills_created_total", Help: "Payable bills created (idempotent repeats not counted)."})}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(s.created)
	}
	return s
}

// View is a bill as the window platform and the console see it.
type View struct {
	BillNo          string
	Token           string
	QRURL           string
	DecisionNo      string
	ViolationSerial string
	PartyMasked     string
	PlateMasked     string
	Fine            money.Fen
	LateFee         money.Fen // as of today
	TotalDueToday   money.Fen
	ServedDate      string
	DueDate         string
	LateFeeApplies  bool
	UnitCode        string
	ItemCode        string
	UnitName        string
	ItemName        string
	FormNo          string
	PayCode         string
	Status          string
	CreatedAt       time.Time
	Payment         *PaymentView
	Receipt         *ReceiptView
}

// PaymentView is the payment that paid a bill.
type PaymentView struct {
	OrderNo        string
	Channel        string
	ChannelTradeNo string
	Amount         money.Fen
	Fine           money.Fen
	LateFee        money.Fen
	PaidAt         time.Time
}

// ReceiptView is the e-receipt of a paid bill.
type ReceiptView struct {
	ReceiptCode string
	ReceiptNo   string
	CheckCode   string
	Amount      money.Fen
	IssuedAt    time.Time
}

// Create creates the bill of a decision, or returns the active one when the same input was
// sent before (created is then false). actor names the caller for the record ("window-api",
// "console:clerk").
func (s *Service) Create(ctx context.Context, actor string, req CreateRequest) (v View, created bool, err error) {
	req.Normalize()
	now := s.cfg.Now()
	if err := req.Validate(bizdate.Of(now)); err != nil {
		return View{}, false, err
	}
	hash := s.cfg.Vault.Index("bill-input", req.canonical())
	if r, err := BillGetActiveByDecision(ctx, s.cfg.DB, req.DecisionNo); err == nil {
		return s.existing(r, hash)
	} else if !errors.Is(err, ErrNotFound) {
		return View{}, false, err
	}

	enc, err := partner.EncryptName(s.cfg.PartnerEncKey, s.cfg.Rand, req.PartyName)
	if err != nil {
		return View{}, false, err
	}
	rid, err := partner.NewRequestID(s.cfg.Rand)
	if err != nil {
		return View{}, false, err
	}
	form, err := s.cfg.Forms.IssueForm(ctx, rid, nontax.FormRequest{
		DecisionNo: req.DecisionNo, ViolationSerial: req.ViolationSerial, UnitCode: req.UnitCode,
		ItemCode: req.ItemCode, PayerNameEnc: enc, Fine: req.Fine, ServedDate: req.ServedDate,
		LateFeeApplies: req.Applies(),
	})
	if err != nil {
		return View{}, false, fmt.Errorf("%w: %w", ErrNonTax, err)
	}

	for try := 0; ; try++ {
		r, err := s.newRecord(req, form, hash, actor, now)
		if err != nil {
			return View{}, false, err
		}
		err = s.cfg.DB.Tx(ctx, func(tx *sql.Tx) error {
			if err := BillInsert(ctx, tx, r); err != nil {
				return err
			}
			pub := r.published()
			lh, err := s.lookupHash(req)
			if err != nil {
				return err
			}
			pub.LookupHash = lh
			env, err := envelope.New("bill:"+r.BillNo, r.BillNo, now, pub)
			if err != nil {
				return err
			}
			_, err = s.cfg.Outbox.Put(ctx, tx, env)
			return err
		})
		if err == nil {
			s.created.Inc()
			s.cfg.Logger.Info("bill created", "bill_no", r.BillNo, "decision_no", r.DecisionNo, "form_no", r.FormNo, "actor", actor)
			return s.view(r, nil, nil), true, nil
		}
		if !sqldb.IsUniqueViolation(err) {
			return View{}, false, fmt.Errorf("bill: store: %w", err)
		}
		// Either a concurrent request created the decision's bill first, or (very rarely) the
		// random bill number or token was taken.
		if ex, gerr := BillGetActiveByDecision(ctx, s.cfg.DB, req.DecisionNo); gerr == nil {
			return s.existing(ex, hash)
		}
		if try >= 3 {
			return View{}, false, fmt.Errorf("bill: store: %w", err)
		}
	}
}

func (s *Service) existing(r Record, hash string) (View, bool, error) {
	if r.InputHash != hash {
		return View{}, false, fmt.Errorf("%w: %s", ErrConflict, r.BillNo)
	}
	return s.view(r, nil, nil), false, nil
}

func (s *Service) newRecord(req CreateRequest, form nontax.Form, hash, actor string, now time.Time) (Record, error) {
	billNo, err := s.newBillNo(now)
	if err != nil {
		return Record{}, err
	}
	tok := make([]byte, 24)
	if _, err := io.ReadFull(s.cfg.Rand, tok); err != nil {
		return Record{}, fmt.Errorf("bill: token: %w", err)
	}
	nameEnc, err := s.cfg.Vault.Seal(ColumnPartyName, billNo, req.PartyName)
	if err != nil {
		return Record{}, err
	}
	plateEnc, err := s.cfg.Vault.Seal(ColumnPlate, billNo, req.Plate)
	if err != nil {
		return Record{}, err
	}
	due := form.DueDate
	if due == "" {
		if d, err := bizdate.Parse(req.ServedDate); err == nil {
			due = d.AddDays(penalty.GraceDays).String()
		}
	}
	return Record{
		BillNo: billNo, Token: base64.RawURLEncoding.EncodeToString(tok), DecisionNo: req.DecisionNo,
		ViolationSerial: req.ViolationSerial, PartyNameEnc: nameEnc, PartyNameIdx: s.cfg.Vault.Index("name", req.PartyName),
		PlateEnc: plateEnc, PlateIdx: s.cfg.Vault.Index("plate", req.Plate),
		PartyMasked: pii.MaskName(req.PartyName), PlateMasked: pii.MaskPlate(req.Plate),
		Fine: req.Fine, ServedDate: req.ServedDate, LateFeeApplies: req.Applies(),
		UnitCode: req.UnitCode, ItemCode: req.ItemCode, UnitName: form.UnitName, ItemName: form.ItemName,
		FormNo: form.FormNo, PayCode: form.PayCode, DueDate: due, InputHash: hash,
		Status: StatusUnpaid, CreatedBy: actor, CreatedAt: now.UTC(),
	}, nil
}

// newBillNo returns "B", the business date and 12 random digits: B20261127004711234567.
func (s *Service) newBillNo(now time.Time) (string, error) {
	n, err := rand.Int(s.cfg.Rand, big.NewInt(1_000_000_000_000))
	if err != nil {
		return "", fmt.Errorf("bill: number: %w", err)
	}
	d := bizdate.Of(now)
	return fmt.Sprintf("B%04d%02d%02d%012d", d.Year, d.Month, d.Day, n.Int64()), nil
}

// Get returns a bill with its payment and receipt.
func (s *Service) Get(ctx context.Context, billNo string) (View, error) {
	r, err := BillGetByNo(ctx, s.cfg.DB, billNo)
	if err != nil {
		return View{}, err
	}
	p, rc, err := paymentAndReceipt(ctx, s.cfg.DB, billNo)
	if err != nil {
		return View{}, err
	}
	return s.view(r, p, rc), nil
}

// Recent returns the most recently created bills, newest first, with payment and receipt.
func (s *Service) Recent(ctx context.Context, limit int) ([]View, error) {
	rs, err := BillListRecent(ctx, s.cfg.DB, limit)
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(rs))
	for _, r := range rs {
		p, rc, err := paymentAndReceipt(ctx, s.cfg.DB, r.BillNo)
		if err != nil {
			return nil, err
		}
		out = append(out, s.view(r, p, rc))
	}
	return out, nil
}

// PartyName opens a bill's sealed party name (for partners that need it, never for logs).
func (s *Service) PartyName(r Record) (string, error) {
	return s.cfg.Vault.Open(ColumnPartyName, r.BillNo, r.PartyNameEnc)
}

func (s *Service) view(r Record, p *PaymentView, rc *ReceiptView) View {
	v := View{
		BillNo: r.BillNo, Token: r.Token, QRURL: s.cfg.GatewayURL + "/q/" + r.Token, DecisionNo: r.DecisionNo,
		ViolationSerial: r.ViolationSerial, PartyMasked: r.PartyMasked, PlateMasked: r.PlateMasked,
		Fine: money.Fen(r.Fine), ServedDate: r.ServedDate, DueDate: r.DueDate, LateFeeApplies: r.LateFeeApplies,
		UnitCode: r.UnitCode, ItemCode: r.ItemCode, UnitName: r.UnitName, ItemName: r.ItemName,
		FormNo: r.FormNo, PayCode: r.PayCode, Status: r.Status, CreatedAt: r.CreatedAt, Payment: p, Receipt: rc,
	}
	if served, err := bizdate.Parse(r.ServedDate); err == nil {
		_, v.LateFee, v.TotalDueToday = penalty.Due(v.Fine, served, bizdate.Of(s.cfg.Now()), r.LateFeeApplies)
	}
	if p != nil {
		v.LateFee, v.TotalDueToday = p.LateFee, p.Amount
	}
	return v
}

// lookupHash is the keyed hash of the decision number and the plate's last four characters
// published with the bill; "" when no lookup key is configured.
func (s *Service) lookupHash(req CreateRequest) (string, error) {
	if len(s.cfg.LookupKey) == 0 {
		return "", nil
	}
	tail, err := lookup.PlateTail(req.Plate)
	if err != nil {
		return "", err
	}
	return lookup.Hash(s.cfg.LookupKey, req.DecisionNo, tail)
}

// published is the payer's view of the bill sent to the gateway: masked fields, no ID data.
func (r Record) published() *envelope.BillPublished {
	return &envelope.BillPublished{
		BillNo: r.BillNo, Token: r.Token, DecisionNo: r.DecisionNo, PartyMasked: r.PartyMasked,
		PlateMasked: r.PlateMasked, Fine: r.Fine, ServedDate: r.ServedDate, LateFeeApplies: r.LateFeeApplies,
		UnitName: r.UnitName, ItemName: r.ItemName, FormNo: r.FormNo, PayCode: r.PayCode, IssuedAt: r.CreatedAt,
	}
}
