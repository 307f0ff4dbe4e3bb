package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/inbox"
	"finepay/ferry/internal/fixture"
)

func ferryctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestStatusAndAudit(t *testing.T) {
	ctx := context.Background()
	db := fixture.DB(t)
	fixture.Put(t, db, 1, fixture.Bill(t, 1), fixture.Bill(t, 2))
	p := fixture.Payment(t, 1)
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.Receive(ctx, db, fixture.DMZ, "to-core.0", "b1", []inbox.Incoming{{Seq: 1, Envelope: p, Raw: raw}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	l := audit.New(audit.Config{DB: db, Node: fixture.Intranet, Actor: "ferryd"})
	if err := l.Record(ctx, audit.Record{Event: audit.BundleReceived, Result: audit.OK, Lane: "to-core.0", FirstSeq: 1, LastSeq: 1,
		BundleID: "00112233445566778899aabbccddeeff", Peer: fixture.DMZ}); err != nil {
		t.Fatal(err)
	}

	code, out, errs := ferryctl(t, "-db", db.URL, "status")
	if code != 0 || !strings.Contains(out, "to-gateway.0  2     0      2") || !strings.Contains(out, "ferry-dmz  to-core.0  1") {
		t.Fatalf("status %d:\n%s%s", code, out, errs)
	}
	code, out, errs = ferryctl(t, "-db", db.URL, "audit", "-n", "5")
	if code != 0 || !strings.Contains(out, "bundle.received") || !strings.Contains(out, "admin.audit-read") || strings.Contains(out, "MISMATCH") {
		t.Fatalf("audit %d:\n%s%s", code, out, errs)
	}
	if _, err := db.ExecContext(ctx, `UPDATE ferry_audit SET lane = 'to-core.1' WHERE event = 'bundle.received'`); err != nil {
		t.Fatal(err)
	}
	if _, out, _ = ferryctl(t, "-db", db.URL, "audit"); !strings.Contains(out, "MISMATCH") {
		t.Fatalf("altered record not flagged:\n%s", out)
	}
	if code, _, _ := ferryctl(t, "status"); code != 2 {
		t.Fatalf("status without -db: exit %d", code)
	}
}

func TestVerifyBundle(t *testing.T) {
	pki := fixture.NewPKI(t)
	sender, receiver := pki.Node(t, fixture.Intranet), pki.Node(t, fixture.DMZ)
	msg, err := fixture.Bill(t, 1).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	h := bundle.Header{BundleID: "00112233445566778899aabbccddeeff", From: fixture.Intranet, To: fixture.DMZ, Lane: "to-gateway.0",
		FirstSeq: 1, Created: time.Now()}
	raw, _, err := bundle.Seal(rand.Reader, h, [][]byte{msg}, sender.Sign.Key, receiver.Enc.Cert.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.bundle"), filepath.Join(dir, "bad.bundle")
	write(t, good, raw)
	tampered := bytes.Clone(raw)
	tampered[len(tampered)-90] ^= 1
	write(t, bad, tampered)
	ca := filepath.Join(pki.Dir, "ca.pem")

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ok/signature", []string{"-peer-cert", sender.File("sign.pem"), "-ca", ca, good}, 0, "signature: OK"},
		{"ok/contents", []string{"-peer-cert", sender.File("sign.pem"), "-key", receiver.File("enc.key"), good}, 0, "contents: OK, 1 messages"},
		{"fail/tampered", []string{"-peer-cert", sender.File("sign.pem"), bad}, 1, "altered"},
		{"fail/other-signer", []string{"-peer-cert", receiver.File("sign.pem"), good}, 1, "check -peer-cert"},
		{"fail/wrong-key", []string{"-peer-cert", sender.File("sign.pem"), "-key", sender.File("enc.key"), good}, 1, "decrypt"},
		{"fail/not-a-bundle", []string{"-peer-cert", sender.File("sign.pem"), ca}, 1, "not a well-formed bundle"},
		{"fail/usage", []string{good}, 2, "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := ferryctl(t, append([]string{"verify-bundle"}, tc.args...)...)
			if code != tc.code || !strings.Contains(out+errs, tc.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s%s", code, tc.code, tc.want, out, errs)
			}
		})
	}

	ack, err := bundle.SealAck(rand.Reader, bundle.Ack{From: fixture.DMZ, To: fixture.Intranet, Lane: "to-gateway.0", Seq: 1, At: time.Now()}, receiver.Sign.Key)
	if err != nil {
		t.Fatal(err)
	}
	ackFile := filepath.Join(dir, "ack")
	write(t, ackFile, ack)
	if code, out, errs := ferryctl(t, "verify-bundle", "-peer-cert", receiver.File("sign.pem"), ackFile); code != 0 || !strings.Contains(out, "signature: OK") {
		t.Fatalf("ack: exit %d\n%s%s", code, out, errs)
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
