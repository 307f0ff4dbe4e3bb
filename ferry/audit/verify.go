package audit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"finepay/ferry/merkle"
	"finepay/shared/gm"

	jsonv2 "github.com/go-json-experiment/json"
)

// VerifyOptions are what an auditor brings to Verify.
type VerifyOptions struct {
	// CA is the certificate the auditor trusts; nil uses the segment's ca.pem, which then only
	// shows that the segment is consistent with itself.
	CA *gm.Certificate
	// Trusted is the note of a checkpoint the auditor accepted before (checkpoint.txt of an
	// earlier export): the segment's log must extend it.
	Trusted []byte
}

// Report summarises a segment that verified.
type Report struct {
	Origin       string
	Hash         merkle.Hash
	First, Last  int64
	Checkpoints  int
	Latest       Checkpoint // the checkpoint covering Last
	Signers      []string   // common name and fingerprint of each signing certificate
	CA           string     // common name and fingerprint of the trust anchor
	CAFromExport bool       // the trust anchor was the segment's own ca.pem
	Trusted      *Checkpoint
}

// ErrSegment wraps every reason a segment fails verification.
var ErrSegment = errors.New("audit: segment does not verify")

// SegmentError names where a segment failed: a record (by ID and line of records.jsonl) or a
// checkpoint; Line is 0 when the failure is not one line's.
type SegmentError struct {
	ID   int64 // the record, when the failure is one record's
	Line int   // its line in records.jsonl
	Msg  string
}

