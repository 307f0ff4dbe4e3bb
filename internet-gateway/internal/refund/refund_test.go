package refund_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/ferry/inbox"
	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/internet-gateway/internal/alipay"
	"finepay/internet-gateway/internal/channel"
	"finepay/internet-gateway/internal/fixture"
	"finepay/internet-gateway/internal/payment"
	"finepay/internet-gateway/internal/refund"
	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/unionpay"
	"finepay/internet-gateway/internal/wechat"
	"finepay/shared/envelope"
	"finepay/shared/httpx"
	"finepay/shared/logging"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a gateway with a paid order at one channel's fake and the refund service.
type env struct {
	*fixture.Env
	ch      string
	order   store.Order
	tradeNo string
	svc     *refund.Service
	http    http.Handler
}

// callTimeout bounds a channel call in these tests: the "timeout" modes of the fakes hang the
// first refund request until the gateway gives up.
const callTimeout = 500 * time.Millisecond

func setup(t *testing.T, db *sqldb.DB, ch string) *env {
	t.Helper()
	e := &env{Env: fixture.New(t, db, fixture.Options{}), ch: ch}
	ctx := context.Background()
	e.svc = refund.New(refund.Config{Store: e.Store, Outbox: outbox.New(4), Adapters: []channel.RefundAdapter{
		wechat.NewRefundAdapter(e.Client, "https://gw.example/notify/wechat/refund"),
		alipay.NewRefundAdapter(e.AlipayClient),
		unionpay.NewRefundAdapter(e.UnionPayClient, "https://gw.example/notify/unionpay/refund"),
	}, After: 30 * time.Second, CallTimeout: callTimeout, Now: e.Clock.Now, Logger: logging.Discard(), Registry: e.Registry,
		WeChat: e.Client, UnionPay: e.UnionPayClient})
	handlers := e.Bills.Handlers()
	for k, v := range e.svc.Handlers() {
		handlers[k] = v
	}
	e.Consumer = inbox.NewConsumer(inbox.Config{DB: db, Handlers: handlers, Logger: logging.Discard(), Now: e.Clock.Now})
	tok := fixture.Token()
	e.Publish(t, fixture.Bill("B1", tok))
	o, err := e.Orders.Create(ctx, tok, ch)
	sqltest.Must(t, err)
	e.order = o
	var paidAt time.Time
	switch ch {
	case "wechat":
		p := e.WeChat.Pay(o.OrderNo)
		e.tradeNo, paidAt = p.TransactionID, p.SuccessTime
	case "alipay":
		p := e.Alipay.Pay(o.OrderNo)
		e.tradeNo, paidAt = p.TradeNo, p.PaidAt
	case "unionpay":
		p := e.UnionPay.Pay(o.OrderNo)
		e.tradeNo, paidAt = p.QueryID, p.PaidAt
	}
	_, err = e.Recorder.Record(ctx, payment.Confirmation{Channel: ch, ChannelTradeNo: e.tradeNo, OrderNo: o.OrderNo, Amount: o.Amount,
		PaidAt: paidAt, NotificationID: "query:" + e.tradeNo, Source: store.SourceQuery})
	sqltest.Must(t, err)
	h, _ := httpx.New(httpx.Options{Service: "test", Logger: logging.Discard()})
	h.POST("/notify/wechat/refund", e.svc.HandleWeChatHTTP)
	h.POST("/notify/unionpay/refund", e.svc.HandleUnionPayHTTP)
	e.http = h
	return e
}

// instruct delivers a refund.instructed for the whole payment through the ferry inbox.
func (e *env) instruct(t *testing.T, refundNo, messageID string) {
	t.Helper()
	if messageID == "" {
		messageID = envelope.RefundInstructionID(refundNo)
	}
	e.Deliver(t, messageID, &envelope.RefundInstructed{RefundNo: refundNo, Channel: e.ch, OrderNo: e.order.OrderNo,
		ChannelTradeNo: e.tradeNo, PaidAmount: int64(e.order.Amount), Amount: int64(e.order.Amount), Reason: "重复缴款退款"}, refundNo)
}

// round runs the refund worker once.
func (e *env) round(t *testing.T) refund.Round {
	t.Helper()
	r, err := e.svc.RunOnce(context.Background())
	sqltest.Must(t, err)
	return r
}

