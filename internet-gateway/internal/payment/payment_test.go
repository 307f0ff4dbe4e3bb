package payment_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/internet-gateway/internal/fixture"
	"finepay/internet-gateway/internal/payment"
	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/wechat/wechattest"
	"finepay/shared/envelope"
	"finepay/shared/httpx"
	"finepay/shared/logging"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a fixture with a published bill, an open WeChat order for it and the notify endpoint.
type env struct {
	*fixture.Env
	order store.Order
	http  http.Handler
}

func setup(t *testing.T, db *sqldb.DB) *env {
	t.Helper()
	e := &env{Env: fixture.New(t, db, fixture.Options{})}
	tok := fixture.Token()
	e.Publish(t, fixture.Bill("B1", tok))
	o, err := e.Orders.Create(context.Background(), tok, "wechat")
	if err != nil {
		t.Fatal(err)
	}
	e.order = o
	h, _ := httpx.New(httpx.Options{Service: "test", Logger: logging.Discard()})
	h.POST("/notify/wechat", e.Notes.HandleWeChatHTTP)
	e.http = h
	return e
}

func (e *env) deliver(h http.Header, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/notify/wechat", strings.NewReader(string(body)))
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.http.ServeHTTP(rec, req)
	return rec
}

// paid returns the notification body of the order paid at the fake WeChat server.
func (e *env) paid(id string) (wechattest.Paid, []byte) {
	p := e.WeChat.Pay(e.order.OrderNo)
	return p, e.PKI.NotificationBody(id, p)
}

func TestP2NotificationForged(t *testing.T) {
	t.Parallel()
	type forged func(e *env) (http.Header, []byte)
	tests := []struct {
		name   string
		reason string
		make   forged
	}{
		{"fail/bad-signature", payment.ReasonSignature, func(e *env) (http.Header, []byte) {
			_, body := e.paid("EV-1")
			h := e.PKI.Sign(e.Clock.Now(), body)
			sig, _ := base64.StdEncoding.DecodeString(h.Get("Wechatpay-Signature"))
			sig[10] ^= 1
			h.Set("Wechatpay-Signature", base64.StdEncoding.EncodeToString(sig))
			return h, body
		}},
		{"fail/unknown-serial", payment.ReasonSerial, func(e *env) (http.Header, []byte) {
			_, body := e.paid("EV-1")
			return wechattest.SignWith(e.PKI.StrangerKey, "5157F1A9D4D7E0C1", e.Clock.Now(), body), body
		}},
		{"fail/timestamp-10-minutes-old", payment.ReasonTimestamp, func(e *env) (http.Header, []byte) {
			_, body := e.paid("EV-1")
			return e.PKI.Sign(e.Clock.Now().Add(-10*time.Minute), body), body
		}},
		{"fail/tampered-ciphertext", payment.ReasonDecrypt, func(e *env) (http.Header, []byte) {
			_, body := e.paid("EV-1")
			var m map[string]any
			json.Unmarshal(body, &m)
			res := m["resource"].(map[string]any)
			ct, _ := base64.StdEncoding.DecodeString(res["ciphertext"].(string))
			ct[len(ct)/2] ^= 0x01
			res["ciphertext"] = base64.StdEncoding.EncodeToString(ct)
			body, _ = json.Marshal(m)
			return e.PKI.Sign(e.Clock.Now(), body), body // signed, so that decryption is what fails
		}},
		{"fail/amount-differs", payment.ReasonAmount, func(e *env) (http.Header, []byte) {
			p := e.WeChat.Pay(e.order.OrderNo)
			p.Total = int64(e.order.Amount) - 1
			body := e.PKI.NotificationBody("EV-1", p)
			return e.PKI.Sign(e.Clock.Now(), body), body
		}},
		{"fail/unknown-order", payment.ReasonUnknownOrder, func(e *env) (http.Header, []byte) {
			p := e.WeChat.Pay(e.order.OrderNo)
			p.OutTradeNo = "FP20250301000000999999999999"
			body := e.PKI.NotificationBody("EV-1", p)
			return e.PKI.Sign(e.Clock.Now(), body), body
		}},
		{"fail/other-merchant", payment.ReasonInvalid, func(e *env) (http.Header, []byte) {
			p := e.WeChat.Pay(e.order.OrderNo)
			p.AppID = "wx0000000000000000"
			body := e.PKI.NotificationBody("EV-1", p)
			return e.PKI.Sign(e.Clock.Now(), body), body
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, sqltest.Open(t, sqldb.Postgres))
			rec := e.deliver(tt.make(e))
			if rec.Code < 400 || rec.Code >= 500 {
				t.Fatalf("status %d %s, want 4xx", rec.Code, rec.Body)
			}
			var body httpx.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Code != "FAIL" || body.Message == "" {
				t.Fatalf("body %s", rec.Body)
			}
			var verdict, reason string
			sqltest.Must(t, e.DB.QueryRow(`SELECT verdict, reason FROM notifications`).Scan(&verdict, &reason))
			if verdict != store.VerdictRejected || !strings.HasPrefix(reason, tt.reason+": ") {
				t.Fatalf("recorded %s %q, want rejected %s", verdict, reason, tt.reason)
			}
			if n := e.Metric(t, "gateway_notifications_rejected_total", "channel", "wechat", "reason", tt.reason); n != 1 {
				t.Fatalf("rejected metric %v", n)
			}
			if n := e.Count(t, `SELECT count(*) FROM payments`); n != 0 {
				t.Fatalf("%d payments", n)
			}
			if n := e.Count(t, `SELECT count(*) FROM ferry_outbox`); n != 0 {
				t.Fatalf("%d outbox rows", n)
			}
			if n := e.Count(t, `SELECT count(*) FROM channel_orders WHERE status = 'created'`); n != 1 {
				t.Fatal("the order changed")
			}
			if n := e.Count(t, `SELECT count(*) FROM bills WHERE status = 'payable'`); n != 1 {
				t.Fatal("the bill changed")
			}
		})
	}
}

