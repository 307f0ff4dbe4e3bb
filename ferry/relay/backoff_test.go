package relay

import (
	"crypto/rand"
	"testing"
	"time"
)

// The backoff grows exponentially from 100 ms to MaxBackoff, each interval drawn from the upper
// half of its ceiling, and starts again after reset.
func TestBackoffJitteredAndBounded(t *testing.T) {
	r := &Relay{cfg: Config{MaxBackoff: 2 * time.Second, Rand: rand.Reader}}
	b := r.newBackoff()
	seen := map[time.Duration]bool{}
	for round := range 3 {
		b.reset()
		for n := range 12 {
			ceiling := min(2*time.Second, 100*time.Millisecond<<n)
			d := b.next()
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("round %d, interval %d: %s outside [%s, %s]", round, n, d, ceiling/2, ceiling)
			}
			seen[d] = true
		}
	}
	if len(seen) < 30 {
		t.Fatalf("only %d distinct intervals in 36: no jitter", len(seen))
	}
}
