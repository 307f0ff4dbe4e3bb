// Package kv holds the gateway's short-lived shared state behind three small interfaces: a
// cache of bill views, short locks (one channel order per bill per channel at a time) and
// fixed-window rate limits. Redis (go-redis) backs them when several replicas run; an
// in-process implementation backs them for the demo and a single-box pilot. Both pass the same
// tests.
package kv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"time"
)

// ErrLocked is returned by TryLock when another holder has the lock.
var ErrLocked = errors.New("kv: locked by another holder")

// Cache is a byte cache with per-entry time to live.
type Cache interface {
	// Get returns the value and true, or false when the key is absent or expired.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores value for ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete drops keys; absent keys are no error.
	Delete(ctx context.Context, keys ...string) error
}

// Lock is a held lock.
type Lock interface {
	// Release drops the lock if this holder still has it; a lock that expired and was taken
	// by someone else is left alone.
	Release(ctx context.Context) error
}

// Locker hands out short exclusive locks that expire by themselves, so that a crashed holder
// blocks nobody for longer than ttl.
type Locker interface {
	// TryLock takes the lock on key for ttl, or fails with ErrLocked at once.
	TryLock(ctx context.Context, key string, ttl time.Duration) (Lock, error)
}

// Limiter counts events per key in fixed windows.
type Limiter interface {
	// Allow counts one event for key and reports whether it is within limit events in the
	// current window.
	Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, error)
}

// Store is all three, plus a readiness check and Close.
type Store interface {
	Cache
	Locker
	Limiter
	Ping(ctx context.Context) error
	Close() error
}

func newToken() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// windowIndex is the number of the fixed window that contains now.
func windowIndex(now time.Time, window time.Duration) int64 {
	if window <= 0 {
		window = time.Minute
	}
	return now.UnixMilli() / window.Milliseconds()
}
