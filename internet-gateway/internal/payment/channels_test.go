package payment_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/internet-gateway/internal/alipay/alipaytest"
	"finepay/internet-gateway/internal/fixture"
	"finepay/internet-gateway/internal/payment"
	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/unionpay/unionpaytest"
	"finepay/shared/envelope"
	"finepay/shared/httpx"
	"finepay/shared/logging"
)

// chEnv is a fixture with a published bill, an open order for it at one channel, and the
// notification endpoints of every channel.
type chEnv struct {
	*fixture.Env
	ch    string
	order store.Order
	http  http.Handler
}

func setupChannel(t *testing.T, db *sqldb.DB, ch string) *chEnv {
	t.Helper()
	e := &chEnv{Env: fixture.New(t, db, fixture.Options{}), ch: ch}
	tok := fixture.Token()
	e.Publish(t, fixture.Bill("B1", tok))
	o, err := e.Orders.Create(context.Background(), tok, ch)
	if err != nil {
		t.Fatal(err)
	}
	e.order = o
	h, _ := httpx.New(httpx.Options{Service: "test", Logger: logging.Discard()})
	h.POST("/notify/wechat", e.Notes.HandleWeChatHTTP)
	h.POST("/notify/alipay", e.Notes.HandleAlipayHTTP)
	h.POST("/notify/unionpay", e.Notes.HandleUnionPayHTTP)
	e.http = h
	return e
}

// post delivers a form notification to the channel's endpoint.
func (e *chEnv) post(body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/notify/"+e.ch, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	rec := httptest.NewRecorder()
	e.http.ServeHTTP(rec, req)
	return rec
}

// pay pays the order at the channel's fake server and returns a genuine notification of it,
// and the channel's trade number.
func (e *chEnv) pay() ([]byte, string) {
	switch e.ch {
	case "alipay":
		p := e.Alipay.Pay(e.order.OrderNo)
		return e.AlipayPKI.NotificationBody(p), p.TradeNo
	default:
		p := e.UnionPay.Pay(e.order.OrderNo)
		return e.UnionPayPKI.NotificationBody(p), p.QueryID
	}
}

// okBody is what the channel's endpoint answers a notification it acted on.
func okBody(ch string) string {
	if ch == "alipay" {
		return "success"
	}
	return "ok"
}

