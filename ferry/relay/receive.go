package relay

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/inbox"
	"finepay/shared/gm"
)

// Accept verifies, opens and commits a bundle from the peer and returns the signed
// acknowledgement to send back. remote names where it came from, for the records.
//
// A bundle committed before is acknowledged again and changes nothing (bundle.duplicate). One
// that starts past the lane's next sequence gives a *GapError and changes nothing. One that
// fails verification is quarantined, audited (bundle.rejected) and refused with a
// *RejectedError. When the audit trail or the database fails the result wraps ErrUnavailable,
// and nothing is acknowledged.
func (r *Relay) Accept(ctx context.Context, raw []byte, remote string) ([]byte, error) {
	r.touch()
	b, msgs, err := bundle.OpenParsed(raw, r.cfg.Keys.PeerSign, r.cfg.Keys.Decrypter, r.cfg.Limits)
	var h bundle.Header
	if err == nil {
		h = b.Header
		err = r.checkBundle(h)
	}
	if err != nil {
		return nil, r.reject(ctx, raw, remote, err)
	}
	unlock := r.locks.lock(h.Lane)
	defer unlock()
	for stale := 0; ; {
		hwm, cached, err := r.inMarks.get(ctx, h.Lane, r.hwm)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if cached && (h.LastSeq <= hwm || h.FirstSeq > hwm+1) {
			r.inMarks.set(h.Lane, 0, false) // a duplicate or a gap is decided on the stored mark
			continue
		}
		var ack []byte
		switch {
		case h.LastSeq <= hwm:
			ack, err = r.duplicate(ctx, h, remote, hwm)
		case h.FirstSeq > hwm+1:
			return nil, r.gap(ctx, h, remote, hwm)
		default:
			ack, err = r.commit(ctx, b, msgs, remote, hwm)
			if errors.Is(err, errStaleMark) {
				// The lane moved without this relay: decide again on the stored mark. Read
				// from the database, it can only move by another writer of the same lane (a
				// second relay on this database); after a few tries the sender is asked to
				// come back.
				if stale++; cached || stale < 3 {
					continue
				}
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			return ack, err
		}
		return r.keepReceived(ctx, b, msgs, ack, err)
	}
}

// errStaleMark: the lane's stored mark is not the one the relay went by.
var errStaleMark = errors.New("relay: the lane's mark moved")

// laneMarks keeps the receiving lanes' high-water marks as this relay last committed them, so that
// a bundle is not preceded by a read of its lane's mark. A kept mark is only a guide: the commit
// checks it against the stored one, and a mismatch drops it and the bundle is taken again.
type laneMarks struct {
	mu sync.Mutex
	m  map[string]int64
}

func (k *laneMarks) get(ctx context.Context, lane string, read func(context.Context, string) (int64, error)) (hwm int64, cached bool, err error) {
	if hwm, cached = k.peek(lane); cached {
		return hwm, true, nil
	}
	hwm, err = read(ctx, lane)
	return hwm, false, err
}

// peek returns lane's kept mark, if there is one.
func (k *laneMarks) peek(lane string) (int64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	hwm, ok := k.m[lane]
	return hwm, ok
}

// set keeps lane's mark; ok false forgets it.
func (k *laneMarks) set(lane string, hwm int64, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]int64{}
	}
	if ok {
		k.m[lane] = hwm
	} else {
		delete(k.m, lane)
	}
}

// checkBundle checks what Open cannot know: who may send to whom, and in which direction.
func (r *Relay) checkBundle(h bundle.Header) error {
	if h.From != r.cfg.Peer || h.To != r.cfg.Node {
		return fmt.Errorf("%w: bundle from %q to %q, this link is %q to %q", ErrWrongParty, h.From, h.To, r.cfg.Peer, r.cfg.Node)
	}
	if dir, err := bundle.LaneDirection(h.Lane); err != nil || dir != r.cfg.Side.Receives() {
		return fmt.Errorf("%w: lane %s (this side receives %s)", ErrForbiddenLane, h.Lane, r.cfg.Side.Receives())
	}
	return nil
}

