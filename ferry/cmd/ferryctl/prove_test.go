package main

import (
	"context"
	"crypto/rand"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/evidence"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/link"
	"finepay/ferry/relay"
	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
	"finepay/shared/logging"
	"finepay/shared/tlsgm"
)

// ferries are the two ferries of the link tests (a DMZ relay listening on GM TLS loopback, an
// intranet relay dialling it), each keeping evidence in its own database.
type ferries struct {
	pki      *fixture.PKI
	dmz, in  *fixture.Node
	gw, core *sqldb.DB
}

func startFerries(t *testing.T) *ferries {
	t.Helper()
	f := &ferries{pki: fixture.NewPKI(t)}
	f.dmz, f.in = f.pki.Node(t, fixture.DMZ), f.pki.Node(t, fixture.Intranet)
	f.gw, f.core = fixture.DB(t), fixture.DB(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	dmz := f.relay(t, relay.DMZ, f.dmz, f.in, f.gw)
	in := f.relay(t, relay.Intranet, f.in, f.dmz, f.core)
	cfg := f.pki.TLS(f.dmz, f.in)
	cfg.OnReject = dmz.LinkRefused
	ln, err := tlsgm.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := link.NewServer(link.ServerConfig{Relay: dmz, Logger: logging.Discard(), PeerFingerprint: f.in.Fingerprint()})
	c, err := link.NewClient(link.ClientConfig{URL: "https://" + ln.Addr().String(), TLS: f.pki.TLS(f.in, f.dmz)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	wg.Go(func() { _ = link.Serve(ctx, logging.Discard(), ln, srv) })
	wg.Go(func() { _ = dmz.Run(ctx, nil) })
	wg.Go(func() { _ = in.Run(ctx, c) })
	return f
}

func (f *ferries) relay(t *testing.T, side relay.Side, self, peer *fixture.Node, db *sqldb.DB) *relay.Relay {
	t.Helper()
	ev, err := evidence.New(evidence.Config{DB: db, Own: self.Sign.Cert, Peer: peer.Sign.Cert, CA: f.pki.CA.Cert})
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{
		Side: side, Node: self.Name, Peer: peer.Name, DB: db, Evidence: ev,
		Audit:  audit.New(audit.Config{DB: db, Node: self.Name, Actor: "ferryd"}),
		Keys:   relay.Keys{Signer: self.Sign.Key, Decrypter: self.Enc.Key, PeerSign: peer.Sign.Cert.PublicKey(), PeerEnc: peer.Enc.Cert.PublicKey()},
		Linger: 5 * time.Millisecond, Poll: 20 * time.Millisecond, LongPoll: time.Second, ResendAfter: 5 * time.Second,
		MaxBackoff: 200 * time.Millisecond, Logger: logging.Discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A bill crosses to the gateway and a payment to the core; either side's ferryctl prove shows
// and checks who sent each and who acknowledged it; altered evidence is caught.
func TestProve(t *testing.T) {
	f := startFerries(t)
	bills := []envelope.Envelope{fixture.Bill(t, 1), fixture.Bill(t, 2), fixture.Bill(t, 3)}
	payment := fixture.Payment(t, 1)
	fixture.Put(t, f.core, 1, bills...)
	fixture.Put(t, f.gw, 1, payment)
	unacked := `SELECT count(*) FROM ferry_outbox`
	fixture.Eventually(t, 30*time.Second, "both outboxes retired and every acknowledgement kept", func() bool {
		return count(t, f.core, unacked)+count(t, f.gw, unacked) == 0 &&
			count(t, f.core, `SELECT count(*) FROM ferry_evidence WHERE ack IS NULL`)+count(t, f.gw, `SELECT count(*) FROM ferry_evidence WHERE ack IS NULL`) == 0
	})
	// The gateway's ferry signs a checkpoint, so that its audit records are proven in it.
	cp, err := audit.NewCheckpointer(audit.CheckpointerConfig{DB: f.gw, Origin: fixture.DMZ, Signer: f.dmz.Sign.Key, Cert: f.dmz.Sign.Cert, CA: f.pki.CA.Cert})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(f.pki.Dir, "ca.pem")
	for _, tc := range []struct {
		name, id string
		db       *sqldb.DB
		want     []string
	}{
		{"ok/bill-at-the-receiver", bills[1].ID, f.gw, []string{"this ferry received it", "ferry-intranet → ferry-dmz", "sender signature: OK",
			"message: OK: SM3 ", "in the inbox", "receiver acknowledgement: OK: ferry-dmz signed that it committed to-gateway.0 up to",
			"bundle.received ok", "inclusion proof", "proof: OK"}},
		{"ok/bill-at-the-sender", bills[1].ID, f.core, []string{"this ferry sent it", "received: 20", "sender signature: OK",
			"retired here", "receiver acknowledgement: OK", "bundle.sent ok", "not yet in a signed checkpoint", "proof: OK"}},
		{"ok/payment-at-the-receiver", payment.ID, f.core, []string{"ferry-dmz → ferry-intranet", "lane to-core.0", "receiver acknowledgement: OK: ferry-intranet signed", "proof: OK"}},
		{"ok/payment-at-the-sender", payment.ID, f.gw, []string{"this ferry sent it", "receiver acknowledgement: OK", "proof: OK"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := mustRun(t, 0, "-db", tc.db.URL, "prove", "-ca", ca, tc.id)
			t.Log(out)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("lacks %q:\n%s", w, out)
				}
			}
		})
	}

	// OpenSSL checks both signatures from the files prove writes.
	if _, err := exec.LookPath("openssl"); err == nil {
		dir := filepath.Join(t.TempDir(), "evidence")
		mustRun(t, 0, "-db", f.gw.URL, "prove", "-out", dir, bills[0].ID)
		script := `set -e
openssl x509 -in sender.pem -pubkey -noout > sender.pub
openssl x509 -in receiver.pem -pubkey -noout > receiver.pub
openssl pkeyutl -verify -pubin -inkey sender.pub -rawin -digest sm3 -pkeyopt distid:1234567812345678 -in bundle.signed -sigfile bundle.sig
openssl pkeyutl -verify -pubin -inkey receiver.pub -rawin -digest sm3 -pkeyopt distid:1234567812345678 -in ack.signed -sigfile ack.sig
`
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil || strings.Count(string(out), "Signature Verified Successfully") != 2 {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
	}

	// Altered evidence, an altered message, an unknown message.
	execSQL(t, f.gw, `UPDATE ferry_inbox SET envelope = $1 WHERE message_id = $2`, mustMarshal(t, fixture.Bill(t, 9)), bills[2].ID)
	if out := mustRun(t, 1, "-db", f.gw.URL, "prove", bills[2].ID); !strings.Contains(out, "message: FAILED") || !strings.Contains(out, "proof: FAILED") {
		t.Fatalf("altered message:\n%s", out)
	}
	var sig []byte
	if err := f.core.QueryRowContext(context.Background(), `SELECT signature FROM ferry_evidence e JOIN ferry_evidence_message m ON m.bundle_id = e.bundle_id
		WHERE m.message_id = $1`, payment.ID).Scan(&sig); err != nil {
		t.Fatal(err)
	}
	sig[len(sig)-1] ^= 1
	execSQL(t, f.core, `UPDATE ferry_evidence SET signature = $1`, sig)
	if out := mustRun(t, 1, "-db", f.core.URL, "prove", payment.ID); !strings.Contains(out, "sender signature: FAILED") {
		t.Fatalf("altered signature:\n%s", out)
	}
	// The sender's encryption key (same CA, same name) signs the bundle in place of its signing
	// key: the signature verifies under that certificate, which is refused for its usage.
	var signed []byte
	if err := f.core.QueryRowContext(context.Background(), `SELECT signed FROM ferry_evidence e JOIN ferry_evidence_message m ON m.bundle_id = e.bundle_id
		WHERE m.message_id = $1`, payment.ID).Scan(&signed); err != nil {
		t.Fatal(err)
	}
	encSig, err := f.dmz.Enc.Key.Sign(rand.Reader, signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.PutCert(context.Background(), f.core, f.dmz.Enc.Cert, f.pki.CA.Cert, time.Now()); err != nil {
		t.Fatal(err)
	}
	execSQL(t, f.core, `UPDATE ferry_evidence SET signature = $1, sender_fp = $2`, encSig, f.dmz.Enc.Cert.Fingerprint())
	if out := mustRun(t, 1, "-db", f.core.URL, "prove", "-ca", ca, payment.ID); !strings.Contains(out, "sender certificate: FAILED") ||
		!strings.Contains(out, "not a signing certificate") || strings.Contains(out, "sender signature: OK") {
		t.Fatalf("signed with the sender's encryption key:\n%s", out)
	}
	execSQL(t, f.core, `UPDATE ferry_evidence SET ack = NULL`)
	if out := mustRun(t, 1, "-db", f.core.URL, "prove", bills[0].ID); !strings.Contains(out, "receiver acknowledgement: FAILED: no acknowledgement") {
		t.Fatalf("no acknowledgement:\n%s", out)
	}
	if out := mustRun(t, 1, "-db", f.gw.URL, "prove", "no-such-message"); !strings.Contains(out, "no evidence") {
		t.Fatalf("unknown message:\n%s", out)
	}
	mustRun(t, 2, "-db", f.gw.URL, "prove")
}

func mustMarshal(t *testing.T, e envelope.Envelope) []byte {
	t.Helper()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
