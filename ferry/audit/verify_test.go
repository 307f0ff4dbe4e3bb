package audit_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/merkle"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
	"finepay/shared/gm"
)

// A node's encryption certificate comes from the same CA under the same name as its signing
// one. Whoever holds only the encryption key (in GM deployments often kept in escrow) rewrites a
// record, recomputes the root and signs a checkpoint of it, shipping the encryption
// certificate: verify refuses it, naming the certificate's usage, even with the auditor's CA.
func TestVerifyRefusesACheckpointSignedWithTheEncryptionKey(t *testing.T) {
	e := newLogEnv(t, sqltest.Open(t, sqldb.Postgres), merkle.SM3)
	e.write(t, 5)
	e.checkpoint(t)
	dir := e.export(t, audit.ExportOptions{})
	if _, err := e.verify(t, dir, nil); err != nil {
		t.Fatalf("untouched export: %v", err)
	}

	b, err := os.ReadFile(filepath.Join(dir, audit.RecordsFile))
	sqltest.Must(t, err)
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	leaves := make([][]byte, len(lines))
	for i, l := range lines {
		var x audit.ExportedRecord
		sqltest.Must(t, json.Unmarshal([]byte(l), &x))
		if i == 1 {
			x.Reason = "rewritten"
			at, err := time.Parse("2006-01-02T15:04:05.000000Z", x.At)
			sqltest.Must(t, err)
			r := audit.Record{At: at, Node: x.Node, Actor: x.Actor, Event: x.Event, Result: x.Result, BundleID: x.BundleID,
				Lane: x.Lane, FirstSeq: x.FirstSeq, LastSeq: x.LastSeq, Peer: x.Peer, Digests: x.Digests, Reason: x.Reason}
			x.LeafHash = hex.EncodeToString(r.LeafHashWith(merkle.SM3))
			nb, err := json.Marshal(x)
			sqltest.Must(t, err)
			lines[i] = string(nb) + "\n"
		}
		leaves[i], err = hex.DecodeString(x.LeafHash)
		sqltest.Must(t, err)
	}
	sqltest.Must(t, os.WriteFile(filepath.Join(dir, audit.RecordsFile), []byte(strings.Join(lines, "")), 0o600))

	enc := e.node.Enc
	note, sig, err := audit.SignCheckpoint(rand.Reader, enc.Key, audit.Checkpoint{Origin: e.node.Name, Size: int64(len(leaves)),
		Root: merkle.Root(merkle.SM3, leaves), Time: e.now, Hash: merkle.SM3})
	sqltest.Must(t, err)
	raw, err := os.ReadFile(filepath.Join(dir, audit.ManifestFile))
	sqltest.Must(t, err)
	var m audit.Manifest
	sqltest.Must(t, json.Unmarshal(raw, &m))
	fp := enc.Cert.Fingerprint()
	m.Checkpoints = []audit.ManifestCheckpoint{{Note: string(note), Signature: base64.StdEncoding.EncodeToString(sig), Cert: fp}}
	mb, err := json.MarshalIndent(m, "", "  ")
	sqltest.Must(t, err)
	pub, err := enc.Cert.PublicKey().MarshalPEM()
	sqltest.Must(t, err)
	for name, content := range map[string][]byte{
		audit.ManifestFile: mb, audit.CheckpointFile: note, audit.SignatureFile: sig, audit.CertFile: enc.Cert.PEM(),
		audit.PublicKeyFile: pub, filepath.Join("certs", strings.TrimPrefix(fp, "sm3:")+".pem"): enc.Cert.PEM(),
	} {
		sqltest.Must(t, os.WriteFile(filepath.Join(dir, name), content, 0o600))
	}

	_, err = e.verify(t, dir, nil)
	if !errors.Is(err, audit.ErrSegment) || !strings.Contains(err.Error(), "not a signing certificate") {
		t.Fatalf("a checkpoint signed with the encryption key: err %v, want a refusal naming the certificate's usage", err)
	}
	if err := enc.Cert.CheckUsage(gm.UsageSign); err == nil {
		t.Fatal("the fixture's encryption certificate allows signing: the test shows nothing")
	}
}

// A hash segment.json gives for records before or after the segment, changed, is named as a
// possible cause, not only the segment's records; intact records outside the segment are not
// blamed.
func TestVerifyNamesPrefixAndSuffixHashes(t *testing.T) {
	e := newLogEnv(t, sqltest.Open(t, sqldb.Postgres), merkle.SM3)
	e.write(t, 8)
	e.checkpoint(t)
	for _, tc := range []struct {
		name string
		o    audit.ExportOptions
		hash func(audit.Manifest) string
		want string
	}{
		{"prefix", audit.ExportOptions{First: 4}, func(m audit.Manifest) string { return m.Prefix[0] },
			"records 4..8 with segment.json's hashes of records 1..3 do not give its signed root"},
		{"suffix", audit.ExportOptions{Last: 5}, func(m audit.Manifest) string { return m.Checkpoints[len(m.Checkpoints)-1].Suffix[0] },
			"records 1..5 with segment.json's hashes of records 6..8 do not give its signed root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := e.export(t, tc.o)
			if _, err := e.verify(t, dir, nil); err != nil {
				t.Fatalf("untouched export: %v", err)
			}
			path := filepath.Join(dir, audit.ManifestFile)
			raw, err := os.ReadFile(path)
			sqltest.Must(t, err)
			var m audit.Manifest
			sqltest.Must(t, json.Unmarshal(raw, &m))
			h := tc.hash(m)
			flipped := "0" + h[1:]
			if h[0] == '0' {
				flipped = "1" + h[1:]
			}
			sqltest.Must(t, os.WriteFile(path, []byte(strings.Replace(string(raw), h, flipped, 1)), 0o600))
			_, err = e.verify(t, dir, nil)
			if !errors.Is(err, audit.ErrSegment) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "a hash in segment.json was changed") {
				t.Fatalf("err %v, want one naming %q and the changed hash", err, tc.want)
			}
		})
	}
}
