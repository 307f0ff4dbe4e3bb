package bill_test

import (
	"context"
	"errors"
	"testing"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/fixture"
	"finepay/internet-gateway/internal/store"
	"finepay/shared/bizdate"
	"finepay/shared/envelope"
	"finepay/shared/money"
)

func TestP2BillPublishedConsumed(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := fixture.New(t, db, fixture.Options{})
		ctx := context.Background()
		tok := fixture.Token()
		e.Publish(t, fixture.Bill("B1", tok))
		v, err := e.Bills.View(ctx, tok)
		sqltest.Must(t, err)
		if v.Bill.BillNo != "B1" || v.Bill.PartyMasked != "张*明" || v.Bill.PlateMasked != "黑A·1***5" || v.Bill.Status != store.BillPayable {
			t.Fatalf("view %+v", v.Bill)
		}
		// Served 2025-02-01, paid 2025-03-01: 28 days, 13 past the 15 of grace, 39% of ¥200.00.
		if v.Due.Fine != 20000 || v.Due.LateFee != 7800 || v.Due.Total != 27800 || v.Due.Day.String() != "2025-03-01" {
			t.Fatalf("due %+v", v.Due)
		}
		if _, ok, _ := e.KV.Get(ctx, "bill:"+tok); !ok {
			t.Fatal("the view is not cached")
		}
		// A republication (new fine, new token) replaces the cached view at once.
		re := fixture.Bill("B1", fixture.Token())
		re.Fine, re.IssuedAt = 10000, fixture.Start
		e.Publish(t, re)
		if _, err := e.Bills.View(ctx, tok); !errors.Is(err, bill.ErrNotFound) {
			t.Fatalf("old token after republication: %v", err)
		}
		v, err = e.Bills.View(ctx, re.Token)
		sqltest.Must(t, err)
		if v.Due.Fine != 10000 || v.Due.LateFee != 3900 || v.Due.Total != 13900 {
			t.Fatalf("republished due %+v", v.Due)
		}
		// The same message again (ferry redelivery) changes nothing and fails nothing.
		e.Deliver(t, "bill:again", re, re.BillNo)
		if n := e.Count(t, `SELECT count(*) FROM bills`); n != 1 {
			t.Fatalf("%d bills", n)
		}
		if n := e.Count(t, `SELECT count(*) FROM ferry_inbox WHERE consumed_at IS NULL`); n != 0 {
			t.Fatalf("%d messages unconsumed", n)
		}
	})
}

func TestP2BillUnknownToken(t *testing.T) {
	t.Parallel()
	e := fixture.New(t, sqltest.Open(t, sqldb.SQLite), fixture.Options{})
	for _, tok := range []string{fixture.Token(), "short", "../../etc/passwd", ""} {
		if _, err := e.Bills.View(context.Background(), tok); !errors.Is(err, bill.ErrNotFound) {
			t.Errorf("%q: %v", tok, err)
		}
	}
}

func TestP2ReceiptIssuedConsumed(t *testing.T) {
	t.Parallel()
	e := fixture.New(t, sqltest.Open(t, sqldb.Postgres), fixture.Options{})
	ctx := context.Background()
	tok := fixture.Token()
	e.Publish(t, fixture.Bill("B1", tok))
	o, err := e.Orders.Create(ctx, tok, "wechat")
	sqltest.Must(t, err)
	out, err := e.Bills.Outcome(ctx, tok)
	sqltest.Must(t, err)
	if out.Paid() || out.Receipt != nil {
		t.Fatalf("outcome before payment %+v", out)
	}
	p := e.WeChat.Pay(o.OrderNo)
	_, err = e.Recorder.Record(ctx, paymentOf(o, p.TransactionID, p.SuccessTime))
	sqltest.Must(t, err)
	out, err = e.Bills.Outcome(ctx, tok)
	sqltest.Must(t, err)
	if !out.Paid() || out.Receipt != nil || out.Payment.OrderNo != o.OrderNo {
		t.Fatalf("outcome after payment %+v", out)
	}
	e.Deliver(t, "receipt:"+o.OrderNo, &envelope.ReceiptIssued{BillNo: "B1", OrderNo: o.OrderNo, ReceiptCode: "23010125",
		ReceiptNo: "0000000042", CheckCode: "8f3a1c", Amount: 27800, PayerMasked: "张*明", IssuedAt: e.Clock.Now()}, "B1")
	out, err = e.Bills.Outcome(ctx, tok)
	sqltest.Must(t, err)
	if out.Receipt == nil || out.Receipt.ReceiptNo != "0000000042" || out.Receipt.CheckCode != "8f3a1c" {
		t.Fatalf("receipt %+v", out.Receipt)
	}
}

func TestP2Due(t *testing.T) {
	t.Parallel()
	b := store.Bill{BillNo: "B", Fine: 20000, ServedDate: "2025-02-01", LateFeeApplies: true}
	day := func(s string) bizdate.Date { d, _ := bizdate.Parse(s); return d }
	tests := []struct {
		name    string
		day     string
		applies bool
		fee     money.Fen
	}{
		{"within-grace", "2025-02-16", true, 0},
		{"first-late-day", "2025-02-17", true, 600},
		{"capped-at-fine", "2025-12-31", true, 20000},
		{"not-applicable", "2025-12-31", false, 0},
	}
	for _, tt := range tests {
		b.LateFeeApplies = tt.applies
		a, err := bill.Due(b, day(tt.day))
		if err != nil || a.LateFee != tt.fee || a.Total != 20000+tt.fee {
			t.Errorf("%s: %+v %v", tt.name, a, err)
		}
	}
	if _, err := bill.Due(store.Bill{ServedDate: "bad"}, day("2025-01-01")); err == nil {
		t.Error("a bad served date was accepted")
	}
}
