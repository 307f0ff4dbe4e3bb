package relay

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/outbox"
)

// Driver is a transport that moves bundles by itself instead of being called by the relay's
// pushers and pullers: package spool, which exchanges files with the peer through a gap
// appliance's directories. A spool cannot answer a bundle on the call that carried it (its
// acknowledgement comes back later, as a file of its own), so a driver uses the relay's steps
// directly: Next and Reseal to send; Accept and AcceptAck to receive, the very code the link
// transport runs; Marks, CumulativeAck, Quarantine and Retire for the rest. A driver reads and
// writes local files only, so both sides may run one: the DMZ side still dials nothing.
type Driver interface {
	// Drive moves bundles until ctx ends.
	Drive(ctx context.Context) error
}

// ErrRetired says outbox rows a step needed were retired meanwhile (acknowledged): the caller
// reads the lane's state again.
var ErrRetired = errRetired

// RunDriver works until ctx ends, like Run, with d moving the bundles in place of a Transport.
// It keeps the snapshot of the outgoing lanes fresh (Lanes) and returns d's error, if d stops
// before ctx ends.
func (r *Relay) RunDriver(ctx context.Context, d Driver) error {
	if d == nil {
		return errors.New("relay: no driver")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := r.watch.refresh(ctx); err != nil {
		r.log.Error("relay: read outgoing lanes", "err", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.refreshLoop(ctx) })
	err := d.Drive(ctx)
	if ctx.Err() != nil {
		err = nil
	}
	cancel()
	r.stop()
	wg.Wait()
	return err
}

// refreshLoop reads the outgoing lanes every Poll (watchLoop without the link's liveness).
func (r *Relay) refreshLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.watch.refresh(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("relay: read outgoing lanes", "err", err)
		}
	}
}

// Settings returns the relay's configuration with the defaults applied.
func (r *Relay) Settings() Config { return r.cfg }

// Lanes returns the lanes this side sends, as last read (not to be modified), and a channel
// closed when they next change.
func (r *Relay) Lanes() (map[string]outbox.Lane, <-chan struct{}) {
	all, changed := r.watch.snapshot()
	out := make(map[string]outbox.Lane, len(all))
	for name, l := range all {
		if dir, err := bundle.LaneDirection(name); err == nil && dir == r.cfg.Side.Sends() {
			out[name] = l
		}
	}
	return out, changed
}

// Sealed is a bundle ready to go and its header.
type Sealed struct {
	Raw    []byte
	Header bundle.Header
}

// Next collects (lingering up to Linger), seals and records as sent (bundle.sent) lane's next
// bundle after sequence after; nil when there is nothing to send. remote names the transport
// for the audit record. It fails with ErrRetired when rows after after were already retired.
func (r *Relay) Next(ctx context.Context, lane string, after int64, remote string) (*Sealed, error) {
	out, err := r.prepare(ctx, lane, after, remote)
	if err != nil || out == nil {
		return nil, err
	}
	return &Sealed{Raw: out.Bytes(), Header: out.Header}, nil
}

// Reseal seals again the bundle h describes (as Next returned it): the same bundle ID, creation
// time, sequences and messages, under a fresh key and signature. It records nothing, since the
// bundle was recorded as sent when Next made it. It fails with ErrRetired when the rows were
// retired meanwhile.
func (r *Relay) Reseal(ctx context.Context, h bundle.Header) ([]byte, error) {
	n := h.LastSeq - h.FirstSeq + 1
	if h.FirstSeq < 1 || n < 1 || n > int64(r.cfg.Limits.MaxMessages) {
		return nil, fmt.Errorf("relay: reseal %s: bad range", h)
	}
	rows, err := outbox.Pending(ctx, r.cfg.DB, h.Lane, h.FirstSeq-1, int(n), math.MaxInt32)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if int64(len(rows)) != n || rows[0].Seq != h.FirstSeq {
		return nil, fmt.Errorf("%w: lane %s: rows %d..%d are gone", errRetired, h.Lane, h.FirstSeq, h.LastSeq)
	}
	msgs := make([][]byte, len(rows))
	for i, row := range rows {
		msgs[i] = row.Envelope
	}
	again := bundle.Header{BundleID: h.BundleID, From: r.cfg.Node, To: r.cfg.Peer, Lane: h.Lane, FirstSeq: h.FirstSeq, Created: h.Created}
	raw, got, err := bundle.Seal(r.cfg.Rand, again, msgs, r.cfg.Keys.Signer, r.cfg.Keys.PeerEnc)
	if err != nil {
		return nil, err
	}
	if !slices.Equal(got.Digests, h.Digests) {
		return nil, fmt.Errorf("relay: reseal %s: the outbox rows no longer match the bundle's digests", h)
	}
	return raw, nil
}

// Marks returns the high-water mark of each lane this side receives.
func (r *Relay) Marks(ctx context.Context) (map[string]int64, error) { return r.marks(ctx) }

// CumulativeAck seals an acknowledgement of lane up to seq not tied to a bundle (empty bundle
// ID), for acknowledgements that must be given again.
func (r *Relay) CumulativeAck(lane string, seq int64) ([]byte, error) {
	return r.sealAck(lane, seq, "")
}

// Quarantine keeps raw in the quarantine directory as <hex SM3>.bundle and returns that name
// ("" when no directory is configured). Accept quarantines the bundles it rejects by itself;
// this is for the other files a transport refuses.
func (r *Relay) Quarantine(raw []byte) (string, error) { return r.quarantine(raw) }

// Retire retires lane's outbox rows up to seq without an acknowledgement, for a transport with
// no way back (the spool's one-way mode). It first records event (result ok, with reason) and
// retires nothing when that fails; rows already retired are left alone, and seq is cut to the
// last sequence sent.
func (r *Relay) Retire(ctx context.Context, lane string, seq int64, event, reason string) error {
	sent, acked, err := r.laneOut(ctx, lane)
	if err != nil {
		return err
	}
	seq = min(seq, sent)
	if seq <= acked {
		return nil
	}
	rec := audit.Record{Event: event, Result: audit.OK, Lane: lane, FirstSeq: acked + 1, LastSeq: seq, Peer: r.cfg.Peer, Reason: reason}
	if err := r.record(ctx, rec); err != nil {
		return err
	}
	if _, err := outbox.Ack(ctx, r.cfg.DB, lane, seq, r.now()); err != nil {
		return fmt.Errorf("%w: retire %s up to %d: %w", ErrUnavailable, lane, seq, err)
	}
	if err := r.watch.refresh(ctx); err != nil {
		r.log.Warn("relay: read outgoing lanes", "err", err)
	}
	return nil
}
