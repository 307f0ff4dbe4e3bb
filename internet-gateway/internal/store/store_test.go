package store_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"testing"
	"testing/fstest"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/internet-gateway/internal/store"
)

var t0 = time.Date(2025, 3, 1, 2, 30, 0, 0, time.UTC) // 10:30 in Shanghai

func setup(t *testing.T, db *sqldb.DB) *store.Store {
	t.Helper()
	ctx := context.Background()
	sqltest.Must(t, store.Migrate(ctx, db))
	sqltest.Must(t, store.Migrate(ctx, db)) // idempotent
	return store.New(db)
}

func aBill(no, token string) store.Bill {
	return store.Bill{BillNo: no, Token: token, DecisionNo: "230102000012345678", PartyMasked: "张*", PlateMasked: "黑A·1***5",
		Fine: 20000, ServedDate: "2025-02-01", LateFeeApplies: true, UnitName: "哈尔滨市公安局交通警察支队", ItemName: "交通违法罚款",
		FormNo: "F1", PayCode: "23000000000000000001", IssuedAt: t0, UpdatedAt: t0}
}

func TestP2StoreBills(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s, ctx := setup(t, db), context.Background()
		old, err := s.BillUpsert(ctx, db, aBill("B1", "tok-aaaaaaaaaaaaaaaaaaaaaa"))
		sqltest.Must(t, err)
		if old != "" {
			t.Fatalf("old token of a new bill = %q", old)
		}
		b, err := s.BillGetByToken(ctx, db, "tok-aaaaaaaaaaaaaaaaaaaaaa")
		sqltest.Must(t, err)
		if b.BillNo != "B1" || b.Fine != 20000 || !b.LateFeeApplies || b.Status != store.BillPayable || !b.IssuedAt.Equal(t0) ||
			b.PlateMasked != "黑A·1***5" {
			t.Fatalf("got %+v", b)
		}
		sqltest.Must(t, s.BillMarkPaid(ctx, db, "B1", t0))
		re := aBill("B1", "tok-bbbbbbbbbbbbbbbbbbbbbb")
		re.Fine, re.IssuedAt = 30000, t0.Add(time.Hour)
		old, err = s.BillUpsert(ctx, db, re)
		sqltest.Must(t, err)
		if old != "tok-aaaaaaaaaaaaaaaaaaaaaa" {
			t.Fatalf("old token = %q", old)
		}
		b, err = s.BillGet(ctx, db, "B1")
		sqltest.Must(t, err)
		if b.Fine != 30000 || b.Token != "tok-bbbbbbbbbbbbbbbbbbbbbb" || b.Status != store.BillPaid {
			t.Fatalf("republished: %+v", b)
		}
		stale := aBill("B1", "tok-cccccccccccccccccccccc")
		_, err = s.BillUpsert(ctx, db, stale)
		sqltest.Must(t, err)
		if b, _ = s.BillGet(ctx, db, "B1"); b.Fine != 30000 {
			t.Fatalf("an older publication overwrote a newer one: %+v", b)
		}
		if _, err := s.BillGetByToken(ctx, db, "tok-aaaaaaaaaaaaaaaaaaaaaa"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("old token: %v", err)
		}
		if _, err := s.BillUpsert(ctx, db, aBill("B2", "tok-bbbbbbbbbbbbbbbbbbbbbb")); !store.IsUniqueViolation(err) {
			t.Fatalf("a second bill with the same token: %v", err)
		}
	})
}

func anOrder(no, bill string, created time.Time) store.Order {
	return store.Order{OrderNo: no, BillNo: bill, Channel: "wechat", Amount: 20600, Fine: 20000, LateFee: 600,
		CodeURL: "weixin://wxpay/bizpayurl/up?pr=x", Status: store.OrderCreated, ExpiresAt: t0.Add(13 * time.Hour),
		CreatedAt: created, UpdatedAt: created}
}

