package relay

import (
	"context"
	"database/sql"
	"fmt"

	"finepay/ferry/bundle"
	"finepay/ferry/inbox"
)

// Evidence keeps the proof of each bundle's origin and receipt (non-repudiation): the sender's
// signed bundle and the receiver's signed acknowledgement, on both sides. Package evidence
// implements it. Like the audit trail it is written ahead and fail-closed: a bundle is not sent
// unless Sent succeeded, outbox rows are not retired unless Acknowledged did, and an
// acknowledgement is not given unless Received did (the sender then sends again, and the
// duplicate's acknowledgement brings it).
type Evidence interface {
	// Sent keeps a bundle before it is first sent; ids are its messages' IDs in sequence order.
	Sent(ctx context.Context, b *bundle.Parsed, ids []string) error
	// Acknowledged keeps a verified acknowledgement from the peer.
	Acknowledged(ctx context.Context, raw []byte, a bundle.Ack) error
	// Received keeps a verified, committed bundle and the acknowledgement made for it.
	Received(ctx context.Context, b *bundle.Parsed, msgs []inbox.Incoming, ack []byte) error
}

// TxEvidence is Evidence that keeps its rows inside a transaction of the relay's, so that they
// commit together with the step they prove and its audit record (package evidence's Store is
// one). The relay then needs one transaction per step instead of three.
type TxEvidence interface {
	Evidence
	SentTx(ctx context.Context, tx *sql.Tx, b *bundle.Parsed, ids []string) error
	AcknowledgedTx(ctx context.Context, tx *sql.Tx, raw []byte, a bundle.Ack) error
	ReceivedTx(ctx context.Context, tx *sql.Tx, b *bundle.Parsed, msgs []inbox.Incoming, ack []byte) error
}

// txEvidence returns the evidence store if it keeps its rows in the relay's transactions.
func (r *Relay) txEvidence() (TxEvidence, bool) {
	ev, ok := r.cfg.Evidence.(TxEvidence)
	return ev, ok
}

// keepSent keeps the evidence of a bundle about to be sent.
func (r *Relay) keepSent(ctx context.Context, o *outgoing) error {
	if r.cfg.Evidence == nil {
		return nil
	}
	if err := r.cfg.Evidence.Sent(ctx, o.Parsed, o.ids); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// keepAck keeps a verified acknowledgement from the peer.
func (r *Relay) keepAck(ctx context.Context, raw []byte, a bundle.Ack) error {
	if r.cfg.Evidence == nil {
		return nil
	}
	if err := r.cfg.Evidence.Acknowledged(ctx, raw, a); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// keepReceived keeps a received bundle and the acknowledgement made for it; on failure the
// acknowledgement is not given.
func (r *Relay) keepReceived(ctx context.Context, b *bundle.Parsed, msgs []inbox.Incoming, ack []byte, err error) ([]byte, error) {
	if err != nil || r.cfg.Evidence == nil {
		return ack, err
	}
	if err := r.cfg.Evidence.Received(ctx, b, msgs, ack); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return ack, nil
}
