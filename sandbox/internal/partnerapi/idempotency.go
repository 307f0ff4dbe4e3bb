package partnerapi

import (
	"context"
	"errors"
	"sync"

	"finepay/shared/httpx"
)

// ErrConflict is returned by Begin for a known key with a different request hash.
var ErrConflict = errors.New("partnerapi: request ID reused with a different request")

// Store keeps the first answer to each request key. A request whose key is being answered waits
// for that answer instead of running twice.
type Store struct {
	mu      sync.Mutex
	entries map[string]*entry
}

type entry struct {
	hash   [32]byte
	done   chan struct{}
	answer *httpx.Captured
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{entries: map[string]*entry{}} }

// Begin looks key up. It returns the stored answer when there is one; ErrConflict when key was
// used for a request with another hash; otherwise a finish function that the caller must call
// exactly once with the answer to store, or nil to store nothing (a later retry then runs anew).
func (s *Store) Begin(ctx context.Context, key string, hash [32]byte) (*httpx.Captured, func(*httpx.Captured), error) {
	for {
		s.mu.Lock()
		e, ok := s.entries[key]
		if !ok {
			e = &entry{hash: hash, done: make(chan struct{})}
			s.entries[key] = e
			s.mu.Unlock()
			return nil, s.finisher(key, e), nil
		}
		if e.hash != hash {
			s.mu.Unlock()
			return nil, nil, ErrConflict
		}
		if e.answer != nil {
			a := e.answer
			s.mu.Unlock()
			return a, nil, nil
		}
		done := e.done
		s.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

func (s *Store) finisher(key string, e *entry) func(*httpx.Captured) {
	var once sync.Once
	return func(a *httpx.Captured) {
		once.Do(func() {
			s.mu.Lock()
			if a == nil {
				delete(s.entries, key)
			} else {
				e.answer = a
			}
			s.mu.Unlock()
			close(e.done)
		})
	}
}

// Len is the number of stored answers and requests in progress.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}
