// Package ereceiptsim simulates the finance e-receipt platform (财政电子票据) as docs/partners.md
// specifies it, over the whole receipt life cycle (flow E1):
//
//   - master data: the units (执收单位) and revenue items it knows, for the core to keep in sync;
//   - stock (票据库存): ranges of receipt numbers handed down to each unit, which the unit takes
//     into stock (入库) before it uses them; the unit assigns the code and number of each receipt
//     from its stock, in order;
//   - issue (开具): the unit's receipt data, signed with the unit's SM2 key; the platform checks
//     the signature, the form with the non-tax system and the number against the unit's stock,
//     adds a 6-character check code and the finance supervision seal (财政监制章, an SM2
//     signature by the sandbox's signing key) and returns the receipt with its layout file (PDF);
//     one receipt per payment form;
//   - red-flush (红冲): a red receipt with its own code, number and check code that refers to
//     the original, which is marked red-flushed and kept; one red receipt per original;
//   - verification (查验): by code, number, check code, amount and date, for the core (JSON) and
//     for people (an HTML page);
//   - write-off (核销): the unit's report of the numbers it used in a day, compared with what the
//     platform issued.
//
// The JSON routes are meant to sit behind partnerapi.Guard, which verifies and signs the
// envelope; the check page and the sandbox's own stock endpoint are public.
package ereceiptsim

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/payername"
	"finepay/sandbox/internal/shanghai"
)

// Signer makes the seal; *gm.PrivateKey is one.
type Signer interface {
	Sign(rand io.Reader, msg []byte) ([]byte, error)
}

