package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"finepay/shared/gm"
)

// Nodes are the FinePay nodes that get SM2 certificates.
var Nodes = []string{"gateway", "core", "ferry-dmz", "ferry-intranet", "sandbox"}

const (
	caName   = "FinePay Dev CA"
	validity = 2 // years
	keyMode  = 0o600
	certMode = 0o644
)

// file is one output file.
type file struct {
	name string
	data []byte
	mode fs.FileMode
}

// run creates the PKI in dir, reporting to out.
func run(dir string, force bool, out io.Writer) error {
	marker := filepath.Join(dir, "ca.pem")
	if _, err := os.Stat(marker); err == nil && !force {
		return complete(dir, out)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	files, serials, err := generate(rand.Reader, time.Now())
	if err != nil {
		return err
	}
	if err := install(dir, files); err != nil {
		return err
	}
	fmt.Fprintf(out, "certs: wrote a development PKI to %s (%d files)\n", dir, len(files))
	fmt.Fprintf(out, "certs: wechat-merchant serial_no %s\n", serials[0])
	fmt.Fprintf(out, "certs: wechat-platform serial_no %s\n", serials[1])
	return nil
}

// generate makes every file in memory; ca.pem is last.
func generate(r io.Reader, now time.Time) ([]file, [2]string, error) {
	var serials [2]string
	notAfter := now.AddDate(validity, 0, 0)
	ca, err := gm.NewCA(r, caName, notAfter)
	if err != nil {
		return nil, serials, err
	}
	caKey, err := ca.Key.MarshalPKCS8PEM()
	if err != nil {
		return nil, serials, err
	}
	files := []file{{"ca.key", caKey, keyMode}}

	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, node := range Nodes {
		for _, u := range []struct {
			usage  gm.Usage
			suffix string
		}{{gm.UsageSign, "sign"}, {gm.UsageEncrypt, "enc"}} {
			is, err := ca.IssueNode(r, node, u.usage, []string{node, "localhost"}, ips, notAfter)
			if err != nil {
				return nil, serials, err
			}
			key, err := is.Key.MarshalPKCS8PEM()
			if err != nil {
				return nil, serials, err
			}
			base := node + "-" + u.suffix
			files = append(files, file{base + ".pem", is.Cert.PEM(), certMode}, file{base + ".key", key, keyMode})
		}
	}

	for i, w := range []struct{ base, cn string }{
		{"wechat-merchant", "FinePay Dev Merchant"},
		{"wechat-platform", "WeChat Pay Dev Platform"},
	} {
		certPEM, keyPEM, serial, err := rsaSelfSigned(r, w.cn, now, notAfter)
		if err != nil {
			return nil, serials, fmt.Errorf("%s: %w", w.base, err)
		}
		serials[i] = serial
		files = append(files, file{w.base + ".key", keyPEM, keyMode}, file{w.base + ".pem", certPEM, certMode})
	}

	apiv3, err := alnum(r, 32)
	if err != nil {
		return nil, serials, err
	}
	files = append(files, file{"wechat-apiv3.key", apiv3, keyMode})
	for _, g := range channelGroups {
		gf, err := g.make(r, ca, now, notAfter)
		if err != nil {
			return nil, serials, fmt.Errorf("%s: %w", g.name, err)
		}
		files = append(files, gf...)
	}
	files = append(files, file{"README.txt", []byte(readme(now, notAfter, serials)), certMode})
	files = append(files, file{"ca.pem", ca.Cert.PEM(), certMode}) // last: marks a complete PKI
	return files, serials, nil
}

// rsaSelfSigned makes an RSA 2048 key and a self-signed certificate whose
// serial number is 64 random bits with the top bit set (so it always prints
// as 16 hex digits). It returns the serial as upper-case hex.
func rsaSelfSigned(r io.Reader, cn string, now, notAfter time.Time) (certPEM, keyPEM []byte, serial string, err error) {
	key, err := rsa.GenerateKey(r, 2048)
	if err != nil {
		return nil, nil, "", err
	}
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, nil, "", err
	}
	b[0] |= 0x80
	sn := new(big.Int).SetBytes(b[:])
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"FinePay development"}, Country: []string{"CN"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(r, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, "", err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
		fmt.Sprintf("%016X", sn), nil
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// alnum returns n characters drawn uniformly from [A-Za-z0-9].
func alnum(r io.Reader, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return nil, err
		}
		for _, c := range buf {
			// 62*4 = 248: reject 248..255 so every character is equally likely.
			if c < 248 && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return out, nil
}

// install writes files into a fresh DIR/.tmp-* directory, then renames them
// into dir in order (ca.pem last). When the files include ca.pem, an existing
// ca.pem is removed first, so a crash part-way never leaves ca.pem beside a
// mixture of old and new files.
func install(dir string, files []file) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, ".tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); err == nil {
			err = rerr
		}
	}()
	for _, f := range files {
		if err := writeSynced(filepath.Join(tmp, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	replacesCA := false
	for _, f := range files {
		replacesCA = replacesCA || f.name == "ca.pem"
	}
	if replacesCA {
		if err := os.Remove(filepath.Join(dir, "ca.pem")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	for _, f := range files {
		if f.name == "ca.pem" {
			// Everything else must be durable before the marker appears.
			if err := syncDir(dir); err != nil {
				return err
			}
		}
		if err := os.Rename(filepath.Join(tmp, f.name), filepath.Join(dir, f.name)); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

func writeSynced(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	// Apply the mode exactly, whatever the umask.
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func readme(now, notAfter time.Time, serials [2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `FinePay development PKI
=======================

Made by fpcerts on %s; certificates valid until %s.
FOR DEVELOPMENT AND TESTS ONLY. These keys are not protected: never use them
in production, where SM2 keys may have to live in a certified module.

SM2 (GM) files. Certificates are X.509 v3 signed with SM2-with-SM3; keys are
PKCS#8 PEM ("PRIVATE KEY").

  ca.pem, ca.key          the development CA, CN "%s". Every node trusts
                          ca.pem. ca.key signs node certificates; keep it
                          away from the nodes.
`, now.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339), caName)
	for _, n := range Nodes {
		fmt.Fprintf(&b, `  %s-sign.pem, %s-sign.key
                          %s's SM2 signing certificate and key (digital
                          signature): GM TLS authentication, bundle and
                          acknowledgement signatures. Its fingerprint (SM3 of
                          the DER) is what peers put on their allow-lists.
  %s-enc.pem, %s-enc.key
                          %s's SM2 encryption certificate and key (key
                          encipherment): GM TLS key exchange and the SM4 key
                          of bundle envelopes addressed to %s.
`, n, n, n, n, n, n, n)
	}
	fmt.Fprintf(&b, `
Node certificates name the node and localhost (DNS) and 127.0.0.1 and ::1 (IP),
with both server and client authentication usages.

WeChat Pay development files (RSA 2048, PKCS#8 keys, self-signed certificates):

  wechat-merchant.key     the merchant's API private key (apiclient_key.pem):
                          signs our requests to WeChat Pay.
  wechat-merchant.pem     the merchant's API certificate; its serial number is
                          the serial_no in our Authorization header:
                          %s
  wechat-platform.key     the WeChat Pay platform's private key. Only the
                          sandbox (the fake WeChat Pay) uses it, to sign
                          responses and callbacks.
  wechat-platform.pem     the WeChat Pay platform certificate, used to verify
                          responses and callbacks (Wechatpay-Serial):
                          %s
  wechat-apiv3.key        the API v3 key: 32 characters from [A-Za-z0-9], no
                          newline; decrypts callback resources (AEAD_AES_256_GCM).
%s
README.txt                this file.

Run fpcerts -dir DIR -force to replace everything.
`, serials[0], serials[1], channelReadme+lookupReadme)
	return b.String()
}
