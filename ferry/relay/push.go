package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"finepay/ferry/bundle"
)

// ackDepth is how many acknowledgements of one lane may wait to be verified and retired while
// the lane's next bundles travel.
const ackDepth = 4

// runPushers starts a pusher for every sending lane as it appears, until ctx ends.
func (r *Relay) runPushers(ctx context.Context, t Transport) {
	var wg sync.WaitGroup
	defer wg.Wait()
	started := map[string]bool{}
	for {
		lanes, changed := r.watch.snapshot()
		for name := range lanes {
			if dir, err := bundle.LaneDirection(name); err != nil || dir != r.cfg.Side.Sends() || started[name] {
				continue
			}
			started[name] = true
			p := &pusher{r: r, t: t, lane: name, backoff: r.newBackoff()}
			wg.Go(func() { p.run(ctx) })
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// pusher sends one lane's bundles as a pipeline of three steps: the next bundle is collected,
// sealed and recorded as sent while the current one travels; bundles travel one at a time and
// in sequence order, so the peer commits them in order; and the peer's acknowledgements are
// verified and retired (ack.received, bundle.acknowledged, outbox rows deleted) while the next
// bundles travel, in order, at most ackDepth behind. A sequence gap, a refusal or a failure of
// any step ends the pipeline: the pusher starts again from what the peer acknowledged (or asked
// for), after a jittered backoff unless the peer asked for a resend.
type pusher struct {
	r       *Relay
	t       Transport
	lane    string
	backoff *backoff
	acked   atomic.Int64 // the highest sequence the peer acknowledged, as this pusher knows it
	resume  int64        // when > 0, the sequence the peer asked for (sequence gap)
	sent    int64        // the highest sequence sent (or tried) so far: bundles starting at or below it are resends
}

func (p *pusher) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := p.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			p.backoff.reset()
			continue
		}
		p.r.log.Warn("relay: push", "lane", p.lane, "err", err)
		p.backoff.wait(ctx)
	}
}

type ackJob struct {
	raw []byte
	h   bundle.Header
}

// session runs the pipeline from the lane's acknowledged sequence (or the one the peer asked
// for) until a step fails, the peer reports a gap, or ctx ends. nil means start again at once.
func (p *pusher) session(ctx context.Context) error {
	st, _ := p.r.watch.lane(p.lane)
	after := max(st.AckedSeq, p.acked.Load())
	if p.resume > 0 {
		after, p.resume = p.resume-1, 0
	}
	pctx, stopPrepare := context.WithCancel(ctx)
	defer stopPrepare()
	prepared := make(chan *outgoing)
	var prepErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(prepared)
		prepErr = p.prepareLoop(pctx, after, prepared)
	})
	acks := make(chan ackJob, ackDepth)
	var ackFailed atomic.Bool
	var ackErr error
	wg.Go(func() { ackErr = p.ackLoop(ctx, acks, &ackFailed) })

	var sendErr error
	stopped := false // the sending step stopped the collecting step (whose error then does not count)
	for out := range prepared {
		if ackFailed.Load() {
			stopped = true
			break
		}
		if out.Header.FirstSeq <= p.sent {
			p.r.m.BundlesResent.WithLabelValues(p.lane).Inc()
		}
		p.sent = max(p.sent, out.Header.LastSeq)
		ack, err := p.deliver(ctx, out)
		if err != nil || ack == nil {
			sendErr, stopped = err, true
			break
		}
		select {
		case acks <- ackJob{raw: ack, h: out.Header}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			stopped = true
			break
		}
	}
	stopPrepare()
	for range prepared { // let the collecting step see it was stopped
	}
	close(acks)
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if stopped {
		prepErr = nil
	}
	return errors.Join(sendErr, prepErr, ackErr)
}

// prepareLoop collects, seals and records the lane's bundles after after, one after the
// other, handing each to the sending step; it waits for new messages when there are none.
func (p *pusher) prepareLoop(ctx context.Context, after int64, out chan<- *outgoing) error {
	for ctx.Err() == nil {
		st, changed := p.r.watch.lane(p.lane)
		var o *outgoing
		if st.LastSeq > after {
			var err error
			o, err = p.r.prepare(ctx, p.lane, after, p.t.Addr())
			if errors.Is(err, errRetired) {
				return fmt.Errorf("the peer asked for sequences this side already saw acknowledged and retired (restored peer database?): %w", err)
			}
			if err != nil {
				return err
			}
		}
		if o == nil {
			select {
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		select {
		case out <- o:
			after = o.Header.LastSeq
		case <-ctx.Done():
		}
	}
	return ctx.Err()
}

// ackLoop verifies, audits and retires the acknowledgements in order. After a failure it
// reports it through failed and only drains the rest: those bundles are sent again.
func (p *pusher) ackLoop(ctx context.Context, acks <-chan ackJob, failed *atomic.Bool) error {
	var first error
	for job := range acks {
		if first != nil || ctx.Err() != nil {
			continue
		}
		a, err := p.r.acknowledged(ctx, job.raw, &job.h, p.t.Addr())
		if err != nil {
			first = fmt.Errorf("bundle %s: %w", job.h, err)
			failed.Store(true)
			continue
		}
		p.acked.Store(max(p.acked.Load(), a.Seq))
	}
	return first
}

// deliver sends out until the peer answers it, resending the same bytes after transport errors
// and timeouts, and returns the peer's acknowledgement. It returns nil and no error when the
// peer reported a sequence gap (p.resume says where to start again), and an error when the peer
// refused the bundle or ctx ended.
func (p *pusher) deliver(ctx context.Context, out *outgoing) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, p.r.cfg.ResendAfter)
		ackRaw, err := p.t.Push(rctx, out.Bytes())
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var gap *GapError
		var pe *PeerError
		switch {
		case err == nil:
			p.r.failpoint(FailAfterBundleWrite)
			p.r.linkUp(true)
			p.backoff.reset()
			return ackRaw, nil
		case errors.As(err, &gap):
			p.r.linkUp(true)
			p.resume = gap.Expected
			p.r.log.Info("relay: peer asked for a resend", "lane", p.lane, "from", gap.Expected, "bundle", out.Header.BundleID)
			return nil, nil
		case errors.As(err, &pe) && !pe.Temporary():
			p.r.linkUp(true)
			return nil, fmt.Errorf("peer refused bundle %s: %w", out.Header, err)
		case errors.As(err, &pe):
			p.r.linkUp(true)
		default:
			p.r.linkUp(false)
		}
		p.r.log.Warn("relay: push failed; will resend", "bundle", out.Header.String(), "attempt", attempt, "err", err)
		if !p.backoff.wait(ctx) {
			return nil, ctx.Err()
		}
		p.r.m.BundlesResent.WithLabelValues(p.lane).Inc()
	}
}
