package payment_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/coretest"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/payment"
	"finepay/intranet-core/internal/receipt"
	"finepay/intranet-core/internal/refund"
	"finepay/intranet-core/internal/task"
	"finepay/intranet-core/internal/window"
	"finepay/shared/envelope"
)

func payments(t *testing.T, env *coretest.Env, billNo string) []payment.Record {
	t.Helper()
	ps, err := payment.PaymentListByBill(context.Background(), env.DB, billNo)
	sqltest.Must(t, err)
	return ps
}

func billStatus(t *testing.T, env *coretest.Env, billNo string) bill.Record {
	t.Helper()
	r, err := bill.BillGetByNo(context.Background(), env.DB, billNo)
	sqltest.Must(t, err)
	return r
}

func TestP2PaymentConfirmedRecordsPaymentAndQueuesTasks(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		env := coretest.New(t, db, coretest.Options{})
		v := env.CreateBill(t, coretest.ValidRequest())
		if n := env.Deliver(t, env.Confirmation(t, v, "ORD001", "WX001")); n != 1 {
			t.Fatalf("consumed %d messages", n)
		}
		ps := payments(t, env, v.BillNo)
		if len(ps) != 1 || ps[0].Result != payment.ResultRecorded || ps[0].Amount != 20000 || ps[0].ViolationSerial != v.ViolationSerial {
			t.Fatalf("payments %+v", ps)
		}
		b := billStatus(t, env, v.BillNo)
		if b.Status != bill.StatusPaid || !b.PaymentID.Valid || b.PaymentID.Int64 != ps[0].ID {
			t.Fatalf("bill %s payment %v", b.Status, b.PaymentID)
		}
		all := env.Tasks(t, "")
		if len(all) != 3 {
			t.Fatalf("%d tasks, want 3", len(all))
		}
		got := map[string]task.Row{}
		for _, r := range all {
			got[r.Kind] = r
		}
		nt, wn, rc := got[payment.KindNonTaxReport], got[payment.KindWindowReport], got[receipt.KindIssue]
		if nt.RequestID != "ntp-ORD001" || wn.RequestID != "wpr-ORD001" || rc.Key != v.BillNo || rc.RequestID != "rcp-"+v.BillNo {
			t.Fatalf("tasks %+v", all)
		}
		var it receipt.IssueTask
		sqltest.Must(t, task.Task{Payload: []byte(rc.Payload)}.Decode(&it))
		if name, err := env.PKI.DecryptName(it.Request.PayerNameEnc); err != nil || name != "张三丰" {
			t.Fatalf("receipt request name %q, %v", name, err)
		}
		if strings.Contains(rc.Payload, "张三丰") {
			t.Fatal("the task payload holds the clear name")
		}
		if it.Request.FormNo != v.FormNo || it.Request.Amount != 20000 || it.PaymentID != ps[0].ID || !strings.HasSuffix(it.Request.PaidAt, "+08:00") {
			t.Fatalf("receipt request %+v", it)
		}
		if c := metric(env, "core_payments_recorded_total", "result", "recorded"); c != 1 {
			t.Errorf("core_payments_recorded_total{result=recorded} = %v", c)
		}

		// GET shows the payment.
		view, err := env.Bills.Get(context.Background(), v.BillNo)
		sqltest.Must(t, err)
		if view.Status != bill.StatusPaid || view.Payment == nil || view.Payment.OrderNo != "ORD001" {
			t.Fatalf("view %+v", view)
		}
	})
}

