package partnerapi_test

import (
	"context"
	"errors"
	"testing"

	"finepay/sandbox/internal/partnerapi"
	"finepay/shared/httpx"
)

func TestStore(t *testing.T) {
	t.Parallel()
	s := partnerapi.NewStore()
	ctx := context.Background()
	h1, h2 := [32]byte{1}, [32]byte{2}

	stored, finish, err := s.Begin(ctx, "core\nr1", h1)
	if err != nil || stored != nil || finish == nil {
		t.Fatalf("first Begin: %v %v", stored, err)
	}
	if _, _, err := s.Begin(ctx, "core\nr1", h2); !errors.Is(err, partnerapi.ErrConflict) {
		t.Fatalf("other hash while in progress: %v", err)
	}
	// A waiter gets the answer once it is stored.
	got := make(chan *httpx.Captured, 1)
	go func() {
		a, _, _ := s.Begin(ctx, "core\nr1", h1)
		got <- a
	}()
	finish(&httpx.Captured{Status: 200, Body: []byte("ok")})
	if a := <-got; a == nil || string(a.Body) != "ok" {
		t.Fatalf("waiter got %+v", a)
	}

	// An answer not stored (a 5xx) lets the retry run again.
	_, finish, _ = s.Begin(ctx, "core\nr2", h1)
	finish(nil)
	stored, finish, err = s.Begin(ctx, "core\nr2", h1)
	if err != nil || stored != nil || finish == nil {
		t.Fatalf("retry after nothing was stored: %v %v", stored, err)
	}
	finish(nil)

	cancelled, cancel := context.WithCancel(ctx)
	_, finish, _ = s.Begin(ctx, "core\nr3", h1)
	cancel()
	if _, _, err := s.Begin(cancelled, "core\nr3", h1); !errors.Is(err, context.Canceled) {
		t.Errorf("waiting with a cancelled context: %v", err)
	}
	finish(nil)
}

func TestNormalizeFingerprint(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"sm3:ABCD":    "sm3:abcd",
		" SM3:AB:CD ": "sm3:abcd",
		"ab:cd":       "abcd",
		"sm3:abcd\n":  "sm3:abcd",
	} {
		if got := partnerapi.NormalizeFingerprint(in); got != want {
			t.Errorf("NormalizeFingerprint(%q) = %q, want %q", in, got, want)
		}
	}
}
