package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"finepay/ferry/merkle"
	"finepay/ferry/sqldb"
	"finepay/shared/gm"
)

// ErrMissing: a record the log's size says exists is neither in ferry_audit nor purged.
var ErrMissing = errors.New("audit: record missing from the log")

// eachLeaf calls fn with the ID and leaf hash of records after..upto in order, reading the
// purged leaf hashes and the records. A record that is missing is an error wrapping ErrMissing.
func eachLeaf(ctx context.Context, db *sqldb.DB, after, upto int64, fn func(id int64, leaf []byte) error) error {
	if upto <= after {
		return nil
	}
	rows, err := db.QueryContext(ctx, `SELECT id, leaf_hash FROM ferry_audit_purged WHERE id > $1 AND id <= $2
		UNION ALL SELECT id, leaf_hash FROM ferry_audit WHERE id > $1 AND id <= $2 ORDER BY 1`, after, upto)
	if err != nil {
		return fmt.Errorf("audit: read leaves %d..%d: %w", after+1, upto, err)
	}
	defer rows.Close()
	next := after + 1
	for rows.Next() {
		var id int64
		var leaf []byte
		if err := rows.Scan(&id, &leaf); err != nil {
			return fmt.Errorf("audit: read leaves: %w", err)
		}
		if id != next {
			return fmt.Errorf("%w: record %d (the next one found is %d)", ErrMissing, next, id)
		}
		if len(leaf) != merkle.Size {
			return fmt.Errorf("audit: record %d: leaf hash of %d bytes", id, len(leaf))
		}
		if err := fn(id, leaf); err != nil {
			return err
		}
		next++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: read leaves: %w", err)
	}
	if next != upto+1 {
		return fmt.Errorf("%w: record %d (the log has %d)", ErrMissing, next, upto)
	}
	return nil
}

// extend appends the leaves of records f.Size()+1..upto to f.
func extend(ctx context.Context, db *sqldb.DB, f *merkle.Frontier, upto int64) error {
	return eachLeaf(ctx, db, int64(f.Size()), upto, func(_ int64, leaf []byte) error {
		f.Append(leaf)
		return nil
	})
}

// subtreeFunc returns MTH(D[a:b]) from the database: leaves a..b-1 are records a+1..b.
func subtreeFunc(ctx context.Context, db *sqldb.DB, h merkle.Hash) merkle.SubtreeFunc {
	return func(a, b uint64) ([]byte, error) {
		f := merkle.NewFrontier(h)
		err := eachLeaf(ctx, db, int64(a), int64(b), func(_ int64, leaf []byte) error {
			f.Append(leaf)
			return nil
		})
		if err != nil {
			return nil, err
		}
		return f.Root(), nil
	}
}

// frontierAt returns the log's frontier at size n, starting from the largest checkpoint of at
// most n (whose stored frontier must give its signed root) and reading the leaves after it.
func frontierAt(ctx context.Context, db *sqldb.DB, h merkle.Hash, n int64) (*merkle.Frontier, error) {
	f := merkle.NewFrontier(h)
	var size int64
	var root, fr []byte
	err := db.QueryRowContext(ctx, `SELECT size, root, frontier FROM ferry_audit_checkpoint WHERE hash = $1 AND size <= $2
		ORDER BY size DESC LIMIT 1`, h.String(), n).Scan(&size, &root, &fr)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("audit: frontier at %d: %w", n, err)
	default:
		start, err := merkle.UnmarshalFrontier(h, uint64(size), fr)
		if err != nil || !bytes.Equal(start.Root(), root) {
			return nil, fmt.Errorf("audit: the stored frontier of checkpoint %d does not give its root (altered?)", size)
		}
		f = start
	}
	if err := extend(ctx, db, f, n); err != nil {
		return nil, err
	}
	return f, nil
}

// StoredCheckpoint is a signed checkpoint as kept in ferry_audit_checkpoint.
type StoredCheckpoint struct {
	Checkpoint
	Note      []byte
	Signature []byte
	CertFP    string // fingerprint of the signing certificate (ferry_cert)
	frontier  []byte
}

