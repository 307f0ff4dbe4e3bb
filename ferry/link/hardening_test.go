package link_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/relay"
	"finepay/shared/envelope"
	"finepay/shared/tlsgm"
)

// A connection cut in the middle of a bundle's upload leaves nothing applied and nothing
// recorded as received; the whole bundle, sent again, is applied once.
func TestConnectionCutMidBundle(t *testing.T) {
	p := setup(t, options{})
	raw, _ := p.seal(t, "to-gateway.0", 1, fixture.Bill(t, 1), fixture.Bill(t, 2), fixture.Bill(t, 3))
	d, err := tlsgm.NewDialer(p.pki.TLS(p.node, p.dmzNode))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.DialContext(context.Background(), "tcp", strings.TrimPrefix(p.url, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	head := fmt.Sprintf("POST /v1/bundles HTTP/1.1\r\nHost: ferry-dmz\r\nContent-Type: application/vnd.finepay.bundle\r\nContent-Length: %d\r\n\r\n", len(raw))
	if _, err := conn.Write(append([]byte(head), raw[:len(raw)/2]...)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// The DMZ has answered the cut request (its handler ran to the end) once the request
	// shows in its link metrics.
	fixture.Eventually(t, 10*time.Second, "the DMZ to finish the cut request", func() bool {
		n, err := testutil.GatherAndCount(p.dmzReg, "ferry_link_request_duration_seconds")
		return err == nil && n > 0
	})
	if n := count(t, p.gw, `SELECT count(*) FROM ferry_inbox`); n != 0 {
		t.Fatalf("%d messages applied from half a bundle", n)
	}
	if recs := events(t, p.gw); countEvents(recs, audit.BundleReceived, audit.OK) != 0 {
		t.Fatalf("half a bundle recorded as received: %+v", recs)
	}

	c := p.client(t, p.node)
	if _, err := c.Push(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if n := count(t, p.gw, `SELECT count(*) FROM ferry_inbox`); n != 3 {
		t.Fatalf("%d messages in the inbox, want 3", n)
	}
}

// A pull waits (long poll) while there is nothing to send, and returns as soon as a message is
// put, well before its wait is over.
func TestLongPoll(t *testing.T) {
	p := setup(t, options{})
	c := p.client(t, p.node)
	ctx := context.Background()
	start := time.Now()
	raw, err := c.Pull(ctx, map[string]int64{}, 300*time.Millisecond)
	if err != nil || raw != nil {
		t.Fatalf("empty pull: %v, %d bytes", err, len(raw))
	}
	if held := time.Since(start); held < 300*time.Millisecond {
		t.Fatalf("an empty pull was answered after %s, before its wait", held)
	}

	type answer struct {
		raw []byte
		err error
		at  time.Time
	}
	got := make(chan answer, 1)
	go func() {
		raw, err := c.Pull(ctx, map[string]int64{}, 2*time.Second) // the DMZ's -long-poll
		got <- answer{raw, err, time.Now()}
	}()
	put := time.Now()
	fixture.Put(t, p.gw, 1, fixture.Payment(t, 1))
	a := <-got
	if a.err != nil || a.raw == nil {
		t.Fatalf("long pull: %v, %d bytes", a.err, len(a.raw))
	}
	if wait := a.at.Sub(put); wait > 1500*time.Millisecond {
		t.Fatalf("the bundle came %s after the put: the pull was not woken", wait)
	}
}

// gapOnce answers the first push of each lane with a sequence gap (the DMZ asks for the
// bundle's own first sequence again) without delivering it, and passes everything else on.
type gapOnce struct {
	relay.Transport
	gaps atomic.Int64
	seen map[string]bool
}

func (g *gapOnce) Push(ctx context.Context, raw []byte) ([]byte, error) {
	h, err := parseHeader(raw)
	if err != nil {
		return nil, err
	}
	if !g.seen[h.lane] {
		g.seen[h.lane] = true
		g.gaps.Add(1)
		return nil, &relay.GapError{Lane: h.lane, Expected: h.first}
	}
	return g.Transport.Push(ctx, raw)
}

// When the DMZ answers a push with a sequence gap, the intranet ferry resends from the
// sequence asked for: everything arrives once, in order, and the resends are counted.
func TestResendOnGap(t *testing.T) {
	p := setup(t, options{linger: 5 * time.Millisecond})
	const n = 40
	var bills []envelope.Envelope
	for i := range n {
		bills = append(bills, fixture.Bill(t, i))
	}
	fixture.Put(t, p.core, 4, bills...)
	tr := &gapOnce{Transport: p.client(t, p.node), seen: map[string]bool{}}
	p.wg.Go(func() { _ = p.in.Run(p.ctx, tr) })
	fixture.Eventually(t, 30*time.Second, "every bill in the gateway's inbox", func() bool {
		return count(t, p.gw, `SELECT count(*) FROM ferry_inbox`) == n && count(t, p.core, `SELECT count(*) FROM ferry_outbox`) == 0
	})
	checkLaneOrder(t, p.gw, fixture.Intranet, bills)
	if tr.gaps.Load() == 0 {
		t.Fatal("no gap was answered")
	}
	if got := testutil.ToFloat64(p.inMetrics.BundlesResent.WithLabelValues("to-gateway.0")) +
		testutil.ToFloat64(p.inMetrics.BundlesResent.WithLabelValues("to-gateway.1")) +
		testutil.ToFloat64(p.inMetrics.BundlesResent.WithLabelValues("to-gateway.2")) +
		testutil.ToFloat64(p.inMetrics.BundlesResent.WithLabelValues("to-gateway.3")); got < float64(tr.gaps.Load()) {
		t.Fatalf("ferry_bundles_resent_total = %v, want at least %d", got, tr.gaps.Load())
	}
}

type header struct {
	lane  string
	first int64
}

func parseHeader(raw []byte) (header, error) {
	pb, err := bundle.Parse(raw, bundle.Limits{})
	if err != nil {
		return header{}, errors.New("not a bundle")
	}
	return header{lane: pb.Header.Lane, first: pb.Header.FirstSeq}, nil
}

// A request of the allowed peer that is not one the link serves (a pull that is not JSON, a
// negative mark, a lane that does not exist, an unknown route) is refused with a clear error,
// audited as request.rejected, and changes nothing.
func TestMalformedRequestsAreRefusedAndAudited(t *testing.T) {
	p := setup(t, options{})
	tr, err := tlsgm.HTTPTransport(p.pki.TLS(p.node, p.dmzNode))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	for _, tc := range []struct {
		name, path, body string
		status           int
		reason           string
	}{
		{"fail/pull-not-json", "/v1/pull", `{"marks":`, http.StatusBadRequest, "not JSON"},
		{"fail/pull-negative-mark", "/v1/pull", `{"marks":{"to-core.0":-1}}`, http.StatusBadRequest, `bad mark -1 for lane "to-core.0"`},
		{"fail/pull-unknown-lane", "/v1/pull", `{"marks":{"sideways.0":3}}`, http.StatusBadRequest, `lane "sideways.0"`},
		{"fail/pull-too-large", "/v1/pull", `{"marks":{}, "pad":"` + strings.Repeat("x", 70<<10) + `"}`, http.StatusRequestEntityTooLarge, "over 65536 bytes"},
		{"fail/unknown-route", "/v1/purge", `{}`, http.StatusNotFound, `"/v1/purge"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countEvents(events(t, p.gw), audit.RequestRejected, audit.Rejected)
			resp, err := hc.Post(p.url+tc.path, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			recs := events(t, p.gw)
			if n := countEvents(recs, audit.RequestRejected, audit.Rejected); n != before+1 {
				t.Fatalf("%d request.rejected records, want %d", n, before+1)
			}
			last := recs[len(recs)-1].Record
			if last.Event != audit.RequestRejected || !strings.Contains(last.Reason, tc.reason) || !strings.HasPrefix(last.Peer, fixture.Intranet+"@") {
				t.Fatalf("last audit record %+v, want request.rejected naming %q and the peer", last, tc.reason)
			}
		})
	}
	if got := testutil.ToFloat64(p.dmzMetrics.BundlesRejected.WithLabelValues("request")); got != 5 {
		t.Fatalf("ferry_bundles_rejected_total{reason=request} = %v, want 5", got)
	}
	if n := count(t, p.gw, `SELECT count(*) FROM ferry_inbox`); n != 0 {
		t.Fatalf("%d messages applied", n)
	}
}

// A pulled bundle larger than the intranet ferry accepts (a DMZ configured with a larger
// -max-bundle-bytes, or one that is not ours) is not dropped by the transport in silence: the
// relay refuses it for its size, audits it, applies nothing, and asks again after a back-off.
func TestOversizedPulledBundleIsRefusedAndAudited(t *testing.T) {
	limit := envelope.MaxEncoded + bundle.Overhead(1)
	p := setup(t, options{intranetMaxBytes: limit})
	envs := make([]envelope.Envelope, 0, 400)
	for i := range cap(envs) {
		envs = append(envs, fixture.Payment(t, i+1))
	}
	fixture.Put(t, p.gw, 1, envs...) // one to-core lane; the DMZ bundles them up to its 1 MiB
	p.startIntranet(t)
	fixture.Eventually(t, 20*time.Second, "the oversized bundle refused and audited on the intranet side", func() bool {
		for _, r := range events(t, p.core) {
			if r.Record.Event == audit.BundleRejected && r.Record.Result == audit.Rejected && strings.Contains(r.Record.Reason, "limit") {
				return true
			}
		}
		return false
	})
	if got := testutil.ToFloat64(p.inMetrics.BundlesRejected.WithLabelValues("limit")); got < 1 {
		t.Fatalf("ferry_bundles_rejected_total{reason=limit} = %v on the intranet side", got)
	}
	if n := count(t, p.core, `SELECT count(*) FROM ferry_inbox`); n != 0 {
		t.Fatalf("%d messages applied from an oversized bundle", n)
	}
}
