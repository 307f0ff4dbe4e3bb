package nontaxsim

import (
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/shanghai"
)

// ReconRequest is the body of POST /nontax/v1/reconciliations: the traffic police front
// system's pre-reconciliation of an agency bank's end-of-day file (flow P3).
type ReconRequest struct {
	ReconID        string      `json:"recon_id"`
	Source         string      `json:"source"`
	BankCode       string      `json:"bank_code"`
	BusinessDate   string      `json:"business_date"`
	FileSM3        string      `json:"file_sm3"`
	Status         string      `json:"status"`
	Matched        int         `json:"matched"`
	BankOnly       int         `json:"bank_only"`
	CoreOnly       int         `json:"core_only"`
	AmountMismatch int         `json:"amount_mismatch"`
	TotalBank      int64       `json:"total_bank"`
	TotalCore      int64       `json:"total_core"`
	Items          []ReconItem `json:"items"`
}

// ReconItem is one line of a reconciliation.
type ReconItem struct {
	Class      string `json:"class"`
	BankSerial string `json:"bank_serial"`
	DecisionNo string `json:"decision_no"`
	PayCode    string `json:"pay_code"`
	OrderNo    string `json:"order_no,omitempty"`
	BankAmount int64  `json:"bank_amount"`
	CoreAmount int64  `json:"core_amount"`
}

// Reconciliation is a reconciliation received.
type Reconciliation struct {
	ReconRequest
	ReceivedAt string `json:"received_at"`
	Reports    int    `json:"reports"`
}

var (
	reReconID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	reSM3     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	classes   = map[string]bool{"matched": true, "bank_only": true, "core_only": true, "amount_mismatch": true}
)

// Reconciler is the non-tax system's side of the reconciliations (对账) the traffic police front
// system sends: it keeps them, idempotently by recon_id. It is separate from Sim so that it can
// be mounted on its own.
type Reconciler struct {
	now func() time.Time
	log *slog.Logger

	mu   sync.Mutex
	list []*Reconciliation
	byID map[string]*Reconciliation
}

// NewReconciler returns an empty reconciler.
func NewReconciler(cfg Config) *Reconciler {
	r := &Reconciler{now: cfg.Now, log: cfg.Log, byID: map[string]*Reconciliation{}}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

// Register adds POST /reconciliations to g, which should be mounted at /nontax/v1.
func (s *Reconciler) Register(g *echo.Group) {
	g.POST("/reconciliations", s.handleRecon)
}

func (s *Reconciler) handleRecon(c echo.Context) error {
	var req ReconRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	v.Match("recon_id", req.ReconID, reReconID, "1-64 characters [A-Za-z0-9_-]")
	if req.Source != "bank" {
		v.Add("source", "must be bank")
	}
	v.Digits("bank_code", req.BankCode, 3, 12)
	v.Date("business_date", req.BusinessDate)
	v.Match("file_sm3", req.FileSM3, reSM3, "64 lowercase hex digits")
	counts := map[string]int{}
	for i, it := range req.Items {
		if !classes[it.Class] {
			v.Add("items", "item %d: class must be matched, bank_only, core_only or amount_mismatch", i)
			break
		}
		counts[it.Class]++
	}
	if counts["matched"] != req.Matched || counts["bank_only"] != req.BankOnly || counts["core_only"] != req.CoreOnly ||
		counts["amount_mismatch"] != req.AmountMismatch {
		v.Add("items", "the counts must be those of the items")
	}
	balanced := req.BankOnly+req.CoreOnly+req.AmountMismatch == 0
	if (req.Status == "balanced") != balanced || (req.Status != "balanced" && req.Status != "differences") {
		v.Add("status", "must be balanced when there are no differences, differences otherwise")
	}
	if err := v.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.byID[req.ReconID]; ok {
		if r.FileSM3 != req.FileSM3 || r.Status != req.Status {
			return apierr.New(http.StatusConflict, "RESULT_CONFLICT", "reconciliation %s was reported with another file or result", req.ReconID)
		}
		r.Reports++
		return c.JSON(http.StatusOK, map[string]string{"status": "accepted", "recon_id": r.ReconID})
	}
	r := &Reconciliation{ReconRequest: req, ReceivedAt: shanghai.Time(s.now()), Reports: 1}
	s.list = append(s.list, r)
	s.byID[r.ReconID] = r
	s.log.Info("non-tax reconciliation received", "recon_id", r.ReconID, "status", r.Status, "matched", r.Matched,
		"bank_only", r.BankOnly, "core_only", r.CoreOnly, "amount_mismatch", r.AmountMismatch)
	return c.JSON(http.StatusOK, map[string]string{"status": "accepted", "recon_id": r.ReconID})
}

// Reconciliations copies the reconciliations received.
func (s *Reconciler) Reconciliations() []Reconciliation {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Reconciliation, 0, len(s.list))
	for _, r := range s.list {
		cp := *r
		cp.Items = append([]ReconItem(nil), r.Items...)
		out = append(out, cp)
	}
	return out
}

// HasPayment reports whether a payment report of the order was received.
func (s *Sim) HasPayment(orderNo string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.payments {
		if p.OrderNo == orderNo {
			return true
		}
	}
	return false
}