// results returns the refund.result messages in the outbox, in order.
func (e *env) results(t *testing.T) []*envelope.RefundResult {
	t.Helper()
	rows, err := e.DB.Query(`SELECT message_id, envelope FROM ferry_outbox WHERE type = $1 ORDER BY lane, seq`, envelope.TypeRefundResult)
	sqltest.Must(t, err)
	defer rows.Close()
	var out []*envelope.RefundResult
	for rows.Next() {
		var id string
		var raw []byte
		sqltest.Must(t, rows.Scan(&id, &raw))
		env, err := envelope.Unmarshal(raw)
		sqltest.Must(t, err)
		p, err := env.Decode()
		sqltest.Must(t, err)
		r := p.(*envelope.RefundResult)
		if id != envelope.RefundResultID(r.RefundNo, r.Status) || env.Key != r.RefundNo {
			t.Fatalf("message %s (key %s) carries %+v", id, env.Key, r)
		}
		out = append(out, r)
	}
	sqltest.Must(t, rows.Err())
	return out
}

// statuses lists the statuses of the results.
func statuses(rs []*envelope.RefundResult) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.Status)
	}
	return strings.Join(s, ",")
}

// refunded is the money the channel's fake gave back for the order.
func (e *env) refunded() int64 {
	switch e.ch {
	case "wechat":
		return e.WeChat.Refunded(e.order.OrderNo)
	case "alipay":
		return e.Alipay.Refunded(e.order.OrderNo)
	}
	return e.UnionPay.Refunded(e.order.OrderNo)
}

// requests is how many refund requests with the refund number reached the fake.
func (e *env) requests(refundNo string) int {
	switch e.ch {
	case "wechat":
		if r := e.WeChat.RefundOf(refundNo); r != nil {
			return r.Requests
		}
	case "alipay":
		if r := e.Alipay.RefundOf(refundNo); r != nil {
			return r.Requests
		}
	default:
		if r := e.UnionPay.RefundOf(refundNo); r != nil {
			return r.Requests
		}
	}
	return 0
}

func (e *env) setMode(mode map[string]string) {
	switch e.ch {
	case "wechat":
		e.WeChat.SetRefundMode(mode[e.ch])
	case "alipay":
		e.Alipay.SetRefundMode(mode[e.ch])
	default:
		e.UnionPay.SetRefundMode(mode[e.ch])
	}
}

// settleUntilFinal advances the clock past each backoff and runs the worker until the refund is
// final, at most n rounds.
func (e *env) settleUntilFinal(t *testing.T, refundNo string, n int) store.Refund {
	t.Helper()
	for range n {
		r, err := e.Store.RefundGet(context.Background(), e.DB, refundNo, false)
		sqltest.Must(t, err)
		if envelope.RefundFinal(r.Status) {
			return r
		}
		e.Clock.Set(r.NextAt)
		e.round(t)
	}
	t.Fatalf("refund %s not final after %d rounds", refundNo, n)
	return store.Refund{}
}

var channels = []string{"wechat", "alipay", "unionpay"}

// TestR1ChannelRefundSuccess: a refund the channel makes at once is one refund at the channel
// and one refund.result success with the money refunded; UnionPay, which only accepts the
// request, is followed by query until it reports the refund done.
func TestR1ChannelRefundSuccess(t *testing.T) {
	t.Parallel()
	for _, ch := range channels {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
				e := setup(t, db, ch)
				e.instruct(t, "RF2025030100000001", "")
				e.round(t)
				r := e.settleUntilFinal(t, "RF2025030100000001", 3)
				if r.Status != store.RefundSuccess || r.RefundedAmount != e.order.Amount || r.ChannelRefundNo == "" {
					t.Fatalf("refund %+v", r)
				}
				if got := e.refunded(); got != int64(e.order.Amount) {
					t.Fatalf("the channel gave back %d, want %d", got, e.order.Amount)
				}
				rs := e.results(t)
				want := "success"
				if ch == "unionpay" {
					want = "processing,success"
				}
				if statuses(rs) != want {
					t.Fatalf("results %s, want %s", statuses(rs), want)
				}
				last := rs[len(rs)-1]
				if last.RefundedAmount != int64(e.order.Amount) || last.Channel != ch || last.ChannelRefundNo == "" || last.At.IsZero() {
					t.Fatalf("success result %+v", last)
				}
				if n := e.Metric(t, "gateway_refund_results_total", "channel", ch, "status", "success"); n != 1 {
					t.Fatalf("results metric %v", n)
				}
			})
		})
	}
}

