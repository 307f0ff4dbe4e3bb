package link_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/link"
	"finepay/ferry/relay"
	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
	"finepay/shared/gm"
)

// Both directions end to end over GM TLS: every message arrives once, in lane order; the
// outboxes are retired; the audit trails record it all.
func TestEndToEnd(t *testing.T) {
	p := setup(t, options{linger: 5 * time.Millisecond})
	const n = 300
	var bills, payments []envelope.Envelope
	for i := range n {
		bills = append(bills, fixture.Bill(t, i))
		payments = append(payments, fixture.Payment(t, i))
	}
	fixture.Put(t, p.core, 4, bills...)
	fixture.Put(t, p.gw, 4, payments...)
	p.startIntranet(t)

	fixture.Eventually(t, time.Minute, "every message in the other side's inbox", func() bool {
		return count(t, p.gw, `SELECT count(*) FROM ferry_inbox`) == n && count(t, p.core, `SELECT count(*) FROM ferry_inbox`) == n
	})
	fixture.Eventually(t, 30*time.Second, "outboxes retired", func() bool {
		return count(t, p.gw, `SELECT count(*) FROM ferry_outbox`) == 0 && count(t, p.core, `SELECT count(*) FROM ferry_outbox`) == 0
	})
	checkLaneOrder(t, p.gw, fixture.Intranet, bills)
	checkLaneOrder(t, p.core, fixture.DMZ, payments)

	for _, side := range []struct {
		name string
		db   *sqldb.DB
	}{{"gateway", p.gw}, {"core", p.core}} {
		fixture.Eventually(t, 10*time.Second, side.name+" audit complete", func() bool {
			recs := events(t, side.db)
			return countEvents(recs, audit.BundleSent, audit.OK) > 0 && countEvents(recs, audit.BundleReceived, audit.OK) > 0 &&
				countEvents(recs, audit.AckReceived, audit.OK) > 0 && countEvents(recs, audit.BundleAcknowledged, audit.OK) > 0
		})
		for _, r := range events(t, side.db) {
			if !r.Intact() || r.Record.Result != audit.OK {
				t.Errorf("%s audit record %d: %+v (intact %v)", side.name, r.ID, r.Record, r.Intact())
			}
		}
	}
	if v := testutil.ToFloat64(p.dmzMetrics.MessagesReceived); v != n {
		t.Errorf("DMZ ferry_messages_received_total = %v", v)
	}
}

// checkLaneOrder checks that db's inbox holds envs exactly once, each lane in put order with
// sequences 1, 2, 3, ...
func checkLaneOrder(t *testing.T, db *sqldb.DB, peer string, envs []envelope.Envelope) {
	t.Helper()
	want := map[string][]string{}
	for _, e := range envs {
		lane, err := envelope.Lane(e.Type, e.Key, 4)
		if err != nil {
			t.Fatal(err)
		}
		want[lane] = append(want[lane], e.ID)
	}
	for lane, ids := range want {
		rows, err := db.QueryContext(context.Background(), `SELECT message_id, seq FROM ferry_inbox WHERE peer = $1 AND lane = $2 ORDER BY seq`, peer, lane)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var id string
			var seq int64
			if err := rows.Scan(&id, &seq); err != nil {
				t.Fatal(err)
			}
			if seq != int64(len(got)+1) {
				t.Errorf("lane %s: seq %d at position %d", lane, seq, len(got)+1)
			}
			got = append(got, id)
		}
		rows.Close()
		if !slices.Equal(got, ids) {
			t.Errorf("lane %s: %d messages, want %d in put order", lane, len(got), len(ids))
		}
	}
}