func TestP2StoreOrders(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s, ctx := setup(t, db), context.Background()
		sqltest.Must(t, s.OrderInsert(ctx, db, anOrder("O1", "B1", t0)))
		// One open order per bill and channel: a second one conflicts until the first is closed.
		if err := s.OrderInsert(ctx, db, anOrder("O2", "B1", t0.Add(time.Minute))); !store.IsUniqueViolation(err) {
			t.Fatalf("a second open order of a bill and channel: %v", err)
		}
		other := anOrder("O9", "B1", t0)
		other.Channel = "alipay"
		sqltest.Must(t, s.OrderInsert(ctx, db, other))
		if closed, err := s.OrderClose(ctx, db, "O1", t0); !closed || err != nil {
			t.Fatalf("close: %v %v", closed, err)
		}
		sqltest.Must(t, s.OrderInsert(ctx, db, anOrder("O2", "B1", t0.Add(time.Minute))))
		sqltest.Must(t, s.OrderInsert(ctx, db, anOrder("O3", "B2", t0.Add(2*time.Minute))))
		if err := s.OrderInsert(ctx, db, anOrder("O1", "B3", t0)); !store.IsUniqueViolation(err) {
			t.Fatalf("duplicate order number: %v", err)
		}
		o, err := s.OrderFindOpen(ctx, db, "B1", "wechat")
		sqltest.Must(t, err)
		if o.OrderNo != "O2" || o.Amount != 20600 || o.LateFee != 600 || !o.QueriedAt.IsZero() || o.QueryCount != 0 {
			t.Fatalf("open order = %+v", o)
		}
		if _, err := s.OrderFindOpen(ctx, db, "B4", "wechat"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("no open order: %v", err)
		}
		due, err := s.OrderListToQuery(ctx, db, []string{"wechat", "alipay"}, t0.Add(150*time.Second), t0.Add(3*time.Minute), 10)
		sqltest.Must(t, err)
		if len(due) != 3 || due[0].OrderNo != "O9" || due[1].OrderNo != "O2" || due[2].OrderNo != "O3" {
			t.Fatalf("to query: %+v", due)
		}
		if due, _ = s.OrderListToQuery(ctx, db, []string{"unionpay"}, t0.Add(time.Hour), t0.Add(time.Hour), 10); len(due) != 0 {
			t.Fatalf("another channel's orders: %+v", due)
		}
		sqltest.Must(t, s.OrderMarkQueried(ctx, db, "O2", t0.Add(3*time.Minute), t0.Add(5*time.Minute)))
		due, _ = s.OrderListToQuery(ctx, db, []string{"wechat"}, t0.Add(time.Hour), t0.Add(4*time.Minute), 10)
		if len(due) != 1 || due[0].OrderNo != "O3" {
			t.Fatalf("an order queried again before its next query is due: %+v", due)
		}
		due, _ = s.OrderListToQuery(ctx, db, []string{"wechat"}, t0.Add(time.Hour), t0.Add(5*time.Minute), 10)
		if len(due) != 2 || due[0].OrderNo != "O3" || due[1].OrderNo != "O2" {
			t.Fatalf("due at 5 minutes: %+v", due)
		}
		sqltest.Must(t, s.OrderMarkPaid(ctx, db, "O2", t0))
		if closed, err := s.OrderClose(ctx, db, "O2", t0); closed || err != nil {
			t.Fatalf("closed a paid order: %v %v", closed, err)
		}
		o, err = s.OrderGet(ctx, db, "O2", false)
		sqltest.Must(t, err)
		if o.Status != store.OrderPaid || !o.QueriedAt.Equal(t0.Add(3*time.Minute)) || o.QueryCount != 1 ||
			!o.NextQueryAt.Equal(t0.Add(5*time.Minute)) || !o.ExpiresAt.Equal(t0.Add(13*time.Hour)) {
			t.Fatalf("O2 = %+v", o)
		}
	})
}

// TestP2StoreMigrationOneOpenOrder applies migration 2 over orders that the days before it left:
// two open orders of one bill and channel. The older is closed, the newer stays open, and from
// then on the unique index holds.
func TestP2StoreMigrationOneOpenOrder(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		first, err := fs.ReadFile(store.Migrations(), "0001_gateway.up.sql")
		sqltest.Must(t, err)
		sqltest.Must(t, db.Migrate(ctx, store.Component, fstest.MapFS{"0001_gateway.up.sql": {Data: first}}))
		insert := func(no, bill, channel, status string, created time.Time) {
			_, err := db.ExecContext(ctx, `INSERT INTO channel_orders (order_no, bill_no, channel, amount, fine, late_fee, code_url,
				status, expires_at, created_at, updated_at) VALUES ($1, $2, $3, 20000, 20000, 0, 'x', $4, $5, $5, $5)`,
				no, bill, channel, status, created.UTC())
			sqltest.Must(t, err)
		}
		insert("O1", "B1", "wechat", "created", t0)
		insert("O2", "B1", "wechat", "created", t0.Add(24*time.Hour))
		insert("O3", "B1", "wechat", "paid", t0.Add(-time.Hour))
		insert("O4", "B2", "wechat", "created", t0)
		sqltest.Must(t, store.Migrate(ctx, db))
		s := store.New(db)
		for no, want := range map[string]string{"O1": "closed", "O2": "created", "O3": "paid", "O4": "created"} {
			o, err := s.OrderGet(ctx, db, no, false)
			sqltest.Must(t, err)
			if o.Status != want || o.QueryCount != 0 || !o.NextQueryAt.IsZero() {
				t.Errorf("%s: %+v, want %s", no, o, want)
			}
		}
		if err := s.OrderInsert(ctx, db, anOrder("O5", "B2", t0)); !store.IsUniqueViolation(err) {
			t.Fatalf("after the migration: %v", err)
		}
	})
}