func TestP2NotificationDuplicates(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := setup(t, db)
		p, body := e.paid("EV-DUP")
		deliver := func() {
			// Each delivery is signed afresh, as WeChat does on every resend.
			if rec := e.deliver(e.PKI.Sign(e.Clock.Now(), body), body); rec.Code != http.StatusNoContent {
				t.Errorf("delivery answered %d %s", rec.Code, rec.Body)
			}
		}
		deliver()
		var wg sync.WaitGroup
		wg.Go(deliver)
		wg.Go(deliver)
		wg.Wait()
		deliver()
		deliver()
		if n := e.Count(t, `SELECT count(*) FROM payments`); n != 1 {
			t.Fatalf("%d payments, want 1", n)
		}
		if n := e.Count(t, `SELECT count(*) FROM ferry_outbox`); n != 1 {
			t.Fatalf("%d outbox rows, want 1", n)
		}
		if n := e.Count(t, `SELECT count(*) FROM notifications WHERE verdict = 'accepted'`); n != 1 {
			t.Fatalf("%d accepted", n)
		}
		if n := e.Count(t, `SELECT count(*) FROM notifications WHERE verdict = 'duplicate'`); n != 4 {
			t.Fatalf("%d duplicates", n)
		}
		if n := e.Metric(t, "gateway_payments_recorded_total", "channel", "wechat"); n != 1 {
			t.Fatalf("recorded metric %v", n)
		}
		if n := e.Metric(t, "gateway_notifications_received_total", "channel", "wechat"); n != 5 {
			t.Fatalf("received metric %v", n)
		}
		var raw []byte
		var id string
		sqltest.Must(t, e.DB.QueryRow(`SELECT message_id, envelope FROM ferry_outbox`).Scan(&id, &raw))
		env, err := envelope.Unmarshal(raw)
		sqltest.Must(t, err)
		pl, err := env.Decode()
		sqltest.Must(t, err)
		pc := pl.(*envelope.PaymentConfirmed)
		if id != "pay:wechat:"+p.TransactionID || env.ID != id || env.Key != "B1" || pc.OrderNo != e.order.OrderNo ||
			pc.Amount != 27800 || pc.Fine != 20000 || pc.LateFee != 7800 || pc.NotificationID != "EV-DUP" ||
			!pc.PaidAt.Equal(p.SuccessTime.Truncate(time.Second)) {
			t.Fatalf("message %s %+v", id, pc)
		}
		if n := e.Count(t, `SELECT count(*) FROM bills WHERE status = 'paid'`); n != 1 {
			t.Fatal("the bill is not paid")
		}
		if n := e.Count(t, `SELECT count(*) FROM channel_orders WHERE status = 'paid'`); n != 1 {
			t.Fatal("the order is not paid")
		}
	})
}

