package kv_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"finepay/internet-gateway/internal/kv"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// harness is one implementation under test. expire makes a key with a time to live behave as
// expired: the in-process store by moving the clock past ttl; Redis, whose expiry is its own, by
// checking that the key carries a TTL no longer than ttl and then removing it as Redis would.
type harness struct {
	store  kv.Store
	clock  *clock
	expire func(t *testing.T, kind, key string, ttl time.Duration)
}

func implementations(t *testing.T) map[string]func(t *testing.T) harness {
	return map[string]func(t *testing.T) harness{
		"memory": func(t *testing.T) harness {
			c := &clock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
			return harness{store: kv.NewMemory(c.Now), clock: c, expire: func(t *testing.T, _, _ string, ttl time.Duration) {
				c.Advance(ttl)
			}}
		},
		"redis": func(t *testing.T) harness {
			c := &clock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
			client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
			ctx := context.Background()
			if err := client.Ping(ctx).Err(); err != nil {
				t.Fatalf("redis at 127.0.0.1:6379: %v", err)
			}
			b := make([]byte, 6)
			rand.Read(b)
			prefix := "fp:test:" + hex.EncodeToString(b) + ":"
			t.Cleanup(func() {
				keys, _ := client.Keys(context.Background(), prefix+"*").Result()
				if len(keys) > 0 {
					client.Del(context.Background(), keys...)
				}
				client.Close()
			})
			return harness{store: kv.NewRedis(client, prefix, c.Now), clock: c, expire: func(t *testing.T, kind, key string, ttl time.Duration) {
				full := prefix + kind + ":" + key
				left, err := client.PTTL(ctx, full).Result()
				if err != nil || left <= 0 || left > ttl {
					t.Fatalf("%s has TTL %v (err %v), want in (0, %v]", full, left, err, ttl)
				}
				client.Del(ctx, full)
			}}
		},
	}
}

func each(t *testing.T, fn func(t *testing.T, h harness)) {
	for name, mk := range implementations(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, mk(t))
		})
	}
}

func TestP2Cache(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, h harness) {
		ctx := context.Background()
		c := h.store
		if _, ok, err := c.Get(ctx, "bill:a"); ok || err != nil {
			t.Fatalf("empty cache: ok=%v err=%v", ok, err)
		}
		must(t, c.Set(ctx, "bill:a", []byte("one"), time.Minute))
		must(t, c.Set(ctx, "bill:b", []byte("two"), time.Minute))
		if v, ok, err := c.Get(ctx, "bill:a"); !ok || err != nil || string(v) != "one" {
			t.Fatalf("get a = %q %v %v", v, ok, err)
		}
		must(t, c.Set(ctx, "bill:a", []byte("uno"), time.Minute))
		if v, _, _ := c.Get(ctx, "bill:a"); string(v) != "uno" {
			t.Fatalf("overwritten value = %q", v)
		}
		must(t, c.Delete(ctx, "bill:a", "bill:absent"))
		if _, ok, _ := c.Get(ctx, "bill:a"); ok {
			t.Fatal("deleted key still cached")
		}
		must(t, c.Delete(ctx))
		h.expire(t, "cache", "bill:b", time.Minute)
		if _, ok, _ := c.Get(ctx, "bill:b"); ok {
			t.Fatal("expired key still cached")
		}
	})
}

func TestP2Lock(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, h harness) {
		ctx := context.Background()
		l := h.store
		a, err := l.TryLock(ctx, "order:B1:wechat", 10*time.Second)
		must(t, err)
		if _, err := l.TryLock(ctx, "order:B1:wechat", 10*time.Second); !errors.Is(err, kv.ErrLocked) {
			t.Fatalf("second holder: err = %v, want ErrLocked", err)
		}
		other, err := l.TryLock(ctx, "order:B2:wechat", 10*time.Second)
		must(t, err)
		must(t, other.Release(ctx))
		must(t, a.Release(ctx))
		b, err := l.TryLock(ctx, "order:B1:wechat", 10*time.Second)
		must(t, err)
		// b's lock expires; c takes it; b's late release must not drop c's lock.
		h.expire(t, "lock", "order:B1:wechat", 10*time.Second)
		c, err := l.TryLock(ctx, "order:B1:wechat", 10*time.Second)
		must(t, err)
		must(t, b.Release(ctx))
		if _, err := l.TryLock(ctx, "order:B1:wechat", 10*time.Second); !errors.Is(err, kv.ErrLocked) {
			t.Fatalf("a stale holder released someone else's lock: err = %v", err)
		}
		must(t, c.Release(ctx))
	})
}

func TestP2LockConcurrent(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, h harness) {
		ctx := context.Background()
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for range 16 {
			wg.Go(func() {
				if _, err := h.store.TryLock(ctx, "race", time.Minute); err == nil {
					mu.Lock()
					won++
					mu.Unlock()
				} else if !errors.Is(err, kv.ErrLocked) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if won != 1 {
			t.Fatalf("%d holders, want 1", won)
		}
	})
}

func TestP2RateLimit(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, h harness) {
		ctx := context.Background()
		// Start at the beginning of a window so that the test cannot straddle two.
		h.clock.Advance(time.Minute - time.Duration(h.clock.Now().UnixMilli()%60000)*time.Millisecond)
		for i := range 5 {
			ok, err := h.store.Allow(ctx, "ip:10.0.0.1", 5, time.Minute)
			if err != nil || !ok {
				t.Fatalf("request %d refused: %v", i+1, err)
			}
		}
		if ok, _ := h.store.Allow(ctx, "ip:10.0.0.1", 5, time.Minute); ok {
			t.Fatal("request 6 of 5 allowed")
		}
		if ok, _ := h.store.Allow(ctx, "ip:10.0.0.2", 5, time.Minute); !ok {
			t.Fatal("another client limited")
		}
		h.clock.Advance(59 * time.Second)
		if ok, _ := h.store.Allow(ctx, "ip:10.0.0.1", 5, time.Minute); ok {
			t.Fatal("allowed again within the same window")
		}
		h.clock.Advance(time.Second)
		if ok, _ := h.store.Allow(ctx, "ip:10.0.0.1", 5, time.Minute); !ok {
			t.Fatal("refused in the next window")
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
