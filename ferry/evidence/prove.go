package evidence

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/sqldb"
	"finepay/shared/gm"
)

// ErrNoEvidence: no bundle of this ferry's evidence carried the message.
var ErrNoEvidence = errors.New("evidence: no evidence of the message")

// Check is one checked part of a proof.
type Check struct {
	What   string
	OK     bool
	Detail string
}

// Proof is the evidence for one message, checked.
type Proof struct {
	MessageID string
	Role      string // Sent: this ferry sent it; Received: this ferry received it
	Header    bundle.Header
	Seq       int64
	Digest    string    // the message's SM3 digest, as the sender signed it
	At        time.Time // when this ferry sent or received the bundle
	Signed    []byte    // what the sender signed
	Signature []byte    // the sender's signature
	Sender    *gm.Certificate
	AckRaw    []byte // the receiver's signed acknowledgement (nil when none yet)
	Ack       bundle.Ack
	AckAt     time.Time // when the acknowledgement was made (receiver) or arrived (sender)
	Receiver  *gm.Certificate
	Checks    []Check
}

// OK reports whether every check passed.
func (p *Proof) OK() bool {
	for _, c := range p.Checks {
		if !c.OK {
			return false
		}
	}
	return len(p.Checks) > 0
}

func (p *Proof) check(what string, err error, ok string) {
	if err != nil {
		p.Checks = append(p.Checks, Check{What: what, Detail: err.Error()})
		return
	}
	p.Checks = append(p.Checks, Check{What: what, OK: true, Detail: ok})
}

// ProveOptions are what the prover trusts.
type ProveOptions struct {
	CA     *gm.Certificate // the trust anchor; nil uses the issuer kept with each certificate
	Origin string          // whose audit checkpoints to prove the audit records in ("" any)
}

type row struct {
	bundleID, role, sender, receiver, lane string
	signed, signature                      []byte
	senderFP, receiverFP                   string
	at                                     time.Time
	ack                                    []byte
	ackAt                                  sql.NullTime
	seq                                    int64
}

// Prove gathers the evidence of the bundle that carried messageID and checks it: the sender's
// certificate and signature, that the signed header holds the message's digest (and, where this
// database still holds the message, that the message has that digest), the receiver's
// certificate and signed acknowledgement, and the audit records of the bundle with their
// inclusion in a signed checkpoint. A failed check is in Checks; the error is for evidence that
// cannot be read at all.
func Prove(ctx context.Context, db *sqldb.DB, messageID string, o ProveOptions) (*Proof, error) {
	r, err := pick(ctx, db, messageID)
	if err != nil {
		return nil, err
	}
	p := &Proof{MessageID: messageID, Role: r.role, Seq: r.seq, At: r.at.UTC(), Signed: r.signed, Signature: r.signature, AckRaw: r.ack}
	if r.ackAt.Valid {
		p.AckAt = r.ackAt.Time.UTC()
	}

	// Origin: the sender's certificate, its signature, the header it signed.
	h, herr := signedHeader(r.signed)
	if herr == nil && (h.BundleID != r.bundleID || r.seq < h.FirstSeq || r.seq > h.LastSeq) {
		herr = fmt.Errorf("the signed header is of bundle %s, sequences %d..%d: not the bundle of message sequence %d", h.BundleID, h.FirstSeq, h.LastSeq, r.seq)
	}
	p.Header = h
	p.check("signed header", herr, fmt.Sprintf("bundle %s, %s → %s, lane %s, sequences %d..%d, created %s",
		h.BundleID, h.From, h.To, h.Lane, h.FirstSeq, h.LastSeq, h.Created.Format(time.RFC3339Nano)))
	if herr != nil {
		return p, nil
	}
	p.Digest = h.Digests[r.seq-h.FirstSeq]
	var cerr error
	p.Sender, cerr = certificate(ctx, db, r.senderFP, h.From, h.Created, o.CA)
	p.check("sender certificate", cerr, describe(p.Sender))
	if cerr == nil {
		err := p.Sender.PublicKey().Verify(r.signed, r.signature)
		p.check("sender signature", err, "SM2 signature of the bundle by "+h.From+" verifies")
	}
	held, err := content(ctx, db, messageID, p.Digest)
	p.check("message", err, held)

	// Receipt: the receiver's certificate and signed acknowledgement.
	var aerr error
	if r.ack == nil {
		aerr = errors.New("no acknowledgement from the receiver yet")
	}
	if aerr == nil {
		p.Receiver, aerr = certificate(ctx, db, r.receiverFP, h.To, p.AckAt, o.CA)
		p.check("receiver certificate", aerr, describe(p.Receiver))
	}
	if aerr == nil {
		p.Ack, aerr = bundle.OpenAck(r.ack, p.Receiver.PublicKey())
		if aerr == nil {
			a := p.Ack
			switch {
			case a.From != h.To || a.To != h.From || a.Lane != h.Lane:
				aerr = fmt.Errorf("the acknowledgement is from %s to %s for lane %s, not of this bundle", a.From, a.To, a.Lane)
			case a.Seq < r.seq:
				aerr = fmt.Errorf("the acknowledgement covers %s up to %d, not sequence %d", a.Lane, a.Seq, r.seq)
			}
		}
		p.check("receiver acknowledgement", aerr, fmt.Sprintf("%s signed that it committed %s up to sequence %d at %s (bundle %s)",
			p.Ack.From, p.Ack.Lane, p.Ack.Seq, p.Ack.At.Format(time.RFC3339Nano), orDash(p.Ack.BundleID)))
	} else if r.ack == nil {
		p.check("receiver acknowledgement", aerr, "")
	}

	// The audit trail of the bundle on this side, in signed checkpoints.
	auditChecks(ctx, db, p, o)
	return p, nil
}