func TestP2PaymentConfirmedRedeliveryRecordsOnce(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		env := coretest.New(t, db, coretest.Options{})
		v := env.CreateBill(t, coretest.ValidRequest())
		msg := env.Confirmation(t, v, "ORD001", "WX001")
		env.Deliver(t, msg)
		// The same message applied again (a restored inbox, a second ferry path) ...
		sqltest.Must(t, db.Tx(ctx, func(tx *sql.Tx) error { return env.Payments.HandleConfirmed(ctx, tx, msg) }))
		// ... and the same channel payment under another message ID (a second notification).
		again := env.Confirmation(t, v, "ORD001", "WX001")
		again.ID = "pay:wechat:WX001:resent"
		env.Deliver(t, again)
		if ps := payments(t, env, v.BillNo); len(ps) != 1 {
			t.Fatalf("%d payments, want 1: %+v", len(ps), ps)
		}
		if n := len(env.Tasks(t, "")); n != 3 {
			t.Fatalf("%d tasks, want 3", n)
		}
	})
}

func TestR5PaymentConfirmedDuplicateIsRecordedNotLost(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		env := coretest.New(t, db, coretest.Options{})
		v := env.CreateBill(t, coretest.ValidRequest())
		env.Deliver(t, env.Confirmation(t, v, "ORD001", "WX001"))
		env.Clock.Advance(time.Minute)
		env.Deliver(t, env.Confirmation(t, v, "ORD002", "WX002"))
		ps := payments(t, env, v.BillNo)
		if len(ps) != 2 {
			t.Fatalf("%d payments, want 2", len(ps))
		}
		first, dup := ps[0], ps[1]
		if first.Result != payment.ResultRecorded || dup.Result != payment.ResultDuplicate || dup.OrderNo != "ORD002" ||
			!strings.Contains(dup.Reason, "ORD001") || dup.Amount != 20000 {
			t.Fatalf("payments %+v", ps)
		}
		if b := billStatus(t, env, v.BillNo); b.PaymentID.Int64 != first.ID {
			t.Fatal("the duplicate took over the bill")
		}
		// The duplicate's only task is its refund's application (R5); no report, no receipt.
		if n, r5 := len(env.Tasks(t, "")), len(env.Tasks(t, refund.KindApply)); n != 4 || r5 != 1 {
			t.Fatalf("%d tasks of which %d refund applications, want 4 and 1", n, r5)
		}
		if c := metric(env, "core_payments_recorded_total", "result", "duplicate"); c != 1 {
			t.Fatalf("duplicate metric %v", c)
		}
	})
}

func TestR5DuplicateAcrossBillsOfOneViolation(t *testing.T) {
	env := coretest.New(t, sqltest.Open(t, sqldb.Postgres), coretest.Options{})
	v1 := env.CreateBill(t, coretest.ValidRequest())
	env.Deliver(t, env.Confirmation(t, v1, "ORD001", "WX001"))
	// The decision's bill was cancelled and issued again, and the payer paid the old QR code
	// and then the new one.
	_, err := env.DB.Exec(`UPDATE bills SET status = 'cancelled' WHERE bill_no = $1`, v1.BillNo)
	sqltest.Must(t, err)
	v2 := env.CreateBill(t, coretest.ValidRequest())
	env.Deliver(t, env.Confirmation(t, v2, "ORD002", "WX002"))
	ps := payments(t, env, v2.BillNo)
	if len(ps) != 1 || ps[0].Result != payment.ResultDuplicate {
		t.Fatalf("payments %+v", ps)
	}
}

func TestP2PaymentConfirmedForUnknownBillIsKept(t *testing.T) {
	env := coretest.New(t, sqltest.Open(t, sqldb.SQLite), coretest.Options{})
	v := env.CreateBill(t, coretest.ValidRequest())
	v.BillNo = "B20261127999999999999"
	env.Deliver(t, env.Confirmation(t, v, "ORD009", "WX009"))
	ps := payments(t, env, v.BillNo)
	if len(ps) != 1 || ps[0].Result != payment.ResultUnmatched || len(env.Tasks(t, "")) != 0 {
		t.Fatalf("payments %+v", ps)
	}
}

