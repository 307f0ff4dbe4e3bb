package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/audit"
	"finepay/ferry/link"
	"finepay/ferry/outbox"
	"finepay/ferry/relay"
	"finepay/ferry/schema"
	"finepay/ferry/spool"
	"finepay/ferry/sqldb"
	"finepay/shared/gm"
	"finepay/shared/httpx"
	"finepay/shared/tlsgm"
)

// daemon is a started ferryd.
type daemon struct {
	s       settings
	log     *slog.Logger
	db      *sqldb.DB
	reg     *prometheus.Registry
	audit   *audit.Log
	relay   *relay.Relay
	tls     tlsgm.Config
	peerFP  string
	metrics *relay.Metrics

	checkpoints *audit.Checkpointer
	spool       *spool.Spool // with -transport spool
}

// open connects to the database, migrates it, loads and checks the keys and builds the relay.
func open(ctx context.Context, s settings, log *slog.Logger) (*daemon, error) {
	keys, peerFP, err := loadKeys(s)
	if err != nil {
		return nil, err
	}
	db, err := sqldb.Open(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if err := schema.Migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	d := &daemon{s: s, log: log, db: db, reg: prometheus.NewRegistry(), peerFP: peerFP}
	d.audit = audit.New(audit.Config{DB: db, Node: s.node, Actor: "ferryd", Logger: log, Registry: d.reg})
	ev, err := d.openAuditLog(ctx, keys.Signer)
	if err != nil {
		db.Close()
		return nil, err
	}
	d.metrics = relay.NewMetrics(d.reg)
	d.reg.MustRegister(outbox.NewBacklogCollector(db, "ferryd"))
	crash, err := crashHook(log)
	if err != nil {
		db.Close()
		return nil, err
	}
	d.relay, err = relay.New(relay.Config{
		Side: s.side, Node: s.node, Peer: s.peer, DB: db, Audit: d.audit, Keys: keys, Limits: s.limits,
		Linger: s.linger, Poll: s.poll, LongPoll: s.longPoll, ResendAfter: s.resendAfter, MaxBackoff: s.backoff,
		Pullers: s.pullers, Quarantine: s.quarantine, Logger: log, Metrics: d.metrics, Evidence: ev,
		Failpoint: crash,
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	d.tls = tlsgm.Config{
		SignCertFile: s.signCert, SignKeyFile: s.signKey, EncCertFile: s.encCert, EncKeyFile: s.encKey,
		CAFile: s.ca, AllowedPeers: []string{peerFP}, ServerName: s.peerServerName, OnReject: d.relay.LinkRefused,
	}
	return d, nil
}

func (d *daemon) close() { d.db.Close() }

// loadKeys loads the keys and certificates, checks each certificate against the CA, its common
// name against the node it belongs to and each key against its certificate, and returns the
// relay's keys and the peer's signing certificate fingerprint (the link allow-list).
func loadKeys(s settings) (relay.Keys, string, error) {
	var k relay.Keys
	ca, err := gm.LoadCertificate(s.ca)
	if err != nil {
		return k, "", fmt.Errorf("CA: %w", err)
	}
	signKey, err := gm.LoadPrivateKey(s.signKey)
	if err != nil {
		return k, "", fmt.Errorf("signing key: %w", err)
	}
	encKey, err := gm.LoadPrivateKey(s.encKey)
	if err != nil {
		return k, "", fmt.Errorf("encryption key: %w", err)
	}
	var peerSign, peerEnc *gm.Certificate
	for _, c := range []struct {
		path, node string
		usage      gm.Usage
		key        *gm.PrivateKey
		out        **gm.Certificate
	}{
		{s.signCert, s.node, gm.UsageSign, signKey, nil}, {s.encCert, s.node, gm.UsageEncrypt, encKey, nil},
		{s.peerSignCert, s.peer, gm.UsageSign, nil, &peerSign}, {s.peerEncCert, s.peer, gm.UsageEncrypt, nil, &peerEnc},
	} {
		cert, err := loadCert(c.path, c.node, c.usage, ca, c.key)
		if err != nil {
			return k, "", err
		}
		if c.out != nil {
			*c.out = cert
		}
	}
	k = relay.Keys{Signer: signKey, Decrypter: encKey, PeerSign: peerSign.PublicKey(), PeerEnc: peerEnc.PublicKey()}
	return k, peerSign.Fingerprint(), nil
}

func loadCert(path, node string, usage gm.Usage, ca *gm.Certificate, key *gm.PrivateKey) (*gm.Certificate, error) {
	c, err := gm.LoadCertificate(path)
	if err != nil {
		return nil, err
	}
	if err := c.VerifySignedBy(ca); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.CheckUsage(usage); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.CommonName() != node {
		return nil, fmt.Errorf("%s: certificate of %q, expected %q", path, c.CommonName(), node)
	}
	if key != nil && !key.Public().Equal(c.PublicKey()) {
		return nil, fmt.Errorf("%s: certificate does not match its key", path)
	}
	return c, nil
}

// serve runs the listeners and the relay until ctx ends or one of them fails.
func (d *daemon) serve(parent context.Context) error {
	var client *link.Client
	var serveLink func(context.Context) error
	switch {
	case d.s.transport.transport == transportSpool:
		// The spool only reads and writes its directories: no listener, nothing dialled.
		var err error
		if d.spool, err = d.openSpool(); err != nil {
			return err
		}
	case d.s.side == relay.DMZ:
		ln, err := tlsgm.Listen("tcp", d.s.listen, d.tls)
		if err != nil {
			return fmt.Errorf("link listener: %w", err)
		}
		srv := link.NewServer(link.ServerConfig{Relay: d.relay, Logger: d.log, Registry: d.reg,
			PeerFingerprint: d.peerFP, MaxBytes: d.s.limits.MaxBytes})
		serveLink = func(ctx context.Context) error { return link.Serve(ctx, d.log.With("listener", "link"), ln, srv) }
	case d.s.side == relay.Intranet:
		var err error
		client, err = link.NewClient(link.ClientConfig{URL: d.s.peerURL, TLS: d.tls, MaxBytes: d.s.limits.MaxBytes})
		if err != nil {
			return err
		}
		defer client.Close()
	}
	d.admin(parent, "admin.start", fmt.Sprintf("side=%s peer=%s limits=%d messages/%d bytes audit-hash=%s audit-retention=%s checkpoint-interval=%s",
		d.s.side, d.s.peer, d.s.limits.MaxMessages, d.s.limits.MaxBytes, d.s.audit.hash, d.s.audit.retention, d.s.audit.checkpointInterval)+d.s.transport.describe())

	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	var wg sync.WaitGroup
	launch := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		})
	}
	launch("checkpoints", d.checkpoints.Run)
	launch("metrics", func(ctx context.Context) error {
		return httpx.Serve(ctx, d.log.With("listener", "metrics"), d.s.metrics, d.metricsHandler(), nil)
	})
	switch {
	case d.spool != nil:
		launch("relay", func(ctx context.Context) error { return d.relay.RunDriver(ctx, d.spool) })
	case serveLink != nil:
		launch("link", serveLink)
		launch("relay", func(ctx context.Context) error { return d.relay.Run(ctx, nil) })
	default:
		launch("relay", func(ctx context.Context) error { return d.relay.Run(ctx, client) })
	}
	<-ctx.Done()
	wg.Wait()
	d.admin(context.WithoutCancel(parent), "admin.stop", context.Cause(ctx).Error())
	d.finalCheckpoint(context.WithoutCancel(parent))
	if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// admin records an administrative event of the daemon itself; a failure is logged (by the
// audit log) and shows in /readyz.
func (d *daemon) admin(ctx context.Context, event, reason string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = d.audit.Record(ctx, audit.Record{Event: event, Result: audit.OK, Peer: d.s.peer, Reason: reason})
}

// metricsHandler serves /healthz, /readyz and /metrics. /readyz says why the ferry is not ready
// (audit trail, database), so it replaces httpx's, which only logs the cause.
func (d *daemon) metricsHandler() http.Handler {
	e, _ := httpx.New(httpx.Options{Service: "ferryd", Logger: d.log, Registry: d.reg})
	e.GET("/readyz", func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := errors.Join(d.relay.Ready(ctx), d.spoolErr()); err != nil {
			return httpx.Wrap(http.StatusServiceUnavailable, "NOT_READY", "not ready: "+err.Error(), err)
		}
		return c.String(http.StatusOK, "ready\n")
	})
	return e
}