func TestP2ChannelNotificationForged(t *testing.T) {
	t.Parallel()
	type forged func(e *chEnv) []byte
	tests := []struct {
		ch, name, reason string
		make             forged
	}{
		{"alipay", "fail/bad-signature", payment.ReasonSignature, func(e *chEnv) []byte {
			body, _ := e.pay()
			return []byte(strings.Replace(string(body), "total_amount=278.00", "total_amount=0.01", 1))
		}},
		{"alipay", "fail/stranger-key", payment.ReasonSignature, func(e *chEnv) []byte {
			p := e.Alipay.Pay(e.order.OrderNo)
			return alipaytest.SignForm(e.AlipayPKI.StrangerKey, p.Form())
		}},
		{"alipay", "fail/other-app", payment.ReasonInvalid, func(e *chEnv) []byte {
			p := e.Alipay.Pay(e.order.OrderNo)
			p.AppID = "2021000000000009"
			return e.AlipayPKI.NotificationBody(p)
		}},
		{"alipay", "fail/amount-differs", payment.ReasonAmount, func(e *chEnv) []byte {
			p := e.Alipay.Pay(e.order.OrderNo)
			p.Total--
			return e.AlipayPKI.NotificationBody(p)
		}},
		{"alipay", "fail/unknown-order", payment.ReasonUnknownOrder, func(e *chEnv) []byte {
			p := e.Alipay.Pay(e.order.OrderNo)
			p.OutTradeNo = "FP20250301000000999999999999"
			return e.AlipayPKI.NotificationBody(p)
		}},
		{"unionpay", "fail/bad-signature", payment.ReasonSignature, func(e *chEnv) []byte {
			body, _ := e.pay()
			return []byte(strings.Replace(string(body), "txnAmt=27800", "txnAmt=1", 1))
		}},
		{"unionpay", "fail/untrusted-chain", payment.ReasonCertificate, func(e *chEnv) []byte {
			p := e.UnionPay.Pay(e.order.OrderNo)
			return unionpaytest.Form(unionpaytest.SignWith(e.UnionPayPKI.Stranger, p.Fields()))
		}},
		{"unionpay", "fail/not-unionpay", payment.ReasonCertificate, func(e *chEnv) []byte {
			p := e.UnionPay.Pay(e.order.OrderNo)
			return unionpaytest.Form(unionpaytest.SignWith(e.UnionPayPKI.Impostor, p.Fields()))
		}},
		{"unionpay", "fail/amount-differs", payment.ReasonAmount, func(e *chEnv) []byte {
			p := e.UnionPay.Pay(e.order.OrderNo)
			p.Amount--
			return e.UnionPayPKI.NotificationBody(p)
		}},
		{"unionpay", "fail/unknown-order", payment.ReasonUnknownOrder, func(e *chEnv) []byte {
			p := e.UnionPay.Pay(e.order.OrderNo)
			p.OrderID = "FP20250301000000999999999999"
			return e.UnionPayPKI.NotificationBody(p)
		}},
		{"unionpay", "fail/not-paid-at-unionpay", payment.ReasonUnconfirmed, func(e *chEnv) []byte {
			// Genuinely signed, but UnionPay's query knows no such payment.
			return e.UnionPayPKI.NotificationBody(unionpaytest.Paid{OrderID: e.order.OrderNo, TxnTime: e.order.CreatedAt,
				QueryID: "202503011030000000001", Amount: int64(e.order.Amount), PaidAt: e.Clock.Now()})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.ch+"/"+tt.name, func(t *testing.T) {
			t.Parallel()
			e := setupChannel(t, sqltest.Open(t, sqldb.Postgres), tt.ch)
			rec := e.post(tt.make(e))
			if rec.Code < 400 || rec.Code >= 500 || !strings.HasPrefix(rec.Body.String(), "fail") {
				t.Fatalf("answered %d %q, want 4xx fail", rec.Code, rec.Body)
			}
			var verdict, reason, channel string
			sqltest.Must(t, e.DB.QueryRow(`SELECT verdict, reason, channel FROM notifications WHERE remote_addr <> 'order-query'`).Scan(&verdict, &reason, &channel))
			if verdict != store.VerdictRejected || !strings.HasPrefix(reason, tt.reason+": ") || channel != tt.ch {
				t.Fatalf("recorded %s %s %q, want rejected %s", channel, verdict, reason, tt.reason)
			}
			if n := e.Metric(t, "gateway_notifications_rejected_total", "channel", tt.ch, "reason", tt.reason); n != 1 {
				t.Fatalf("rejected metric %v", n)
			}
			for q, want := range map[string]int{
				`SELECT count(*) FROM payments`:                                  0,
				`SELECT count(*) FROM ferry_outbox`:                              0,
				`SELECT count(*) FROM channel_orders WHERE status = 'created'`:   1,
				`SELECT count(*) FROM bills WHERE status = 'payable'`:            1,
				`SELECT count(*) FROM notifications WHERE verdict <> 'rejected'`: 0,
			} {
				if n := e.Count(t, q); n != want {
					t.Fatalf("%s: %d, want %d", q, n, want)
				}
			}
		})
	}
}

func TestP2ChannelNotificationDuplicates(t *testing.T) {
	t.Parallel()
	for _, ch := range []string{"alipay", "unionpay"} {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
				e := setupChannel(t, db, ch)
				body, tradeNo := e.pay()
				deliver := func() {
					if rec := e.post(body); rec.Code != http.StatusOK || rec.Body.String() != okBody(ch) {
						t.Errorf("delivery answered %d %q", rec.Code, rec.Body)
					}
				}
				deliver()
				var wg sync.WaitGroup
				wg.Go(deliver)
				wg.Go(deliver)
				wg.Wait()
				deliver()
				if n := e.Count(t, `SELECT count(*) FROM payments`); n != 1 {
					t.Fatalf("%d payments, want 1", n)
				}
				if n := e.Count(t, `SELECT count(*) FROM notifications WHERE verdict = 'accepted'`); n != 1 {
					t.Fatalf("%d accepted", n)
				}
				if n := e.Count(t, `SELECT count(*) FROM notifications WHERE verdict = 'duplicate'`); n != 3 {
					t.Fatalf("%d duplicates", n)
				}
				var raw []byte
				var id string
				sqltest.Must(t, e.DB.QueryRow(`SELECT message_id, envelope FROM ferry_outbox`).Scan(&id, &raw))
				env, err := envelope.Unmarshal(raw)
				sqltest.Must(t, err)
				pl, err := env.Decode()
				sqltest.Must(t, err)
				pc := pl.(*envelope.PaymentConfirmed)
				if id != "pay:"+ch+":"+tradeNo || pc.Channel != ch || pc.OrderNo != e.order.OrderNo || pc.Amount != 27800 ||
					pc.ChannelTradeNo != tradeNo || pc.PaidAt.IsZero() {
					t.Fatalf("message %s %+v", id, pc)
				}
				if n := e.Metric(t, "gateway_payments_recorded_total", "channel", ch); n != 1 {
					t.Fatalf("recorded metric %v", n)
				}
			})
		})
	}
}