func (r *Relay) hwm(ctx context.Context, lane string) (int64, error) {
	var hwm int64
	err := r.cfg.DB.QueryRowContext(ctx, `SELECT hwm FROM ferry_lane_in WHERE peer = $1 AND lane = $2`, r.cfg.Peer, lane).Scan(&hwm)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("relay: lane %s high-water mark: %w", lane, err)
	}
	return hwm, nil
}

// commit commits a bundle's messages, its bundle.received record and its evidence (with the
// acknowledgement made for it) together, as one statement on PostgreSQL (statement.go) or one
// transaction, and returns the acknowledgement. hwm is the lane's mark the relay decided on:
// when the stored one differs, nothing is committed and the error is errStaleMark.
func (r *Relay) commit(ctx context.Context, b *bundle.Parsed, msgs []inbox.Incoming, remote string, hwm int64) ([]byte, error) {
	h := b.Header
	peer := r.peerName(remote)
	if sev, ok := r.statements(); ok {
		ack, err := r.sealAck(h.Lane, max(hwm, h.LastSeq), h.BundleID)
		if err != nil {
			return nil, err
		}
		r.failpoint(FailAfterReceiveBeforeCommit)
		applied, err := r.receiveStatement(ctx, sev, b, msgs, ack, hwm, bundleRecord(audit.BundleReceived, audit.OK, h, peer, ""))
		if err == nil {
			r.inMarks.set(h.Lane, max(hwm, h.LastSeq), true)
			r.received(h, applied, h.Count()-applied)
			return ack, nil
		}
		r.inMarks.set(h.Lane, 0, false)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: commit %s: %w", ErrUnavailable, h, err)
		}
		// Nothing of it was applied: take the bundle again as a transaction, which tells why.
	}
	ev, txEv := r.txEvidence()
	var res inbox.Result
	var ack []byte
	var stepErr error
	err := r.cfg.Audit.Commit(ctx, func(ctx context.Context, tx *sql.Tx) ([]audit.Record, error) {
		var err error
		stepErr = nil
		res, err = inbox.ReceiveTx(ctx, r.cfg.DB.Dialect, tx, r.cfg.Peer, h.Lane, h.BundleID, msgs, r.now())
		if err == nil && res.Before != hwm {
			err = fmt.Errorf("%w: lane %s is at %d, not %d", errStaleMark, h.Lane, res.Before, hwm)
		}
		if err == nil {
			ack, err = r.sealAck(h.Lane, res.HWM, h.BundleID)
		}
		if err == nil && txEv {
			err = ev.ReceivedTx(ctx, tx, b, msgs, ack)
		}
		if err != nil {
			stepErr = err
			return nil, err
		}
		r.failpoint(FailAfterReceiveBeforeCommit)
		return []audit.Record{bundleRecord(audit.BundleReceived, audit.OK, h, peer, "")}, nil
	})
	r.inMarks.set(h.Lane, res.HWM, err == nil)
	switch {
	case errors.Is(stepErr, errStaleMark):
		return nil, stepErr
	case err != nil && errors.Is(stepErr, inbox.ErrGap):
		return nil, r.gap(ctx, h, remote, res.HWM)
	case err != nil && stepErr != nil:
		rec := bundleRecord(audit.BundleRejected, audit.Error, h, peer, "commit failed: "+err.Error())
		if aerr := r.cfg.Audit.Record(ctx, rec); aerr != nil {
			r.log.Error("relay: cannot audit failed commit", "bundle", h.BundleID, "err", aerr)
		}
		return nil, fmt.Errorf("%w: commit %s: %w", ErrUnavailable, h, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err) // the audit trail (or the database) failed
	}
	r.received(h, res.Applied, res.Duplicates)
	if r.cfg.Evidence != nil && !txEv {
		return r.keepReceived(ctx, b, msgs, ack, nil)
	}
	return ack, nil
}