// pick chooses, of the bundles that carried the message, the one whose evidence is best: the
// receiver's over the sender's, acknowledged over not, acknowledged by name over cumulatively.
func pick(ctx context.Context, db *sqldb.DB, messageID string) (row, error) {
	rows, err := db.QueryContext(ctx, `SELECT e.bundle_id, e.role, e.sender, e.receiver, e.lane, e.signed, e.signature,
		e.sender_fp, e.receiver_fp, e.at, e.ack, e.ack_at, m.seq
		FROM ferry_evidence_message m JOIN ferry_evidence e ON e.bundle_id = m.bundle_id WHERE m.message_id = $1 ORDER BY e.at`, messageID)
	if err != nil {
		return row{}, fmt.Errorf("evidence: message %s: %w", messageID, err)
	}
	defer rows.Close()
	var best row
	bestScore := -1
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.bundleID, &r.role, &r.sender, &r.receiver, &r.lane, &r.signed, &r.signature, &r.senderFP, &r.receiverFP,
			&r.at, &r.ack, &r.ackAt, &r.seq); err != nil {
			return row{}, fmt.Errorf("evidence: message %s: %w", messageID, err)
		}
		score := 0
		if r.role == Received {
			score += 4
		}
		if r.ack != nil {
			score += 2
			if p, err := bundle.ParseAck(r.ack); err == nil && p.Ack.BundleID == r.bundleID {
				score++
			}
		}
		if score > bestScore {
			best, bestScore = r, score
		}
	}
	if err := rows.Err(); err != nil {
		return row{}, fmt.Errorf("evidence: message %s: %w", messageID, err)
	}
	if bestScore < 0 {
		return row{}, fmt.Errorf("%w %s in this database", ErrNoEvidence, messageID)
	}
	return best, nil
}

// signedHeader decodes the header from a bundle's signed part: preamble, header, body digest.
func signedHeader(signed []byte) (bundle.Header, error) {
	var h bundle.Header
	if len(signed) < 16+32 || string(signed[:4]) != bundle.Magic {
		return h, errors.New("the kept signed part is not a bundle's")
	}
	n := uint64(binary.BigEndian.Uint32(signed[4:8]))
	if uint64(len(signed)) != 16+n+32 {
		return h, errors.New("the kept signed part has the wrong length")
	}
	raw := signed[16 : 16+n]
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, fmt.Errorf("the signed header does not decode: %v", err)
	}
	if again, err := json.Marshal(h); err != nil || !bytes.Equal(again, raw) {
		return h, errors.New("the signed header is not in canonical form")
	}
	if h.Count() != int(h.LastSeq-h.FirstSeq+1) || h.Count() == 0 {
		return h, errors.New("the signed header's digests do not match its sequences")
	}
	return h, nil
}

