// Package evidence keeps and checks the ferry's non-repudiation evidence (GB/T 39786 8.4 h:
// evidence of origin and of receipt), one row per bundle and side in ferry_evidence:
//
//   - the sender keeps what it signed (role "sent") when it first sends a bundle, and the
//     receiver's signed acknowledgement once one arrives that covers the bundle;
//   - the receiver keeps what the sender signed (role "received") and the acknowledgement it
//     made, once it verified and committed the bundle.
//
// Of a bundle, the signed part is kept: the preamble and header (with the SM3 digest of each
// message) followed by the SM3 digest of wrapped key, nonce and ciphertext, exactly the bytes the
// sender's SM2 signature covers, and the signature. The ciphertext is not kept: it adds nothing
// to the proof (the header binds each message by its digest, and the receiver's inbox holds the
// messages themselves), and the sender could not decrypt it anyway. Which bundles carried which
// message ID is kept in ferry_evidence_message.
//
// Store implements relay.Evidence; Prove assembles and checks the evidence for one message, for
// ferryctl prove. Certificates are kept by fingerprint in ferry_cert (audit.PutCert), so that a
// proof names and checks the very certificates that signed.
package evidence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/inbox"
	"finepay/ferry/sqldb"
	"finepay/shared/gm"
)

// Roles: which side of the bundle the evidence is from.
const (
	Sent     = "sent"
	Received = "received"
)

// ErrUnavailable wraps every failure to keep evidence: the relay then fails the step, as it
// does when an audit record cannot be written.
var ErrUnavailable = errors.New("evidence: cannot keep evidence")

// Config configures a Store.
type Config struct {
	DB   *sqldb.DB
	Own  *gm.Certificate  // this ferry's signing certificate
	Peer *gm.Certificate  // the peer ferry's signing certificate
	CA   *gm.Certificate  // their issuer (kept with them; optional)
	Now  func() time.Time // [time.Now]
}

// Store keeps evidence in ferry_evidence.
type Store struct {
	cfg           Config
	ownFP, peerFP string
}

// New returns a Store; Start keeps the certificates.
func New(cfg Config) (*Store, error) {
	if cfg.DB == nil || cfg.Own == nil || cfg.Peer == nil {
		return nil, errors.New("evidence: database and both signing certificates are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{cfg: cfg, ownFP: cfg.Own.Fingerprint(), peerFP: cfg.Peer.Fingerprint()}, nil
}

// Start keeps both signing certificates (and the CA) in ferry_cert.
func (s *Store) Start(ctx context.Context) error {
	now := s.cfg.Now()
	for _, c := range []*gm.Certificate{s.cfg.Own, s.cfg.Peer} {
		if err := audit.PutCert(ctx, s.cfg.DB, c, s.cfg.CA, now); err != nil {
			return err
		}
	}
	return nil
}

// Sent keeps a bundle this ferry signed, before it is first sent; ids are its messages' IDs in
// sequence order.
func (s *Store) Sent(ctx context.Context, b *bundle.Parsed, ids []string) error {
	return s.inTx(ctx, b.Header, func(tx *sql.Tx) error { return s.SentTx(ctx, tx, b, ids) })
}

// SentTx is Sent inside tx, a transaction of the caller's.
func (s *Store) SentTx(ctx context.Context, tx *sql.Tx, b *bundle.Parsed, ids []string) error {
	return s.keep(ctx, tx, Sent, b, ids, s.ownFP, s.peerFP, nil, time.Time{})
}

// Received keeps a bundle this ferry verified and committed and the acknowledgement it made.
func (s *Store) Received(ctx context.Context, b *bundle.Parsed, msgs []inbox.Incoming, ack []byte) error {
	return s.inTx(ctx, b.Header, func(tx *sql.Tx) error { return s.ReceivedTx(ctx, tx, b, msgs, ack) })
}

// ReceivedTx is Received inside tx, a transaction of the caller's (the one that commits the
// bundle's messages).
func (s *Store) ReceivedTx(ctx context.Context, tx *sql.Tx, b *bundle.Parsed, msgs []inbox.Incoming, ack []byte) error {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.Envelope.ID
	}
	p, err := bundle.ParseAck(ack)
	if err != nil {
		return fmt.Errorf("%w: own acknowledgement: %w", ErrUnavailable, err)
	}
	return s.keep(ctx, tx, Received, b, ids, s.peerFP, s.ownFP, ack, p.Ack.At)
}

func (s *Store) inTx(ctx context.Context, h bundle.Header, fn func(tx *sql.Tx) error) error {
	err := s.cfg.DB.Tx(ctx, fn)
	if err != nil && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: bundle %s: %w", ErrUnavailable, h.BundleID, err)
	}
	return err
}