// TestP2AlipayNotificationStatuses: a trade that is not paid asks for nothing and is answered
// success (so that Alipay stops); TRADE_FINISHED arriving before TRADE_SUCCESS (out of order)
// records the payment once.
func TestP2AlipayNotificationStatuses(t *testing.T) {
	t.Parallel()
	e := setupChannel(t, sqltest.Open(t, sqldb.SQLite), "alipay")
	wait := alipaytest.Paid{OutTradeNo: e.order.OrderNo, TradeNo: "2025030122001400000000000009", Total: 27800,
		Status: "WAIT_BUYER_PAY", PaidAt: e.Clock.Now()}
	if rec := e.post(e.AlipayPKI.NotificationBody(wait)); rec.Code != http.StatusOK || rec.Body.String() != "success" {
		t.Fatalf("WAIT_BUYER_PAY: %d %q", rec.Code, rec.Body)
	}
	p := e.Alipay.Pay(e.order.OrderNo)
	finished := p
	finished.Status = "TRADE_FINISHED"
	for _, body := range [][]byte{e.AlipayPKI.NotificationBody(finished), e.AlipayPKI.NotificationBody(p)} {
		if rec := e.post(body); rec.Code != http.StatusOK || rec.Body.String() != "success" {
			t.Fatalf("paid: %d %q", rec.Code, rec.Body)
		}
	}
	for verdict, want := range map[string]int{"ignored": 1, "accepted": 1, "duplicate": 1} {
		if n := e.Count(t, `SELECT count(*) FROM notifications WHERE verdict = $1`, verdict); n != want {
			t.Fatalf("%d %s, want %d", n, verdict, want)
		}
	}
	if n := e.Count(t, `SELECT count(*) FROM payments`); n != 1 {
		t.Fatalf("%d payments", n)
	}
	if n := e.Count(t, `SELECT count(*) FROM notifications WHERE verdict = 'ignored' AND reason = 'trade_status WAIT_BUYER_PAY'`); n != 1 {
		t.Fatal("the ignored notification's reason")
	}
}

