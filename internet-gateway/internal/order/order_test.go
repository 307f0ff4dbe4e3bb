package order_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/internet-gateway/internal/bill"
	"finepay/internet-gateway/internal/fixture"
	"finepay/internet-gateway/internal/kv"
	"finepay/internet-gateway/internal/order"
	"finepay/internet-gateway/internal/store"
	"finepay/internet-gateway/internal/wechat"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func redisKV(t *testing.T, now func() time.Time) kv.Store {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "fp:test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		if keys, _ := c.Keys(ctx, prefix+"*").Result(); len(keys) > 0 {
			c.Del(ctx, keys...)
		}
		c.Close()
	})
	return kv.NewRedis(c, prefix, now)
}

// channelRequests is how many orders were placed at a channel's fake server.
func channelRequests(e *fixture.Env, ch string) int {
	switch ch {
	case "alipay":
		return e.Alipay.Requests("alipay.trade.precreate")
	case "unionpay":
		return e.UnionPay.Requests("consume")
	}
	return e.WeChat.Requests("POST native")
}

// onCreate sets a hook that runs inside each order placement at a channel's fake server.
func onCreate(e *fixture.Env, ch string, f func()) {
	switch ch {
	case "alipay":
		e.Alipay.OnPrecreate = func(string) { f() }
	case "unionpay":
		e.UnionPay.OnConsume = func(string) { f() }
	default:
		e.WeChat.OnNative = func(string) { f() }
	}
}

// TestP2CreateOrderConcurrent: 20 simultaneous "pay" clicks on one bill and channel (a double
// click, two tabs, two phones) end with one open channel order, placed once at the channel, for
// each channel, with the in-process lock and with Redis.
func TestP2CreateOrderConcurrent(t *testing.T) {
	t.Parallel()
	for _, kvName := range []string{"memory", "redis"} {
		for _, ch := range []string{"wechat", "alipay", "unionpay"} {
			t.Run(kvName+"/"+ch, func(t *testing.T) {
				t.Parallel()
				var o fixture.Options
				clock := fixture.NewClock(fixture.Start)
				if kvName == "redis" {
					o.KV = redisKV(t, clock.Now)
				}
				e := fixture.New(t, sqltest.Open(t, sqldb.Postgres), o)
				tok := fixture.Token()
				e.Publish(t, fixture.Bill("B1", tok))
				got, errs := clicks(e, tok, ch, 20)
				for _, err := range errs {
					sqltest.Must(t, err)
				}
				for _, g := range got {
					if g.OrderNo != got[0].OrderNo || g.CodeURL == "" {
						t.Fatalf("two orders: %s and %s", got[0].OrderNo, g.OrderNo)
					}
				}
				if n := e.Count(t, `SELECT count(*) FROM channel_orders`); n != 1 {
					t.Fatalf("%d orders stored", n)
				}
				if n := channelRequests(e, ch); n != 1 {
					t.Fatalf("%d orders placed at %s", n, ch)
				}
				if n := e.Metric(t, "gateway_channel_orders_created_total", "channel", ch); n != 1 {
					t.Fatalf("metric %v", n)
				}
			})
		}
	}
}

// clicks runs n Create calls for one bill and channel at the same moment.
func clicks(e *fixture.Env, tok, ch string, n int) ([]store.Order, []error) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	got := make([]store.Order, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			got[i], errs[i] = e.Orders.Create(context.Background(), tok, ch)
		})
	}
	close(start)
	wg.Wait()
	return got, errs
}

// noLock grants every lock: replicas that share no Redis.
type noLock struct{}

func (noLock) TryLock(context.Context, string, time.Duration) (kv.Lock, error) { return noLock{}, nil }
func (noLock) Release(context.Context) error                                   { return nil }