// received notes a committed bundle.
func (r *Relay) received(h bundle.Header, applied, duplicates int) {
	r.failpoint(FailAfterCommitBeforeAck)
	r.m.BundlesReceived.WithLabelValues(h.Lane).Inc()
	r.m.MessagesReceived.Add(float64(applied))
	r.log.Debug("relay: bundle received", "bundle", h.BundleID, "lane", h.Lane, "first", h.FirstSeq, "last", h.LastSeq,
		"applied", applied, "duplicates", duplicates)
}

func (r *Relay) duplicate(ctx context.Context, h bundle.Header, remote string, hwm int64) ([]byte, error) {
	reason := fmt.Sprintf("already committed up to %d; acknowledged again", hwm)
	if err := r.record(ctx, bundleRecord(audit.BundleDuplicate, audit.OK, h, r.peerName(remote), reason)); err != nil {
		return nil, err
	}
	return r.sealAck(h.Lane, hwm, h.BundleID)
}

func (r *Relay) gap(ctx context.Context, h bundle.Header, remote string, hwm int64) error {
	reason := fmt.Sprintf("gap: lane expects %d, bundle starts at %d; asked for a resend", hwm+1, h.FirstSeq)
	r.m.BundlesRejected.WithLabelValues("gap").Inc()
	if err := r.record(ctx, bundleRecord(audit.BundleRejected, audit.Rejected, h, r.peerName(remote), reason)); err != nil {
		return err
	}
	return &GapError{Lane: h.Lane, Expected: hwm + 1}
}

// reject quarantines and audits a bundle that failed verification.
func (r *Relay) reject(ctx context.Context, raw []byte, remote string, cause error) error {
	word := reasonOf(cause)
	r.m.BundlesRejected.WithLabelValues(word).Inc()
	reason := word + ": " + cause.Error()
	name, qerr := r.quarantine(raw)
	switch {
	case qerr != nil:
		reason += "; quarantine failed: " + qerr.Error()
		r.log.Error("relay: quarantine", "err", qerr)
	case name != "":
		reason += "; quarantined as " + name
	}
	rec := audit.Record{Event: audit.BundleRejected, Result: audit.Rejected, Peer: r.peerName(remote), Reason: reason}
	if p, err := bundle.Parse(raw, r.cfg.Limits); err == nil {
		rec = bundleRecord(audit.BundleRejected, audit.Rejected, p.Header, rec.Peer, reason+" (header fields unverified)")
	}
	r.log.Warn("relay: bundle rejected", "reason", word, "remote", remote, "err", cause, "quarantined", name)
	if err := r.record(ctx, rec); err != nil {
		return err
	}
	return &RejectedError{Reason: word, Err: cause}
}

// quarantine keeps the raw bytes of a rejected bundle as DIR/<hex SM3>.bundle and returns that
// name. It writes to a temporary name, syncs, then renames.
func (r *Relay) quarantine(raw []byte) (string, error) {
	if r.cfg.Quarantine == "" {
		return "", nil
	}
	sum := gm.SM3(raw)
	name := hex.EncodeToString(sum[:]) + ".bundle"
	if err := os.MkdirAll(r.cfg.Quarantine, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(r.cfg.Quarantine, ".incoming-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(r.cfg.Quarantine, name))
	}
	if err == nil {
		err = syncDir(r.cfg.Quarantine) // the rename survives a power cut
	}
	return name, err
}

// syncDir fsyncs a directory, making the names created or renamed in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (r *Relay) sealAck(lane string, seq int64, bundleID string) ([]byte, error) {
	a := bundle.Ack{From: r.cfg.Node, To: r.cfg.Peer, Lane: lane, Seq: seq, BundleID: bundleID, At: r.now()}
	raw, err := bundle.SealAck(r.cfg.Rand, a, r.cfg.Keys.Signer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return raw, nil
}