// TestR1ChannelRefundProcessingResolvedByQuery: a refund the channel is still processing is
// reported processing and queried after the backoff until the query finds it refunded.
func TestR1ChannelRefundProcessingResolvedByQuery(t *testing.T) {
	t.Parallel()
	for _, ch := range channels {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			e := setup(t, sqltest.Open(t, sqldb.Postgres), ch)
			e.setMode(map[string]string{"wechat": "processing", "alipay": "processing", "unionpay": "processing"})
			e.instruct(t, "RF2025030100000002", "")
			e.round(t)
			r, err := e.Store.RefundGet(context.Background(), e.DB, "RF2025030100000002", false)
			sqltest.Must(t, err)
			if r.Status != store.RefundProcessing || !r.Accepted || !r.NextAt.After(e.Clock.Now()) {
				t.Fatalf("after the request: %+v", r)
			}
			// Not queried before the backoff has passed.
			e.Clock.Set(r.NextAt.Add(-time.Second))
			if got := e.round(t); got.Queried+got.Called != 0 {
				t.Fatalf("queried early: %+v", got)
			}
			r = e.settleUntilFinal(t, "RF2025030100000002", 4)
			if r.Status != store.RefundSuccess || e.refunded() != int64(e.order.Amount) || e.requests("RF2025030100000002") != 1 {
				t.Fatalf("refund %+v, %d refunded in %d requests", r, e.refunded(), e.requests("RF2025030100000002"))
			}
			if s := statuses(e.results(t)); s != "processing,success" {
				t.Fatalf("results %s", s)
			}
		})
	}
}

// TestR1ChannelRefundTimeoutThenRetry: the first refund request is made at the channel but never
// answered; the refund is reported unknown, then queried with the same refund number and found
// refunded: exactly one refund at the channel, the money back once. When instead the first
// request never reached the channel (an error answer before it was taken), the query finds no
// refund and the request is sent again with the same refund number.
func TestR1ChannelRefundTimeoutThenRetry(t *testing.T) {
	t.Parallel()
	for _, ch := range channels {
		t.Run(ch+"/timeout", func(t *testing.T) {
			t.Parallel()
			e := setup(t, sqltest.Open(t, sqldb.Postgres), ch)
			e.setMode(map[string]string{"wechat": "timeout", "alipay": "timeout", "unionpay": "timeout"})
			e.instruct(t, "RF2025030100000003", "")
			if got := e.round(t); got.Failed != 1 {
				t.Fatalf("the timed-out call: %+v", got)
			}
			r, err := e.Store.RefundGet(context.Background(), e.DB, "RF2025030100000003", false)
			sqltest.Must(t, err)
			if r.Status != store.RefundUnknown || r.Accepted || r.Calls != 1 || !strings.Contains(r.Detail, "no answer") {
				t.Fatalf("after the timeout: %+v", r)
			}
			r = e.settleUntilFinal(t, "RF2025030100000003", 4)
			if r.Status != store.RefundSuccess {
				t.Fatalf("refund %+v", r)
			}
			if e.refunded() != int64(e.order.Amount) || e.requests("RF2025030100000003") != 1 {
				t.Fatalf("%d refunded in %d requests, want %d in 1", e.refunded(), e.requests("RF2025030100000003"), e.order.Amount)
			}
			if s := statuses(e.results(t)); s != "unknown,success" {
				t.Fatalf("results %s", s)
			}
		})
		t.Run(ch+"/not-arrived", func(t *testing.T) {
			t.Parallel()
			e := setup(t, sqltest.Open(t, sqldb.Postgres), ch)
			e.instruct(t, "RF2025030100000013", "")
			// The first request fails before the channel takes it.
			switch ch {
			case "wechat":
				e.WeChat.Fail5xx.Store(1)
			case "alipay":
				e.Alipay.Fail5xx.Store(1)
			default:
				e.UnionPay.Fail5xx.Store(1)
			}
			e.round(t)
			if e.requests("RF2025030100000013") != 0 {
				t.Fatal("the failed request reached the fake")
			}
			r := e.settleUntilFinal(t, "RF2025030100000013", 5)
			if r.Status != store.RefundSuccess || r.Calls != 2 || e.refunded() != int64(e.order.Amount) || e.requests("RF2025030100000013") != 1 {
				t.Fatalf("refund %+v; %d refunded in %d requests", r, e.refunded(), e.requests("RF2025030100000013"))
			}
			if s := statuses(e.results(t)); !strings.HasPrefix(s, "unknown,") || !strings.HasSuffix(s, "success") {
				t.Fatalf("results %s", s)
			}
		})
	}
}

