package relay_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"finepay/ferry/bundle"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/outbox"
	"finepay/ferry/relay"
	"finepay/shared/envelope"
)

// pairNodes is setup that also returns the two nodes, whose keys the tests sign with.
func pairNodes(t *testing.T) (sides, *fixture.Node, *fixture.Node) {
	t.Helper()
	pki := fixture.NewPKI(t)
	dmzNode, inNode := pki.Node(t, fixture.DMZ), pki.Node(t, fixture.Intranet)
	s := sides{gw: fixture.DB(t), core: fixture.DB(t)}
	s.dmz = newRelay(t, relay.DMZ, dmzNode, inNode, s.gw)
	s.in = newRelay(t, relay.Intranet, inNode, dmzNode, s.core)
	return s, dmzNode, inNode
}

// An acknowledgement signed by the peer for messages that were queued but never sent is
// refused and audited, and retires nothing.
func TestAckForMessagesNeverSentIsRefused(t *testing.T) {
	s, _, inNode := pairNodes(t)
	var payments []envelope.Envelope
	for i := range 5 {
		payments = append(payments, fixture.Payment(t, i))
	}
	fixture.Put(t, s.gw, 1, payments...) // to-core.0, 1..5, never pulled
	ack, err := bundle.SealAck(rand.Reader, bundle.Ack{From: fixture.Intranet, To: fixture.DMZ, Lane: "to-core.0", Seq: 5, At: time.Now()}, inNode.Sign.Key)
	if err != nil {
		t.Fatal(err)
	}
	err = s.dmz.AcceptAck(context.Background(), ack, "test")
	var rej *relay.RejectedError
	if !errors.As(err, &rej) || !errors.Is(err, relay.ErrAckBeyondSent) {
		t.Fatalf("AcceptAck: %v, want a rejection beyond_sent", err)
	}
	if n := count(t, s.gw, `SELECT count(*) FROM ferry_outbox`); n != 5 {
		t.Fatalf("%d of 5 never-sent messages left in the outbox", n)
	}
	if n := count(t, s.gw, `SELECT count(*) FROM ferry_audit WHERE event = 'ack.received' AND result = 'rejected' AND reason LIKE 'beyond_sent%'`); n != 1 {
		t.Fatalf("%d ack.received rejected records, want 1", n)
	}
}

// overAck is a DMZ that acknowledges every pushed bundle up to a sequence beyond it.
type overAck struct {
	dmzNode *fixture.Node
	seq     int64
}

func (o *overAck) Push(ctx context.Context, raw []byte) ([]byte, error) {
	pb, err := bundle.Parse(raw, bundle.Limits{})
	if err != nil {
		return nil, err
	}
	return bundle.SealAck(rand.Reader, bundle.Ack{From: fixture.DMZ, To: fixture.Intranet, Lane: pb.Header.Lane,
		Seq: o.seq, BundleID: pb.Header.BundleID, At: time.Now()}, o.dmzNode.Sign.Key)
}

func (o *overAck) Pull(ctx context.Context, _ map[string]int64, wait time.Duration) ([]byte, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return nil, nil
}

func (o *overAck) PostAck(context.Context, []byte) error { return nil }
func (o *overAck) Addr() string                          { return "over" }

// A peer's acknowledgement of a pushed bundle that claims numbers handed out to a producer
// still committing (beyond the bundle and anything sent) is refused: were it taken, those
// messages would commit below the acknowledged sequence and never be sent.
func TestAckBeyondTheBundleSentIsRefused(t *testing.T) {
	s, dmzNode, _ := pairNodes(t)
	ctx := context.Background()
	var bills []envelope.Envelope
	for i := range 16 {
		bills = append(bills, fixture.Bill(t, i))
	}
	fixture.Put(t, s.core, 1, bills...) // to-gateway.0, 1..16
	tx, err := s.core.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	ob := outbox.New(1)
	for i := 16; i < 20; i++ { // 17..20, not committed yet
		if _, err := ob.Put(ctx, tx, fixture.Bill(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.in.Run(runCtx, &overAck{dmzNode: dmzNode, seq: 20}) }()
	fixture.Eventually(t, 30*time.Second, "the acknowledgement refused", func() bool {
		return count(t, s.core, `SELECT count(*) FROM ferry_audit WHERE event = 'ack.received' AND result = 'rejected'`) > 0
	})
	cancel()
	<-done
	if n := count(t, s.core, `SELECT coalesce(max(acked_seq), 0) FROM ferry_lane_acked`); n != 0 {
		t.Fatalf("the lane was acknowledged up to %d", n)
	}
	if n := count(t, s.core, `SELECT count(*) FROM ferry_audit WHERE event = 'ack.received' AND result = 'ok'`); n != 0 {
		t.Fatalf("%d acknowledgements beyond what was sent were taken", n)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// With an honest peer every message, 17..20 too, is delivered.
	run(t, s, &lossy{dmz: s.dmz})
	fixture.Eventually(t, 30*time.Second, "all 20 delivered and retired", func() bool {
		return count(t, s.gw, `SELECT count(*) FROM ferry_inbox`) == 20 && count(t, s.core, `SELECT count(*) FROM ferry_outbox`) == 0
	})
}