func (s *Store) keep(ctx context.Context, tx *sql.Tx, role string, b *bundle.Parsed, ids []string, senderFP, receiverFP string, ack []byte, ackAt time.Time) error {
	h := b.Header
	if s.cfg.DB.Dialect == sqldb.Postgres {
		// One statement: the bundle's row and, when it is new, its messages' rows.
		clauses, args, err := s.clauses(role, b, ids, senderFP, receiverFP, ack, ackAt, 1)
		if err == nil {
			_, err = tx.ExecContext(ctx, `WITH `+clauses+` SELECT 1`, args...)
		}
		if err != nil && !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: bundle %s: %w", ErrUnavailable, h.BundleID, err)
		}
		return err
	}
	args, err := s.bundleArgs(role, b, ids, senderFP, receiverFP, ack, ackAt)
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, insertBundle(1), args...)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n > 0 { // n == 0: kept before (a bundle seen again)
			err = insertMessages(ctx, s.cfg.DB.Dialect, tx, h, ids)
		}
	}
	if err != nil {
		return fmt.Errorf("%w: bundle %s: %w", ErrUnavailable, h.BundleID, err)
	}
	return nil
}

// bundleArgs are the arguments of insertBundle.
func (s *Store) bundleArgs(role string, p *bundle.Parsed, ids []string, senderFP, receiverFP string, ack []byte, ackAt time.Time) ([]any, error) {
	h := p.Header
	if len(ids) != h.Count() {
		return nil, fmt.Errorf("%w: bundle %s: %d message IDs for %d messages", ErrUnavailable, h.BundleID, len(ids), h.Count())
	}
	var ackAtArg any
	if ack != nil {
		ackAtArg = ackAt.UTC()
	}
	return []any{h.BundleID, role, h.From, h.To, h.Lane, h.FirstSeq, h.LastSeq, strings.Join(h.Digests, ","), p.SignedMessage(),
		p.Signature, senderFP, receiverFP, s.cfg.Now().UTC(), ack, ackAtArg}, nil
}

// insertBundle inserts a bundle's row from its 15 arguments (bundleArgs), numbered from first.
func insertBundle(first int) string {
	n := make([]any, 15)
	for i := range n {
		n[i] = first + i
	}
	return fmt.Sprintf(`INSERT INTO ferry_evidence (bundle_id, role, sender, receiver, lane, first_seq, last_seq,
		digests, signed, signature, sender_fp, receiver_fp, at, ack, ack_at)
		VALUES ($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d) ON CONFLICT (bundle_id, role) DO NOTHING`, n...)
}

// clauses are PostgreSQL WITH clauses (evidence_bundle, evidence_messages) that keep a bundle's
// row and, when it is new, its messages' rows; their arguments are numbered from first.
func (s *Store) clauses(role string, b *bundle.Parsed, ids []string, senderFP, receiverFP string, ack []byte, ackAt time.Time, first int) (string, []any, error) {
	args, err := s.bundleArgs(role, b, ids, senderFP, receiverFP, ack, ackAt)
	if err != nil {
		return "", nil, err
	}
	q := fmt.Sprintf(`evidence_bundle AS (%s RETURNING 1),
		evidence_messages AS (INSERT INTO ferry_evidence_message (message_id, bundle_id, seq)
			SELECT u.id, $%d, $%d + u.n - 1 FROM unnest($%d::text[]) WITH ORDINALITY AS u(id, n)
			WHERE EXISTS (SELECT 1 FROM evidence_bundle)
			ON CONFLICT (message_id, bundle_id) DO NOTHING)`, insertBundle(first), first, first+5, first+15)
	return q, append(args, ids), nil
}

