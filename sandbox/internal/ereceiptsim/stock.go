package ereceiptsim

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/shanghai"
)

// MasterData is the answer of GET /ereceipt/v1/master-data.
type MasterData struct {
	Version string `json:"version"`
	Units   []Unit `json:"units"`
	Items   []Item `json:"items"`
}

func (s *Sim) handleMasterData(c echo.Context) error {
	md := MasterData{Units: append([]Unit{}, s.cfg.Units...), Items: append([]Item{}, s.cfg.Items...)}
	sort.Slice(md.Units, func(i, j int) bool { return md.Units[i].UnitCode < md.Units[j].UnitCode })
	sort.Slice(md.Items, func(i, j int) bool { return md.Items[i].ItemCode < md.Items[j].ItemCode })
	var text string
	for _, u := range md.Units {
		text += u.UnitCode + "\t" + u.UnitName + "\t" + u.RegionCode + "\n"
	}
	for _, it := range md.Items {
		text += it.ItemCode + "\t" + it.ItemName + "\n"
	}
	md.Version = sm3Hex([]byte(text))[:16]
	return c.JSON(http.StatusOK, md)
}

// AllocationsResponse is the answer of GET /ereceipt/v1/stock/allocations.
type AllocationsResponse struct {
	Allocations []Allocation `json:"allocations"`
}