// TestP2CreateOrderUniqueWithoutLock: even without a shared lock (replicas on in-process locks),
// 20 simultaneous clicks leave one open order: the unique index on open orders decides, every
// click gets the winner's order, and the surplus orders placed at the channel are closed there.
func TestP2CreateOrderUniqueWithoutLock(t *testing.T) {
	t.Parallel()
	for _, ch := range []string{"wechat", "alipay"} {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
				e := fixture.New(t, db, fixture.Options{})
				tok := fixture.Token()
				e.Publish(t, fixture.Bill("B1", tok))
				const n = 20
				// Every click places its order at the channel before any of them is stored.
				var mu sync.Mutex
				arrived, all := 0, make(chan struct{})
				onCreate(e, ch, func() {
					mu.Lock()
					if arrived++; arrived == n {
						close(all)
					}
					mu.Unlock()
					select {
					case <-all:
					case <-time.After(10 * time.Second):
					}
				})
				e.Orders = order.New(order.Config{Store: e.Store, Bills: e.Bills, Locks: noLock{}, Channels: e.Adapters,
					Retirer: e.Poller, Now: e.Clock.Now})
				got, errs := clicks(e, tok, ch, n)
				for i, err := range errs {
					sqltest.Must(t, err)
					if got[i].OrderNo != got[0].OrderNo {
						t.Fatalf("clicks got orders %s and %s", got[0].OrderNo, got[i].OrderNo)
					}
				}
				if k := e.Count(t, `SELECT count(*) FROM channel_orders WHERE status = 'created'`); k != 1 {
					t.Fatalf("%d open orders", k)
				}
				if k := channelRequests(e, ch); k != n {
					t.Fatalf("%d orders placed at the channel, want %d", k, n)
				}
				if k := e.Count(t, `SELECT count(*) FROM channel_orders`); k != 1 {
					t.Fatalf("%d orders stored", k)
				}
			})
		})
	}
}

// TestP2CreateOrderReplacesStale: an open order of yesterday is settled before today's is made:
// closed at the channel and here; or, when the channel says it was paid meanwhile, recorded, and
// no new order is made.
func TestP2CreateOrderReplacesStale(t *testing.T) {
	t.Parallel()
	for _, ch := range []string{"wechat", "alipay", "unionpay"} {
		t.Run(ch, func(t *testing.T) {
			t.Parallel()
			e := fixture.New(t, sqltest.Open(t, sqldb.SQLite), fixture.Options{})
			ctx := context.Background()
			tok := fixture.Token()
			e.Publish(t, fixture.Bill("B1", tok))
			old, err := e.Orders.Create(ctx, tok, ch)
			sqltest.Must(t, err)
			e.Clock.Advance(24 * time.Hour)
			fresh, err := e.Orders.Create(ctx, tok, ch)
			sqltest.Must(t, err)
			if fresh.OrderNo == old.OrderNo || fresh.Amount != 28400 {
				t.Fatalf("next day: %+v", fresh)
			}
			o, err := e.Store.OrderGet(ctx, e.DB, old.OrderNo, false)
			sqltest.Must(t, err)
			if o.Status != store.OrderClosed {
				t.Fatalf("yesterday's order is %s", o.Status)
			}
			switch ch {
			case "wechat":
				if st := e.WeChat.Order(old.OrderNo).State; st != "CLOSED" {
					t.Fatalf("at WeChat: %s", st)
				}
			case "alipay":
				if st := e.Alipay.Order(old.OrderNo).Status; st != "TRADE_CLOSED" {
					t.Fatalf("at Alipay: %s", st)
				}
			}
			// The next day again, but the payer paid the open order just before: it is recorded,
			// and the bill is paid.
			e.Clock.Advance(24 * time.Hour)
			switch ch {
			case "wechat":
				e.WeChat.Pay(fresh.OrderNo)
			case "alipay":
				e.Alipay.Pay(fresh.OrderNo)
			case "unionpay":
				e.UnionPay.Pay(fresh.OrderNo)
			}
			if _, err := e.Orders.Create(ctx, tok, ch); !errors.Is(err, order.ErrBillPaid) {
				t.Fatalf("a stale order paid meanwhile: %v", err)
			}
			p, err := e.Store.PaymentLatestForBill(ctx, e.DB, "B1")
			sqltest.Must(t, err)
			if p.OrderNo != fresh.OrderNo || p.Source != store.SourceQuery || p.Amount != 28400 {
				t.Fatalf("payment %+v", p)
			}
			if n := e.Count(t, `SELECT count(*) FROM channel_orders`); n != 2 {
				t.Fatalf("%d orders", n)
			}
		})
	}
}

func TestP2CreateOrderUnknownChannel(t *testing.T) {
	t.Parallel()
	e := fixture.New(t, sqltest.Open(t, sqldb.SQLite), fixture.Options{})
	tok := fixture.Token()
	e.Publish(t, fixture.Bill("B1", tok))
	if _, err := e.Orders.Create(context.Background(), tok, "paypal"); !errors.Is(err, order.ErrUnknownChannel) {
		t.Fatalf("err = %v", err)
	}
	if got := e.Orders.Channels(); len(got) != 3 || got[0] != "wechat" || got[1] != "alipay" || got[2] != "unionpay" {
		t.Fatalf("channels %v", got)
	}
}