func scanCheckpoints(ctx context.Context, db *sqldb.DB, where string, args ...any) ([]StoredCheckpoint, error) {
	rows, err := db.QueryContext(ctx, `SELECT note, signature, cert_fp, frontier FROM ferry_audit_checkpoint `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoints: %w", err)
	}
	defer rows.Close()
	var out []StoredCheckpoint
	for rows.Next() {
		var s StoredCheckpoint
		if err := rows.Scan(&s.Note, &s.Signature, &s.CertFP, &s.frontier); err != nil {
			return nil, fmt.Errorf("audit: checkpoints: %w", err)
		}
		if s.Checkpoint, err = ParseNote(s.Note); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// LatestCheckpoint returns the latest checkpoint of origin ("" for any origin), or false.
func LatestCheckpoint(ctx context.Context, db *sqldb.DB, origin string) (StoredCheckpoint, bool, error) {
	cps, err := scanCheckpoints(ctx, db, `WHERE origin = $1 OR $1 = '' ORDER BY size DESC, at DESC LIMIT 1`, origin)
	if err != nil || len(cps) == 0 {
		return StoredCheckpoint{}, false, err
	}
	return cps[0], true, nil
}

// Checkpoints returns origin's checkpoints with sizes from..to, smallest first.
func Checkpoints(ctx context.Context, db *sqldb.DB, origin string, from, to int64) ([]StoredCheckpoint, error) {
	return scanCheckpoints(ctx, db, `WHERE origin = $1 AND size >= $2 AND size <= $3 ORDER BY size`, origin, from, to)
}

// covering returns origin's smallest checkpoint of at least size n, or false.
func covering(ctx context.Context, db *sqldb.DB, origin string, n int64) (StoredCheckpoint, bool, error) {
	cps, err := scanCheckpoints(ctx, db, `WHERE origin = $1 AND size >= $2 ORDER BY size LIMIT 1`, origin, n)
	if err != nil || len(cps) == 0 {
		return StoredCheckpoint{}, false, err
	}
	return cps[0], true, nil
}

// PutCert keeps a certificate (and, when given, the CA that issued it) in ferry_cert, so that
// exports and proofs can ship the certificates their signatures need.
func PutCert(ctx context.Context, db *sqldb.DB, cert, issuer *gm.Certificate, now time.Time) error {
	put := func(c *gm.Certificate, issuerFP string) error {
		_, err := db.ExecContext(ctx, `INSERT INTO ferry_cert (fingerprint, der, common_name, issuer_fp, added_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (fingerprint) DO NOTHING`, c.Fingerprint(), c.Raw(), c.CommonName(), issuerFP, now.UTC())
		if err != nil {
			return fmt.Errorf("audit: keep certificate %s: %w", c.CommonName(), err)
		}
		return nil
	}
	if issuer == nil {
		return put(cert, "")
	}
	if err := put(issuer, ""); err != nil {
		return err
	}
	return put(cert, issuer.Fingerprint())
}

// GetCert returns the certificate of fingerprint fp from ferry_cert and the fingerprint of its
// issuer ("" when unknown).
func GetCert(ctx context.Context, db *sqldb.DB, fp string) (*gm.Certificate, string, error) {
	var der []byte
	var issuer string
	err := db.QueryRowContext(ctx, `SELECT der, issuer_fp FROM ferry_cert WHERE fingerprint = $1`, fp).Scan(&der, &issuer)
	if err != nil {
		return nil, "", fmt.Errorf("audit: certificate %s: %w", fp, err)
	}
	c, err := gm.ParseCertificateDER(der)
	if err != nil {
		return nil, "", fmt.Errorf("audit: certificate %s: %w", fp, err)
	}
	if c.Fingerprint() != fp {
		return nil, "", fmt.Errorf("audit: certificate %s: stored bytes have another fingerprint", fp)
	}
	return c, issuer, nil
}

// Inclusion is the proof that a record is in a signed checkpoint of the log.
type Inclusion struct {
	Record     Stored
	Checkpoint StoredCheckpoint
	Path       [][]byte // the audit path, deepest first
}

// ErrNotCovered: no checkpoint covers the record yet.
var ErrNotCovered = errors.New("audit: no checkpoint covers the record yet")

// ProveInclusion returns the proof that record s is leaf s.ID-1 of origin's latest checkpoint
// ("" for any origin).
func ProveInclusion(ctx context.Context, db *sqldb.DB, s Stored, origin string) (Inclusion, error) {
	cp, ok, err := LatestCheckpoint(ctx, db, origin)
	if err != nil {
		return Inclusion{}, err
	}
	if !ok || cp.Size < s.ID {
		return Inclusion{}, fmt.Errorf("%w: record %d", ErrNotCovered, s.ID)
	}
	path, err := merkle.InclusionProof(uint64(s.ID-1), uint64(cp.Size), subtreeFunc(ctx, db, cp.Hash))
	if err != nil {
		return Inclusion{}, err
	}
	return Inclusion{Record: s, Checkpoint: cp, Path: path}, nil
}

// Verify checks the inclusion with the checkpoint signer's certificate: the checkpoint's
// signature, and that the record's fields give a leaf on the audit path to its root.
func (in Inclusion) Verify(signer *gm.Certificate) error {
	cp := in.Checkpoint
	if _, err := VerifyCheckpoint(cp.Note, cp.Signature, signer.PublicKey()); err != nil {
		return err
	}
	leaf := in.Record.Record.LeafHashWith(cp.Hash)
	if err := merkle.VerifyInclusion(cp.Hash, uint64(in.Record.ID-1), uint64(cp.Size), leaf, in.Path, cp.Root); err != nil {
		return fmt.Errorf("audit: record %d in checkpoint %d: %w", in.Record.ID, cp.Size, err)
	}
	return nil
}
