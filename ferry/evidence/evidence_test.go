package evidence_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"finepay/ferry/bundle"
	"finepay/ferry/evidence"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/schema"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/shared/envelope"
)

type env struct {
	pki              *fixture.PKI
	sender, receiver *fixture.Node
	out, in          *evidence.Store // the sender's and the receiver's stores
	outDB, inDB      *sqldb.DB
}

func setup(t *testing.T, d sqldb.Dialect) *env {
	t.Helper()
	e := &env{pki: fixture.NewPKI(t), outDB: sqltest.Open(t, d), inDB: sqltest.Open(t, d)}
	e.sender, e.receiver = e.pki.Node(t, fixture.Intranet), e.pki.Node(t, fixture.DMZ)
	for _, s := range []struct {
		db        *sqldb.DB
		own, peer *fixture.Node
		store     **evidence.Store
	}{{e.outDB, e.sender, e.receiver, &e.out}, {e.inDB, e.receiver, e.sender, &e.in}} {
		sqltest.Must(t, schema.Migrate(context.Background(), s.db))
		st, err := evidence.New(evidence.Config{DB: s.db, Own: s.own.Sign.Cert, Peer: s.peer.Sign.Cert, CA: e.pki.CA.Cert})
		sqltest.Must(t, err)
		sqltest.Must(t, st.Start(context.Background()))
		*s.store = st
	}
	return e
}

// seal makes a to-gateway bundle of envs from sequence first.
func (e *env) seal(t *testing.T, first int64, envs ...envelope.Envelope) (*bundle.Parsed, bundle.Header, []string) {
	t.Helper()
	id, err := bundle.NewID(rand.Reader)
	sqltest.Must(t, err)
	msgs := make([][]byte, len(envs))
	ids := make([]string, len(envs))
	for i, m := range envs {
		msgs[i], err = m.Marshal()
		sqltest.Must(t, err)
		ids[i] = m.ID
	}
	b, err := bundle.SealParsed(rand.Reader, bundle.Header{BundleID: id, From: fixture.Intranet, To: fixture.DMZ, Lane: "to-gateway.0",
		FirstSeq: first, Created: time.Now()}, msgs, e.sender.Sign.Key, e.receiver.Enc.Cert.PublicKey())
	sqltest.Must(t, err)
	return b, b.Header, ids
}

func (e *env) ack(t *testing.T, h bundle.Header, seq int64, bundleID string) []byte {
	t.Helper()
	raw, err := bundle.SealAck(rand.Reader, bundle.Ack{From: fixture.DMZ, To: fixture.Intranet, Lane: h.Lane, Seq: seq, BundleID: bundleID,
		At: time.Now()}, e.receiver.Sign.Key)
	sqltest.Must(t, err)
	return raw
}

func TestKeepAndProve(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := setup(t, db.Dialect)
		b1, b2 := fixture.Bill(t, 1), fixture.Bill(t, 2)
		sent, h, ids := e.seal(t, 1, b1, b2)
		sqltest.Must(t, e.out.Sent(ctx, sent, ids))
		sqltest.Must(t, e.out.Sent(ctx, sent, ids)) // kept once

		// Before the acknowledgement the sender's proof lacks receipt.
		p, err := evidence.Prove(ctx, e.outDB, b2.ID, evidence.ProveOptions{})
		sqltest.Must(t, err)
		if p.OK() || p.Seq != 2 || p.Role != evidence.Sent {
			t.Fatalf("unacknowledged: %+v", p.Checks)
		}

		// The receiver opens the bundle and keeps it with its acknowledgement.
		got, msgs, err := bundle.OpenParsed(sent.Bytes(), e.sender.Sign.Cert.PublicKey(), e.receiver.Enc.Key, bundle.Limits{})
		sqltest.Must(t, err)
		hdr := got.Header
		ack := e.ack(t, hdr, 2, hdr.BundleID)
		sqltest.Must(t, e.in.Received(ctx, got, msgs, ack))
		sqltest.Must(t, e.in.Received(ctx, got, msgs, e.ack(t, hdr, 2, hdr.BundleID)))
		a, err := bundle.OpenAck(ack, e.receiver.Sign.Cert.PublicKey())
		sqltest.Must(t, err)
		sqltest.Must(t, e.out.Acknowledged(ctx, ack, a))

		for _, side := range []struct {
			db   *sqldb.DB
			role string
		}{{e.outDB, evidence.Sent}, {e.inDB, evidence.Received}} {
			p, err := evidence.Prove(ctx, side.db, b1.ID, evidence.ProveOptions{CA: e.pki.CA.Cert})
			sqltest.Must(t, err)
			if !p.OK() || p.Role != side.role || p.Header.BundleID != h.BundleID || p.Digest != h.Digests[0] || p.Ack.Seq != 2 {
				t.Fatalf("%s proof: %+v", side.role, p.Checks)
			}
		}
		var n int
		sqltest.Must(t, e.inDB.QueryRowContext(ctx, `SELECT count(*) FROM ferry_evidence_message`).Scan(&n))
		if n != 2 {
			t.Fatalf("%d message rows", n)
		}
		// Another CA does not vouch for the signers.
		other := fixture.NewPKI(t)
		if p, err := evidence.Prove(ctx, e.inDB, b1.ID, evidence.ProveOptions{CA: other.CA.Cert}); err != nil || p.OK() {
			t.Fatalf("proved under another CA: %v", err)
		}
	})
}

// A message sent in two bundles (resealed after a gap): the proof takes the acknowledged one;
// a cumulative acknowledgement covers the earlier bundles.
func TestCumulativeAcknowledgement(t *testing.T) {
	ctx := context.Background()
	e := setup(t, sqldb.Postgres)
	b1, b2, b3 := fixture.Bill(t, 1), fixture.Bill(t, 2), fixture.Bill(t, 3)
	bA, _, idsA := e.seal(t, 1, b1)
	bB, _, idsB := e.seal(t, 2, b2)
	bC, hC, idsC := e.seal(t, 2, b2, b3) // b2 again, in a bundle of its own
	for _, s := range []struct {
		b   *bundle.Parsed
		ids []string
	}{{bA, idsA}, {bB, idsB}, {bC, idsC}} {
		sqltest.Must(t, e.out.Sent(ctx, s.b, s.ids))
	}
	ack := e.ack(t, hC, 3, hC.BundleID)
	a, err := bundle.OpenAck(ack, e.receiver.Sign.Cert.PublicKey())
	sqltest.Must(t, err)
	sqltest.Must(t, e.out.Acknowledged(ctx, ack, a))
	p, err := evidence.Prove(ctx, e.outDB, b2.ID, evidence.ProveOptions{})
	sqltest.Must(t, err)
	if !p.OK() || p.Header.BundleID != hC.BundleID {
		t.Fatalf("b2 proven by %s: %+v", p.Header.BundleID, p.Checks)
	}
	p, err = evidence.Prove(ctx, e.outDB, b1.ID, evidence.ProveOptions{})
	sqltest.Must(t, err)
	if !p.OK() || p.Ack.BundleID != hC.BundleID {
		t.Fatalf("b1 under the cumulative acknowledgement: %+v", p.Checks)
	}
}