func TestP2CreateOrderForgedResponse(t *testing.T) {
	t.Parallel()
	e := fixture.New(t, sqltest.Open(t, sqldb.Postgres), fixture.Options{})
	tok := fixture.Token()
	e.Publish(t, fixture.Bill("B1", tok))
	e.WeChat.Forge.Store(true)
	_, err := e.Orders.Create(context.Background(), tok, "wechat")
	if !errors.Is(err, order.ErrChannel) || !errors.Is(err, wechat.ErrForged) {
		t.Fatalf("err = %v", err)
	}
	if n := e.Count(t, `SELECT count(*) FROM channel_orders`); n != 0 {
		t.Fatalf("%d orders stored after a forged answer", n)
	}
	if n := e.Metric(t, "gateway_channel_orders_created_total", "channel", "wechat"); n != 0 {
		t.Fatalf("metric %v", n)
	}
	// Once WeChat answers genuinely again, the order is created.
	e.WeChat.Forge.Store(false)
	if _, err := e.Orders.Create(context.Background(), tok, "wechat"); err != nil {
		t.Fatal(err)
	}
}

func TestP2CreateOrderReuse(t *testing.T) {
	t.Parallel()
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := fixture.New(t, db, fixture.Options{})
		ctx := context.Background()
		tok := fixture.Token()
		e.Publish(t, fixture.Bill("B1", tok))
		a, err := e.Orders.Create(ctx, tok, "wechat")
		sqltest.Must(t, err)
		if a.Amount != 27800 || a.Fine != 20000 || a.LateFee != 7800 || a.Status != store.OrderCreated {
			t.Fatalf("order %+v", a)
		}
		if o := e.WeChat.Order(a.OrderNo); o.Total != 27800 || o.Attach != "B1" || o.TimeExpire != "2025-03-01T23:59:59+08:00" {
			t.Fatalf("at WeChat: %+v", o)
		}
		e.Clock.Advance(3 * time.Hour)
		b, err := e.Orders.Create(ctx, tok, "wechat")
		sqltest.Must(t, err)
		if b.OrderNo != a.OrderNo {
			t.Fatal("a valid order of the same amount was not reused")
		}
		// The next day the late fee grows by 3% of the fine: a new order.
		e.Clock.Advance(24 * time.Hour)
		c, err := e.Orders.Create(ctx, tok, "wechat")
		sqltest.Must(t, err)
		if c.OrderNo == a.OrderNo || c.Amount != 28400 {
			t.Fatalf("next day: %+v", c)
		}
		got, _, err := e.Orders.Get(ctx, tok, c.OrderNo)
		sqltest.Must(t, err)
		if got.CodeURL != c.CodeURL {
			t.Fatal("Get differs")
		}
		if _, _, err := e.Orders.Get(ctx, fixture.Token(), c.OrderNo); !errors.Is(err, bill.ErrNotFound) {
			t.Fatalf("order under another token: %v", err)
		}
		sqltest.Must(t, e.Store.BillMarkPaid(ctx, db, "B1", e.Clock.Now()))
		if _, err := e.Orders.Create(ctx, tok, "wechat"); !errors.Is(err, order.ErrBillPaid) {
			t.Fatalf("paid bill: %v", err)
		}
		if _, err := e.Orders.Create(ctx, "not-a-token", "wechat"); !errors.Is(err, bill.ErrNotFound) {
			t.Fatalf("bad token: %v", err)
		}
	})
}

func TestP2CreateOrderBusy(t *testing.T) {
	t.Parallel()
	e := fixture.New(t, sqltest.Open(t, sqldb.SQLite), fixture.Options{})
	tok := fixture.Token()
	e.Publish(t, fixture.Bill("B1", tok))
	held, err := e.KV.TryLock(context.Background(), "order:B1:wechat", time.Minute)
	sqltest.Must(t, err)
	defer held.Release(context.Background())
	s := order.New(order.Config{Store: e.Store, Bills: e.Bills, Locks: e.KV, Channels: e.Adapters, Retirer: e.Poller,
		LockWait: 50 * time.Millisecond, Now: e.Clock.Now})
	if _, err := s.Create(context.Background(), tok, "wechat"); !errors.Is(err, order.ErrBusy) {
		t.Fatalf("err = %v", err)
	}
}
