package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/evidence"
	"finepay/ferry/internal/devpki"
	"finepay/ferry/link"
	"finepay/ferry/relay"
	"finepay/ferry/schema"
	"finepay/ferry/sqldb"
	"finepay/shared/tlsgm"
)

// Node names of the two ferries.
const (
	dmzNode      = devpki.DMZ
	intranetNode = devpki.Intranet
)

// ferryConfig are the relay settings the benchmark runs the ferry with.
type ferryConfig struct {
	lanes       int
	limits      bundle.Limits
	linger      time.Duration
	poll        time.Duration
	pullers     int
	resendAfter time.Duration
	evidence    bool // keep non-repudiation evidence, as ferryd does
}

// pair is a DMZ ferry listening on a GM TLS loopback port and an intranet ferry dialling it,
// each on its own fresh PostgreSQL database, wired as ferryd wires them (audit log, evidence).
type pair struct {
	gw, core *sqldb.DB
	producer *sqldb.DB // the producing service's own pool on the core's database
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	drop     []func()
	client   *link.Client
	start    func() // starts the intranet ferry, which starts the traffic
}

// startPair makes a PKI in dir and two databases on the server at admin, and starts the DMZ
// relay; p.start starts the intranet relay, which dials it.
// onCommit, when not nil, is called with a bundle's ID right after the DMZ committed it.
func startPair(ctx context.Context, admin, dir string, cfg ferryConfig, onCommit func(bundleID string)) (p *pair, err error) {
	p = &pair{}
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	pki, err := devpki.New(dir)
	if err != nil {
		return p, err
	}
	for _, db := range []**sqldb.DB{&p.gw, &p.core} {
		u, drop, err := createDB(ctx, admin)
		if err != nil {
			return p, err
		}
		p.drop = append(p.drop, drop)
		if *db, err = sqldb.Open(ctx, u); err != nil {
			return p, err
		}
		if err := schema.Migrate(ctx, *db); err != nil {
			return p, err
		}
		if db == &p.core {
			if p.producer, err = sqldb.Open(ctx, u); err != nil {
				return p, err
			}
		}
	}
	dmzLog := slog.New(slog.DiscardHandler)
	if onCommit != nil {
		dmzLog = slog.New(commitTap{onCommit})
	}
	dmz, err := newRelay(relay.DMZ, pki, dmzNode, intranetNode, p.gw, cfg, dmzLog)
	if err != nil {
		return p, err
	}
	in, err := newRelay(relay.Intranet, pki, intranetNode, dmzNode, p.core, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return p, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	srvTLS := pki.TLS(dmzNode, intranetNode)
	ln, err := tlsgm.Listen("tcp", "127.0.0.1:0", srvTLS)
	if err != nil {
		return p, err
	}
	srv := link.NewServer(link.ServerConfig{Relay: dmz, PeerFingerprint: pki.Fingerprint(intranetNode), MaxBytes: cfg.limits.MaxBytes})
	p.client, err = link.NewClient(link.ClientConfig{URL: "https://" + ln.Addr().String(), TLS: pki.TLS(intranetNode, dmzNode),
		MaxBytes: cfg.limits.MaxBytes})
	if err != nil {
		ln.Close()
		return p, err
	}
	p.wg.Go(func() { _ = link.Serve(rctx, slog.New(slog.DiscardHandler), ln, srv) })
	p.wg.Go(func() { _ = dmz.Run(rctx, nil) })
	p.start = func() { p.wg.Go(func() { _ = in.Run(rctx, p.client) }) }
	return p, nil
}

// stop stops the relays and drops the databases.
func (p *pair) stop() {
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
	if p.client != nil {
		p.client.Close()
	}
	for _, db := range []*sqldb.DB{p.gw, p.core, p.producer} {
		if db != nil {
			db.Close()
		}
	}
	for _, drop := range p.drop {
		drop()
	}
}

func newRelay(side relay.Side, pki *devpki.PKI, self, peer string, db *sqldb.DB, cfg ferryConfig, log *slog.Logger) (*relay.Relay, error) {
	reg := prometheus.NewRegistry()
	var ev relay.Evidence
	if cfg.evidence { // non-repudiation evidence, as ferryd keeps it
		st, err := evidence.New(evidence.Config{DB: db, Own: pki.Nodes[self].Sign.Cert, Peer: pki.Nodes[peer].Sign.Cert})
		if err != nil {
			return nil, err
		}
		if err := st.Start(context.Background()); err != nil {
			return nil, err
		}
		ev = st
	}
	return relay.New(relay.Config{
		Side: side, Node: self, Peer: peer, DB: db, Evidence: ev,
		Audit: audit.New(audit.Config{DB: db, Node: self, Actor: "ferryd", Registry: reg}),
		Keys: relay.Keys{Signer: pki.Nodes[self].Sign.Key, Decrypter: pki.Nodes[self].Enc.Key,
			PeerSign: pki.Nodes[peer].Sign.Cert.PublicKey(), PeerEnc: pki.Nodes[peer].Enc.Cert.PublicKey()},
		Limits: cfg.limits, Linger: cfg.linger, Poll: cfg.poll, LongPoll: 2 * time.Second, ResendAfter: cfg.resendAfter,
		MaxBackoff: 200 * time.Millisecond, Pullers: cfg.pullers, Logger: log, Metrics: relay.NewMetrics(reg),
	})
}

// commitTap is a log handler that reports the DMZ relay's "bundle received" records, which it
// writes right after a bundle's commit.
type commitTap struct{ f func(bundleID string) }

func (c commitTap) Enabled(context.Context, slog.Level) bool { return true }
func (c commitTap) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c commitTap) WithGroup(string) slog.Handler            { return c }
func (c commitTap) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "relay: bundle received" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "bundle" {
			c.f(a.Value.String())
			return false
		}
		return true
	})
	return nil
}

// createDB creates an empty database on the server at admin and returns its URL and a function
// that drops it.
func createDB(ctx context.Context, admin string) (string, func(), error) {
	a, err := sql.Open("pgx", admin)
	if err != nil {
		return "", nil, err
	}
	defer a.Close()
	b := make([]byte, 6)
	rand.Read(b)
	name := "fp_bench_" + hex.EncodeToString(b)
	if _, err := a.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database (is PostgreSQL running at %s?): %w", admin, err)
	}
	drop := func() {
		if a, err := sql.Open("pgx", admin); err == nil {
			a.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			a.Close()
		}
	}
	u, err := url.Parse(admin)
	if err != nil {
		drop()
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}
