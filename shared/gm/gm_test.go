package gm_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"finepay/shared/gm"

	"github.com/emmansun/gmsm/smx509"
)

func newKey(t testing.TB) *gm.PrivateKey {
	t.Helper()
	k, err := gm.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerifyRoundTrip(t *testing.T) {
	k := newKey(t)
	other := newKey(t)
	msgs := [][]byte{nil, []byte("x"), []byte("FinePay bundle header"), bytes.Repeat([]byte{0xa5}, 10000)}
	for _, msg := range msgs {
		sig, err := k.Sign(rand.Reader, msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Public().Verify(msg, sig); err != nil {
			t.Fatalf("len %d: %v", len(msg), err)
		}
		sig2, err := k.Sign(rand.Reader, msg)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(sig, sig2) {
			t.Fatal("two SM2 signatures are equal: randomness not used")
		}
		if err := other.Public().Verify(msg, sig); !errors.Is(err, gm.ErrVerify) {
			t.Fatalf("verify with wrong key = %v, want ErrVerify", err)
		}
		if err := k.Public().Verify(append(msg, 0), sig); !errors.Is(err, gm.ErrVerify) {
			t.Fatalf("verify of other message = %v, want ErrVerify", err)
		}
	}
}

func TestSignerInterfaces(t *testing.T) {
	var s gm.Signer = newKey(t)
	var d gm.Decrypter = s.(*gm.PrivateKey)
	sig, err := s.Sign(rand.Reader, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Public().Verify([]byte("m"), sig); err != nil {
		t.Fatal(err)
	}
	ct, err := d.Public().Encrypt(rand.Reader, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := d.Decrypt(ct); err != nil || string(pt) != "k" {
		t.Fatalf("Decrypt = %q, %v", pt, err)
	}
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	k := newKey(t)
	tests := []struct {
		name string
		pt   []byte
	}{
		// Not one byte: the library cannot decrypt about 2 in 256 one-byte ciphertexts (see Encrypt).
		{"four bytes", []byte{7, 8, 9, 10}},
		{"SM4 key", bytes.Repeat([]byte{0x11}, 16)},
		{"1 KiB", bytes.Repeat([]byte("abcdefgh"), 128)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct, err := k.Public().Encrypt(rand.Reader, tc.pt)
			if err != nil {
				t.Fatal(err)
			}
			if ct[0] != 0x30 {
				t.Fatalf("ciphertext is not an ASN.1 SEQUENCE: %x", ct[:4])
			}
			pt, err := k.Decrypt(ct)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pt, tc.pt) {
				t.Fatalf("Decrypt = %x, want %x", pt, tc.pt)
			}
			if _, err := newKey(t).Decrypt(ct); !errors.Is(err, gm.ErrDecrypt) {
				t.Fatalf("decrypt with other key = %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestDecryptTamperedFails(t *testing.T) {
	k := newKey(t)
	ct, err := k.Public().Encrypt(rand.Reader, []byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	// Flip every byte position in turn: no tampered ciphertext may decrypt.
	for i := range ct {
		if _, err := k.Decrypt(flip(ct, i)); !errors.Is(err, gm.ErrDecrypt) {
			t.Fatalf("byte %d flipped: Decrypt error = %v, want ErrDecrypt", i, err)
		}
	}
	for _, bad := range [][]byte{nil, {0x30, 0}, ct[:len(ct)-1], append(append([]byte{}, ct...), 0)} {
		if _, err := k.Decrypt(bad); !errors.Is(err, gm.ErrDecrypt) {
			t.Fatalf("malformed ciphertext (%d bytes): %v", len(bad), err)
		}
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	k := newKey(t)
	privPEM, err := k.MarshalPKCS8PEM()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(privPEM, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Fatalf("private key PEM header: %q", privPEM[:30])
	}
	k2, err := gm.ParsePrivateKeyPEM(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(k2) || !k.Public().Equal(k2.Public()) {
		t.Fatal("private key PEM round trip changed the key")
	}

	pubPEM, err := k.Public().MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pubPEM, []byte("-----BEGIN PUBLIC KEY-----\n")) {
		t.Fatalf("public key PEM header: %q", pubPEM[:30])
	}
	p2, err := gm.ParsePublicKeyPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !p2.Equal(k.Public()) {
		t.Fatal("public key PEM round trip changed the key")
	}

	path := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(path, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	k3, err := gm.LoadPrivateKey(path)
	if err != nil || !k3.Equal(k) {
		t.Fatalf("LoadPrivateKey: %v", err)
	}
	if _, err := gm.LoadPrivateKey(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("LoadPrivateKey of a missing file succeeded")
	}
}

func TestParseKeyErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", gm.ErrPEM},
		{"not PEM", "hello", gm.ErrPEM},
		{"RSA key", string(readTestdata(t, "rsa-pkcs8.pem")), gm.ErrNotSM2},
		{"P-256 EC key", string(readTestdata(t, "p256-sec1.pem")), gm.ErrNotSM2},
		{"garbage DER", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gm.ParsePrivateKeyPEM([]byte(tc.in))
			if err == nil {
				t.Fatal("parsed")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := gm.ParsePublicKeyPEM(readTestdata(t, "p256-pub.pem")); !errors.Is(err, gm.ErrNotSM2) {
		t.Fatalf("P-256 public key: %v, want ErrNotSM2", err)
	}
}

func TestParseSEC1PrivateKey(t *testing.T) {
	// An SM2 key in SEC 1 form with an EC PARAMETERS block before it, as
	// `openssl ecparam -name SM2 -genkey` writes it.
	k, err := gm.ParsePrivateKeyPEM(readTestdata(t, "sm2-sec1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := k.Sign(rand.Reader, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Public().Verify([]byte("m"), sig); err != nil {
		t.Fatal(err)
	}
}

func TestPublicKeyStringRoundTrip(t *testing.T) {
	k := newKey(t)
	s := k.Public().String()
	if !strings.HasPrefix(s, "sm2pub:04") || len(s) != len("sm2pub:")+130 {
		t.Fatalf("String() = %q", s)
	}
	if strings.ToLower(s) != s {
		t.Fatalf("String() not lowercase: %q", s)
	}
	p, err := gm.ParsePublicKeyString(s)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Equal(k.Public()) {
		t.Fatal("round trip changed the key")
	}

	offCurve := s[:len(s)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", s[len(s)-1])+1)%16])
	bad := []struct{ name, in string }{
		{"no prefix", strings.TrimPrefix(s, "sm2pub:")},
		{"other prefix", "sm2key:" + strings.TrimPrefix(s, "sm2pub:")},
		{"not hex", "sm2pub:zz"},
		{"short", s[:len(s)-2]},
		{"compressed", "sm2pub:02" + s[9:9+64]},
		{"off curve", offCurve},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := gm.ParsePublicKeyString(tc.in); err == nil {
				t.Fatalf("parsed %q", tc.in)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	a, b := newKey(t), newKey(t)
	var nilPriv *gm.PrivateKey
	var nilPub *gm.PublicKey
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"priv self", a.Equal(a), true},
		{"priv other", a.Equal(b), false},
		{"priv nil", a.Equal(nil), false},
		{"priv nil nil", nilPriv.Equal(nil), true},
		{"pub self", a.Public().Equal(a.Public()), true},
		{"pub other", a.Public().Equal(b.Public()), false},
		{"pub nil", a.Public().Equal(nil), false},
		{"pub nil nil", nilPub.Equal(nil), true},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func newPKI(t testing.TB) (ca, sign, enc *gm.Issued) {
	t.Helper()
	var err error
	ca, err = gm.NewCA(rand.Reader, "Test CA", time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	sign, err = ca.IssueNode(rand.Reader, "core", gm.UsageSign, []string{"core", "localhost"}, ips, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	enc, err = ca.IssueNode(rand.Reader, "core", gm.UsageEncrypt, []string{"core", "localhost"}, ips, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return ca, sign, enc
}

func TestCertificates(t *testing.T) {
	ca, sign, enc := newPKI(t)
	other, err := gm.NewCA(rand.Reader, "Other CA", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	if err := ca.Cert.VerifySignedBy(ca.Cert); err != nil {
		t.Fatalf("CA self-signature: %v", err)
	}
	for _, n := range []*gm.Issued{sign, enc} {
		if err := n.Cert.VerifySignedBy(ca.Cert); err != nil {
			t.Fatalf("node signed by CA: %v", err)
		}
		if err := n.Cert.VerifySignedBy(other.Cert); !errors.Is(err, gm.ErrVerify) {
			t.Fatalf("node vs other CA: %v, want ErrVerify", err)
		}
		if !n.Cert.PublicKey().Equal(n.Key.Public()) {
			t.Fatal("certificate key differs from issued key")
		}
		if n.Cert.CommonName() != "core" {
			t.Fatalf("CommonName %q", n.Cert.CommonName())
		}
		x := n.Cert.X509()
		if x.SignatureAlgorithm != smx509.SM2WithSM3 {
			t.Fatalf("signature algorithm %v", x.SignatureAlgorithm)
		}
		if x.IsCA || len(x.ExtKeyUsage) != 2 || len(x.IPAddresses) != 2 || len(x.DNSNames) != 2 {
			t.Fatalf("node fields: IsCA %v EKU %v IPs %v DNS %v", x.IsCA, x.ExtKeyUsage, x.IPAddresses, x.DNSNames)
		}
	}
	// A node certificate is not a CA: nothing it signs may verify.
	if err := enc.Cert.VerifySignedBy(sign.Cert); err == nil {
		t.Fatal("certificate verified against a non-CA")
	}
	if sign.Cert.X509().KeyUsage == enc.Cert.X509().KeyUsage {
		t.Fatal("sign and enc certificates have the same key usage")
	}

	fp := sign.Cert.Fingerprint()
	d := gm.SM3(sign.Cert.Raw())
	if fp != "sm3:"+hex.EncodeToString(d[:]) || fp != gm.FingerprintDER(sign.Cert.Raw()) {
		t.Fatalf("Fingerprint %q", fp)
	}
	if fp == enc.Cert.Fingerprint() {
		t.Fatal("two certificates have the same fingerprint")
	}
}

// TestCertificateUsage: a node's two certificates share CA and name; only the usage tells the
// signing one from the encryption one, and CheckUsage holds each to its own.
func TestCertificateUsage(t *testing.T) {
	ca, sign, enc := newPKI(t)
	for _, c := range []struct {
		name  string
		cert  *gm.Certificate
		usage gm.Usage
		ok    bool
	}{
		{"signing as signing", sign.Cert, gm.UsageSign, true},
		{"encryption as encryption", enc.Cert, gm.UsageEncrypt, true},
		{"encryption as signing", enc.Cert, gm.UsageSign, false},
		{"signing as encryption", sign.Cert, gm.UsageEncrypt, false},
		{"CA as encryption", ca.Cert, gm.UsageEncrypt, false},
	} {
		err := c.cert.CheckUsage(c.usage)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, gm.ErrUsage)) {
			t.Errorf("%s: err = %v", c.name, err)
		}
	}
}

func TestCertificatePEMRoundTrip(t *testing.T) {
	ca, sign, _ := newPKI(t)
	for _, c := range []*gm.Certificate{ca.Cert, sign.Cert} {
		p := c.PEM()
		c2, err := gm.ParseCertificatePEM(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c2.Raw(), c.Raw()) || c2.Fingerprint() != c.Fingerprint() {
			t.Fatal("PEM round trip changed the certificate")
		}
		c3, err := gm.ParseCertificateDER(c.Raw())
		if err != nil || !c3.PublicKey().Equal(c.PublicKey()) {
			t.Fatalf("DER round trip: %v", err)
		}
		path := filepath.Join(t.TempDir(), "c.pem")
		// A key block before the certificate is skipped.
		keyPEM, _ := sign.Key.MarshalPKCS8PEM()
		if err := os.WriteFile(path, append(keyPEM, p...), 0o644); err != nil {
			t.Fatal(err)
		}
		c4, err := gm.LoadCertificate(path)
		if err != nil || !bytes.Equal(c4.Raw(), c.Raw()) {
			t.Fatalf("LoadCertificate: %v", err)
		}
	}
	if _, err := gm.ParseCertificatePEM([]byte("nothing")); !errors.Is(err, gm.ErrPEM) {
		t.Fatalf("ParseCertificatePEM(nothing) = %v", err)
	}
	if _, err := gm.ParseCertificateDER([]byte{0x30, 0x00}); err == nil {
		t.Fatal("ParseCertificateDER accepted junk")
	}
}

func TestIssueNodeErrors(t *testing.T) {
	ca, _, _ := newPKI(t)
	if _, err := ca.IssueNode(rand.Reader, "x", gm.Usage(9), nil, nil, time.Now().Add(time.Hour)); err == nil {
		t.Fatal("unknown usage accepted")
	}
	if _, err := ca.IssueNode(rand.Reader, "x", gm.UsageSign, nil, nil, time.Now().Add(-time.Hour)); err == nil {
		t.Fatal("past notAfter accepted")
	}
	if _, err := gm.NewCA(rand.Reader, "x", time.Now().Add(-time.Hour)); err == nil {
		t.Fatal("past CA notAfter accepted")
	}
	// notAfter beyond the CA's is clamped to it.
	n, err := ca.IssueNode(rand.Reader, "x", gm.UsageSign, nil, nil, time.Now().Add(100*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !n.Cert.X509().NotAfter.Equal(ca.Cert.X509().NotAfter) {
		t.Fatalf("node NotAfter %v, CA %v", n.Cert.X509().NotAfter, ca.Cert.X509().NotAfter)
	}
}
