package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"finepay/ferry/bundle"
	"finepay/ferry/inbox"
)

// runPullers runs the pull loops until ctx ends, then tries once more to deliver the
// acknowledgements not yet delivered.
func (r *Relay) runPullers(ctx context.Context, t Transport) {
	if err := r.resync(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("relay: cumulative acknowledgements at start", "err", err)
	}
	var wg sync.WaitGroup
	for range r.cfg.Pullers {
		wg.Go(func() { r.pullLoop(ctx, t) })
	}
	wg.Wait()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	r.flushAcks(fctx, t)
}

func (r *Relay) pullLoop(ctx context.Context, t Transport) {
	b := r.newBackoff()
	for ctx.Err() == nil {
		err := r.pullOnce(ctx, t)
		if err == nil {
			b.reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("relay: pull", "err", err)
		b.wait(ctx)
	}
}

// pullOnce asks the peer for a bundle, commits it and acknowledges it.
func (r *Relay) pullOnce(ctx context.Context, t Transport) error {
	r.flushAcks(ctx, t)
	marks, err := r.marks(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.LongPoll+r.cfg.ResendAfter)
	raw, err := t.Pull(rctx, marks, r.cfg.LongPoll)
	cancel()
	if err != nil {
		var pe *PeerError
		r.linkUp(errors.As(err, &pe))
		return fmt.Errorf("pull from %s: %w", t.Addr(), err)
	}
	r.linkUp(true)
	if raw == nil {
		return nil
	}
	ack, err := r.Accept(ctx, raw, t.Addr())
	var gap *GapError
	if errors.As(err, &gap) {
		return nil // the next pull's marks say where to start
	}
	if err != nil {
		return err
	}
	r.postAck(ctx, t, ack)
	return nil
}

// marks are the high-water marks of the lanes this side receives.
func (r *Relay) marks(ctx context.Context) (map[string]int64, error) {
	all, err := inbox.HWMs(ctx, r.cfg.DB, r.cfg.Peer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for lane := range all {
		if dir, err := bundle.LaneDirection(lane); err != nil || dir != r.cfg.Side.Receives() {
			delete(all, lane)
		}
	}
	return all, nil
}

// resync queues a cumulative acknowledgement (no bundle ID) of every lane received so far, so
// that acknowledgements lost before a restart still reach the peer.
func (r *Relay) resync(ctx context.Context) error {
	marks, err := r.marks(ctx)
	if err != nil {
		return err
	}
	for lane, hwm := range marks {
		if hwm == 0 {
			continue
		}
		raw, err := r.sealAck(lane, hwm, "")
		if err != nil {
			return err
		}
		r.acks.put(lane, hwm, raw)
	}
	return nil
}

func (r *Relay) postAck(ctx context.Context, t Transport, raw []byte) {
	p, err := bundle.ParseAck(raw)
	if err != nil {
		r.log.Error("relay: own acknowledgement does not parse", "err", err)
		return
	}
	r.acks.put(p.Ack.Lane, p.Ack.Seq, raw)
	r.flushAcks(ctx, t)
}

// flushAcks delivers the queued acknowledgements; those that fail stay queued.
func (r *Relay) flushAcks(ctx context.Context, t Transport) {
	for _, q := range r.acks.all() {
		if err := t.PostAck(ctx, q.raw); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("relay: acknowledgement not delivered; will retry", "lane", q.lane, "seq", q.seq, "err", err)
			}
			return
		}
		r.acks.done(q.lane, q.seq)
	}
}

// ackQueue holds the latest undelivered acknowledgement of each lane.
type ackQueue struct {
	mu sync.Mutex
	m  map[string]queuedAck
}

type queuedAck struct {
	lane string
	seq  int64
	raw  []byte
}

func newAckQueue() *ackQueue { return &ackQueue{m: map[string]queuedAck{}} }

func (q *ackQueue) put(lane string, seq int64, raw []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if old, ok := q.m[lane]; !ok || old.seq <= seq {
		q.m[lane] = queuedAck{lane: lane, seq: seq, raw: raw}
	}
}

func (q *ackQueue) all() []queuedAck {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]queuedAck, 0, len(q.m))
	for _, a := range q.m {
		out = append(out, a)
	}
	return out
}

// done removes lane's acknowledgement if it is still the one at seq.
func (q *ackQueue) done(lane string, seq int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if a, ok := q.m[lane]; ok && a.seq == seq {
		delete(q.m, lane)
	}
}