func TestP2StorePayments(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s, ctx := setup(t, db), context.Background()
		p := store.Payment{Channel: "wechat", ChannelTradeNo: "4200001", OrderNo: "O1", BillNo: "B1", Amount: 20600, Fine: 20000,
			LateFee: 600, PaidAt: t0, MessageID: "pay:wechat:4200001", NotificationID: "EV1", Source: store.SourceNotification, RecordedAt: t0}
		ok, err := s.PaymentInsert(ctx, db, p)
		if !ok || err != nil {
			t.Fatalf("first insert: %v %v", ok, err)
		}
		ok, err = s.PaymentInsert(ctx, db, p)
		if ok || err != nil {
			t.Fatalf("second delivery: %v %v", ok, err)
		}
		other := p
		other.ChannelTradeNo = "4200002"
		if _, err := s.PaymentInsert(ctx, db, other); !store.IsUniqueViolation(err) {
			t.Fatalf("a second payment of one order: %v", err)
		}
		got, err := s.PaymentLatestForBill(ctx, db, "B1")
		sqltest.Must(t, err)
		if got.ChannelTradeNo != "4200001" || got.Amount != 20600 || !got.PaidAt.Equal(t0) || got.Source != store.SourceNotification {
			t.Fatalf("latest = %+v", got)
		}
		if _, err := s.PaymentGetByTrade(ctx, db, "wechat", "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
	})
}

func TestP2StoreNotifications(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s, ctx := setup(t, db), context.Background()
		body := []byte("{\"x\":1}\x00\xff\xfe not UTF-8")
		id, err := s.NotificationInsert(ctx, db, store.Notification{Channel: "wechat", ReceivedAt: t0, RemoteAddr: "10.0.0.9:5555",
			Headers: `{"Wechatpay-Serial":["AB"]}`, Body: body})
		sqltest.Must(t, err)
		n, err := s.NotificationGet(ctx, db, id)
		sqltest.Must(t, err)
		if !bytes.Equal(n.Body, body) || n.Verdict != store.VerdictReceived || n.RemoteAddr != "10.0.0.9:5555" || !n.DecidedAt.IsZero() {
			t.Fatalf("stored %+v", n)
		}
		sqltest.Must(t, s.NotificationDecide(ctx, db, id, store.Decision{Verdict: store.VerdictRejected, Reason: "signature: bad", At: t0}))
		n, _ = s.NotificationGet(ctx, db, id)
		if n.Verdict != store.VerdictRejected || n.Reason != "signature: bad" || !n.DecidedAt.Equal(t0) {
			t.Fatalf("decided %+v", n)
		}
		id2, err := s.NotificationInsert(ctx, db, store.Notification{Channel: "wechat", ReceivedAt: t0, Headers: "{}"})
		sqltest.Must(t, err)
		if id2 == id {
			t.Fatal("same id twice")
		}
	})
}

func TestP2StoreReceipts(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s, ctx := setup(t, db), context.Background()
		r := store.Receipt{OrderNo: "O1", BillNo: "B1", ReceiptCode: "23010125", ReceiptNo: "0000000001", CheckCode: "a1b2c3",
			Amount: 20600, PayerMasked: "张*", IssuedAt: t0, ReceivedAt: t0}
		sqltest.Must(t, s.ReceiptUpsert(ctx, db, r))
		r.CheckCode = "d4e5f6"
		sqltest.Must(t, s.ReceiptUpsert(ctx, db, r))
		got, err := s.ReceiptGetByOrder(ctx, db, "O1")
		sqltest.Must(t, err)
		if got.CheckCode != "d4e5f6" || got.Amount != 20600 {
			t.Fatalf("got %+v", got)
		}
	})
}
