package main

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"finepay/shared/gm"
	"finepay/shared/tlsgm"
)

// snapshot reads every file of dir with its mode and modification time.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string)
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = fmt.Sprintf("%v %v %x", info.Mode(), info.ModTime().UnixNano(), b)
	}
	return m
}

func expectedFiles() map[string]fs.FileMode {
	want := map[string]fs.FileMode{
		"ca.pem": 0o644, "ca.key": 0o600, "README.txt": 0o644,
		"wechat-merchant.key": 0o600, "wechat-merchant.pem": 0o644,
		"wechat-platform.key": 0o600, "wechat-platform.pem": 0o644,
		"wechat-apiv3.key": 0o600,
	}
	for _, g := range channelGroups {
		for _, f := range g.files {
			want[f] = 0o644
			if strings.HasSuffix(f, ".key") {
				want[f] = 0o600
			}
		}
	}
	for _, n := range Nodes {
		for _, u := range []string{"sign", "enc"} {
			want[n+"-"+u+".pem"] = 0o644
			want[n+"-"+u+".key"] = 0o600
		}
	}
	return want
}

func TestFpcerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs", "dev") // created with parents
	var out bytes.Buffer
	if err := run(dir, false, &out); err != nil {
		t.Fatal(err)
	}

	// Exactly the expected files, with the expected modes; no temp dir left.
	want := expectedFiles()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("files %v, want %d files", names, len(want))
	}
	for _, e := range entries {
		mode, ok := want[e.Name()]
		info, _ := e.Info()
		if !ok || info.Mode().Perm() != mode || !info.Mode().IsRegular() {
			t.Errorf("%s: mode %v, want %v (expected: %v)", e.Name(), info.Mode(), mode, ok)
		}
	}

	// The CA and every node certificate.
	ca, err := gm.LoadCertificate(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := gm.LoadPrivateKey(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if ca.CommonName() != "FinePay Dev CA" || !caKey.Public().Equal(ca.PublicKey()) || !ca.X509().IsCA {
		t.Fatalf("CA: CN %q, key matches %v", ca.CommonName(), caKey.Public().Equal(ca.PublicKey()))
	}
	now := time.Now()
	for _, n := range Nodes {
		for _, u := range []string{"sign", "enc"} {
			base := filepath.Join(dir, n+"-"+u)
			c, err := gm.LoadCertificate(base + ".pem")
			if err != nil {
				t.Fatal(err)
			}
			k, err := gm.LoadPrivateKey(base + ".key")
			if err != nil {
				t.Fatal(err)
			}
			if err := c.VerifySignedBy(ca); err != nil {
				t.Errorf("%s-%s: %v", n, u, err)
			}
			x := c.X509()
			if c.CommonName() != n || !k.Public().Equal(c.PublicKey()) {
				t.Errorf("%s-%s: CN %q, key matches %v", n, u, c.CommonName(), k.Public().Equal(c.PublicKey()))
			}
			if strings.Join(x.DNSNames, ",") != n+",localhost" || len(x.IPAddresses) != 2 ||
				!x.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !x.IPAddresses[1].Equal(net.IPv6loopback) {
				t.Errorf("%s-%s: DNS %v IP %v", n, u, x.DNSNames, x.IPAddresses)
			}
			if years := x.NotAfter.Sub(now).Hours() / 24 / 365; years < 1.99 || years > 2.01 {
				t.Errorf("%s-%s: valid until %v", n, u, x.NotAfter)
			}
			wantKU := x509.KeyUsageDigitalSignature
			if u == "enc" {
				wantKU = x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement
			}
			if x.KeyUsage != wantKU {
				t.Errorf("%s-%s: key usage %v, want %v", n, u, x.KeyUsage, wantKU)
			}
		}
	}

	// WeChat Pay keys and certificates; serial_no printed as upper-case hex.
	for _, w := range []string{"wechat-merchant", "wechat-platform"} {
		cert := parseRSACert(t, filepath.Join(dir, w+".pem"))
		key := parseRSAKey(t, filepath.Join(dir, w+".key"))
		if key.N.BitLen() != 2048 || !key.PublicKey.Equal(cert.PublicKey) {
			t.Errorf("%s: %d-bit key, matches certificate: %v", w, key.N.BitLen(), key.PublicKey.Equal(cert.PublicKey))
		}
		if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
			t.Errorf("%s: not self-signed: %v", w, err)
		}
		serial := fmt.Sprintf("%X", cert.SerialNumber)
		if len(serial) != 16 || !strings.Contains(out.String(), w+" serial_no "+serial+"\n") {
			t.Errorf("%s: serial %s not printed in:\n%s", w, serial, out.String())
		}
		readme, _ := os.ReadFile(filepath.Join(dir, "README.txt"))
		if !bytes.Contains(readme, []byte(serial)) {
			t.Errorf("README lacks %s serial %s", w, serial)
		}
	}
	apiv3, err := os.ReadFile(filepath.Join(dir, "wechat-apiv3.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9]{32}$`).Match(apiv3) {
		t.Errorf("wechat-apiv3.key = %q", apiv3)
	}

	checkChannelKeys(t, dir)

	// The README names every file.
	readme, _ := os.ReadFile(filepath.Join(dir, "README.txt"))
	for name := range want {
		if !bytes.Contains(readme, []byte(name)) && !bytes.Contains(readme, []byte(strings.TrimSuffix(strings.TrimSuffix(name, ".pem"), ".key"))) {
			t.Errorf("README does not mention %s", name)
		}
	}

	// A second run without -force changes nothing and says so.
	before := snapshot(t, dir)
	out.Reset()
	if err := run(dir, false, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "certs: "+dir+" already holds a PKI\n" {
		t.Fatalf("second run printed %q", got)
	}
	after := snapshot(t, dir)
	if len(before) != len(after) {
		t.Fatalf("second run changed the file set")
	}
	for name, s := range before {
		if after[name] != s {
			t.Errorf("second run changed %s", name)
		}
	}

	// -force replaces the PKI.
	out.Reset()
	if err := run(dir, true, &out); err != nil {
		t.Fatal(err)
	}
	ca2, err := gm.LoadCertificate(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if ca2.Fingerprint() == ca.Fingerprint() {
		t.Fatal("-force kept the old CA")
	}
	core, err := gm.LoadCertificate(filepath.Join(dir, "core-sign.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := core.VerifySignedBy(ca2); err != nil {
		t.Fatalf("after -force: %v", err)
	}
	if len(snapshot(t, dir)) != len(want) {
		t.Fatal("-force left extra files")
	}
}

// checkChannelKeys checks the Alipay and UnionPay files: matching RSA keys, Alipay's
// certificates self-signed, UnionPay's signing and merchant certificates chained through the
// middle CA to the root, the signer's common name naming UnionPay in its third field.
func checkChannelKeys(t *testing.T, dir string) {
	t.Helper()
	p := func(f string) string { return filepath.Join(dir, f) }
	for _, w := range []string{"alipay-app", "alipay-platform"} {
		cert, key := parseRSACert(t, p(w+".pem")), parseRSAKey(t, p(w+".key"))
		if key.N.BitLen() != 2048 || !key.PublicKey.Equal(cert.PublicKey) {
			t.Errorf("%s: key does not match its certificate", w)
		}
		if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
			t.Errorf("%s: not self-signed: %v", w, err)
		}
	}
	root, middle := parseRSACert(t, p("unionpay-root.pem")), parseRSACert(t, p("unionpay-middle.pem"))
	if !root.IsCA || !middle.IsCA {
		t.Errorf("UnionPay root and middle must be CAs")
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inter.AddCert(middle)
	for _, w := range []string{"unionpay-sign", "unionpay-merchant"} {
		cert, key := parseRSACert(t, p(w+".pem")), parseRSAKey(t, p(w+".key"))
		if !key.PublicKey.Equal(cert.PublicKey) || cert.IsCA {
			t.Errorf("%s: key does not match, or a CA", w)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: does not chain to the UnionPay root: %v", w, err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			t.Errorf("%s: verifies without the middle CA", w)
		}
	}
	sign := parseRSACert(t, p("unionpay-sign.pem"))
	if f := strings.Split(sign.Subject.CommonName, "@"); len(f) != 4 || f[2] != "中国银联股份有限公司" {
		t.Errorf("unionpay-sign CN %q", sign.Subject.CommonName)
	}
}

// TestFpcertsAddsChannelKeys: a PKI made before Alipay and UnionPay were supported gets their
// keys on the next run, and nothing else changes.
func TestFpcertsAddsChannelKeys(t *testing.T) {
	dir := t.TempDir()
	if err := run(dir, false, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, g := range channelGroups {
		for _, f := range g.files {
			if err := os.Remove(filepath.Join(dir, f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := snapshot(t, dir)
	var out bytes.Buffer
	if err := run(dir, false, &out); err != nil {
		t.Fatal(err)
	}
	var groups []string
	for _, g := range channelGroups {
		groups = append(groups, g.name)
	}
	if got := out.String(); got != "certs: added the "+joinNames(groups)+" keys to the PKI in "+dir+"\n" {
		t.Fatalf("printed %q", got)
	}
	after := snapshot(t, dir)
	for name, s := range before {
		if after[name] != s {
			t.Errorf("%s changed", name)
		}
	}
	if len(after) != len(expectedFiles()) {
		t.Fatalf("%d files, want %d", len(after), len(expectedFiles()))
	}
	checkChannelKeys(t, dir)
	// Only a whole missing set is added: with one UnionPay file gone, the set is made anew.
	os.Remove(filepath.Join(dir, "unionpay-middle.pem"))
	out.Reset()
	if err := run(dir, false, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "added the unionpay keys") {
		t.Fatalf("printed %q", out.String())
	}
	checkChannelKeys(t, dir)
}

// TestFpcertsFilesWorkForGMTLS checks that the files load into tlsgm and
// that two nodes complete a mutual-auth handshake with them.
func TestFpcertsFilesWorkForGMTLS(t *testing.T) {
	dir := t.TempDir()
	if err := run(dir, false, io.Discard); err != nil {
		t.Fatal(err)
	}
	cfg := func(node, peer string) tlsgm.Config {
		p := func(f string) string { return filepath.Join(dir, f) }
		peerCert, err := gm.LoadCertificate(p(peer + "-sign.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return tlsgm.Config{
			SignCertFile: p(node + "-sign.pem"), SignKeyFile: p(node + "-sign.key"),
			EncCertFile: p(node + "-enc.pem"), EncKeyFile: p(node + "-enc.key"),
			CAFile: p("ca.pem"), AllowedPeers: []string{peerCert.Fingerprint()},
		}
	}
	ln, err := tlsgm.Listen("tcp", "127.0.0.1:0", cfg("ferry-dmz", "ferry-intranet"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		fp, _ := tlsgm.PeerFingerprint(c)
		c.Close()
		peer <- fp
	}()
	c, err := tlsgm.Dial(context.Background(), "tcp", ln.Addr().String(), cfg("ferry-intranet", "ferry-dmz"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	want, _ := gm.LoadCertificate(filepath.Join(dir, "ferry-intranet-sign.pem"))
	if got := <-peer; got != want.Fingerprint() {
		t.Fatalf("server saw peer %q, want %q", got, want.Fingerprint())
	}
}

func TestFpcertsInterruptedRunLeavesNoCA(t *testing.T) {
	// A directory that holds files but no ca.pem (an interrupted run) is
	// completed by the next run, and no temporary directory remains.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "core-sign.pem"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(dir, false, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := gm.LoadCertificate(filepath.Join(dir, "core-sign.pem")); err != nil {
		t.Fatalf("stale file not replaced: %v", err)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if len(matches) != 0 {
		t.Fatalf("temporary directories left: %v", matches)
	}
}

func TestAlnumUniformAlphabet(t *testing.T) {
	got, err := alnum(bytes.NewReader(bytes.Repeat([]byte{0, 61, 62, 247, 248, 255}, 20)), 12)
	if err != nil {
		t.Fatal(err)
	}
	// 248 and 255 are rejected; 0→A, 61→9, 62→A, 247→9.
	if string(got) != "A9A9A9A9A9A9" {
		t.Fatalf("alnum = %q", got)
	}
}

func parseRSACert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func parseRSAKey(t *testing.T, path string) *rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("%s: no PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("%s: %T", path, k)
	}
	return rk
}

// TestE1FpcertsUnitKey: the e-receipt issuing unit's key is issued by the development CA, in a
// full run and when added to a PKI made before it existed; a second run changes nothing.
func TestE1FpcertsUnitKey(t *testing.T) {
	dir := t.TempDir()
	if err := run(dir, false, io.Discard); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		ca, err := gm.LoadCertificate(filepath.Join(dir, "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := gm.LoadCertificate(filepath.Join(dir, UnitSignCert))
		if err != nil {
			t.Fatal(err)
		}
		k, err := gm.LoadPrivateKey(filepath.Join(dir, UnitSignKey))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.VerifySignedBy(ca); err != nil || c.CommonName() != UnitCN || !k.Public().Equal(c.PublicKey()) {
			t.Fatalf("unit certificate: %v, CN %q, key matches %v", err, c.CommonName(), k.Public().Equal(c.PublicKey()))
		}
	}
	check()
	for _, f := range []string{UnitSignKey, UnitSignCert} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := run(dir, false, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "certs: added the unit keys to the PKI in "+dir+"\n" {
		t.Fatalf("printed %q", got)
	}
	check()
	before := snapshot(t, dir)
	out.Reset()
	if err := run(dir, false, &out); err != nil || !strings.Contains(out.String(), "already holds a PKI") {
		t.Fatalf("second run: %v %q", err, out.String())
	}
	after := snapshot(t, dir)
	for name, s := range before {
		if after[name] != s {
			t.Errorf("%s changed", name)
		}
	}
}
