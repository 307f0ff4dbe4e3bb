package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/merkle"
	"finepay/ferry/sqldb"
	"finepay/shared/gm"
)

// CheckpointerConfig configures a Checkpointer.
type CheckpointerConfig struct {
	DB       *sqldb.DB
	Log      *Log   // its ferry_audit_log_size follows the checkpoints too (optional)
	Origin   string // the node name that signs
	Signer   gm.Signer
	Cert     *gm.Certificate // the signer's certificate
	CA       *gm.Certificate // its issuer (kept with it for exports; optional)
	Interval time.Duration   // [1m]
	Logger   *slog.Logger
	Now      func() time.Time // [time.Now]
	Rand     io.Reader        // [crypto/rand.Reader]
	Registry prometheus.Registerer
}

// Checkpointer signs the log's tree head when it has grown: every Interval while Run runs, and
// whenever Checkpoint is called (ferryd does at shutdown).
type Checkpointer struct {
	cfg CheckpointerConfig
	log *slog.Logger

	mu   sync.Mutex   // serialises checkpoints
	last atomic.Int64 // Unix nanoseconds of the latest checkpoint (or of the start, when there is none)
}

// NewCheckpointer checks cfg and returns a Checkpointer; ferry_audit_checkpoint_age_seconds is
// registered with cfg.Registry when given.
func NewCheckpointer(cfg CheckpointerConfig) (*Checkpointer, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.DB == nil || cfg.Signer == nil || cfg.Cert == nil:
		return nil, errors.New("audit: checkpointer: database, signer and certificate are required")
	case !validOrigin(cfg.Origin):
		return nil, fmt.Errorf("audit: checkpointer: origin %q", cfg.Origin)
	case !cfg.Signer.Public().Equal(cfg.Cert.PublicKey()):
		return nil, errors.New("audit: checkpointer: the certificate is not the signing key's")
	}
	c := &Checkpointer{cfg: cfg, log: cfg.Logger}
	c.last.Store(cfg.Now().UnixNano())
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferry_audit_checkpoint_age_seconds",
			Help: "Seconds since the latest signed checkpoint of the audit log (since start when there is none)."},
			func() float64 { return c.cfg.Now().Sub(time.Unix(0, c.last.Load())).Seconds() }))
	}
	return c, nil
}

// Start keeps the signing certificate and its CA in ferry_cert and reads the latest checkpoint's
// time for the age metric.
func (c *Checkpointer) Start(ctx context.Context) error {
	if err := PutCert(ctx, c.cfg.DB, c.cfg.Cert, c.cfg.CA, c.cfg.Now()); err != nil {
		return err
	}
	cp, ok, err := LatestCheckpoint(ctx, c.cfg.DB, c.cfg.Origin)
	if err != nil {
		return err
	}
	if ok {
		c.last.Store(cp.Time.UnixNano())
	}
	return nil
}

// Run makes a checkpoint every Interval when the log has grown, until ctx ends. Failures are
// logged (and show in the checkpoint age); the next tick tries again.
func (c *Checkpointer) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, _, err := c.Checkpoint(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("audit: cannot make a checkpoint", "err", err)
		}
	}
}

// Checkpoint numbers the pending records into the log, then signs and stores the log's current
// tree head if the log has grown since origin's latest checkpoint. It returns the latest checkpoint and whether it made it.
func (c *Checkpointer) Checkpoint(ctx context.Context) (StoredCheckpoint, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	db := c.cfg.DB
	if _, _, err := Sequence(ctx, db); err != nil {
		return StoredCheckpoint{}, false, err
	}
	head, err := ReadHead(ctx, db)
	if err != nil {
		return StoredCheckpoint{}, false, err
	}
	prev, ok, err := LatestCheckpoint(ctx, db, c.cfg.Origin)
	if err != nil {
		return StoredCheckpoint{}, false, err
	}
	if ok && prev.Size == head.Size || !ok && head.Size == 0 {
		return prev, false, nil
	}
	if ok && (prev.Size > head.Size || prev.Hash != head.Hash) {
		return prev, false, fmt.Errorf("audit: the log (%d records, %s) is behind or unlike its checkpoint of %d records (%s): restored database?",
			head.Size, head.Hash, prev.Size, prev.Hash)
	}
	f := merkle.NewFrontier(head.Hash)
	if ok {
		// Continue from the previous checkpoint, once sure its stored frontier is what was signed.
		if prev.CertFP == c.cfg.Cert.Fingerprint() {
			if err := c.cfg.Cert.PublicKey().Verify(prev.Note, prev.Signature); err != nil {
				return prev, false, fmt.Errorf("audit: checkpoint %d: %w: %v", prev.Size, ErrCheckpointSignature, err)
			}
		}
		f, err = merkle.UnmarshalFrontier(head.Hash, uint64(prev.Size), prev.frontier)
		if err != nil || !bytes.Equal(f.Root(), prev.Root) {
			return prev, false, fmt.Errorf("audit: the stored frontier of checkpoint %d does not give its signed root (altered?)", prev.Size)
		}
	}
	if err := extend(ctx, db, f, head.Size); err != nil {
		return prev, false, err
	}
	cp := Checkpoint{Origin: c.cfg.Origin, Size: head.Size, Root: f.Root(), Time: c.cfg.Now().UTC().Truncate(time.Second), Hash: head.Hash}
	note, sig, err := SignCheckpoint(c.cfg.Rand, c.cfg.Signer, cp)
	if err != nil {
		return prev, false, err
	}
	_, err = db.ExecContext(ctx, `INSERT INTO ferry_audit_checkpoint (origin, size, root, hash, at, note, signature, cert_fp, frontier)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (origin, size) DO NOTHING`,
		cp.Origin, cp.Size, cp.Root, cp.Hash.String(), cp.Time, note, sig, c.cfg.Cert.Fingerprint(), f.Marshal())
	if err != nil {
		return prev, false, fmt.Errorf("audit: store checkpoint %d: %w", cp.Size, err)
	}
	c.last.Store(cp.Time.UnixNano())
	if c.cfg.Log != nil {
		c.cfg.Log.observeSize(cp.Size)
	}
	c.log.Debug("audit: checkpoint", "size", cp.Size, "hash", cp.Hash.String())
	return StoredCheckpoint{Checkpoint: cp, Note: note, Signature: sig, CertFP: c.cfg.Cert.Fingerprint(), frontier: f.Marshal()}, true, nil
}
