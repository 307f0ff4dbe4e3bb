package relay

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"finepay/ferry/bundle"
	"finepay/ferry/outbox"
)

// Pull answers the peer's request for a bundle (DMZ side). marks are the peer's high-water marks
// of the lanes it receives. Pull returns a sealed bundle of a lane with messages after
// max(mark, acknowledged) that has no bundle in flight, waiting up to wait (at most LongPoll) for
// one; nil when there is none. The lane is then leased to that bundle until the peer
// acknowledges it, a later pull's marks show it committed, or ResendAfter passes.
func (r *Relay) Pull(ctx context.Context, marks map[string]int64, wait time.Duration, remote string) ([]byte, error) {
	r.touch()
	r.leases.observe(marks)
	wait = min(max(wait, 0), r.cfg.LongPoll)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		lanes, changed := r.watch.snapshot()
		if lane, after, ok := r.pick(lanes, marks); ok {
			out, err := r.serveLane(ctx, lane, after, remote)
			if err != nil {
				return nil, err
			}
			if out != nil {
				r.failpoint(FailAfterBundleWrite)
				return out.Bytes(), nil
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, nil
		case <-r.stopping:
			return nil, nil
		}
	}
}

// pick chooses, round robin, a sending lane with messages after the peer's mark and no bundle in
// flight, and leases it.
func (r *Relay) pick(lanes map[string]outbox.Lane, marks map[string]int64) (string, int64, bool) {
	names := make([]string, 0, len(lanes))
	for name := range lanes {
		if dir, err := bundle.LaneDirection(name); err == nil && dir == r.cfg.Side.Sends() {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", 0, false
	}
	slices.Sort(names)
	start := r.rr.Add(1)
	for i := range names {
		name := names[(start+uint64(i))%uint64(len(names))]
		l := lanes[name]
		after := max(marks[name], l.AckedSeq)
		if l.LastSeq > after && r.leases.take(name, r.cfg.Now(), r.cfg.ResendAfter) {
			return name, after, true
		}
	}
	return "", 0, false
}

// serveLane builds and records the lane's next bundle; nil (lease released) when the snapshot
// was stale.
func (r *Relay) serveLane(ctx context.Context, lane string, after int64, remote string) (*outgoing, error) {
	out, err := r.prepare(ctx, lane, after, remote)
	if out != nil {
		if r.leases.sent(lane, out.Header.FirstSeq, out.Header.LastSeq) {
			r.m.BundlesResent.WithLabelValues(lane).Inc()
		}
		return out, nil
	}
	r.leases.release(lane)
	if err != nil && !errors.Is(err, errRetired) {
		return nil, err
	}
	if err != nil {
		r.log.Warn("relay: peer's mark is behind what it acknowledged", "lane", lane, "err", err)
	}
	// The snapshot was stale: read the lanes again before the next pick.
	return nil, r.watch.refresh(ctx)
}

// AcceptAck handles the peer's acknowledgement of a pulled bundle (DMZ side): it verifies it,
// audits it (ack.received) and retires the outbox rows it covers (bundle.acknowledged). A bad
// one gives a *RejectedError; a failing audit trail or database ErrUnavailable.
func (r *Relay) AcceptAck(ctx context.Context, raw []byte, remote string) error {
	r.touch()
	a, err := r.acknowledged(ctx, raw, nil, remote)
	if err != nil {
		return err
	}
	if err := r.watch.refresh(ctx); err != nil {
		r.log.Warn("relay: read outgoing lanes", "err", err)
	}
	if r.leases.acked(a.Lane, a.Seq) {
		r.watch.notify()
	}
	return nil
}

// leases are the DMZ's bundles in flight, one at most per lane.
type leases struct {
	mu   sync.Mutex
	m    map[string]lease
	high map[string]int64 // the highest sequence handed out per lane
}

type lease struct {
	last  int64 // the last sequence of the bundle handed out; 0 while it is being built
	until time.Time
}

func newLeases() *leases { return &leases{m: map[string]lease{}, high: map[string]int64{}} }

// take leases lane unless a live lease holds it.
func (l *leases) take(lane string, now time.Time, ttl time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.m[lane]; ok && now.Before(cur.until) {
		return false
	}
	l.m[lane] = lease{until: now.Add(ttl)}
	return true
}

// sent records that lane's bundle first..last was handed out, and reports whether it is a
// resend (it starts at or below a sequence handed out before).
func (l *leases) sent(lane string, first, last int64) (resend bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.m[lane]; ok {
		cur.last = last
		l.m[lane] = cur
	}
	resend = first <= l.high[lane]
	l.high[lane] = max(l.high[lane], last)
	return resend
}

func (l *leases) release(lane string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, lane)
}

// acked releases lane's lease if seq covers its bundle, and reports whether it did.
func (l *leases) acked(lane string, seq int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.m[lane]; ok && cur.last > 0 && seq >= cur.last {
		delete(l.m, lane)
		return true
	}
	return false
}

// observe releases the leases whose bundles the marks show committed.
func (l *leases) observe(marks map[string]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for lane, cur := range l.m {
		if cur.last > 0 && marks[lane] >= cur.last {
			delete(l.m, lane)
		}
	}
}
