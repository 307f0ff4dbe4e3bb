package windowsim

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/labstack/echo/v4"

	"finepay/sandbox/internal/apierr"
	"finepay/sandbox/internal/field"
	"finepay/sandbox/internal/shanghai"
)

// RefundInstruction is the window platform's refund instruction for a decision (flow R2), as the
// core's window API takes it (POST /api/v1/refunds). Amount is fen; RequestID is the platform's
// ID of the instruction (the same ID again is the same refund at the core); RequestedBy is the
// window user who asked, named as the core's console knows that person.
type RefundInstruction struct {
	DecisionNo  string `json:"decision_no"`
	Amount      int64  `json:"amount"`
	Reason      string `json:"reason"`
	RequestID   string `json:"request_id"`
	RequestedBy string `json:"requested_by"`
}

// CoreAnswer is the core's answer to one instruction.
type CoreAnswer struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"answer"`
}

// Instruction is an instruction sent, with the core's answer, for /_sandbox/state.
type Instruction struct {
	RefundInstruction
	Status   int    `json:"status"`
	RefundNo string `json:"refund_no,omitempty"`
	State    string `json:"state,omitempty"`
	SentAt   string `json:"sent_at"`
}

// ErrCore: the core did not answer.
var ErrCore = errors.New("windowsim: no answer from the core")

var (
	reRequestID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	reUser      = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// Refund sends a refund instruction to the core's window API, authenticated as the window
// platform by the bearer token (none when the simulator has no token: the core refuses it). An
// empty RequestID gets a new one. A lost answer or a 5xx is tried again (three tries in all)
// with the same body, which the core takes as the same instruction.
func (s *Sim) Refund(ctx context.Context, r RefundInstruction) (RefundInstruction, CoreAnswer, error) {
	if r.RequestID == "" {
		b := make([]byte, 8)
		if _, err := io.ReadFull(s.rand, b); err != nil {
			return r, CoreAnswer{}, err
		}
		r.RequestID = "WIN-" + hex.EncodeToString(b)
	}
	body, err := json.Marshal(r)
	if err != nil {
		return r, CoreAnswer{}, err
	}
	var a CoreAnswer
	for attempt := 1; attempt <= 3; attempt++ {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return r, a, ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		a, err = s.send(ctx, body)
		if err == nil && a.Status < 500 {
			break
		}
	}
	if err != nil {
		return r, a, err
	}
	in := Instruction{RefundInstruction: r, Status: a.Status, SentAt: shanghai.Time(s.now())}
	var out struct {
		RefundNo string `json:"refund_no"`
		State    string `json:"state"`
	}
	if json.Unmarshal(a.Body, &out) == nil {
		in.RefundNo, in.State = out.RefundNo, out.State
	}
	s.mu.Lock()
	s.instructions = append(s.instructions, in)
	s.mu.Unlock()
	s.log.Info("window refund instructed", "decision_no", r.DecisionNo, "request_id", r.RequestID, "requested_by", r.RequestedBy,
		"status", a.Status, "refund_no", in.RefundNo)
	return r, a, nil
}

func (s *Sim) send(ctx context.Context, body []byte) (CoreAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.coreURL+"/api/v1/refunds", bytes.NewReader(body))
	if err != nil {
		return CoreAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.apiToken != "" {
		req.Header.Set("Authorization", "Bearer "+s.apiToken)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return CoreAnswer{}, fmt.Errorf("%w: %v", ErrCore, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return CoreAnswer{}, fmt.Errorf("%w: %v", ErrCore, err)
	}
	if !json.Valid(rb) {
		rb, _ = json.Marshal(string(rb))
	}
	return CoreAnswer{Status: resp.StatusCode, Body: rb}, nil
}

// RegisterSandbox adds POST /_sandbox/window/refunds to e: a window user has the platform
// instruct a refund (R2) at the core. The body is a RefundInstruction (request_id optional);
// the answer {"instruction": ..., "core": {"status", "answer"}} carries the core's answer as it
// came.
func (s *Sim) RegisterSandbox(e *echo.Echo) {
	e.POST("/_sandbox/window/refunds", s.handleRefund)
}

func (s *Sim) handleRefund(c echo.Context) error {
	var r RefundInstruction
	if err := field.DecodeJSON(c.Request().Body, &r); err != nil {
		return err
	}
	var v field.Checker
	v.Digits("decision_no", r.DecisionNo, 15, 20)
	v.Positive("amount", r.Amount)
	v.Required("reason", r.Reason)
	if r.RequestID != "" {
		v.Match("request_id", r.RequestID, reRequestID, "1-64 characters [A-Za-z0-9_-]")
	}
	v.Match("requested_by", r.RequestedBy, reUser, "the window user who asked: 1-64 characters [A-Za-z0-9_.-]")
	if err := v.Err(); err != nil {
		return err
	}
	r, a, err := s.Refund(c.Request().Context(), r)
	if err != nil {
		return apierr.Wrap(err, http.StatusBadGateway, "CORE_UNAVAILABLE", "%s", err.Error())
	}
	return c.JSON(http.StatusOK, map[string]any{"instruction": r, "core": a})
}
