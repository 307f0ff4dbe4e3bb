package relay

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/outbox"
)

// outgoing is a sealed bundle.
type outgoing struct {
	*bundle.Parsed          // its SignedMessage computed once, for the evidence too
	ids            []string // message IDs, in sequence order
}

// envelopeBudget is how many bytes of envelopes fit in a bundle.
func (r *Relay) envelopeBudget() int {
	return r.cfg.Limits.MaxBytes - bundle.Overhead(r.cfg.Limits.MaxMessages)
}

// pending reads up to a bundle's worth of lane's rows after after, as far as their sequences
// are contiguous. When the next row is missing it closes the gap if it has been missing long
// enough (gap.go) and reads again; it fails with errRetired when the next row was already
// retired (the peer is behind what it acknowledged).
func (r *Relay) pending(ctx context.Context, lane string, after int64) ([]outbox.Row, error) {
	for range 2 {
		rows, err := outbox.Pending(ctx, r.cfg.DB, lane, after, r.cfg.Limits.MaxMessages, r.envelopeBudget())
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		n := 0
		for n < len(rows) && rows[n].Seq == after+1+int64(n) {
			n++
		}
		if n > 0 {
			r.gapClosed(lane)
			r.failpoint(FailAfterOutboxRead)
			return rows[:n], nil
		}
		st, _ := r.watch.lane(lane)
		if filled, err := r.closeGap(ctx, lane, after, rows, st.LastSeq); err != nil || !filled {
			return nil, err
		}
	}
	return nil, nil
}

// collect is pending, after lingering for up to linger when the lane, as last seen, does not
// hold a full bundle's worth of messages: the rows are read once.
func (r *Relay) collect(ctx context.Context, lane string, after int64, linger time.Duration) ([]outbox.Row, error) {
	if st, _ := r.watch.lane(lane); linger > 0 && st.LastSeq-after < int64(r.cfg.Limits.MaxMessages) {
		t := time.NewTimer(linger)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.stopping:
		case <-t.C:
		}
	}
	return r.pending(ctx, lane, after)
}

// seal builds a bundle of rows (consecutive, of one lane), halving it in the unlikely case
// that it comes out larger than the limit.
func (r *Relay) seal(lane string, rows []outbox.Row) (*outgoing, error) {
	id, err := bundle.NewID(r.cfg.Rand)
	if err != nil {
		return nil, err
	}
	for {
		msgs := make([][]byte, len(rows))
		for i, row := range rows {
			msgs[i] = row.Envelope
		}
		h := bundle.Header{BundleID: id, From: r.cfg.Node, To: r.cfg.Peer, Lane: lane, FirstSeq: rows[0].Seq, Created: r.now()}
		p, err := bundle.SealParsed(r.cfg.Rand, h, msgs, r.cfg.Keys.Signer, r.cfg.Keys.PeerEnc)
		if err != nil {
			return nil, err
		}
		if len(p.Bytes()) <= r.cfg.Limits.MaxBytes || len(rows) == 1 {
			ids := make([]string, len(rows))
			for i, row := range rows {
				ids[i] = row.MessageID
			}
			return &outgoing{Parsed: p, ids: ids}, nil
		}
		rows = rows[:len(rows)/2]
	}
}

// prepare collects, seals and announces the lane's next bundle after after; nil when there
// is nothing to send.
func (r *Relay) prepare(ctx context.Context, lane string, after int64, remote string) (*outgoing, error) {
	rows, err := r.collect(ctx, lane, after, r.cfg.Linger)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	out, err := r.seal(lane, rows)
	if err != nil {
		return nil, err
	}
	if err := r.announce(ctx, out, remote); err != nil {
		return nil, err
	}
	return out, nil
}

