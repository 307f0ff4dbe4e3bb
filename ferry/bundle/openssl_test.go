package bundle_test

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"finepay/ferry/bundle"
	"finepay/ferry/internal/fixture"
)

// The auditor's recipe of the package documentation, run as written.
const auditBundle = `set -eu
u32() { od -An -tu4 --endian=big -j "$2" -N4 "$1" | tr -d ' '; }
H=$(u32 B 4); W=$(u32 B 8); C=$(u32 B 12)
head -c $((16+H)) B > signed
tail -c +$((17+H)) B | head -c $((W+12+C)) | openssl dgst -sm3 -binary >> signed
tail -c +$((29+H+W+C)) B > sig
openssl x509 -in sign.pem -pubkey -noout > pub.pem
openssl pkeyutl -verify -pubin -inkey pub.pem -in signed -sigfile sig \
    -rawin -digest sm3 -pkeyopt distid:1234567812345678
tail -c +17 B | head -c $H > header.json
`

const auditAck = `set -eu
u32() { od -An -tu4 --endian=big -j "$2" -N4 "$1" | tr -d ' '; }
L=$(u32 A 4); head -c $((8+L)) A > signed; tail -c +$((9+L)) A > sig
openssl x509 -in sign.pem -pubkey -noout > pub.pem
openssl pkeyutl -verify -pubin -inkey pub.pem -in signed -sigfile sig \
    -rawin -digest sm3 -pkeyopt distid:1234567812345678
`

func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"openssl", "bash", "od"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
}

func runScript(dir, script string) (string, error) {
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestOpenSSLVerifiesBundleSignature(t *testing.T) {
	requireTools(t)
	pki := fixture.NewPKI(t)
	sender, receiver := pki.Node(t, fixture.Intranet), pki.Node(t, fixture.DMZ)
	raw, h, err := bundle.Seal(rand.Reader, header(t, "to-gateway.0", 5), encode(t, fixture.Bill(t, 1), fixture.Bill(t, 2)),
		sender.Sign.Key, receiver.Enc.Cert.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "B"), raw)
	writeFile(t, filepath.Join(dir, "sign.pem"), sender.Sign.Cert.PEM())
	out, err := runScript(dir, auditBundle)
	if err != nil || !strings.Contains(out, "Signature Verified Successfully") {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	hdr, err := os.ReadFile(filepath.Join(dir, "header.json"))
	if err != nil || !strings.Contains(string(hdr), `"bundle_id":"`+h.BundleID+`"`) {
		t.Fatalf("header as extracted: %s (%v)", hdr, err)
	}

	// A flipped ciphertext byte changes the body digest: OpenSSL refuses too.
	raw[len(raw)-100] ^= 1
	writeFile(t, filepath.Join(dir, "B"), raw)
	if out, err := runScript(dir, auditBundle); err == nil {
		t.Fatalf("openssl verified a tampered bundle:\n%s", out)
	}
}

func TestOpenSSLVerifiesAckSignature(t *testing.T) {
	requireTools(t)
	pki := fixture.NewPKI(t)
	receiver := pki.Node(t, fixture.DMZ)
	raw, err := bundle.SealAck(rand.Reader, bundle.Ack{From: fixture.DMZ, To: fixture.Intranet, Lane: "to-gateway.0", Seq: 6,
		At: time.Now()}, receiver.Sign.Key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "A"), raw)
	writeFile(t, filepath.Join(dir, "sign.pem"), receiver.Sign.Cert.PEM())
	if out, err := runScript(dir, auditAck); err != nil || !strings.Contains(out, "Signature Verified Successfully") {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
