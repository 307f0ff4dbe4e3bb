package store_test

import (
	"context"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/internet-gateway/internal/store"
)

// TestR5ShownPaymentIsTheOneWithTheReceipt: a bill paid twice (the later payment a duplicate the
// core refunds) shows the later payment until a receipt arrives, then the payment the receipt
// was issued for, even though it is older.
func TestR5ShownPaymentIsTheOneWithTheReceipt(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s, ctx := setup(t, db), context.Background()
		_, err := s.BillUpsert(ctx, db, aBill("B1", "tok-aaaaaaaaaaaaaaaaaaaaaa"))
		sqltest.Must(t, err)
		for i, p := range []store.Payment{
			{Channel: "alipay", ChannelTradeNo: "A1", OrderNo: "FPA", PaidAt: t0, MessageID: "pay:alipay:A1"},
			{Channel: "wechat", ChannelTradeNo: "W1", OrderNo: "FPW", PaidAt: t0.Add(time.Minute), MessageID: "pay:wechat:W1"},
		} {
			p.BillNo, p.Amount, p.Fine, p.NotificationID, p.Source, p.RecordedAt = "B1", 20000, 20000, "n", "notification", t0
			if ok, err := s.PaymentInsert(ctx, db, p); err != nil || !ok {
				t.Fatalf("payment %d: %v %v", i, ok, err)
			}
		}
		shown := func() string {
			p, err := s.PaymentLatestForBill(ctx, db, "B1")
			sqltest.Must(t, err)
			return p.OrderNo
		}
		if got := shown(); got != "FPW" {
			t.Fatalf("before the receipt: %s, want the latest FPW", got)
		}
		sqltest.Must(t, s.ReceiptUpsert(ctx, db, store.Receipt{OrderNo: "FPA", BillNo: "B1", ReceiptCode: "23010126", ReceiptNo: "0000000001",
			CheckCode: "a1B2c3", Amount: 20000, PayerMasked: "张*", IssuedAt: t0, ReceivedAt: t0}))
		if got := shown(); got != "FPA" {
			t.Fatalf("after the receipt: %s, want FPA, the payment it was issued for", got)
		}
	})
}