// SentClauses are SentTx as PostgreSQL WITH clauses (evidence_bundle, evidence_messages), for a
// statement of the caller's; their arguments are numbered from first.
func (s *Store) SentClauses(b *bundle.Parsed, ids []string, first int) (string, []any, error) {
	return s.clauses(Sent, b, ids, s.ownFP, s.peerFP, nil, time.Time{}, first)
}

// ReceivedClauses are ReceivedTx as PostgreSQL WITH clauses (evidence_bundle,
// evidence_messages), for a statement of the caller's; their arguments are numbered from first.
func (s *Store) ReceivedClauses(b *bundle.Parsed, msgs []inbox.Incoming, ack []byte, first int) (string, []any, error) {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.Envelope.ID
	}
	p, err := bundle.ParseAck(ack)
	if err != nil {
		return "", nil, fmt.Errorf("%w: own acknowledgement: %w", ErrUnavailable, err)
	}
	return s.clauses(Received, b, ids, s.peerFP, s.ownFP, ack, p.Ack.At, first)
}

// AcknowledgedClauses are AcknowledgedTx as a PostgreSQL WITH clause (evidence_ack), for a
// statement of the caller's; its arguments are numbered from first.
func (s *Store) AcknowledgedClauses(raw []byte, a bundle.Ack, first int) (string, []any) {
	return fmt.Sprintf(`evidence_ack AS (%s)`, ackUpdate(first)), []any{raw, s.cfg.Now().UTC(), a.Lane, a.Seq}
}

// ackUpdate keeps an acknowledgement with the bundles it covers, from 4 arguments numbered from
// first: the acknowledgement, when it was received, the lane and the sequence.
func ackUpdate(first int) string {
	return fmt.Sprintf(`UPDATE ferry_evidence SET ack = $%d, ack_at = $%d
		WHERE role = 'sent' AND ack IS NULL AND lane = $%d AND last_seq <= $%d`, first, first+1, first+2, first+3)
}

// messageChunk bounds the rows of one INSERT.
const messageChunk = 300

func insertMessages(ctx context.Context, d sqldb.Dialect, tx *sql.Tx, h bundle.Header, ids []string) error {
	if d == sqldb.Postgres {
		// One statement of arrays: short, planned once, whatever the number of rows.
		_, err := tx.ExecContext(ctx, `INSERT INTO ferry_evidence_message (message_id, bundle_id, seq)
			SELECT u.id, $1, $2 + u.n - 1 FROM unnest($3::text[]) WITH ORDINALITY AS u(id, n)
			ON CONFLICT (message_id, bundle_id) DO NOTHING`, h.BundleID, h.FirstSeq, ids)
		return err
	}
	for start := 0; start < len(ids); start += messageChunk {
		chunk := ids[start:min(len(ids), start+messageChunk)]
		var q strings.Builder
		q.WriteString(`INSERT INTO ferry_evidence_message (message_id, bundle_id, seq) VALUES `)
		args := make([]any, 0, 3*len(chunk))
		for i, id := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			n := len(args)
			q.WriteString("($" + strconv.Itoa(n+1) + ", $" + strconv.Itoa(n+2) + ", $" + strconv.Itoa(n+3) + ")")
			args = append(args, id, h.BundleID, h.FirstSeq+int64(start+i))
		}
		q.WriteString(` ON CONFLICT (message_id, bundle_id) DO NOTHING`)
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// Acknowledged keeps a verified acknowledgement from the peer with every bundle this ferry sent
// on its lane that it covers and that has none yet.
func (s *Store) Acknowledged(ctx context.Context, raw []byte, a bundle.Ack) error {
	return s.acknowledged(ctx, s.cfg.DB, raw, a)
}

// AcknowledgedTx is Acknowledged inside tx, a transaction of the caller's (the one that retires
// the outbox rows the acknowledgement covers).
func (s *Store) AcknowledgedTx(ctx context.Context, tx *sql.Tx, raw []byte, a bundle.Ack) error {
	return s.acknowledged(ctx, tx, raw, a)
}

func (s *Store) acknowledged(ctx context.Context, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, raw []byte, a bundle.Ack) error {
	_, err := db.ExecContext(ctx, ackUpdate(1), raw, s.cfg.Now().UTC(), a.Lane, a.Seq)
	if err != nil {
		return fmt.Errorf("%w: acknowledgement of %s up to %d: %w", ErrUnavailable, a.Lane, a.Seq, err)
	}
	return nil
}
