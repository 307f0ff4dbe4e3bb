package kv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the Store on a Redis server. Every key starts with the configured prefix.
type Redis struct {
	client *redis.Client
	prefix string
	now    func() time.Time
}

// NewRedis returns a Store over client; keys get prefix. The clock (time.Now when nil) picks
// rate-limit windows; expiry of cache entries and locks is Redis's own.
func NewRedis(client *redis.Client, prefix string, now func() time.Time) *Redis {
	if now == nil {
		now = time.Now
	}
	return &Redis{client: client, prefix: prefix, now: now}
}

// DialRedis connects to a redis:// or rediss:// URL and checks the connection.
func DialRedis(ctx context.Context, url, prefix string, now func() time.Time) (*Redis, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("kv: redis URL: %w", err)
	}
	c := redis.NewClient(opts)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("kv: redis %s: %w", opts.Addr, err)
	}
	return NewRedis(c, prefix, now), nil
}

func (r *Redis) key(kind, k string) string { return r.prefix + kind + ":" + k }

// Get implements Cache.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := r.client.Get(ctx, r.key("cache", key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("kv: get: %w", err)
	}
	return v, true, nil
}

// Set implements Cache.
func (r *Redis) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := r.client.Set(ctx, r.key("cache", key), value, ttl).Err(); err != nil {
		return fmt.Errorf("kv: set: %w", err)
	}
	return nil
}

// Delete implements Cache.
func (r *Redis) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.key("cache", k)
	}
	if err := r.client.Del(ctx, full...).Err(); err != nil {
		return fmt.Errorf("kv: delete: %w", err)
	}
	return nil
}

// TryLock implements Locker with SET key token NX PX ttl.
func (r *Redis) TryLock(ctx context.Context, key string, ttl time.Duration) (Lock, error) {
	tok := newToken()
	k := r.key("lock", key)
	ok, err := r.client.SetNX(ctx, k, tok, ttl).Result()
	if err != nil {
		return nil, fmt.Errorf("kv: lock: %w", err)
	}
	if !ok {
		return nil, ErrLocked
	}
	return &redisLock{r: r, key: k, token: tok}, nil
}

// releaseScript deletes the lock only when it still holds the caller's token.
var releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

type redisLock struct {
	r          *Redis
	key, token string
}

func (l *redisLock) Release(ctx context.Context) error {
	if err := releaseScript.Run(ctx, l.r.client, []string{l.key}, l.token).Err(); err != nil {
		return fmt.Errorf("kv: unlock: %w", err)
	}
	return nil
}

// Allow implements Limiter: INCR on a key per window, which expires after the window.
func (r *Redis) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, error) {
	if window <= 0 {
		window = time.Minute
	}
	idx := windowIndex(r.now(), window)
	k := r.key("rl", key+":"+strconv.FormatInt(idx, 10))
	var incr *redis.IntCmd
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		incr = p.Incr(ctx, k)
		p.PExpire(ctx, k, 2*window)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("kv: rate limit: %w", err)
	}
	return incr.Val() <= int64(limit), nil
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error { return r.client.Ping(ctx).Err() }

// Close implements Store.
func (r *Redis) Close() error { return r.client.Close() }
