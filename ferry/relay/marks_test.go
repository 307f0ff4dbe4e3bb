package relay_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/relay"
)

// The DMZ relay commits a bundle by the lane's mark as it last committed it. When the lane moved
// without it (another relay on the same database committed the next bundle), it decides again
// on the stored mark: the bundle is a duplicate, acknowledged up to the stored mark, and nothing
// is applied twice; the bundle after it is committed.
func TestReceiveGoesByTheStoredMarkWhenTheLaneMoved(t *testing.T) {
	pki := fixture.NewPKI(t)
	dmzNode, inNode := pki.Node(t, fixture.DMZ), pki.Node(t, fixture.Intranet)
	gw := fixture.DB(t)
	dmz := newRelay(t, relay.DMZ, dmzNode, inNode, gw)
	other := newRelay(t, relay.DMZ, dmzNode, inNode, gw)
	const lane = "to-gateway.0"
	seal := func(first int) []byte {
		t.Helper()
		id, err := bundle.NewID(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var msgs [][]byte
		for i := first; i < first+2; i++ {
			raw, err := fixture.Bill(t, i).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, raw)
		}
		h := bundle.Header{BundleID: id, From: fixture.Intranet, To: fixture.DMZ, Lane: lane, FirstSeq: int64(first), Created: time.Now()}
		raw, _, err := bundle.Seal(rand.Reader, h, msgs, inNode.Sign.Key, dmzNode.Enc.Cert.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	ctx := context.Background()
	accept := func(r *relay.Relay, raw []byte, wantSeq int64) {
		t.Helper()
		ackRaw, err := r.Accept(ctx, raw, "test")
		if err != nil {
			t.Fatal(err)
		}
		a, err := bundle.OpenAck(ackRaw, dmzNode.Sign.Cert.PublicKey())
		if err != nil || a.Seq != wantSeq {
			t.Fatalf("acknowledgement up to %d (%v), want %d", a.Seq, err, wantSeq)
		}
	}
	accept(dmz, seal(1), 2)
	accept(dmz, seal(3), 4)
	third := seal(5)
	accept(other, third, 6) // the lane moves without dmz
	accept(dmz, third, 6)   // dmz kept mark 4: the same bundle again is a duplicate
	accept(dmz, seal(7), 8)

	if n, distinct := count(t, gw, `SELECT count(*) FROM ferry_inbox`), count(t, gw, `SELECT count(DISTINCT seq) FROM ferry_inbox`); n != 8 || distinct != 8 {
		t.Fatalf("inbox holds %d messages, %d distinct sequences; want 8", n, distinct)
	}
	if hwm := count(t, gw, `SELECT hwm FROM ferry_lane_in`); hwm != 8 {
		t.Fatalf("lane mark %d, want 8", hwm)
	}
	recs, err := audit.Recent(ctx, gw, 20)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, r := range recs {
		got[r.Record.Event]++
	}
	if got[audit.BundleReceived] != 4 || got[audit.BundleDuplicate] != 1 || got[audit.BundleRejected] != 0 {
		t.Fatalf("audit events %v, want 4 received and 1 duplicate", got)
	}
}
