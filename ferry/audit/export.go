package audit

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"finepay/ferry/merkle"
	"finepay/ferry/sqldb"
	"finepay/shared/gm"
)

// ExportOptions say which segment to export. Zero values take the defaults in brackets.
type ExportOptions struct {
	Origin string // whose checkpoints [the origin of the latest checkpoint]
	First  int64  // first record ID [the first record not purged]
	Last   int64  // last record ID [the size of Origin's latest checkpoint]
	// ConsistencyFrom, when > 0, adds a consistency proof from the tree of that many records
	// (an auditor's earlier checkpoint before First) to the covering checkpoint.
	ConsistencyFrom int64
	CA              *gm.Certificate // CA certificate to ship [the signer's issuer, as ferryd kept it]
	Now             time.Time       // [time.Now]
}

// ErrNoCheckpoint: no signed checkpoint covers the records asked for yet.
var ErrNoCheckpoint = errors.New("audit: no checkpoint covers the records yet")

// Export writes records First..Last with the checkpoints that cover them and the certificates
// that check them to dir (created; it must not exist or be empty), and syncs it to disk. It
// returns the manifest written. It does not verify what it wrote: see Verify.
func Export(ctx context.Context, db *sqldb.DB, dir string, o ExportOptions) (Manifest, error) {
	var m Manifest
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if _, _, err := Sequence(ctx, db); err != nil {
		return m, err
	}
	head, err := ReadHead(ctx, db)
	if err != nil {
		return m, err
	}
	if o.Origin == "" {
		latest, ok, err := LatestCheckpoint(ctx, db, "")
		if err != nil {
			return m, err
		}
		if !ok {
			return m, fmt.Errorf("%w: the log has no checkpoint (ferryd makes one every -checkpoint-interval)", ErrNoCheckpoint)
		}
		o.Origin = latest.Origin
	}
	if o.Last == 0 {
		latest, ok, err := LatestCheckpoint(ctx, db, o.Origin)
		if err != nil {
			return m, err
		}
		if !ok {
			return m, fmt.Errorf("%w: %s has no checkpoint", ErrNoCheckpoint, o.Origin)
		}
		o.Last = latest.Size
	}
	if o.First == 0 {
		o.First = head.Purged + 1
	}
	switch {
	case o.First <= head.Purged:
		return m, fmt.Errorf("audit: export: records up to %d were purged; the first that can be exported is %d", head.Purged, head.Purged+1)
	case o.Last > head.Size || o.First > o.Last:
		return m, fmt.Errorf("audit: export: records %d..%d: the log has records %d..%d", o.First, o.Last, head.Purged+1, head.Size)
	case o.ConsistencyFrom < 0 || o.ConsistencyFrom >= o.First:
		return m, fmt.Errorf("audit: export: a consistency proof from %d records is for an earlier tree than the segment (before %d)", o.ConsistencyFrom, o.First)
	}
	cover, ok, err := covering(ctx, db, o.Origin, o.Last)
	if err != nil {
		return m, err
	}
	if !ok {
		return m, fmt.Errorf("%w: record %d is not covered by a checkpoint of %s yet", ErrNoCheckpoint, o.Last, o.Origin)
	}
	if cover.Hash != head.Hash {
		return m, fmt.Errorf("audit: export: checkpoint %d is under %s, the log under %s", cover.Size, cover.Hash, head.Hash)
	}
	cps, err := Checkpoints(ctx, db, o.Origin, o.First-1, cover.Size)
	if err != nil {
		return m, err
	}
	if err := createEmpty(dir); err != nil {
		return m, err
	}
	m = Manifest{Format: SegmentFormat, Origin: o.Origin, Hash: head.Hash.String(), First: o.First, Last: o.Last, Exported: o.Now.UTC()}
	prefix, err := frontierAt(ctx, db, head.Hash, o.First-1)
	if err != nil {
		return m, err
	}
	m.Prefix = hexAll(prefix.Hashes())
	sub := subtreeFunc(ctx, db, head.Hash)
	signers := map[string]*gm.Certificate{}
	for _, cp := range cps {
		mc := ManifestCheckpoint{Note: string(cp.Note), Signature: base64.StdEncoding.EncodeToString(cp.Signature), Cert: cp.CertFP}
		if cp.Size > o.Last {
			for _, s := range merkle.Decompose(uint64(o.Last), uint64(cp.Size)) {
				h, err := sub(s.Start, s.End())
				if err != nil {
					return m, err
				}
				mc.Suffix = append(mc.Suffix, hex.EncodeToString(h))
			}
		}
		m.Checkpoints = append(m.Checkpoints, mc)
		if signers[cp.CertFP] == nil {
			c, _, err := GetCert(ctx, db, cp.CertFP)
			if err != nil {
				return m, err
			}
			signers[cp.CertFP] = c
		}
	}
	if o.ConsistencyFrom > 0 {
		proof, err := merkle.ConsistencyProof(uint64(o.ConsistencyFrom), uint64(cover.Size), sub)
		if err != nil {
			return m, err
		}
		m.Consistency = &ManifestConsistency{From: o.ConsistencyFrom, To: cover.Size, Proof: hexAll(proof)}
	}
	ca := o.CA
	if ca == nil {
		_, issuer, err := GetCert(ctx, db, cover.CertFP)
		if err != nil {
			return m, err
		}
		if issuer == "" {
			return m, fmt.Errorf("audit: export: the issuer of %s is not known: give the CA certificate", cover.CertFP)
		}
		if ca, _, err = GetCert(ctx, db, issuer); err != nil {
			return m, err
		}
	}
	m.CA = ca.Fingerprint()
	if err := writeRecords(ctx, db, filepath.Join(dir, RecordsFile), o.First, o.Last); err != nil {
		return m, err
	}
	pub, err := signers[cover.CertFP].PublicKey().MarshalPEM()
	if err != nil {
		return m, err
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return m, err
	}
	files := map[string][]byte{
		ManifestFile: append(manifest, '\n'), CheckpointFile: cover.Note, SignatureFile: cover.Signature,
		CertFile: signers[cover.CertFP].PEM(), PublicKeyFile: pub, CAFile: ca.PEM(),
	}
	for fp, c := range signers {
		files[fingerprintFile(fp)] = c.PEM()
	}
	for name, b := range files {
		if err := writeSynced(filepath.Join(dir, name), b); err != nil {
			return m, err
		}
	}
	for _, d := range []string{filepath.Join(dir, CertsDir), dir} {
		if err := syncDir(d); err != nil {
			return m, err
		}
	}
	return m, nil
}