// TestP2UnionPayNotificationConfirmed: a success notification is acted on only once UnionPay's
// query confirms it; while the query fails or the payment is processing, the answer makes
// UnionPay resend and nothing is recorded; a failure notification asks for nothing.
func TestP2UnionPayNotificationConfirmed(t *testing.T) {
	t.Parallel()
	e := setupChannel(t, sqltest.Open(t, sqldb.SQLite), "unionpay")
	failed := e.UnionPayPKI.NotificationBody(unionpaytest.Paid{OrderID: e.order.OrderNo, TxnTime: e.order.CreatedAt,
		QueryID: "202503011030000000007", Amount: 27800, RespCode: "03", PaidAt: e.Clock.Now()})
	if rec := e.post(failed); rec.Code != http.StatusOK {
		t.Fatalf("a failure notification: %d %q", rec.Code, rec.Body)
	}
	e.UnionPay.SetResult(e.order.OrderNo, "05") // processing
	body := e.UnionPayPKI.NotificationBody(unionpaytest.Paid{OrderID: e.order.OrderNo, TxnTime: e.order.CreatedAt,
		QueryID: e.UnionPay.Order(e.order.OrderNo).QueryID, Amount: 27800, PaidAt: e.Clock.Now()})
	if rec := e.post(body); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("still processing: %d %q", rec.Code, rec.Body)
	}
	e.UnionPay.Fail5xx.Store(3) // the query fails, retries included
	if rec := e.post(body); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("query failed: %d %q", rec.Code, rec.Body)
	}
	if n := e.Count(t, `SELECT count(*) FROM payments`); n != 0 {
		t.Fatalf("%d payments before confirmation", n)
	}
	e.UnionPay.Pay(e.order.OrderNo)
	if rec := e.post(body); rec.Code != http.StatusOK || rec.Body.String() != "ok" {
		t.Fatalf("confirmed: %d %q", rec.Code, rec.Body)
	}
	if n := e.Count(t, `SELECT count(*) FROM payments`); n != 1 {
		t.Fatalf("%d payments", n)
	}
	if n := e.Count(t, `SELECT count(*) FROM notifications WHERE verdict = 'ignored' AND reason LIKE 'respCode 03%'`); n != 1 {
		t.Fatal("the failure notification is not recorded as ignored")
	}
	if n := e.Count(t, `SELECT count(*) FROM notifications WHERE verdict = 'received'`); n != 2 {
		t.Fatalf("%d undecided deliveries, want 2", n)
	}
	if q, f := e.UnionPay.Requests("query"), e.UnionPay.Requests("failed"); q != 2 || f != 3 {
		t.Fatalf("%d confirming queries answered, %d failed; want 2 and 3", q, f)
	}
}

// TestP2OrderQueryEveryChannel: orders of Alipay and UnionPay whose notification never comes are
// found paid by the active query, recorded as a notification would be; unpaid ones are queried
// with backoff and closed after their day.
func TestP2OrderQueryEveryChannel(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := fixture.New(t, db, fixture.Options{})
		ctx := context.Background()
		toks := map[string]string{}
		orders := map[string]store.Order{}
		for i, ch := range []string{"wechat", "alipay", "unionpay", "alipay2", "unionpay2"} {
			tok := fixture.Token()
			bill := "B" + string(rune('1'+i))
			e.Publish(t, fixture.Bill(bill, tok))
			o, err := e.Orders.Create(ctx, tok, strings.TrimSuffix(ch, "2"))
			sqltest.Must(t, err)
			toks[ch], orders[ch] = tok, o
		}
		ap := e.Alipay.Pay(orders["alipay"].OrderNo)
		up := e.UnionPay.Pay(orders["unionpay"].OrderNo)
		e.Clock.Advance(2 * time.Minute)
		r, err := e.Poller.RunOnce(ctx)
		sqltest.Must(t, err)
		if r.Queried != 5 || r.Paid != 2 || r.Failed != 0 {
			t.Fatalf("round %+v", r)
		}
		for ch, trade := range map[string]string{"alipay": ap.TradeNo, "unionpay": up.QueryID} {
			p, err := e.Store.PaymentGetByTrade(ctx, db, ch, trade)
			sqltest.Must(t, err)
			if p.Source != store.SourceQuery || p.NotificationID != "query:"+trade || p.OrderNo != orders[ch].OrderNo || p.Amount != 27800 {
				t.Fatalf("%s payment %+v", ch, p)
			}
		}
		var raw []byte
		sqltest.Must(t, e.DB.QueryRow(`SELECT body FROM notifications WHERE channel = 'unionpay' AND remote_addr = 'order-query'`).Scan(&raw))
		if q, err := url.ParseQuery(string(raw)); err != nil || q.Get("queryId") != up.QueryID || q.Has("accNo") || q.Has("signature") {
			t.Fatalf("stored UnionPay answer %s", raw)
		}
		// Backoff: due again after 1 minute, then 2, then 4.
		for i, wait := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute} {
			e.Clock.Advance(wait - time.Second)
			if r, _ = e.Poller.RunOnce(ctx); r.Queried != 0 {
				t.Fatalf("query %d: queried %s early: %+v", i+2, time.Second, r)
			}
			e.Clock.Advance(time.Second)
			if r, _ = e.Poller.RunOnce(ctx); r.Queried != 3 {
				t.Fatalf("query %d: %+v", i+2, r)
			}
		}
		// After midnight, the unpaid orders are closed (Alipay's at Alipay too).
		e.Clock.Set(time.Date(2025, 3, 1, 16, 0, 5, 0, time.UTC))
		if r, _ = e.Poller.RunOnce(ctx); r.Queried != 3 || r.Closed != 3 {
			t.Fatalf("after midnight: %+v", r)
		}
		if st := e.Alipay.Order(orders["alipay2"].OrderNo).Status; st != "TRADE_CLOSED" {
			t.Fatalf("at Alipay: %s", st)
		}
		if n := e.Count(t, `SELECT count(*) FROM channel_orders WHERE status = 'created'`); n != 0 {
			t.Fatalf("%d orders still open", n)
		}
		// A late Alipay notification of the queried payment is a duplicate, answered success.
		h, _ := httpx.New(httpx.Options{Service: "test", Logger: logging.Discard()})
		h.POST("/notify/alipay", e.Notes.HandleAlipayHTTP)
		req := httptest.NewRequest(http.MethodPost, "/notify/alipay", strings.NewReader(string(e.AlipayPKI.NotificationBody(ap))))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Body.String() != "success" {
			t.Fatalf("late notification: %d %q", rec.Code, rec.Body)
		}
		if n := e.Count(t, `SELECT count(*) FROM payments`); n != 2 {
			t.Fatalf("%d payments", n)
		}
	})
}