// TestR1ChannelRefundAbnormal: a refund the channel reports abnormal (WeChat ABNORMAL; Alipay's
// ACQ.SYSTEM_ERROR; UnionPay's respCode 03) is unknown, not final, and is followed until the
// channel resolves it.
func TestR1ChannelRefundAbnormal(t *testing.T) {
	t.Parallel()
	for _, ch := range channels {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			e := setup(t, sqltest.Open(t, sqldb.Postgres), ch)
			e.setMode(map[string]string{"wechat": "abnormal", "alipay": "error", "unionpay": "busy"})
			const no = "RF2025030100000004"
			e.instruct(t, no, "")
			e.round(t)
			for i := range 2 {
				r, err := e.Store.RefundGet(context.Background(), e.DB, no, false)
				sqltest.Must(t, err)
				// UnionPay's query then says what became of it: processing (05).
				if r.Status != store.RefundUnknown && (i == 0 || ch != "unionpay" || r.Status != store.RefundProcessing) {
					t.Fatalf("abnormal: %+v", r)
				}
				e.Clock.Set(r.NextAt)
				e.round(t)
			}
			if e.refunded() != 0 {
				t.Fatal("refunded while abnormal")
			}
			switch ch {
			case "wechat":
				e.WeChat.SetRefundStatus(no, "SUCCESS")
			case "alipay":
				e.Alipay.SetRefundStatus(no, "REFUND_SUCCESS")
			default:
				e.UnionPay.SetRefundResult(no, "00")
			}
			r := e.settleUntilFinal(t, no, 3)
			if r.Status != store.RefundSuccess || e.refunded() != int64(e.order.Amount) {
				t.Fatalf("refund %+v", r)
			}
			s := statuses(e.results(t))
			if !strings.HasPrefix(s, "unknown") || !strings.HasSuffix(s, "success") || strings.Count(s, "unknown") != 1 {
				t.Fatalf("results %s", s)
			}
		})
	}
}

// TestR1ChannelRefundFailed: a refund the channel closes (WeChat CLOSED), refuses (Alipay) or
// fails (UnionPay origRespCode 01) is failed, final, reported once; nothing is refunded.
func TestR1ChannelRefundFailed(t *testing.T) {
	t.Parallel()
	for _, ch := range channels {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			e := setup(t, sqltest.Open(t, sqldb.Postgres), ch)
			e.setMode(map[string]string{"wechat": "closed", "alipay": "refused", "unionpay": "failed"})
			e.instruct(t, "RF2025030100000005", "")
			e.round(t)
			r := e.settleUntilFinal(t, "RF2025030100000005", 3)
			if r.Status != store.RefundFailed || e.refunded() != 0 {
				t.Fatalf("refund %+v", r)
			}
			if s := statuses(e.results(t)); !strings.HasSuffix(s, "failed") {
				t.Fatalf("results %s", s)
			}
			if got := e.round(t); got.Called+got.Queried != 0 {
				t.Fatalf("a failed refund is worked again: %+v", got)
			}
		})
	}
}

