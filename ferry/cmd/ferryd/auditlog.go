package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/evidence"
	"finepay/ferry/merkle"
	"finepay/shared/config"
	"finepay/shared/gm"
)

// auditFlags are the flags of the tamper-evident audit log.
type auditFlags struct {
	checkpointInterval *time.Duration
	retention, hash    *string
}

func newAuditFlags(s *config.Set) *auditFlags {
	return &auditFlags{
		checkpointInterval: s.Duration("checkpoint-interval", time.Minute, "how often the audit log's tree head is signed (when the log grew); also at shutdown"),
		retention:          s.String("audit-retention", "184d", "how long audit records are kept before ferryctl audit purge may remove them (exported ones only); Nd or a Go duration, at least 184d, at most 36500d"),
		hash:               s.String("audit-hash", "sm3", "hash of the audit log's Merkle tree: sm3 or sha256 (fixed once the log has records)"),
	}
}

// auditSettings are the audit flags resolved.
type auditSettings struct {
	checkpointInterval time.Duration
	retention          time.Duration
	hash               merkle.Hash
}

func (f *auditFlags) resolve() (auditSettings, error) {
	var s auditSettings
	var err error
	if s.retention, err = parseDays(*f.retention); err != nil {
		return s, fmt.Errorf("-audit-retention %q: %w", *f.retention, err)
	}
	if err := audit.CheckRetention(s.retention); err != nil {
		return s, fmt.Errorf("-audit-retention %s: %w", *f.retention, err)
	}
	if s.hash, err = merkle.ParseHash(*f.hash); err != nil {
		return s, fmt.Errorf("-audit-hash: %w", err)
	}
	if s.checkpointInterval = *f.checkpointInterval; s.checkpointInterval <= 0 {
		return s, fmt.Errorf("-checkpoint-interval %s: must be positive", s.checkpointInterval)
	}
	return s, nil
}

// maxDays bounds a retention in days: 100 years, well inside what a time.Duration holds (about
// 292 years; beyond it the product would wrap round to a shorter retention).
const maxDays = 36_500

// parseDays reads "184d" (days) or a Go duration ("4416h").
func parseDays(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("want a number of days (184d) or a duration (4416h)")
		}
		if d > maxDays {
			return 0, fmt.Errorf("%d days: at most %dd (100 years)", d, maxDays)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

// openAuditLog fixes the log's hash and retention, and makes the checkpointer (which signs with
// the ferry's signing key) and the non-repudiation evidence store.
func (d *daemon) openAuditLog(ctx context.Context, signer gm.Signer) (*evidence.Store, error) {
	a := d.s.audit
	if err := audit.Configure(ctx, d.db, a.hash, a.retention); err != nil {
		return nil, err
	}
	ca, err := gm.LoadCertificate(d.s.ca)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	own, err := gm.LoadCertificate(d.s.signCert)
	if err != nil {
		return nil, err
	}
	peer, err := gm.LoadCertificate(d.s.peerSignCert)
	if err != nil {
		return nil, err
	}
	d.checkpoints, err = audit.NewCheckpointer(audit.CheckpointerConfig{DB: d.db, Log: d.audit, Origin: d.s.node, Signer: signer,
		Cert: own, CA: ca, Interval: a.checkpointInterval, Logger: d.log, Registry: d.reg})
	if err != nil {
		return nil, err
	}
	if err := d.checkpoints.Start(ctx); err != nil {
		return nil, err
	}
	ev, err := evidence.New(evidence.Config{DB: d.db, Own: own, Peer: peer, CA: ca})
	if err != nil {
		return nil, err
	}
	return ev, ev.Start(ctx)
}

// finalCheckpoint signs the log's head at shutdown, after admin.stop.
func (d *daemon) finalCheckpoint(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if cp, made, err := d.checkpoints.Checkpoint(ctx); err != nil {
		d.log.Error("audit: cannot make the shutdown checkpoint", "err", err)
	} else if made {
		d.log.Info("audit: checkpoint at shutdown", "size", cp.Size)
	}
}
