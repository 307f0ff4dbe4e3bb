package kv

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// sweepEvery is how many writes pass between sweeps of expired entries.
const sweepEvery = 1024

// Memory is the in-process Store. Expiry follows the injected clock; expired entries are
// dropped lazily and by a sweep every few writes, so it starts no goroutine.
type Memory struct {
	now func() time.Time

	mu     sync.Mutex
	cache  map[string]memEntry
	locks  map[string]memEntry
	counts map[string]memCount
	writes int
}

type memEntry struct {
	value   []byte
	expires time.Time
}

type memCount struct {
	n       int
	expires time.Time
}

// NewMemory returns an in-process Store on clock now (time.Now when nil).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, cache: map[string]memEntry{}, locks: map[string]memEntry{}, counts: map[string]memCount{}}
}

func (m *Memory) wrote(now time.Time) {
	m.writes++
	if m.writes%sweepEvery != 0 {
		return
	}
	for k, e := range m.cache {
		if !now.Before(e.expires) {
			delete(m.cache, k)
		}
	}
	for k, e := range m.locks {
		if !now.Before(e.expires) {
			delete(m.locks, k)
		}
	}
	for k, c := range m.counts {
		if !now.Before(c.expires) {
			delete(m.counts, k)
		}
	}
}

// Get implements Cache.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.cache[key]
	if !ok {
		return nil, false, nil
	}
	if !m.now().Before(e.expires) {
		delete(m.cache, key)
		return nil, false, nil
	}
	return append([]byte(nil), e.value...), true, nil
}

// Set implements Cache.
func (m *Memory) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.cache[key] = memEntry{value: append([]byte(nil), value...), expires: now.Add(ttl)}
	m.wrote(now)
	return nil
}

// Delete implements Cache.
func (m *Memory) Delete(_ context.Context, keys ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.cache, k)
	}
	return nil
}

// TryLock implements Locker.
func (m *Memory) TryLock(_ context.Context, key string, ttl time.Duration) (Lock, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if e, ok := m.locks[key]; ok && now.Before(e.expires) {
		return nil, ErrLocked
	}
	tok := newToken()
	m.locks[key] = memEntry{value: []byte(tok), expires: now.Add(ttl)}
	m.wrote(now)
	return &memLock{m: m, key: key, token: tok}, nil
}

type memLock struct {
	m          *Memory
	key, token string
}

func (l *memLock) Release(context.Context) error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if e, ok := l.m.locks[l.key]; ok && string(e.value) == l.token {
		delete(l.m.locks, l.key)
	}
	return nil
}

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string, limit int, window time.Duration) (bool, error) {
	if window <= 0 {
		window = time.Minute
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	idx := windowIndex(now, window)
	k := key + "\x00" + strconv.FormatInt(idx, 10)
	c := m.counts[k]
	if c.n == 0 {
		c.expires = time.UnixMilli((idx + 1) * window.Milliseconds())
	}
	c.n++
	m.counts[k] = c
	m.wrote(now)
	return c.n <= limit, nil
}

// Ping implements Store.
func (m *Memory) Ping(context.Context) error { return nil }

// Close implements Store.
func (m *Memory) Close() error { return nil }