func TestP2NotificationAfterMidnight(t *testing.T) {
	t.Parallel()
	e := fixture.New(t, sqltest.Open(t, sqldb.Postgres), fixture.Options{})
	// 23:50 in Shanghai on 2025-03-01: 13 days late, ¥278.00.
	e.Clock.Set(time.Date(2025, 3, 1, 15, 50, 0, 0, time.UTC))
	tok := fixture.Token()
	e.Publish(t, fixture.Bill("B1", tok))
	o, err := e.Orders.Create(context.Background(), tok, "wechat")
	sqltest.Must(t, err)
	if o.Amount != 27800 || !o.ExpiresAt.Equal(time.Date(2025, 3, 1, 15, 59, 59, 0, time.UTC)) {
		t.Fatalf("order %+v", o)
	}
	p := e.WeChat.Pay(o.OrderNo) // paid at 23:50
	e.Clock.Advance(20 * time.Minute)
	body := e.PKI.NotificationBody("EV-LATE", p)
	v, err := e.Notes.HandleWeChat(context.Background(), payment.Raw{RemoteAddr: "203.0.113.9:443", Header: e.PKI.Sign(e.Clock.Now(), body), Body: body})
	sqltest.Must(t, err)
	// Paying today would cost ¥284.00, but the order is paid at its own amount.
	if v.Duplicate || v.Payment.Amount != 27800 || v.Payment.LateFee != 7800 {
		t.Fatalf("verdict %+v", v)
	}
}

func TestP2OrderQueryLoop(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := setup(t, db)
		ctx := context.Background()
		// A second bill whose order will be closed at the channel, and a third whose order expires.
		tok2, tok3 := fixture.Token(), fixture.Token()
		e.Publish(t, fixture.Bill("B2", tok2))
		e.Publish(t, fixture.Bill("B3", tok3))
		o2, err := e.Orders.Create(ctx, tok2, "wechat")
		sqltest.Must(t, err)
		o3, err := e.Orders.Create(ctx, tok3, "wechat")
		sqltest.Must(t, err)

		r, err := e.Poller.RunOnce(ctx)
		sqltest.Must(t, err)
		if r.Queried != 0 {
			t.Fatalf("queried fresh orders: %+v", r)
		}
		p := e.WeChat.Pay(e.order.OrderNo) // paid, but the notification never comes
		e.WeChat.SetState(o2.OrderNo, "CLOSED")
		e.Clock.Advance(2 * time.Minute)
		r, err = e.Poller.RunOnce(ctx)
		sqltest.Must(t, err)
		if r.Queried != 3 || r.Paid != 1 || r.Closed != 1 || r.Failed != 0 {
			t.Fatalf("round %+v", r)
		}
		pay, err := e.Store.PaymentGetByTrade(ctx, db, "wechat", p.TransactionID)
		sqltest.Must(t, err)
		if pay.Source != store.SourceQuery || pay.NotificationID != "query:"+p.TransactionID || pay.OrderNo != e.order.OrderNo {
			t.Fatalf("payment %+v", pay)
		}
		if n := e.Count(t, `SELECT count(*) FROM ferry_outbox WHERE message_id = $1`, "pay:wechat:"+p.TransactionID); n != 1 {
			t.Fatalf("%d outbox rows", n)
		}
		var answer []byte
		sqltest.Must(t, e.DB.QueryRow(`SELECT body FROM notifications WHERE remote_addr = 'order-query' AND verdict = 'accepted'`).Scan(&answer))
		if !strings.Contains(string(answer), p.TransactionID) || strings.Contains(string(answer), "openid") {
			t.Fatalf("stored query answer %s", answer)
		}
		// The late notification is a duplicate, answered 2xx.
		body := e.PKI.NotificationBody("EV-Q", p)
		if rec := e.deliver(e.PKI.Sign(e.Clock.Now(), body), body); rec.Code != http.StatusNoContent {
			t.Fatalf("late notification: %d", rec.Code)
		}
		if n := e.Count(t, `SELECT count(*) FROM payments`); n != 1 {
			t.Fatalf("%d payments", n)
		}
		// Not queried again before -order-query-after has passed once more.
		e.Clock.Advance(30 * time.Second)
		if r, _ = e.Poller.RunOnce(ctx); r.Queried != 0 {
			t.Fatalf("queried again too soon: %+v", r)
		}
		// After midnight the unpaid order is closed at WeChat and here.
		e.Clock.Set(time.Date(2025, 3, 1, 16, 0, 5, 0, time.UTC))
		r, err = e.Poller.RunOnce(ctx)
		sqltest.Must(t, err)
		if r.Queried != 1 || r.Closed != 1 {
			t.Fatalf("round after midnight %+v", r)
		}
		if st := e.WeChat.Order(o3.OrderNo).State; st != "CLOSED" {
			t.Fatalf("expired order at WeChat is %s", st)
		}
		for no, want := range map[string]string{e.order.OrderNo: store.OrderPaid, o2.OrderNo: store.OrderClosed, o3.OrderNo: store.OrderClosed} {
			o, err := e.Store.OrderGet(ctx, db, no, false)
			sqltest.Must(t, err)
			if o.Status != want {
				t.Fatalf("order %s is %s, want %s", no, o.Status, want)
			}
		}
	})
}

