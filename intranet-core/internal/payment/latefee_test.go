package payment_test

import (
	"context"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/intranet-core/internal/bill"
	"finepay/intranet-core/internal/coretest"
	"finepay/intranet-core/internal/nontax"
	"finepay/intranet-core/internal/payment"
)

// TestP2LateFeeConfirmationAfterMidnight: a channel order made at 23:50 on day 20 after
// service (5 days late: ¥30.00 on a ¥200.00 fine) is confirmed at 00:20 the next day, when the
// late fee due would be ¥36.00: the core records it at the order's amount, the bill is paid,
// and the non-tax report carries the order's fine and late fee as separate amounts.
func TestP2LateFeeConfirmationAfterMidnight(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		env := coretest.New(t, db, coretest.Options{})
		env.Clock.Advance(13*time.Hour + 50*time.Minute) // 2026-11-27 23:50 in Shanghai
		req := coretest.ValidRequest()
		req.ServedDate = "2026-11-07"
		v := env.CreateBill(t, req)
		if v.Fine != 20000 || v.LateFee != 3000 || v.TotalDueToday != 23000 {
			t.Fatalf("day 20: fine %d late fee %d total %d", v.Fine, v.LateFee, v.TotalDueToday)
		}
		msg := env.Confirmation(t, v, "ORD-LATE", "WX-LATE") // paid at 23:50
		env.Clock.Advance(30 * time.Minute)
		if now, _ := env.Bills.Get(context.Background(), v.BillNo); now.TotalDueToday != 23600 {
			t.Fatalf("after midnight the bill is due %d, want 23600", now.TotalDueToday)
		}
		if n := env.Deliver(t, msg); n != 1 {
			t.Fatalf("consumed %d", n)
		}
		ps := payments(t, env, v.BillNo)
		if len(ps) != 1 || ps[0].Result != payment.ResultRecorded || ps[0].Amount != 23000 || ps[0].Fine != 20000 || ps[0].LateFee != 3000 {
			t.Fatalf("payments %+v", ps)
		}
		view, err := env.Bills.Get(context.Background(), v.BillNo)
		sqltest.Must(t, err)
		if view.Status != bill.StatusPaid || view.LateFee != 3000 || view.TotalDueToday != 23000 {
			t.Fatalf("paid bill shows late fee %d total %d (%s)", view.LateFee, view.TotalDueToday, view.Status)
		}
		env.Runner.RunDue(context.Background())
		reqs := env.Requests(nontax.PathPayments)
		if len(reqs) != 1 {
			t.Fatalf("non-tax reports %+v", reqs)
		}
		var nt nontax.PaymentReport
		sqltest.Must(t, reqs[0].JSON(&nt))
		if nt.Amount != 23000 || nt.Fine != 20000 || nt.LateFee != 3000 {
			t.Fatalf("non-tax report %+v", nt)
		}
	})
}