func (e *SegmentError) Error() string {
	switch {
	case e.Line > 0 && e.ID > 0:
		return fmt.Sprintf("record %d (%s line %d): %s", e.ID, RecordsFile, e.Line, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s line %d: %s", RecordsFile, e.Line, e.Msg)
	}
	return e.Msg
}

// Is makes every SegmentError match ErrSegment.
func (e *SegmentError) Is(target error) bool { return target == ErrSegment }

func fail(format string, args ...any) error { return &SegmentError{Msg: fmt.Sprintf(format, args...)} }

// Verify checks an exported segment in dir without any database: the signing certificates
// against the CA, every checkpoint's signature, that the records give every checkpoint's root,
// that every record's fields give its leaf hash, that IDs are contiguous and times never go
// back, that every record has its required fields, and, given a trusted checkpoint, that the
// log extends it. It stops at the first failure, which names the record or checkpoint.
func Verify(dir string, o VerifyOptions) (Report, error) {
	var rep Report
	var m Manifest
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return rep, fail("%s: %v", ManifestFile, err)
	}
	if err := strictJSON(raw, &m); err != nil {
		return rep, fail("%s: %v", ManifestFile, err)
	}
	if m.Format != SegmentFormat {
		return rep, fail("%s: format %q, want %q", ManifestFile, m.Format, SegmentFormat)
	}
	h, err := merkle.ParseHash(m.Hash)
	if err != nil {
		return rep, fail("%s: %v", ManifestFile, err)
	}
	if !validOrigin(m.Origin) || m.First < 1 || m.Last < m.First || len(m.Checkpoints) == 0 {
		return rep, fail("%s: origin %q, records %d..%d, %d checkpoints", ManifestFile, m.Origin, m.First, m.Last, len(m.Checkpoints))
	}
	rep = Report{Origin: m.Origin, Hash: h, First: m.First, Last: m.Last, Checkpoints: len(m.Checkpoints)}

	ca := o.CA
	if ca == nil {
		if ca, err = gm.LoadCertificate(filepath.Join(dir, CAFile)); err != nil {
			return rep, fail("%s: %v", CAFile, err)
		}
		if ca.Fingerprint() != m.CA {
			return rep, fail("%s is %s; %s names %s", CAFile, ca.Fingerprint(), ManifestFile, m.CA)
		}
		rep.CAFromExport = true
	}
	rep.CA = ca.CommonName() + " (" + ca.Fingerprint() + ")"

	cps, err := checkCheckpoints(dir, m, h, ca, &rep)
	if err != nil {
		return rep, err
	}
	var trusted *Checkpoint
	if o.Trusted != nil {
		t, err := ParseNote(o.Trusted)
		if err != nil {
			return rep, fail("trusted checkpoint: %v", err)
		}
		if t.Origin != m.Origin || t.Hash != h {
			return rep, fail("trusted checkpoint is of %s (%s), the segment of %s (%s)", t.Origin, t.Hash, m.Origin, h)
		}
		trusted, rep.Trusted = &t, &t
	}

	prefix := make([][]byte, len(m.Prefix))
	for i, p := range m.Prefix {
		if prefix[i], err = hex.DecodeString(p); err != nil {
			return rep, fail("%s: prefix hash %d: %v", ManifestFile, i, err)
		}
	}
	f, err := merkle.FrontierOf(h, uint64(m.First-1), prefix)
	if err != nil {
		return rep, fail("%s: prefix: %v", ManifestFile, err)
	}
	roots := map[int64][]byte{int64(f.Size()): f.Root()} // heads at the sizes that matter
	next := 0                                            // the next checkpoint to meet
	check := func() error {
		for next < len(cps) && cps[next].Size == int64(f.Size()) {
			if !bytes.Equal(cps[next].Root, f.Root()) {
				from := m.First
				if next > 0 && cps[next-1].Size >= m.First {
					from = cps[next-1].Size + 1
				}
				size := cps[next].Size
				if size < m.First {
					return fail("checkpoint of %d records: the segment's prefix hashes do not give its signed root (%s altered)", size, ManifestFile)
				}
				// What went into the root and was not proved by an earlier checkpoint: records
				// of the segment, and the hashes segment.json gives for those before and after it.
				var parts, how []string
				if from <= m.Last {
					parts = append(parts, fmt.Sprintf("records %d..%d", from, min(size, m.Last)))
					how = append(how, "a record was altered, replaced, inserted or removed, with its leaf hash recomputed")
				}
				if from == m.First && m.First > 1 {
					parts = append(parts, fmt.Sprintf("%s's hashes of records 1..%d", ManifestFile, m.First-1))
				}
				if size > m.Last {
					parts = append(parts, fmt.Sprintf("%s's hashes of records %d..%d", ManifestFile, m.Last+1, size))
				}
				if len(parts) > len(how) {
					how = append(how, "a hash in "+ManifestFile+" was changed")
				}
				return fail("checkpoint of %d records: %s do not give its signed root: %s", size, strings.Join(parts, " with "), strings.Join(how, ", or "))
			}
			next++
		}
		if trusted != nil && trusted.Size == int64(f.Size()) {
			roots[trusted.Size] = f.Root()
		}
		return nil
	}
	if err := check(); err != nil {
		return rep, err
	}
	if err := checkRecords(filepath.Join(dir, RecordsFile), m, h, f, check); err != nil {
		return rep, err
	}
	cover := cps[len(cps)-1]
	if next == len(cps)-1 && cover.Size > m.Last {
		last := m.Checkpoints[len(m.Checkpoints)-1]
		parts := merkle.Decompose(uint64(m.Last), uint64(cover.Size))
		if len(last.Suffix) != len(parts) {
			return rep, fail("%s: checkpoint of %d records: %d suffix hashes, want %d", ManifestFile, cover.Size, len(last.Suffix), len(parts))
		}
		for i, s := range parts {
			b, err := hex.DecodeString(last.Suffix[i])
			if err == nil {
				err = f.AppendSubtree(s.Level, b)
			}
			if err != nil {
				return rep, fail("%s: suffix hash %d: %v", ManifestFile, i, err)
			}
		}
		if err := check(); err != nil {
			return rep, err
		}
	}
	if next != len(cps) {
		return rep, fail("checkpoint of %d records is not met by the segment's records %d..%d", cps[next].Size, m.First, m.Last)
	}
	rep.Latest = cover.Checkpoint
	if trusted != nil {
		if err := checkTrusted(m, h, *trusted, cover.Checkpoint, roots); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// strictJSON decodes b, which must hold one JSON value and nothing else but white space: member
// names spelt exactly as the tags spell them, none unknown, none twice, valid UTF-8.
// encoding/json would match "Reason" to reason and keep the last of two: a line could then show
// jq or a spreadsheet one value and give verify, and the leaf hash, another.
func strictJSON(b []byte, v any) error {
	return jsonv2.Unmarshal(b, v, jsonv2.RejectUnknownMembers(true))
}

// checkCheckpoints verifies the signing certificates and every checkpoint's signature, and that
// checkpoint.txt, checkpoint.sig, cert.pem and pub.pem are the covering checkpoint's.
func checkCheckpoints(dir string, m Manifest, h merkle.Hash, ca *gm.Certificate, rep *Report) ([]StoredCheckpoint, error) {
	certs := map[string]*gm.Certificate{}
	var out []StoredCheckpoint
	for i, mc := range m.Checkpoints {
		c := certs[mc.Cert]
		if c == nil {
			var err error
			if c, err = gm.LoadCertificate(filepath.Join(dir, fingerprintFile(mc.Cert))); err != nil {
				return nil, fail("certificate %s: %v", mc.Cert, err)
			}
			if c.Fingerprint() != mc.Cert {
				return nil, fail("certificate %s: the file holds %s", mc.Cert, c.Fingerprint())
			}
			if err := c.X509().CheckSignatureFrom(ca.X509()); err != nil {
				return nil, fail("certificate %s (%s) is not issued by %s: %v", mc.Cert, c.CommonName(), ca.CommonName(), err)
			}
			if c.CommonName() != m.Origin {
				return nil, fail("certificate %s is %q's, the checkpoints are %q's", mc.Cert, c.CommonName(), m.Origin)
			}
			if err := c.CheckUsage(gm.UsageSign); err != nil {
				return nil, fail("checkpoint %d is signed with certificate %s: %v", i+1, mc.Cert, err)
			}
			certs[mc.Cert] = c
			rep.Signers = append(rep.Signers, c.CommonName()+" ("+c.Fingerprint()+")")
		}
		sig, err := base64.StdEncoding.DecodeString(mc.Signature)
		if err != nil {
			return nil, fail("checkpoint %d: signature: %v", i+1, err)
		}
		cp, err := VerifyCheckpoint([]byte(mc.Note), sig, c.PublicKey())
		if err != nil {
			return nil, fail("checkpoint %d of %s: %v", i+1, ManifestFile, err)
		}
		for _, t := range []*gm.Certificate{c, ca} {
			if cp.Time.Before(t.X509().NotBefore.Truncate(time.Second)) || cp.Time.After(t.X509().NotAfter) {
				return nil, fail("checkpoint of %d records, made %s: certificate %s was not valid then (%s to %s)", cp.Size,
					cp.Time.Format(time.RFC3339), t.CommonName(), t.X509().NotBefore.UTC().Format(time.RFC3339), t.X509().NotAfter.UTC().Format(time.RFC3339))
			}
		}
		switch {
		case cp.Origin != m.Origin || cp.Hash != h:
			return nil, fail("checkpoint of %d records is of %s (%s), the segment of %s (%s)", cp.Size, cp.Origin, cp.Hash, m.Origin, h)
		case i > 0 && (cp.Size <= out[i-1].Size || cp.Time.Before(out[i-1].Time)):
			return nil, fail("checkpoint of %d records (%s) follows one of %d records (%s): out of order", cp.Size, cp.Time.Format(time.RFC3339),
				out[i-1].Size, out[i-1].Time.Format(time.RFC3339))
		case cp.Size < m.First-1, cp.Size > m.Last && i != len(m.Checkpoints)-1:
			return nil, fail("checkpoint of %d records does not belong to a segment of records %d..%d", cp.Size, m.First, m.Last)
		case i == len(m.Checkpoints)-1 && cp.Size < m.Last:
			return nil, fail("no checkpoint covers record %d (the last is of %d records)", m.Last, cp.Size)
		case len(mc.Suffix) > 0 && cp.Size <= m.Last:
			return nil, fail("checkpoint of %d records has suffix hashes but ends within the segment", cp.Size)
		}
		out = append(out, StoredCheckpoint{Checkpoint: cp, Note: []byte(mc.Note), Signature: sig, CertFP: mc.Cert})
	}
	cover := out[len(out)-1]
	note, err := os.ReadFile(filepath.Join(dir, CheckpointFile))
	if err != nil || !bytes.Equal(note, cover.Note) {
		return nil, fail("%s is not the note of the covering checkpoint (%v)", CheckpointFile, err)
	}
	sig, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil || !bytes.Equal(sig, cover.Signature) {
		return nil, fail("%s is not the covering checkpoint's signature (%v)", SignatureFile, err)
	}
	cert, err := gm.LoadCertificate(filepath.Join(dir, CertFile))
	if err != nil || cert.Fingerprint() != cover.CertFP {
		return nil, fail("%s is not the certificate that signed %s (%v)", CertFile, CheckpointFile, err)
	}
	pemPub, err := os.ReadFile(filepath.Join(dir, PublicKeyFile))
	if err != nil {
		return nil, fail("%s: %v", PublicKeyFile, err)
	}
	pub, err := gm.ParsePublicKeyPEM(pemPub)
	if err != nil || !pub.Equal(cert.PublicKey()) {
		return nil, fail("%s is not the public key of %s (%v)", PublicKeyFile, CertFile, err)
	}
	return out, nil
}

// checkRecords reads records.jsonl, checking each record and appending its leaf to f; check is
// called after each.
func checkRecords(path string, m Manifest, h merkle.Hash, f *merkle.Frontier, check func() error) error {
	file, err := os.Open(path)
	if err != nil {
		return fail("%s: %v", RecordsFile, err)
	}
	defer file.Close()
	rd := bufio.NewReaderSize(file, 1<<16)
	want := m.First
	var prev time.Time
	for line := 1; ; line++ {
		text, rerr := rd.ReadBytes('\n')
		if rerr == io.EOF && len(text) == 0 {
			break
		}
		if rerr != nil && rerr != io.EOF {
			return fail("%s: %v", RecordsFile, rerr)
		}
		if want > m.Last {
			return &SegmentError{Line: line, Msg: fmt.Sprintf("a line after the segment's last record %d", m.Last)}
		}
		var e ExportedRecord
		if err := strictJSON(text, &e); err != nil {
			return &SegmentError{ID: want, Line: line, Msg: fmt.Sprintf("not a record: %v (the record expected here is %d)", err, want)}
		}
		if e.ID != want {
			what := "missing"
			if e.ID < want {
				what = "out of place or repeated"
			}
			return &SegmentError{ID: e.ID, Line: line, Msg: fmt.Sprintf("expected record %d here: record IDs must be contiguous (a record is %s)", want, what)}
		}
		r, err := e.record()
		if err != nil {
			return &SegmentError{ID: e.ID, Line: line, Msg: err.Error()}
		}
		if r.At.Before(prev) {
			return &SegmentError{ID: e.ID, Line: line, Msg: fmt.Sprintf("time %s is before the previous record's %s: records out of order",
				r.At.Format(recordTimeFmt), prev.Format(recordTimeFmt))}
		}
		prev = r.At
		stated, err := hex.DecodeString(e.LeafHash)
		if err != nil || len(stated) != merkle.Size {
			return &SegmentError{ID: e.ID, Line: line, Msg: fmt.Sprintf("leaf hash %q is not %d bytes of hex", e.LeafHash, merkle.Size)}
		}
		norm := r
		norm.Digests = append([]string(nil), r.Digests...)
		if norm = norm.normalize(); !sameRecord(r, norm) {
			return &SegmentError{ID: e.ID, Line: line, Msg: "a field is not in its stored form (invalid text, a comma in a digest, or too long): the record was altered"}
		}
		if leaf := r.LeafHashWith(h); !bytes.Equal(leaf, stated) {
			return &SegmentError{ID: e.ID, Line: line, Msg: "its fields do not give its leaf hash: the record was altered"}
		}
		f.Append(stated)
		if err := check(); err != nil {
			return err
		}
		want++
		if rerr == io.EOF {
			break
		}
	}
	if want <= m.Last {
		return &SegmentError{ID: want, Msg: fmt.Sprintf("record %d is missing: %s ends before the segment's last record %d", want, RecordsFile, m.Last)}
	}
	return nil
}

func sameRecord(a, b Record) bool {
	return a.Node == b.Node && a.Actor == b.Actor && a.Event == b.Event && a.Result == b.Result && a.BundleID == b.BundleID &&
		a.Lane == b.Lane && a.Peer == b.Peer && a.Reason == b.Reason && strings.Join(a.Digests, ",") == strings.Join(b.Digests, ",") &&
		a.At.Equal(b.At)
}

// checkTrusted checks that the segment's log extends the auditor's trusted checkpoint.
func checkTrusted(m Manifest, h merkle.Hash, t, cover Checkpoint, roots map[int64][]byte) error {
	mismatch := func(how string) error {
		return fail("the trusted checkpoint of %d records is not part of this log (%s): the log was rewritten", t.Size, how)
	}
	switch {
	case t.Size > cover.Size:
		return fail("the trusted checkpoint of %d records is newer than the segment's last checkpoint (%d records)", t.Size, cover.Size)
	case t.Size == cover.Size:
		if !bytes.Equal(t.Root, cover.Root) {
			return mismatch("same size, another root")
		}
	case t.Size >= m.First-1 && t.Size <= m.Last:
		if !bytes.Equal(roots[t.Size], t.Root) {
			return mismatch(fmt.Sprintf("the segment's records give another root at size %d", t.Size))
		}
	case t.Size > m.Last:
		return fail("the trusted checkpoint of %d records falls after the segment's records (%d..%d) and before its checkpoint of %d: export up to %d or later",
			t.Size, m.First, m.Last, cover.Size, t.Size)
	default:
		c := m.Consistency
		if c == nil || c.From != t.Size || c.To != cover.Size {
			return fail("the trusted checkpoint of %d records precedes the segment (records %d..%d): export with -from %d, or with -consistency-from %d",
				t.Size, m.First, m.Last, t.Size+1, t.Size)
		}
		proof := make([][]byte, len(c.Proof))
		for i, p := range c.Proof {
			var err error
			if proof[i], err = hex.DecodeString(p); err != nil {
				return fail("%s: consistency proof: %v", ManifestFile, err)
			}
		}
		if err := merkle.VerifyConsistency(h, uint64(t.Size), uint64(cover.Size), t.Root, cover.Root, proof); err != nil {
			return mismatch(err.Error())
		}
	}
	return nil
}