// TestR1ChannelRefundRepeatedInstruction: the same instruction delivered again (under another
// message ID, so that the ferry inbox does not drop it) is the same refund: one row, one refund at
// the channel, one result per status.
func TestR1ChannelRefundRepeatedInstruction(t *testing.T) {
	t.Parallel()
	for _, ch := range channels {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			e := setup(t, sqltest.Open(t, sqldb.Postgres), ch)
			const no = "RF2025030100000006"
			e.instruct(t, no, "")
			e.round(t)
			e.instruct(t, no, envelope.RefundInstructionID(no)+":again")
			e.settleUntilFinal(t, no, 3)
			e.instruct(t, no, envelope.RefundInstructionID(no)+":late")
			e.round(t)
			if n := e.Count(t, `SELECT count(*) FROM refunds`); n != 1 {
				t.Fatalf("%d refunds", n)
			}
			if e.refunded() != int64(e.order.Amount) || e.requests(no) != 1 {
				t.Fatalf("%d refunded in %d requests", e.refunded(), e.requests(no))
			}
			if s := statuses(e.results(t)); strings.Count(s, "success") != 1 {
				t.Fatalf("results %s", s)
			}
			// A second refund of the same order would refund more than was paid: failed here.
			e.instruct(t, "RF2025030100000007", "")
			r, err := e.Store.RefundGet(context.Background(), e.DB, "RF2025030100000007", false)
			sqltest.Must(t, err)
			if r.Status != store.RefundFailed || r.Calls != 0 || e.requests("RF2025030100000007") != 0 {
				t.Fatalf("over-refund: %+v", r)
			}
		})
	}
}

// TestR1ChannelRefundRepeatedNotification: a refund notification delivered several times, some
// at once, yields one refund.result; WeChat's is applied as received, UnionPay's once a query
// confirms it. A forged one is rejected and changes nothing.
func TestR1ChannelRefundRepeatedNotification(t *testing.T) {
	t.Parallel()
	for _, ch := range []string{"wechat", "unionpay"} {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
				e := setup(t, db, ch)
				const no = "RF2025030100000008"
				e.setMode(map[string]string{"wechat": "abnormal", "unionpay": "processing"})
				e.instruct(t, no, "")
				e.round(t)
				var deliver func() int
				switch ch {
				case "wechat":
					e.WeChat.SetRefundStatus(no, "SUCCESS")
					deliver = func() int {
						h, body := e.WeChat.RefundNotification("EV-R-1", no)
						return e.post("/notify/wechat/refund", h, body).Code
					}
					// Forged: signed by a key the gateway does not trust.
					h, body := e.WeChat.RefundNotification("EV-R-0", no)
					h.Set("Wechatpay-Serial", "5157F1A9D4D7E0C1")
					if code := e.post("/notify/wechat/refund", h, body).Code; code != http.StatusUnauthorized {
						t.Fatalf("forged notification: %d", code)
					}
				default:
					e.UnionPay.SetRefundResult(no, "00")
					deliver = func() int {
						return e.post("/notify/unionpay/refund", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
							e.UnionPay.RefundNotification(no)).Code
					}
				}
				if s := statuses(e.results(t)); strings.Contains(s, "success") {
					t.Fatalf("success before the notification: %s", s)
				}
				codes := make([]int, 4)
				codes[0] = deliver()
				var wg sync.WaitGroup
				for i := 1; i < 4; i++ {
					wg.Go(func() { codes[i] = deliver() })
				}
				wg.Wait()
				for _, c := range codes {
					if c/100 != 2 {
						t.Fatalf("answers %v", codes)
					}
				}
				rs := e.results(t)
				if s := statuses(rs); strings.Count(s, "success") != 1 {
					t.Fatalf("results %s", s)
				}
				r, err := e.Store.RefundGet(context.Background(), db, no, false)
				sqltest.Must(t, err)
				if r.Status != store.RefundSuccess || e.refunded() != int64(e.order.Amount) {
					t.Fatalf("refund %+v", r)
				}
				nch := refund.NotificationWeChat
				if ch == "unionpay" {
					nch = refund.NotificationUnionPay
				}
				if n := e.Count(t, `SELECT count(*) FROM notifications WHERE channel = $1 AND verdict = 'accepted'`, nch); n != 1 {
					t.Fatalf("%d accepted", n)
				}
				if n := e.Count(t, `SELECT count(*) FROM notifications WHERE channel = $1 AND verdict = 'duplicate'`, nch); n != 3 {
					t.Fatalf("%d duplicates", n)
				}
			})
		})
	}
}

func (e *env) post(path string, h http.Header, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
	for k, v := range h {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	e.http.ServeHTTP(rec, req)
	return rec
}