// TestP2NotificationAndQueryAtOnce: a notification and an active query that find the same
// payment at the same moment record one payment, for each channel.
func TestP2NotificationAndQueryAtOnce(t *testing.T) {
	t.Parallel()
	for _, ch := range []string{"wechat", "alipay", "unionpay"} {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
				e := setupChannel(t, db, ch)
				var deliver func() int
				switch ch {
				case "wechat":
					p := e.WeChat.Pay(e.order.OrderNo)
					body := e.PKI.NotificationBody("EV-RACE", p)
					deliver = func() int {
						req := httptest.NewRequest(http.MethodPost, "/notify/wechat", strings.NewReader(string(body)))
						for k, v := range e.PKI.Sign(e.Clock.Now(), body) {
							req.Header[k] = v
						}
						rec := httptest.NewRecorder()
						e.http.ServeHTTP(rec, req)
						return rec.Code
					}
				default:
					body, _ := e.pay()
					deliver = func() int { return e.post(body).Code }
				}
				e.Clock.Advance(2 * time.Minute)
				for range 3 {
					start := make(chan struct{})
					var wg sync.WaitGroup
					codes := make([]int, 2)
					var round payment.Round
					var err error
					wg.Go(func() { <-start; codes[0] = deliver() })
					wg.Go(func() { <-start; codes[1] = deliver() })
					wg.Go(func() { <-start; round, err = e.Poller.RunOnce(context.Background()) })
					close(start)
					wg.Wait()
					sqltest.Must(t, err)
					if codes[0]/100 != 2 || codes[1]/100 != 2 || round.Failed != 0 {
						t.Fatalf("answers %v, round %+v", codes, round)
					}
				}
				if n := e.Count(t, `SELECT count(*) FROM payments`); n != 1 {
					t.Fatalf("%d payments, want 1", n)
				}
				if n := e.Count(t, `SELECT count(*) FROM ferry_outbox`); n != 1 {
					t.Fatalf("%d outbox rows, want 1", n)
				}
				if n := e.Count(t, `SELECT count(*) FROM notifications WHERE verdict = 'accepted'`); n != 1 {
					t.Fatalf("%d accepted", n)
				}
			})
		})
	}
}
