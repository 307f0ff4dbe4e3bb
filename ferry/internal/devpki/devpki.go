// Package devpki makes a throw-away SM2 PKI for the ferry's benchmark and crash harness: a CA
// and the two ferries' signing and encryption certificates, written to a folder the way fpcerts
// lays them out (ca.pem, NODE-sign.pem|.key, NODE-enc.pem|.key), so that ferryd can be pointed
// at it with -certs. Tests use package fixture instead.
package devpki

import (
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"time"

	"finepay/shared/gm"
	"finepay/shared/tlsgm"
)

// Node names of the two ferries.
const (
	DMZ      = "ferry-dmz"
	Intranet = "ferry-intranet"
)

// PKI is a CA and the nodes it issued certificates to, as files in Dir.
type PKI struct {
	Dir   string
	Nodes map[string]Node
}

// Node is one node's certificates and keys.
type Node struct{ Sign, Enc *gm.Issued }

// New makes a CA and certificates for nodes (both ferries when none are named) in dir.
func New(dir string, nodes ...string) (*PKI, error) {
	if len(nodes) == 0 {
		nodes = []string{DMZ, Intranet}
	}
	ca, err := gm.NewCA(rand.Reader, "FinePay throw-away CA", time.Now().Add(7*24*time.Hour))
	if err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir, Nodes: map[string]Node{}}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.Cert.PEM(), 0o600); err != nil {
		return nil, err
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, name := range nodes {
		var n Node
		for _, u := range []struct {
			usage gm.Usage
			out   **gm.Issued
			file  string
		}{{gm.UsageSign, &n.Sign, "sign"}, {gm.UsageEncrypt, &n.Enc, "enc"}} {
			is, err := ca.IssueNode(rand.Reader, name, u.usage, []string{name, "localhost"}, ips, time.Now().Add(7*24*time.Hour))
			if err != nil {
				return nil, err
			}
			key, err := is.Key.MarshalPKCS8PEM()
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, name+"-"+u.file+".pem"), is.Cert.PEM(), 0o600); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, name+"-"+u.file+".key"), key, 0o600); err != nil {
				return nil, err
			}
			*u.out = is
		}
		p.Nodes[name] = n
	}
	return p, nil
}

// Fingerprint is node's signing certificate fingerprint.
func (p *PKI) Fingerprint(node string) string { return p.Nodes[node].Sign.Cert.Fingerprint() }

// TLS returns self's GM TLS configuration allowing only peer.
func (p *PKI) TLS(self, peer string) tlsgm.Config {
	f := func(s string) string { return filepath.Join(p.Dir, self+"-"+s) }
	return tlsgm.Config{SignCertFile: f("sign.pem"), SignKeyFile: f("sign.key"), EncCertFile: f("enc.pem"), EncKeyFile: f("enc.key"),
		CAFile: filepath.Join(p.Dir, "ca.pem"), AllowedPeers: []string{p.Fingerprint(peer)}}
}
