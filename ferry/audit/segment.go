package audit

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// An exported segment is a folder:
//
//	segment.json      the manifest (Manifest): origin, hash, record range, the heads that join
//	                  the segment to the rest of the log, and every checkpoint covering it
//	records.jsonl     the records, one JSON object (ExportedRecord) per line, in ID order
//	checkpoint.txt    the note of the checkpoint covering the last record, exactly as signed
//	checkpoint.sig    its SM2 signature (DER)
//	cert.pem          the certificate that signed checkpoint.txt
//	pub.pem           its public key (for openssl pkeyutl)
//	ca.pem            the CA certificate that issued the signing certificates
//	certs/HEX.pem     every certificate that signed a checkpoint of the manifest, by the hex of
//	                  its SM3 fingerprint
const (
	SegmentFormat     = "finepay-ferry-audit-segment/1"
	ManifestFile      = "segment.json"
	RecordsFile       = "records.jsonl"
	CheckpointFile    = "checkpoint.txt"
	SignatureFile     = "checkpoint.sig"
	CertFile          = "cert.pem"
	PublicKeyFile     = "pub.pem"
	CAFile            = "ca.pem"
	CertsDir          = "certs"
	recordTimeFmt     = "2006-01-02T15:04:05.000000Z"
	fingerprintPrefix = "sm3:"
)

// Manifest describes an exported segment: records First..Last of Origin's log.
type Manifest struct {
	Format string `json:"format"`
	Origin string `json:"origin"`
	Hash   string `json:"hash"`
	First  int64  `json:"first"`
	Last   int64  `json:"last"`
	// Prefix holds the heads of the perfect subtrees of records 1..First-1 (merkle.Decompose(0,
	// First-1)), hex, largest first: with the records they give every checkpoint's root.
	Prefix []string `json:"prefix"`
	// Checkpoints are Origin's signed checkpoints from size First-1 on, smallest first; the last
	// covers Last.
	Checkpoints []ManifestCheckpoint `json:"checkpoints"`
	// Consistency, when asked for at export, proves that an earlier tree (before First) is a
	// prefix of the last checkpoint's.
	Consistency *ManifestConsistency `json:"consistency,omitempty"`
	CA          string               `json:"ca"` // fingerprint of ca.pem
	Exported    time.Time            `json:"exported"`
}

// ManifestCheckpoint is one signed checkpoint of a segment.
type ManifestCheckpoint struct {
	Note      string `json:"note"`      // the signed text
	Signature string `json:"signature"` // base64 of the DER signature
	Cert      string `json:"cert"`      // fingerprint of the signing certificate (certs/HEX.pem)
	// Suffix, for a checkpoint past Last only: the heads of the perfect subtrees of records
	// Last+1..size (merkle.Decompose(Last, size)), hex.
	Suffix []string `json:"suffix,omitempty"`
}

// ManifestConsistency is an RFC 6962 consistency proof from the tree of From records to the
// tree of To records (the last checkpoint), hex, deepest first.
type ManifestConsistency struct {
	From  int64    `json:"from"`
	To    int64    `json:"to"`
	Proof []string `json:"proof"`
}

// ExportedRecord is one line of records.jsonl: every field of a record, its ID and the leaf
// hash stored with it (hex).
type ExportedRecord struct {
	ID       int64    `json:"id"`
	At       string   `json:"at"` // RFC 3339 UTC, microseconds
	Node     string   `json:"node"`
	Actor    string   `json:"actor"`
	Event    string   `json:"event"`
	Result   string   `json:"result"`
	BundleID string   `json:"bundle_id"`
	Lane     string   `json:"lane"`
	FirstSeq int64    `json:"first_seq"`
	LastSeq  int64    `json:"last_seq"`
	Peer     string   `json:"peer"`
	Digests  []string `json:"digests"`
	Reason   string   `json:"reason"`
	LeafHash string   `json:"leaf_hash"`
}

func exportRecord(s Stored) ExportedRecord {
	r := s.Record
	d := r.Digests
	if d == nil {
		d = []string{}
	}
	return ExportedRecord{ID: s.ID, At: r.At.UTC().Format(recordTimeFmt), Node: r.Node, Actor: r.Actor, Event: r.Event,
		Result: r.Result, BundleID: r.BundleID, Lane: r.Lane, FirstSeq: r.FirstSeq, LastSeq: r.LastSeq, Peer: r.Peer,
		Digests: d, Reason: r.Reason, LeafHash: hex.EncodeToString(s.LeafHash)}
}

// record returns the exported record's fields as a Record, checking the time's form.
func (e ExportedRecord) record() (Record, error) {
	r := Record{Node: e.Node, Actor: e.Actor, Event: e.Event, Result: e.Result, BundleID: e.BundleID, Lane: e.Lane,
		FirstSeq: e.FirstSeq, LastSeq: e.LastSeq, Peer: e.Peer, Digests: e.Digests, Reason: e.Reason}
	at, err := time.Parse(recordTimeFmt, e.At)
	if err != nil {
		return r, fmt.Errorf("time %q is not RFC 3339 UTC with microseconds", e.At)
	}
	r.At = at.UTC()
	var missing []string
	for _, f := range []struct{ name, v string }{{"at", e.At}, {"node", e.Node}, {"actor", e.Actor}, {"event", e.Event}, {"result", e.Result}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return r, fmt.Errorf("required field %s missing or empty", strings.Join(missing, ", "))
	}
	return r, nil
}

// fingerprintFile is the file name of a certificate in certs/.
func fingerprintFile(fp string) string {
	return CertsDir + "/" + strings.TrimPrefix(fp, fingerprintPrefix) + ".pem"
}
