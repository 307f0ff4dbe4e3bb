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

func TestP2CreateOrderConcurrent(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"memory", "redis"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var o fixture.Options
			clock := fixture.NewClock(fixture.Start)
			if name == "redis" {
				o.KV = redisKV(t, clock.Now)
			}
			e := fixture.New(t, sqltest.Open(t, sqldb.Postgres), o)
			tok := fixture.Token()
			e.Publish(t, fixture.Bill("B1", tok))
			// Hold the first Native call until the second request has started.
			second := make(chan struct{})
			var once sync.Once
			e.WeChat.OnNative = func(string) { once.Do(func() { <-second }) }
			var wg sync.WaitGroup
			got := make([]store.Order, 2)
			errs := make([]error, 2)
			wg.Go(func() { got[0], errs[0] = e.Orders.CreateWeChat(context.Background(), tok) })
			wg.Go(func() {
				close(second)
				got[1], errs[1] = e.Orders.CreateWeChat(context.Background(), tok)
			})
			wg.Wait()
			for _, err := range errs {
				sqltest.Must(t, err)
			}
			if got[0].OrderNo != got[1].OrderNo || got[0].CodeURL == "" {
				t.Fatalf("two orders: %s and %s", got[0].OrderNo, got[1].OrderNo)
			}
			if n := e.Count(t, `SELECT count(*) FROM channel_orders`); n != 1 {
				t.Fatalf("%d orders stored", n)
			}
			if n := e.WeChat.Requests("POST native"); n != 1 {
				t.Fatalf("%d Native orders placed", n)
			}
			if n := e.Metric(t, "gateway_channel_orders_created_total", "channel", "wechat"); n != 1 {
				t.Fatalf("metric %v", n)
			}
		})
	}
}

func TestP2CreateOrderForgedResponse(t *testing.T) {
	t.Parallel()
	e := fixture.New(t, sqltest.Open(t, sqldb.Postgres), fixture.Options{})
	tok := fixture.Token()
	e.Publish(t, fixture.Bill("B1", tok))
	e.WeChat.Forge.Store(true)
	_, err := e.Orders.CreateWeChat(context.Background(), tok)
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
	if _, err := e.Orders.CreateWeChat(context.Background(), tok); err != nil {
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
		a, err := e.Orders.CreateWeChat(ctx, tok)
		sqltest.Must(t, err)
		if a.Amount != 27800 || a.Fine != 20000 || a.LateFee != 7800 || a.Status != store.OrderCreated {
			t.Fatalf("order %+v", a)
		}
		if o := e.WeChat.Order(a.OrderNo); o.Total != 27800 || o.Attach != "B1" || o.TimeExpire != "2025-03-01T23:59:59+08:00" {
			t.Fatalf("at WeChat: %+v", o)
		}
		e.Clock.Advance(3 * time.Hour)
		b, err := e.Orders.CreateWeChat(ctx, tok)
		sqltest.Must(t, err)
		if b.OrderNo != a.OrderNo {
			t.Fatal("a valid order of the same amount was not reused")
		}
		// The next day the late fee grows by 3% of the fine: a new order.
		e.Clock.Advance(24 * time.Hour)
		c, err := e.Orders.CreateWeChat(ctx, tok)
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
		if _, err := e.Orders.CreateWeChat(ctx, tok); !errors.Is(err, order.ErrBillPaid) {
			t.Fatalf("paid bill: %v", err)
		}
		if _, err := e.Orders.CreateWeChat(ctx, "not-a-token"); !errors.Is(err, bill.ErrNotFound) {
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
	s := order.New(order.Config{Store: e.Store, Bills: e.Bills, Locks: e.KV, WeChat: e.Client, NotifyURL: "https://x/notify",
		LockWait: 50 * time.Millisecond, Now: e.Clock.Now})
	if _, err := s.CreateWeChat(context.Background(), tok); !errors.Is(err, order.ErrBusy) {
		t.Fatalf("err = %v", err)
	}
}