func TestP2NotificationStorageDown(t *testing.T) {
	t.Parallel()
	e := setup(t, sqltest.Open(t, sqldb.SQLite))
	_, body := e.paid("EV-DOWN")
	e.DB.Close() // the database is gone: nothing can be stored
	rec := e.deliver(e.PKI.Sign(e.Clock.Now(), body), body)
	var eb httpx.ErrorBody
	if rec.Code != http.StatusInternalServerError || json.Unmarshal(rec.Body.Bytes(), &eb) != nil || eb.Code != "FAIL" {
		t.Fatalf("%d %s, want 500 FAIL so that WeChat resends", rec.Code, rec.Body)
	}
}

// TestP2PaymentOutboxFull: a payment whose ferry lane is over its backlog bound is refused
// with ErrBackpressure and leaves nothing behind (no payment, the order still open, the bill
// unpaid, no message), on both engines; the first payment of the lane went through.
func TestP2PaymentOutboxFull(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := fixture.New(t, db, fixture.Options{})
		rec := payment.NewRecorder(payment.RecorderConfig{Store: e.Store, Outbox: outbox.New(1, outbox.WithMaxBacklog(1)),
			Bills: e.Bills, Now: e.Clock.Now, Logger: logging.Discard()})
		var orders []store.Order
		for _, b := range []string{"B1", "B2"} {
			tok := fixture.Token()
			e.Publish(t, fixture.Bill(b, tok))
			o, err := e.Orders.Create(ctx, tok, "wechat")
			sqltest.Must(t, err)
			orders = append(orders, o)
		}
		confirm := func(o store.Order) error {
			p := e.WeChat.Pay(o.OrderNo)
			_, err := rec.Record(ctx, payment.Confirmation{Channel: "wechat", ChannelTradeNo: p.TransactionID, OrderNo: o.OrderNo,
				Amount: o.Amount, PaidAt: p.SuccessTime, NotificationID: "EV-" + o.OrderNo, Source: store.SourceNotification})
			return err
		}
		sqltest.Must(t, confirm(orders[0]))
		if err := confirm(orders[1]); !errors.Is(err, outbox.ErrBackpressure) {
			t.Fatalf("second payment on a full lane: %v, want ErrBackpressure", err)
		}
		if n := e.Count(t, `SELECT count(*) FROM payments`); n != 1 {
			t.Fatalf("%d payments, want 1", n)
		}
		if n := e.Count(t, `SELECT count(*) FROM ferry_outbox`); n != 1 {
			t.Fatalf("%d outbox rows, want 1", n)
		}
		if n := e.Count(t, `SELECT count(*) FROM bills WHERE status = 'paid'`); n != 1 {
			t.Fatalf("%d bills paid, want 1", n)
		}
		if o, err := e.Store.OrderGet(ctx, db, orders[1].OrderNo, false); err != nil || o.Status != store.OrderCreated {
			t.Fatalf("the refused payment's order: %+v %v", o, err)
		}
	})
}
