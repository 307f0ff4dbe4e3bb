package tlsgm_test

import (
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"finepay/shared/gm"
	"finepay/shared/tlsgm"
)

// testCA is a CA written to a directory, able to make node files.
type testCA struct {
	ca  *gm.Issued
	dir string
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	ca, err := gm.NewCA(rand.Reader, name, time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ca.pem"), ca.Cert.PEM())
	return &testCA{ca: ca, dir: dir}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeIssued(t testing.TB, is *gm.Issued, certPath, keyPath string) {
	t.Helper()
	writeFile(t, certPath, is.Cert.PEM())
	k, err := is.Key.MarshalPKCS8PEM()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyPath, k)
}

// node is one side of the link: its files and its signing certificate.
type node struct {
	name string
	sign *gm.Issued
	cfg  tlsgm.Config // files, CA; AllowedPeers left for the test
}

func (c *testCA) node(t testing.TB, name string) *node {
	t.Helper()
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	dns := []string{name, "localhost"}
	sign, err := c.ca.IssueNode(rand.Reader, name, gm.UsageSign, dns, ips, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.ca.IssueNode(rand.Reader, name, gm.UsageEncrypt, dns, ips, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := func(f string) string { return filepath.Join(dir, name+"-"+f) }
	writeIssued(t, sign, p("sign.pem"), p("sign.key"))
	writeIssued(t, enc, p("enc.pem"), p("enc.key"))
	return &node{name: name, sign: sign, cfg: tlsgm.Config{
		SignCertFile: p("sign.pem"), SignKeyFile: p("sign.key"),
		EncCertFile: p("enc.pem"), EncKeyFile: p("enc.key"),
		CAFile: filepath.Join(c.dir, "ca.pem"),
	}}
}

func (n *node) fp() string { return n.sign.Cert.Fingerprint() }

// allowing returns n's config allowing the given peers.
func (n *node) allowing(peers ...*node) tlsgm.Config {
	cfg := n.cfg
	cfg.AllowedPeers = nil
	for _, p := range peers {
		cfg.AllowedPeers = append(cfg.AllowedPeers, p.fp())
	}
	return cfg
}

type rejection struct{ addr, reason string }

// rejections returns an OnReject hook and the channel it reports to.
func rejections() (func(addr, reason string), chan rejection) {
	ch := make(chan rejection, 16)
	return func(addr, reason string) { ch <- rejection{addr, reason} }, ch
}

// waitReject waits for one rejection report; the test deadline bounds it.
func waitReject(t *testing.T, ch chan rejection) rejection {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("OnReject was not called")
		return rejection{}
	}
}