func hexAll(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h)
	}
	return out
}

// createEmpty makes dir and dir/certs; dir may exist if it is empty.
func createEmpty(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("audit: export: %s is not empty", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, CertsDir), 0o750); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	return nil
}

func writeRecords(ctx context.Context, db *sqldb.DB, path string, first, last int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<16)
	enc := json.NewEncoder(w)
	err = eachRecord(ctx, db, `WHERE id >= $1 AND id <= $2 ORDER BY id`, []any{first, last}, func(s Stored) error {
		return enc.Encode(exportRecord(s))
	})
	if err != nil {
		return fmt.Errorf("audit: export records: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	return f.Close()
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit: export: sync %s: %w", dir, err)
	}
	return nil
}

// RecordExport notes in ferry_audit_export that records m.First..m.Last were exported to dir
// and verified there: from then on Purge may remove them (once older than the retention).
func RecordExport(ctx context.Context, db *sqldb.DB, m Manifest, dir, actor string, now time.Time) error {
	last := m.Checkpoints[len(m.Checkpoints)-1]
	cp, err := ParseNote([]byte(last.Note))
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	_, err = db.ExecContext(ctx, `INSERT INTO ferry_audit_export (first_id, last_id, origin, checkpoint_size, root, dir, actor, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, m.First, m.Last, m.Origin, cp.Size, cp.Root, abs, actor, now.UTC())
	if err != nil {
		return fmt.Errorf("audit: record export: %w", err)
	}
	return nil
}