func TestTamperedBundleRejectedGenuineAppliedOnce(t *testing.T) {
	p := setup(t, options{})
	c := p.client(t, p.node)
	ctx := context.Background()
	raw, h := p.seal(t, "to-gateway.0", 1, fixture.Bill(t, 1), fixture.Bill(t, 2))

	bad := bytes.Clone(raw)
	bad[len(bad)/2] ^= 0x20
	_, err := c.Push(ctx, bad)
	var pe *relay.PeerError
	if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest {
		t.Fatalf("tampered bundle: %v, want 400", err)
	}
	sum := gm.SM3(bad)
	kept, err := os.ReadFile(filepath.Join(p.quarantine, hex.EncodeToString(sum[:])+".bundle"))
	if err != nil || !bytes.Equal(kept, bad) {
		t.Fatalf("quarantine: %v", err)
	}
	if n := count(t, p.gw, `SELECT count(*) FROM ferry_inbox`); n != 0 {
		t.Fatalf("%d messages applied from a tampered bundle", n)
	}
	recs := events(t, p.gw)
	if len(recs) != 1 || recs[0].Record.Event != audit.BundleRejected || !strings.HasPrefix(recs[0].Record.Reason, strings.ToLower(pe.Code)+": ") {
		t.Fatalf("audit after tampered bundle: %+v", recs)
	}
	if v := testutil.ToFloat64(p.dmzMetrics.BundlesRejected.WithLabelValues(strings.ToLower(pe.Code))); v != 1 {
		t.Errorf("ferry_bundles_rejected_total{reason=%s} = %v", strings.ToLower(pe.Code), v)
	}

	ack1, err := c.Push(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	ack2, err := c.Push(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	a1, a2 := openAck(t, p, ack1), openAck(t, p, ack2)
	if a1.Seq != 2 || a1.Seq != a2.Seq || a1.BundleID != h.BundleID || a2.BundleID != h.BundleID || a1.Lane != a2.Lane {
		t.Fatalf("acks differ: %+v %+v", a1, a2)
	}
	if n := count(t, p.gw, `SELECT count(*) FROM ferry_inbox`); n != 2 {
		t.Fatalf("%d messages in the inbox, want 2", n)
	}
	recs = events(t, p.gw)
	if countEvents(recs, audit.BundleReceived, audit.OK) != 1 || countEvents(recs, audit.BundleDuplicate, audit.OK) != 1 {
		t.Fatalf("audit: %+v", recs)
	}
}

func openAck(t *testing.T, p *pair, raw []byte) bundle.Ack {
	t.Helper()
	a, err := bundle.OpenAck(raw, p.dmzNode.Sign.Cert.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestGapAsksForResend(t *testing.T) {
	p := setup(t, options{})
	c := p.client(t, p.node)
	ctx := context.Background()
	first, _ := p.seal(t, "to-gateway.0", 1, fixture.Bill(t, 1))
	if _, err := c.Push(ctx, first); err != nil {
		t.Fatal(err)
	}
	later, _ := p.seal(t, "to-gateway.0", 3, fixture.Bill(t, 3), fixture.Bill(t, 4))
	_, err := c.Push(ctx, later)
	var gap *relay.GapError
	if !errors.As(err, &gap) || gap.Expected != 2 || gap.Lane != "to-gateway.0" {
		t.Fatalf("err %v, want a gap expecting 2", err)
	}
	if n := count(t, p.gw, `SELECT count(*) FROM ferry_inbox`); n != 1 {
		t.Fatalf("%d messages in the inbox, want 1", n)
	}
}

func TestForbiddenDirectionRejected(t *testing.T) {
	p := setup(t, options{})
	c := p.client(t, p.node)
	for _, tc := range []struct {
		name, lane, code string
	}{
		{"fail/to-core-type-in-to-gateway-lane", "to-gateway.0", "FORBIDDEN_TYPE"},
		{"fail/to-core-lane-pushed-to-dmz", "to-core.0", "FORBIDDEN_LANE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, _ := p.seal(t, tc.lane, 1, fixture.Payment(t, 1))
			_, err := c.Push(context.Background(), raw)
			var pe *relay.PeerError
			if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || pe.Code != tc.code {
				t.Fatalf("err %v, want 400 %s", err, tc.code)
			}
		})
	}
	if n := count(t, p.gw, `SELECT count(*) FROM ferry_inbox`); n != 0 {
		t.Fatalf("%d messages applied", n)
	}
	if n := countEvents(events(t, p.gw), audit.BundleRejected, audit.Rejected); n != 2 {
		t.Fatalf("%d rejections audited, want 2", n)
	}
}

// A certificate from the right CA that is not on the allow-list is refused, and audited, on
// both ends.
func TestUnlistedPeerRefused(t *testing.T) {
	p := setup(t, options{})
	rogue := p.pki.Node(t, "ferry-rogue")
	raw, _ := p.seal(t, "to-gateway.0", 1, fixture.Bill(t, 1))
	if _, err := p.client(t, rogue).Push(context.Background(), raw); err == nil {
		t.Fatal("a peer not on the allow-list was served")
	}
	fixture.Eventually(t, 10*time.Second, "link.refused in the DMZ audit", func() bool {
		recs := events(t, p.gw)
		return len(recs) > 0 && onlyRefusals(recs) && strings.Contains(recs[0].Record.Reason, "allow-list")
	})

	// The intranet side refuses a DMZ endpoint that is not the allowed one.
	cfg := p.pki.TLS(p.node, rogue)
	cfg.OnReject = p.in.LinkRefused
	c, err := link.NewClient(link.ClientConfig{URL: p.url, TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Push(context.Background(), raw); err == nil {
		t.Fatal("the intranet ferry talked to a DMZ not on its allow-list")
	}
	if recs := events(t, p.core); len(recs) == 0 || !onlyRefusals(recs) {
		t.Fatalf("intranet audit: %+v", recs)
	}
	if n := count(t, p.gw, `SELECT count(*) FROM ferry_inbox`); n != 0 {
		t.Fatalf("%d messages applied", n)
	}
}

func onlyRefusals(recs []audit.Stored) bool {
	return countEvents(recs, audit.LinkRefused, audit.Rejected) == len(recs)
}

// When the receiver cannot write its audit trail it applies nothing, acknowledges nothing and
// says why in Ready.
func TestAuditFailClosedReceiver(t *testing.T) {
	p := setup(t, options{})
	c := p.client(t, p.node)
	ctx := context.Background()
	exec(t, p.gw, `ALTER TABLE ferry_audit_pending RENAME TO ferry_audit_away`)
	raw, _ := p.seal(t, "to-gateway.0", 1, fixture.Bill(t, 1))
	_, err := c.Push(ctx, raw)
	var pe *relay.PeerError
	if !errors.As(err, &pe) || pe.Status != http.StatusServiceUnavailable {
		t.Fatalf("err %v, want 503", err)
	}
	if n := count(t, p.gw, `SELECT count(*) FROM ferry_inbox`); n != 0 {
		t.Fatalf("%d messages applied without an audit record", n)
	}
	if err := p.dmz.Ready(ctx); !errors.Is(err, audit.ErrUnwritable) {
		t.Fatalf("Ready: %v", err)
	}
	exec(t, p.gw, `ALTER TABLE ferry_audit_away RENAME TO ferry_audit_pending`)
	if _, err := c.Push(ctx, raw); err != nil {
		t.Fatal(err)
	}
	if err := p.dmz.Ready(ctx); err != nil {
		t.Fatalf("Ready after recovery: %v", err)
	}
}

// When the sender cannot write its audit trail it sends nothing until it can.
func TestAuditFailClosedSender(t *testing.T) {
	p := setup(t, options{})
	exec(t, p.core, `ALTER TABLE ferry_audit_pending RENAME TO ferry_audit_away`)
	fixture.Put(t, p.core, 1, fixture.Bill(t, 1))
	p.startIntranet(t)
	fixture.Eventually(t, 10*time.Second, "the intranet ferry reports its audit failure", func() bool {
		return errors.Is(p.in.Ready(context.Background()), audit.ErrUnwritable)
	})
	if n := count(t, p.gw, `SELECT count(*) FROM ferry_inbox`) + len(events(t, p.gw)); n != 0 {
		t.Fatal("a bundle crossed without its bundle.sent record")
	}
	exec(t, p.core, `ALTER TABLE ferry_audit_away RENAME TO ferry_audit_pending`)
	fixture.Eventually(t, 10*time.Second, "the message crosses once audit works", func() bool {
		return count(t, p.gw, `SELECT count(*) FROM ferry_inbox`) == 1
	})
}

func exec(t *testing.T, db *sqldb.DB, stmt string) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), stmt); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkFerryThroughput moves messages from the core's outbox (4 lanes) to the gateway's
// inbox over GM TLS loopback and reports messages per second.
func BenchmarkFerryThroughput(b *testing.B) {
	const n = 8192
	p := setup(b, options{linger: 0})
	p.startIntranet(b)
	total := 0
	for i := range b.N {
		b.StopTimer()
		envs := make([]envelope.Envelope, n)
		for j := range envs {
			envs[j] = fixture.Bill(b, i*n+j)
		}
		fixture.Put(b, p.core, 4, envs...)
		total += n
		b.StartTimer()
		waitCount(b, p.gw, total)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "msgs/s")
}

func waitCount(b *testing.B, db *sqldb.DB, want int) {
	deadline := time.Now().Add(5 * time.Minute)
	for count(b, db, `SELECT count(*) FROM ferry_inbox`) < want {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %d messages", want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