// Verifier checks the issuing unit's signature; *gm.PublicKey is one.
type Verifier interface {
	Verify(msg, sig []byte) error
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

// Unit is an executing unit of the master data.
type Unit struct {
	UnitCode   string `json:"unit_code"`
	UnitName   string `json:"unit_name"`
	RegionCode string `json:"region_code"`
}

// Item is a revenue item of the master data.
type Item struct {
	ItemCode string `json:"item_code"`
	ItemName string `json:"item_name"`
}

// Kinds of receipt.
const (
	KindBlue = "blue" // an ordinary receipt
	KindRed  = "red"  // a red receipt reversing a blue one
)

// Statuses of a receipt.
const (
	StatusValid       = "valid"
	StatusRedFlushed  = "red-flushed"
	AllocationHanded  = "handed"
	AllocationInStock = "in_stock"
)

// Config configures the simulator.
type Config struct {
	// Key signs the seal: the sandbox's signing key.
	Key Signer
	// UnitKey verifies the issuing units' signatures (unit-sign.pem). Nil refuses every receipt.
	UnitKey Verifier
	// Decrypter opens payer_name_enc: the sandbox's encryption key.
	Decrypter payername.Decrypter
	// Forms looks a form up in the non-tax system. Nil accepts any form.
	Forms func(formNo string) (FormInfo, bool)
	// Units and Items are the master data. Stock is handed down to every unit in Units and to
	// every unit UnitsInUse names.
	Units []Unit
	Items []Item
	// UnitsInUse, when set, names further units that need stock (those the non-tax system
	// issued forms for).
	UnitsInUse func() []string
	// Allocation is how many numbers one hand-down gives a unit; 10000 when zero.
	Allocation int64
	// CheckURL is the address of the check page, printed on layout files.
	CheckURL string
	Now      func() time.Time
	Rand     io.Reader
	Log      *slog.Logger
}

// Receipt is an issued e-receipt, blue or red.
type Receipt struct {
	Kind        string     `json:"kind"`
	Status      string     `json:"status"`
	ReceiptCode string     `json:"receipt_code"`
	ReceiptNo   string     `json:"receipt_no"`
	CheckCode   string     `json:"check_code"`
	IssuedAt    string     `json:"issued_at"`
	Amount      int64      `json:"amount"`
	Fine        int64      `json:"fine"`
	LateFee     int64      `json:"late_fee"`
	PayerMasked string     `json:"payer_masked"`
	Seal        string     `json:"seal"`
	FormNo      string     `json:"form_no"`
	PayCode     string     `json:"pay_code"`
	OrderNo     string     `json:"order_no"`
	UnitCode    string     `json:"unit_code"`
	UnitName    string     `json:"unit_name"`
	ItemCode    string     `json:"item_code"`
	ItemName    string     `json:"item_name"`
	Items       []DataItem `json:"items"`
	PaidAt      string     `json:"paid_at"`
	// OriginalCode and OriginalNo: on a red receipt, the receipt it reverses.
	OriginalCode string `json:"original_code,omitempty"`
	OriginalNo   string `json:"original_no,omitempty"`
	// RedCode and RedNo: on a red-flushed receipt, its red receipt.
	RedCode string `json:"red_code,omitempty"`
	RedNo   string `json:"red_no,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Data and UnitSignature are the unit's signed receipt data; Layout the PDF.
	Data          []byte `json:"-"`
	UnitSignature string `json:"unit_signature"`
	Layout        []byte `json:"-"`
	// Requests counts the requests answered with this receipt, the first included.
	Requests int `json:"requests"`
}

// Allocation is a range of receipt numbers handed down to a unit.
type Allocation struct {
	AllocationID string `json:"allocation_id"`
	UnitCode     string `json:"unit_code"`
	ReceiptCode  string `json:"receipt_code"`
	StartNo      string `json:"start_no"`
	EndNo        string `json:"end_no"`
	HandedAt     string `json:"handed_at"`
	Status       string `json:"status"`
	AcceptedAt   string `json:"accepted_at,omitempty"`
	start, end   int64
	used         int64
}

// State is what the simulator holds, for /_sandbox/state.
type State struct {
	Receipts    []Receipt    `json:"receipts"`
	Allocations []Allocation `json:"allocations"`
	WriteOffs   []WriteOff   `json:"writeoffs"`
}

// Sim is the simulator. Its methods are safe for concurrent use.
type Sim struct {
	cfg Config
	key Signer
	now func() time.Time
	log *slog.Logger

	mu          sync.Mutex
	receipts    []*Receipt
	byForm      map[string]*Receipt
	byNumber    map[string]*Receipt // code + number
	redOf       map[string]*Receipt // original code + number → its red receipt
	allocations []*Allocation
	cursor      map[string]int64 // by receipt code: the last number handed down
	writeoffs   map[string]*WriteOff
}

// New returns a simulator with no receipts.
func New(cfg Config) *Sim {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Allocation <= 0 {
		cfg.Allocation = 10000
	}
	return &Sim{
		cfg: cfg, key: cfg.Key, now: cfg.Now, log: cfg.Log,
		byForm: map[string]*Receipt{}, byNumber: map[string]*Receipt{}, redOf: map[string]*Receipt{},
		cursor: map[string]int64{}, writeoffs: map[string]*WriteOff{},
	}
}

// Register adds the partner routes to g, which should be mounted at /ereceipt/v1 behind the
// partner envelope.
func (s *Sim) Register(g *echo.Group) {
	g.POST("/receipts", s.handleIssue)
	g.POST("/red-receipts", s.handleRed)
	g.GET("/verify", s.handleVerify)
	g.GET("/master-data", s.handleMasterData)
	g.GET("/stock/allocations", s.handleAllocations)
	g.POST("/stock/acceptances", s.handleAccept)
	g.POST("/writeoffs", s.handleWriteOff)
}

// RegisterPublic adds the check page (GET /ereceipt/check) and the sandbox's hand-down endpoint
// (POST /_sandbox/ereceipt/allocations) to e.
func (s *Sim) RegisterPublic(e *echo.Echo) {
	e.GET("/ereceipt/check", s.handleCheckPage)
	e.POST("/_sandbox/ereceipt/allocations", s.handleHandDown)
}

// SealString is the message the finance supervision seal signs: the receipt's code, number,
// check code, amount and issue time, the SM3 digest of the unit's signed data (which holds
// every other element: kind, payer, unit, items, the original of a red receipt) and the unit's
// signature, one per line.
func SealString(code, number, checkCode string, amount int64, issuedAt string, data []byte, unitSignature string) []byte {
	return []byte(strings.Join([]string{code, number, checkCode, strconv.FormatInt(amount, 10), issuedAt,
		sm3Hex(data), unitSignature}, "\n"))
}

// receiptCode is the code of the numbers handed down to a unit in year t: the first 4 digits of
// the unit code (region), category 0 (non-tax), type 1 (general payment form), the 2-digit year.
func receiptCode(unitCode string, t time.Time) string {
	return unitCode[:4] + "01" + t.In(shanghai.Location).Format("06")
}

// Snapshot copies the state.
func (s *Sim) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{Receipts: make([]Receipt, 0, len(s.receipts)), Allocations: make([]Allocation, 0, len(s.allocations)),
		WriteOffs: make([]WriteOff, 0, len(s.writeoffs))}
	for _, r := range s.receipts {
		st.Receipts = append(st.Receipts, *r)
	}
	for _, a := range s.allocations {
		st.Allocations = append(st.Allocations, *a)
	}
	for _, w := range s.writeoffs {
		st.WriteOffs = append(st.WriteOffs, *w)
	}
	sort.Slice(st.WriteOffs, func(i, j int) bool { return st.WriteOffs[i].Period < st.WriteOffs[j].Period })
	return st
}

// Receipt returns a copy of a receipt, with its data and layout, by code and number.
func (s *Sim) Receipt(code, number string) (Receipt, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byNumber[code+number]
	if !ok {
		return Receipt{}, false
	}
	return *r, true
}

func formatNo(n int64) string { return fmt.Sprintf("%010d", n) }