func TestP2ReportsReachThePartners(t *testing.T) {
	env := coretest.New(t, sqltest.Open(t, sqldb.Postgres), coretest.Options{})
	v := env.CreateBill(t, coretest.ValidRequest())
	env.Deliver(t, env.Confirmation(t, v, "ORD001", "WX001"))
	if n, err := env.Runner.RunDue(context.Background()); n != 3 || err != nil {
		t.Fatalf("RunDue = %d, %v", n, err)
	}
	for _, r := range env.Tasks(t, "") {
		if r.Status != task.StatusDone {
			t.Errorf("task %s/%s %s: %s", r.Kind, r.Key, r.Status, r.LastError)
		}
	}
	var nt nontax.PaymentReport
	reqs := env.Requests(nontax.PathPayments)
	if len(reqs) != 1 || !reqs[0].SignatureOK || reqs[0].RequestID != "ntp-ORD001" {
		t.Fatalf("non-tax requests %+v", reqs)
	}
	sqltest.Must(t, reqs[0].JSON(&nt))
	if nt.FormNo != v.FormNo || nt.OrderNo != "ORD001" || nt.Amount != 20000 || nt.Channel != "wechat" || nt.ChannelTradeNo != "WX001" {
		t.Errorf("report %+v", nt)
	}
	var wr window.PaymentResult
	reqs = env.Requests(window.PathPaymentResults)
	if len(reqs) != 1 || !reqs[0].SignatureOK {
		t.Fatalf("window requests %+v", reqs)
	}
	sqltest.Must(t, reqs[0].JSON(&wr))
	if wr.DecisionNo != v.DecisionNo || wr.ViolationSerial != v.ViolationSerial || wr.OrderNo != "ORD001" || wr.Amount != 20000 {
		t.Errorf("window result %+v", wr)
	}
	if len(env.OutboxMessages(t, envelope.TypeReceiptIssued)) != 1 {
		t.Error("no ReceiptIssued")
	}
}

func TestP2ReportRefusedFinallyMakesTaskDead(t *testing.T) {
	env := coretest.New(t, sqltest.Open(t, sqldb.SQLite), coretest.Options{})
	env.SetReply(nontax.PathPayments, func(r coretestRequest) coretestReply {
		return coretestReply{Status: 404, Body: map[string]string{"code": "UNKNOWN_FORM"}}
	})
	v := env.CreateBill(t, coretest.ValidRequest())
	env.Deliver(t, env.Confirmation(t, v, "ORD001", "WX001"))
	env.Runner.RunDue(context.Background())
	if r := env.Tasks(t, payment.KindNonTaxReport)[0]; r.Status != task.StatusDead || !strings.Contains(r.LastError, "UNKNOWN_FORM") {
		t.Fatalf("task %+v", r)
	}
}

// TestR5DuplicateConfirmationDeliveredFiveTimes: the confirmation of a duplicate payment
// arriving five times (the same message carried again, as after a resend across the ferry) is
// one duplicate payment with one refund, whose application is queued once.
func TestR5DuplicateConfirmationDeliveredFiveTimes(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		env := coretest.New(t, db, coretest.Options{})
		v := env.CreateBill(t, coretest.ValidRequest())
		env.Deliver(t, env.Confirmation(t, v, "ORD001", "WX001"))
		env.Clock.Advance(time.Minute)
		dup := env.Confirmation(t, v, "ORD002", "WX002")
		for range 5 {
			env.Deliver(t, dup)
		}
		if ps := payments(t, env, v.BillNo); len(ps) != 2 || ps[1].Result != payment.ResultDuplicate {
			t.Fatalf("payments %+v, want the payment and one duplicate", ps)
		}
		var refunds int
		sqltest.Must(t, env.DB.QueryRow(`SELECT count(*) FROM refunds WHERE route = 'R5'`).Scan(&refunds))
		if refunds != 1 {
			t.Fatalf("%d R5 refunds, want 1", refunds)
		}
		if n := len(env.Tasks(t, refund.KindApply)); n != 1 {
			t.Fatalf("%d refund applications queued, want 1", n)
		}
	})
}