// certificate loads a certificate kept in ferry_cert and checks it: issued by ca (or by the
// issuer kept with it), valid at t, of node, and a signing certificate (every use here verifies
// a signature).
func certificate(ctx context.Context, db *sqldb.DB, fp, node string, at time.Time, ca *gm.Certificate) (*gm.Certificate, error) {
	c, issuer, err := audit.GetCert(ctx, db, fp)
	if err != nil {
		return nil, err
	}
	if ca == nil {
		if issuer == "" {
			return c, fmt.Errorf("the issuer of %s is not known: give the CA certificate", fp)
		}
		if ca, _, err = audit.GetCert(ctx, db, issuer); err != nil {
			return c, err
		}
	}
	if err := c.X509().CheckSignatureFrom(ca.X509()); err != nil {
		return c, fmt.Errorf("%s (%s) is not issued by %s: %v", c.CommonName(), fp, ca.CommonName(), err)
	}
	if !at.IsZero() && (at.Before(c.X509().NotBefore) || at.After(c.X509().NotAfter)) {
		return c, fmt.Errorf("%s (%s) was not valid at %s", c.CommonName(), fp, at.Format(time.RFC3339))
	}
	if c.CommonName() != node {
		return c, fmt.Errorf("the certificate is %s's, the bundle names %s", c.CommonName(), node)
	}
	if err := c.CheckUsage(gm.UsageSign); err != nil {
		return c, err
	}
	return c, nil
}

func describe(c *gm.Certificate) string {
	if c == nil {
		return ""
	}
	return fmt.Sprintf("%s (%s), issued by %s", c.CommonName(), c.Fingerprint(), c.X509().Issuer.CommonName)
}

// content checks the message itself against its signed digest, where this database still holds
// it: the receiver's inbox, or the sender's outbox until the message is acknowledged.
func content(ctx context.Context, db *sqldb.DB, messageID, digest string) (string, error) {
	var env []byte
	where := "inbox"
	err := db.QueryRowContext(ctx, `SELECT envelope FROM ferry_inbox WHERE message_id = $1`, messageID).Scan(&env)
	if errors.Is(err, sql.ErrNoRows) {
		where = "outbox"
		err = db.QueryRowContext(ctx, `SELECT envelope FROM ferry_outbox WHERE message_id = $1`, messageID).Scan(&env)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return "SM3 " + digest + " (the message itself was retired here after its acknowledgement)", nil
	}
	if err != nil {
		return "", err
	}
	sum := gm.SM3(env)
	if hex.EncodeToString(sum[:]) != digest {
		return "", fmt.Errorf("the message in the %s has SM3 %x, the sender signed %s: the message was altered", where, sum, digest)
	}
	return "SM3 " + digest + ", the digest the sender signed, is the SM3 of the message in the " + where, nil
}

// auditChecks proves the bundle's audit records on this side in the latest signed checkpoint.
func auditChecks(ctx context.Context, db *sqldb.DB, p *Proof, o ProveOptions) {
	recs, err := audit.Matching(ctx, db, p.Header.BundleID)
	if err != nil {
		p.check("audit", err, "")
		return
	}
	for _, s := range recs {
		what := fmt.Sprintf("audit record %d (%s %s at %s)", s.ID, s.Record.Event, s.Record.Result, s.Record.At.Format(time.RFC3339Nano))
		if !s.Intact() {
			p.check(what, errors.New("its fields do not give its leaf hash: the record was altered"), "")
			continue
		}
		in, err := audit.ProveInclusion(ctx, db, s, o.Origin)
		if errors.Is(err, audit.ErrNotCovered) {
			p.Checks = append(p.Checks, Check{What: what, OK: true, Detail: "intact; not yet in a signed checkpoint"})
			continue
		}
		if err == nil {
			var signer *gm.Certificate
			if signer, err = certificate(ctx, db, in.Checkpoint.CertFP, in.Checkpoint.Origin, in.Checkpoint.Time, o.CA); err == nil {
				err = in.Verify(signer)
			}
		}
		p.check(what, err, fmt.Sprintf("in the checkpoint of %d records signed by %s at %s (inclusion proof of %d hashes verified)",
			in.Checkpoint.Size, in.Checkpoint.Origin, in.Checkpoint.Time.Format(time.RFC3339), len(in.Path)))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