// announce records a bundle as sent (and keeps its evidence): it must not be sent when this
// fails. The record and the evidence commit together, as one statement on PostgreSQL
// (statement.go) or one transaction.
func (r *Relay) announce(ctx context.Context, o *outgoing, remote string) error {
	rec := bundleRecord(audit.BundleSent, audit.OK, o.Header, r.peerName(remote), "")
	if sev, ok := r.statements(); ok {
		err := r.announceStatement(ctx, sev, o, rec)
		if err == nil {
			r.m.BundlesSent.WithLabelValues(o.Header.Lane).Inc()
			r.m.MessagesSent.Add(float64(o.Header.Count()))
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		// Nothing of it was applied: record it again as a transaction, which tells why.
	}
	ev, txEv := r.txEvidence()
	err := r.cfg.Audit.Commit(ctx, func(ctx context.Context, tx *sql.Tx) ([]audit.Record, error) {
		if err := outbox.SentTx(ctx, tx, o.Header.Lane, o.Header.LastSeq); err != nil {
			return nil, err
		}
		if txEv {
			if err := ev.SentTx(ctx, tx, o.Parsed, o.ids); err != nil {
				return nil, err
			}
		}
		return []audit.Record{rec}, nil
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !txEv {
		// An evidence store of its own transactions keeps it after the record; the bundle is
		// not sent when this fails.
		if err := r.keepSent(ctx, o); err != nil {
			return err
		}
	}
	r.m.BundlesSent.WithLabelValues(o.Header.Lane).Inc()
	r.m.MessagesSent.Add(float64(o.Header.Count()))
	return nil
}

// acknowledged handles a signed acknowledgement from the peer: it verifies it, audits it
// (ack.received) and retires what it covers. want, when not nil, is the bundle it must answer.
func (r *Relay) acknowledged(ctx context.Context, raw []byte, want *bundle.Header, remote string) (bundle.Ack, error) {
	peer := r.peerName(remote)
	ev, txEv := r.txEvidence()
	oneTx := txEv || r.cfg.Evidence == nil
	a, err := bundle.OpenAck(raw, r.cfg.Keys.PeerSign)
	if err == nil {
		err = r.checkAck(a, want)
	}
	if err == nil && !oneTx {
		err = r.checkAckSent(ctx, a)
	}
	if err != nil {
		return bundle.Ack{}, r.ackRejected(ctx, a, peer, err)
	}
	rec := audit.Record{Event: audit.AckReceived, Result: audit.OK, Lane: a.Lane, LastSeq: a.Seq, BundleID: a.BundleID, Peer: peer}
	if !oneTx {
		if err := r.record(ctx, rec); err != nil {
			return bundle.Ack{}, err
		}
		if err := r.keepAck(ctx, raw, a); err != nil {
			return bundle.Ack{}, err
		}
		return a, r.retire(ctx, a, want, peer)
	}
	if sev, ok := r.statements(); ok {
		if before, known := r.outAcked.peek(a.Lane); known && a.Seq > before {
			recs := []audit.Record{rec, r.acknowledgedRecord(a, want, peer, before)}
			err := r.ackStatement(ctx, sev, raw, a, before, recs)
			if err == nil {
				r.outAcked.set(a.Lane, a.Seq, true)
				return a, nil
			}
			if ctx.Err() != nil {
				return bundle.Ack{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
		}
		r.outAcked.set(a.Lane, 0, false) // nothing of it was applied: the transaction below tells why
	}
	// One transaction: the evidence, the retired rows and both records (ack.received, and
	// bundle.acknowledged when rows were retired) commit together or not at all. Retiring
	// checks that the acknowledgement covers only sequences sent.
	var acked int64
	err = r.cfg.Audit.Commit(ctx, func(ctx context.Context, tx *sql.Tx) ([]audit.Record, error) {
		_, before, err := outbox.AckTx(ctx, tx, r.cfg.DB.Dialect, a.Lane, a.Seq, r.now())
		acked = max(before, a.Seq)
		if errors.Is(err, outbox.ErrAckBeyondSent) {
			return nil, fmt.Errorf("%w: %w", ErrAckBeyondSent, err)
		}
		if err != nil {
			return nil, fmt.Errorf("retire %s up to %d: %w", a.Lane, a.Seq, err)
		}
		if txEv {
			if err := ev.AcknowledgedTx(ctx, tx, raw, a); err != nil {
				return nil, err
			}
		}
		recs := []audit.Record{rec}
		if a.Seq > before {
			recs = append(recs, r.acknowledgedRecord(a, want, peer, before))
		}
		return recs, nil
	})
	if errors.Is(err, ErrAckBeyondSent) {
		return bundle.Ack{}, r.ackRejected(ctx, a, peer, err)
	}
	if err != nil {
		return bundle.Ack{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	r.outAcked.set(a.Lane, acked, true)
	return a, nil
}

// ackRejected audits and counts an acknowledgement that failed verification.
func (r *Relay) ackRejected(ctx context.Context, a bundle.Ack, peer string, err error) error {
	word := reasonOf(err)
	r.m.BundlesRejected.WithLabelValues("ack_" + word).Inc()
	rec := audit.Record{Event: audit.AckReceived, Result: audit.Rejected, Lane: a.Lane, LastSeq: a.Seq,
		BundleID: a.BundleID, Peer: peer, Reason: word + ": " + err.Error()}
	if aerr := r.record(ctx, rec); aerr != nil {
		return aerr
	}
	return &RejectedError{Reason: word, Err: err}
}

func (r *Relay) acknowledgedRecord(a bundle.Ack, want *bundle.Header, peer string, acked int64) audit.Record {
	rec := audit.Record{Event: audit.BundleAcknowledged, Result: audit.OK, BundleID: a.BundleID, Lane: a.Lane,
		FirstSeq: acked + 1, LastSeq: a.Seq, Peer: peer}
	if want != nil {
		rec.Digests = want.Digests
	}
	return rec
}

// checkAck checks an acknowledgement's parties, lane and bundle.
func (r *Relay) checkAck(a bundle.Ack, want *bundle.Header) error {
	if a.From != r.cfg.Peer || a.To != r.cfg.Node {
		return fmt.Errorf("%w: acknowledgement from %q to %q", ErrWrongParty, a.From, a.To)
	}
	if dir, err := bundle.LaneDirection(a.Lane); err != nil || dir != r.cfg.Side.Sends() {
		return fmt.Errorf("%w: acknowledgement for lane %s", ErrForbiddenLane, a.Lane)
	}
	if want != nil && (a.Lane != want.Lane || a.BundleID != want.BundleID) {
		return fmt.Errorf("%w: acknowledgement for %s %s, sent %s", bundle.ErrSequence, a.Lane, a.BundleID, want)
	}
	return nil
}

// checkAckSent checks that an acknowledgement covers only sequences sent.
func (r *Relay) checkAckSent(ctx context.Context, a bundle.Ack) error {
	sent, _, err := r.laneOut(ctx, a.Lane)
	if err != nil {
		return err
	}
	if a.Seq > sent {
		return fmt.Errorf("%w: lane %s acknowledged up to %d, sent up to %d", ErrAckBeyondSent, a.Lane, a.Seq, sent)
	}
	return nil
}

// retire records bundle.acknowledged and retires the outbox rows an acknowledgement covers, if
// it covers any not yet retired (for evidence stores that keep their own transactions).
func (r *Relay) retire(ctx context.Context, a bundle.Ack, want *bundle.Header, peer string) error {
	_, acked, err := r.laneOut(ctx, a.Lane)
	if err != nil || a.Seq <= acked {
		return err
	}
	if err := r.record(ctx, r.acknowledgedRecord(a, want, peer, acked)); err != nil {
		return err
	}
	if _, err := outbox.Ack(ctx, r.cfg.DB, a.Lane, a.Seq, r.now()); err != nil {
		return fmt.Errorf("%w: retire %s up to %d: %w", ErrUnavailable, a.Lane, a.Seq, err)
	}
	return nil
}

// laneOut reads an outgoing lane's last sequence recorded as sent and its acknowledged one.
func (r *Relay) laneOut(ctx context.Context, lane string) (sent, acked int64, err error) {
	err = r.cfg.DB.QueryRowContext(ctx, `SELECT `+outbox.SentSQL("$1")+`,
		coalesce((SELECT a.acked_seq FROM ferry_lane_acked a WHERE a.lane = $1), 0)`, lane).Scan(&sent, &acked)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: lane %s: %w", ErrUnavailable, lane, err)
	}
	return sent, acked, nil
}

// backoff is a bounded exponential backoff with full jitter.
type backoff struct {
	r   *Relay
	n   int
	min time.Duration
}

func (r *Relay) newBackoff() *backoff { return &backoff{r: r, min: 100 * time.Millisecond} }

func (b *backoff) reset() { b.n = 0 }

// next returns the next backoff interval: the n-th is drawn uniformly from [c/2, c] with
// c = min(MaxBackoff, 100ms·2ⁿ), so that senders that failed together do not retry together.
func (b *backoff) next() time.Duration {
	d := min(b.r.cfg.MaxBackoff, b.min<<min(b.n, 20))
	b.n++
	var buf [8]byte
	if _, err := b.r.cfg.Rand.Read(buf[:]); err == nil {
		d = d/2 + time.Duration(binary.BigEndian.Uint64(buf[:])%uint64(d/2+1))
	}
	return d
}

// wait sleeps for the next backoff interval; false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
