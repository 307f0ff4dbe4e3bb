package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"finepay/ferry/bundle"
)

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

// pusher sends one lane's bundles, one at a time.
type pusher struct {
	r       *Relay
	t       Transport
	lane    string
	backoff *backoff
	acked   int64 // the highest sequence the peer acknowledged, as this pusher knows it
	resume  int64 // when > 0, the sequence the peer asked for (sequence gap)
}

func (p *pusher) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := p.step(ctx)
		if err == nil {
			p.backoff.reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		p.r.log.Warn("relay: push", "lane", p.lane, "err", err)
		p.backoff.wait(ctx)
	}
}

// step sends the lane's next bundle, or waits for one.
func (p *pusher) step(ctx context.Context) error {
	st, changed := p.r.watch.lane(p.lane)
	after := max(st.AckedSeq, p.acked)
	if p.resume > 0 {
		after, p.resume = p.resume-1, 0
	}
	var out *outgoing
	if st.LastSeq > after {
		var err error
		out, err = p.r.prepare(ctx, p.lane, after, p.t.Addr())
		if errors.Is(err, errRetired) {
			return fmt.Errorf("the peer asked for sequences this side already saw acknowledged and retired (restored peer database?): %w", err)
		}
		if err != nil {
			return err
		}
	}
	if out == nil {
		select {
		case <-ctx.Done():
		case <-changed:
		}
		return nil
	}
	return p.deliver(ctx, out)
}

// deliver sends out until the peer acknowledges it, resending the same bytes after transport
// errors and timeouts. A sequence gap or a refusal ends it: the next step seals afresh.
func (p *pusher) deliver(ctx context.Context, out *outgoing) error {
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, p.r.cfg.ResendAfter)
		ackRaw, err := p.t.Push(rctx, out.raw)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var gap *GapError
		var pe *PeerError
		switch {
		case err == nil:
			p.r.linkUp(true)
			a, err := p.r.acknowledged(ctx, ackRaw, &out.h, p.t.Addr())
			if err != nil {
				return fmt.Errorf("bundle %s: %w", out.h, err)
			}
			p.acked = a.Seq
			p.backoff.reset()
			return nil
		case errors.As(err, &gap):
			p.r.linkUp(true)
			p.resume = gap.Expected
			p.r.log.Info("relay: peer asked for a resend", "lane", p.lane, "from", gap.Expected, "bundle", out.h.BundleID)
			return nil
		case errors.As(err, &pe) && !pe.Temporary():
			p.r.linkUp(true)
			return fmt.Errorf("peer refused bundle %s: %w", out.h, err)
		case errors.As(err, &pe):
			p.r.linkUp(true)
		default:
			p.r.linkUp(false)
		}
		p.r.log.Warn("relay: push failed; will resend", "bundle", out.h.String(), "attempt", attempt, "err", err)
		if !p.backoff.wait(ctx) {
			return ctx.Err()
		}
	}
}
