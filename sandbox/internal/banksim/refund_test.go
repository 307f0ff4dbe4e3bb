package banksim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"

	"finepay/sandbox/internal/adaptersim"
)

// accepting is an adapter whose core accepts every payment and records the refund results.
type accepting struct {
	refusing
	mu      sync.Mutex
	results []adaptersim.RefundState
}

func (a *accepting) Query(context.Context, string, any) (adaptersim.Answer, error) {
	b, _ := json.Marshal(Quote{DecisionNo: "230100123456789012", PayCode: "1", FormNo: "1", Fine: 20000, Amount: 20000})
	return adaptersim.Answer{Status: http.StatusOK, Body: b}, nil
}

func (a *accepting) Pay(context.Context, string, any) (adaptersim.Answer, error) {
	return adaptersim.Answer{Status: http.StatusOK, Body: []byte(`{"result":"paid"}`)}, nil
}

func (a *accepting) RefundResult(_ context.Context, _ string, st adaptersim.RefundState) (adaptersim.Answer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.results = append(a.results, st)
	return adaptersim.Answer{Status: http.StatusOK}, nil
}

// TestRefundOncePerRefundNumber: the bank refunds a payment once however often the same refund
// number is instructed, refuses the number with other facts, an unknown payment and more than
// was paid, and pushes one result per refund; in timeout mode the first answer is lost but the
// refund is made.
func TestRefundOncePerRefundNumber(t *testing.T) {
	a := &accepting{}
	s := New(Config{Adapter: a})
	ctx := context.Background()
	pay, err := s.Pay(ctx, PayRequest{DecisionNo: "230100123456789012"})
	if err != nil || pay.Payment == nil || pay.Payment.Status != "accepted" {
		t.Fatalf("pay: %+v %v", pay, err)
	}
	in := adaptersim.RefundInstruction{RefundNo: "RFBK1R001", BankCode: s.Code(), BankSerial: pay.BankSerial, OrderNo: "BK-1",
		PaidAmount: 20000, Amount: 20000, Reason: "r"}
	if err := s.SetRefundMode(ModeTimeout); err != nil {
		t.Fatal(err)
	}
	if err := s.Refund(ctx, in); !errors.Is(err, adaptersim.ErrBankTimeout) {
		t.Fatalf("first instruction in timeout mode: %v", err)
	}
	for range 2 {
		if err := s.Refund(ctx, in); err != nil {
			t.Fatalf("repeated instruction: %v", err)
		}
	}
	other := in
	other.Amount = 100
	if err := s.Refund(ctx, other); !errors.Is(err, adaptersim.ErrRefundConflict) {
		t.Errorf("same number, other amount: %v", err)
	}
	other = in
	other.RefundNo = "RFBK1R002"
	if err := s.Refund(ctx, other); !errors.Is(err, adaptersim.ErrExceedsPaid) {
		t.Errorf("a second refund of all of it: %v", err)
	}
	other.BankSerial = "BSNONE"
	if err := s.Refund(ctx, other); !errors.Is(err, adaptersim.ErrUnknownPayment) {
		t.Errorf("unknown payment: %v", err)
	}
	s.Wait()
	st := s.Snapshot()
	if len(st.Refunds) != 1 || st.Refunds[0].Instructions != 3 || st.Refunds[0].Status != "success" || st.Refunds[0].Report != "accepted" {
		t.Fatalf("refunds %+v", st.Refunds)
	}
	if st.Balance != 0 || len(st.Ledger) != 2 || st.Payments[0].Refunded != 20000 {
		t.Fatalf("ledger %+v balance %d payments %+v", st.Ledger, st.Balance, st.Payments)
	}
	if len(a.results) != 1 || a.results[0].Status != "success" || a.results[0].RefundedAmount != 20000 || a.results[0].BankRefundNo == "" {
		t.Fatalf("pushed results %+v", a.results)
	}
	if got, ok := s.RefundState(in.RefundNo); !ok || got != a.results[0] {
		t.Fatalf("state %+v %v", got, ok)
	}
}
