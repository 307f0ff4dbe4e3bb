package link_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/link"
	"finepay/ferry/relay"
	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
	"finepay/shared/logging"
	"finepay/shared/tlsgm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair is a DMZ ferry listening on a GM TLS loopback port and, when started, an intranet ferry
// dialling it, each over its own fresh PostgreSQL database.
type pair struct {
	pki           *fixture.PKI
	dmzNode, node *fixture.Node // node: the intranet ferry
	gw, core      *sqldb.DB     // the gateway's and the core's databases
	dmz, in       *relay.Relay
	dmzMetrics    *relay.Metrics
	inMetrics     *relay.Metrics
	dmzReg        *prometheus.Registry
	url           string
	quarantine    string
	ctx           context.Context
	opts          options
	wg            sync.WaitGroup
}

type options struct {
	linger  time.Duration
	pullers int
	// intranetMaxBytes, when set, is the intranet ferry's bundle size limit (its relay's and
	// its link client's); the DMZ keeps the default.
	intranetMaxBytes int
}

func setup(tb testing.TB, o options) *pair {
	tb.Helper()
	p := &pair{pki: fixture.NewPKI(tb), opts: o}
	p.dmzNode, p.node = p.pki.Node(tb, fixture.DMZ), p.pki.Node(tb, fixture.Intranet)
	p.gw, p.core = fixture.DB(tb), fixture.DB(tb)
	p.quarantine = filepath.Join(tb.TempDir(), "quarantine")
	p.dmzReg = prometheus.NewRegistry()
	p.dmz, p.dmzMetrics = newRelay(tb, relay.DMZ, p.dmzNode, p.node, p.gw, p.dmzReg, p.quarantine, o)
	p.in, p.inMetrics = newRelay(tb, relay.Intranet, p.node, p.dmzNode, p.core, prometheus.NewRegistry(), "", o)

	ctx, cancel := context.WithCancel(context.Background())
	p.ctx = ctx
	tb.Cleanup(func() { cancel(); p.wg.Wait() })
	cfg := p.pki.TLS(p.dmzNode, p.node)
	cfg.OnReject = p.dmz.LinkRefused
	ln, err := tlsgm.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		tb.Fatal(err)
	}
	p.url = "https://" + ln.Addr().String()
	srv := link.NewServer(link.ServerConfig{Relay: p.dmz, Logger: logging.Discard(), Registry: p.dmzReg,
		PeerFingerprint: p.node.Fingerprint()})
	p.wg.Go(func() { _ = link.Serve(ctx, logging.Discard(), ln, srv) })
	p.wg.Go(func() { _ = p.dmz.Run(ctx, nil) })
	return p
}

func newRelay(tb testing.TB, side relay.Side, self, peer *fixture.Node, db *sqldb.DB, reg *prometheus.Registry, quarantine string, o options) (*relay.Relay, *relay.Metrics) {
	tb.Helper()
	log := logging.Discard()
	if testing.Verbose() {
		log = logging.New(os.Stderr, "debug", self.Name)
	}
	m := relay.NewMetrics(reg)
	cfg := relay.Config{
		Side: side, Node: self.Name, Peer: peer.Name, DB: db,
		Audit: audit.New(audit.Config{DB: db, Node: self.Name, Actor: "ferryd", Registry: reg}),
		Keys: relay.Keys{Signer: self.Sign.Key, Decrypter: self.Enc.Key,
			PeerSign: peer.Sign.Cert.PublicKey(), PeerEnc: peer.Enc.Cert.PublicKey()},
		Linger: o.linger, Poll: 20 * time.Millisecond, LongPoll: 2 * time.Second, ResendAfter: 5 * time.Second,
		MaxBackoff: 200 * time.Millisecond, Pullers: o.pullers, Quarantine: quarantine, Logger: log,
		Metrics: m,
	}
	if side == relay.Intranet {
		cfg.Limits.MaxBytes = o.intranetMaxBytes
	}
	r, err := relay.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return r, m
}

// client returns a link client with the intranet ferry's certificates (or another node's).
func (p *pair) client(tb testing.TB, as *fixture.Node) *link.Client {
	tb.Helper()
	cfg := p.pki.TLS(as, p.dmzNode)
	c, err := link.NewClient(link.ClientConfig{URL: p.url, TLS: cfg, MaxBytes: p.opts.intranetMaxBytes})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// startIntranet runs the intranet ferry against the DMZ ferry.
func (p *pair) startIntranet(tb testing.TB) {
	tb.Helper()
	c := p.client(tb, p.node)
	p.wg.Go(func() { _ = p.in.Run(p.ctx, c) })
}

// seal makes a bundle as the intranet ferry would, of envs from seq first in lane.
func (p *pair) seal(tb testing.TB, lane string, first int64, envs ...envelope.Envelope) ([]byte, bundle.Header) {
	tb.Helper()
	id, err := bundle.NewID(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	msgs := make([][]byte, len(envs))
	for i, e := range envs {
		if msgs[i], err = e.Marshal(); err != nil {
			tb.Fatal(err)
		}
	}
	h := bundle.Header{BundleID: id, From: fixture.Intranet, To: fixture.DMZ, Lane: lane, FirstSeq: first, Created: time.Now()}
	raw, h, err := bundle.Seal(rand.Reader, h, msgs, p.node.Sign.Key, p.dmzNode.Enc.Cert.PublicKey())
	if err != nil {
		tb.Fatal(err)
	}
	return raw, h
}

func count(tb testing.TB, db *sqldb.DB, query string, args ...any) int {
	tb.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// events returns the audit records of db, oldest first.
func events(tb testing.TB, db *sqldb.DB) []audit.Stored {
	tb.Helper()
	recs, err := audit.Recent(context.Background(), db, 100000)
	if err != nil {
		tb.Fatal(err)
	}
	for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
		recs[i], recs[j] = recs[j], recs[i]
	}
	return recs
}

func countEvents(recs []audit.Stored, event, result string) int {
	n := 0
	for _, r := range recs {
		if r.Record.Event == event && r.Record.Result == result {
			n++
		}
	}
	return n
}