// handleAllocations lists the ranges handed down. Before answering, finance hands down a range
// to every unit that has none of this year's code with numbers left to hand out, or that has
// used nine tenths of them.
func (s *Sim) handleAllocations(c echo.Context) error {
	units := map[string]bool{}
	for _, u := range s.cfg.Units {
		units[u.UnitCode] = true
	}
	if s.cfg.UnitsInUse != nil {
		for _, u := range s.cfg.UnitsInUse() {
			units[u] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for u := range units {
		if len(u) < 6 {
			continue
		}
		code := receiptCode(u, now)
		var total, used int64
		for _, a := range s.allocations {
			if a.UnitCode == u && a.ReceiptCode == code {
				total += a.end - a.start + 1
				used += a.used
			}
		}
		if total == 0 || used*10 >= total*9 {
			if _, err := s.handDownLocked(u, code, s.cfg.Allocation, now); err != nil {
				return err
			}
		}
	}
	out := AllocationsResponse{Allocations: make([]Allocation, 0, len(s.allocations))}
	for _, a := range s.allocations {
		out.Allocations = append(out.Allocations, *a)
	}
	return c.JSON(http.StatusOK, out)
}

// handDownLocked hands down the next quantity numbers of code to a unit.
func (s *Sim) handDownLocked(unitCode, code string, quantity int64, now time.Time) (*Allocation, error) {
	start := s.cursor[code] + 1
	end := start + quantity - 1
	if end > 9999999999 {
		return nil, apierr.New(http.StatusServiceUnavailable, "STOCK_EXHAUSTED", "receipt numbers of code %s are used up", code)
	}
	s.cursor[code] = end
	a := &Allocation{
		AllocationID: fmt.Sprintf("A%s%010d", code, start), UnitCode: unitCode, ReceiptCode: code,
		StartNo: formatNo(start), EndNo: formatNo(end), HandedAt: shanghai.Time(now), Status: AllocationHanded,
		start: start, end: end,
	}
	s.allocations = append(s.allocations, a)
	s.log.Info("receipt numbers handed down", "unit_code", unitCode, "receipt_code", code, "start_no", a.StartNo, "end_no", a.EndNo)
	return a, nil
}

// AcceptRequest is the body of POST /ereceipt/v1/stock/acceptances: the unit took an allocation
// into stock (入库).
type AcceptRequest struct {
	AllocationID string `json:"allocation_id"`
	UnitCode     string `json:"unit_code"`
	ReceiptCode  string `json:"receipt_code"`
	StartNo      string `json:"start_no"`
	EndNo        string `json:"end_no"`
}

var reAllocation = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (s *Sim) handleAccept(c echo.Context) error {
	var req AcceptRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	v.Match("allocation_id", req.AllocationID, reAllocation, "1-64 characters [A-Za-z0-9_-]")
	v.Digits("unit_code", req.UnitCode, 6, 20)
	v.Match("receipt_code", req.ReceiptCode, reCode, "8 digits")
	v.Match("start_no", req.StartNo, reNo, "10 digits")
	v.Match("end_no", req.EndNo, reNo, "10 digits")
	if err := v.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.allocations {
		if a.AllocationID != req.AllocationID {
			continue
		}
		if a.UnitCode != req.UnitCode || a.ReceiptCode != req.ReceiptCode || a.StartNo != req.StartNo || a.EndNo != req.EndNo {
			return apierr.Invalid("INVALID_ARGUMENT", "allocation %s is %s %s %s-%s", a.AllocationID, a.UnitCode, a.ReceiptCode, a.StartNo, a.EndNo)
		}
		if a.Status != AllocationInStock {
			a.Status, a.AcceptedAt = AllocationInStock, shanghai.Time(s.now())
			s.log.Info("receipt numbers taken into stock", "allocation_id", a.AllocationID, "unit_code", a.UnitCode)
		}
		return c.JSON(http.StatusOK, *a)
	}
	return apierr.New(http.StatusNotFound, "NOT_FOUND", "no allocation %s", req.AllocationID)
}

// handleHandDown is POST /_sandbox/ereceipt/allocations {"unit_code","quantity"}: finance hands
// down a further range to a unit (a sandbox control, not part of the partner protocol).
func (s *Sim) handleHandDown(c echo.Context) error {
	var req struct {
		UnitCode string `json:"unit_code"`
		Quantity int64  `json:"quantity"`
	}
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	v.Digits("unit_code", req.UnitCode, 6, 20)
	if req.Quantity <= 0 || req.Quantity > 1000000 {
		v.Add("quantity", "must be 1 to 1000000")
	}
	if err := v.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	a, err := s.handDownLocked(req.UnitCode, receiptCode(req.UnitCode, now), req.Quantity, now)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, *a)
}

// Usage is one line of a write-off report: the receipts of one code a unit issued on a day.
type Usage struct {
	UnitCode    string `json:"unit_code"`
	ReceiptCode string `json:"receipt_code"`
	FirstNo     string `json:"first_no"`
	LastNo      string `json:"last_no"`
	Issued      int64  `json:"issued"`     // blue receipts
	Red         int64  `json:"red"`        // red receipts
	Void        int64  `json:"void"`       // numbers taken from stock and never issued
	Amount      int64  `json:"amount"`     // of the blue receipts
	RedAmount   int64  `json:"red_amount"` // of the red receipts
}

// WriteOffRequest is the body of POST /ereceipt/v1/writeoffs.
type WriteOffRequest struct {
	Period string  `json:"period"`
	Usage  []Usage `json:"usage"`
}

// Discrepancy is a difference between a write-off report and the platform's records.
type Discrepancy struct {
	UnitCode    string `json:"unit_code"`
	ReceiptCode string `json:"receipt_code"`
	Field       string `json:"field"`
	Reported    string `json:"reported"`
	Recorded    string `json:"recorded"`
}

// WriteOff is the answer of POST /ereceipt/v1/writeoffs, and what the platform keeps of it.
type WriteOff struct {
	Period        string        `json:"period"`
	Status        string        `json:"status"` // written-off, or discrepancies
	Reported      int           `json:"reported"`
	Discrepancies []Discrepancy `json:"discrepancies"`
	Usage         []Usage       `json:"usage"`
	ReceivedAt    string        `json:"received_at"`
}

// Write-off statuses.
const (
	WrittenOff            = "written-off"
	WriteOffDiscrepancies = "discrepancies"
)

func (s *Sim) handleWriteOff(c echo.Context) error {
	var req WriteOffRequest
	if err := field.DecodeJSON(c.Request().Body, &req); err != nil {
		return err
	}
	var v field.Checker
	day := v.Date("period", req.Period)
	if !day.IsZero() && !day.Before(s.now()) {
		v.Add("period", "must be a day that has begun")
	}
	if len(req.Usage) > 10000 {
		v.Add("usage", "at most 10000 lines")
	}
	seen := map[string]bool{}
	for i, u := range req.Usage {
		name := "usage[" + strconv.Itoa(i) + "]"
		v.Digits(name+".unit_code", u.UnitCode, 6, 20)
		v.Match(name+".receipt_code", u.ReceiptCode, reCode, "8 digits")
		if u.Issued+u.Red+u.Void > 0 {
			v.Match(name+".first_no", u.FirstNo, reNo, "10 digits")
			v.Match(name+".last_no", u.LastNo, reNo, "10 digits")
		}
		if u.Issued < 0 || u.Red < 0 || u.Void < 0 || u.Amount < 0 || u.RedAmount < 0 {
			v.Add(name, "counts and amounts must be >= 0")
		}
		if seen[u.UnitCode+u.ReceiptCode] {
			v.Add(name, "unit_code and receipt_code repeat an earlier line")
		}
		seen[u.UnitCode+u.ReceiptCode] = true
	}
	if err := v.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	recorded := map[string]*Usage{}
	for _, r := range s.receipts {
		t, err := time.Parse(time.RFC3339, r.IssuedAt)
		if err != nil || shanghai.Date(t) != req.Period {
			continue
		}
		k := r.UnitCode + r.ReceiptCode
		u := recorded[k]
		if u == nil {
			u = &Usage{UnitCode: r.UnitCode, ReceiptCode: r.ReceiptCode}
			recorded[k] = u
		}
		if r.Kind == KindRed {
			u.Red++
			u.RedAmount += r.Amount
		} else {
			u.Issued++
			u.Amount += r.Amount
		}
	}
	w := &WriteOff{Period: req.Period, Status: WrittenOff, Reported: len(req.Usage), Usage: req.Usage,
		Discrepancies: []Discrepancy{}, ReceivedAt: shanghai.Time(s.now())}
	diff := func(u Usage, field string, reported, rec int64) {
		if reported != rec {
			w.Discrepancies = append(w.Discrepancies, Discrepancy{UnitCode: u.UnitCode, ReceiptCode: u.ReceiptCode, Field: field,
				Reported: strconv.FormatInt(reported, 10), Recorded: strconv.FormatInt(rec, 10)})
		}
	}
	for _, u := range req.Usage {
		rec := recorded[u.UnitCode+u.ReceiptCode]
		if rec == nil {
			rec = &Usage{UnitCode: u.UnitCode, ReceiptCode: u.ReceiptCode}
		}
		delete(recorded, u.UnitCode+u.ReceiptCode)
		diff(u, "issued", u.Issued, rec.Issued)
		diff(u, "red", u.Red, rec.Red)
		diff(u, "amount", u.Amount, rec.Amount)
		diff(u, "red_amount", u.RedAmount, rec.RedAmount)
	}
	for _, rec := range recorded {
		diff(*rec, "issued", 0, rec.Issued)
		diff(*rec, "red", 0, rec.Red)
	}
	sort.Slice(w.Discrepancies, func(i, j int) bool {
		a, b := w.Discrepancies[i], w.Discrepancies[j]
		return a.UnitCode+a.ReceiptCode+a.Field < b.UnitCode+b.ReceiptCode+b.Field
	})
	if len(w.Discrepancies) > 0 {
		w.Status = WriteOffDiscrepancies
	}
	s.writeoffs[req.Period] = w
	s.log.Info("receipt usage reported for write-off", "period", w.Period, "status", w.Status, "discrepancies", len(w.Discrepancies))
	return c.JSON(http.StatusOK, w)
}

func mustAtoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
