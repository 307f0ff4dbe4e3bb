package tlsgm

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"finepay/shared/gm"

	esm2 "github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/tjfoc/gmsm/gmtls"
	tsm2 "github.com/tjfoc/gmsm/sm2"
	tx509 "github.com/tjfoc/gmsm/x509"
)

// ErrPeerNotAllowed reports a peer whose certificate chain is valid but whose
// signing certificate is not on the allow-list.
var ErrPeerNotAllowed = errors.New("tlsgm: peer certificate not on the allow-list")

// DefaultHandshakeTimeout bounds a handshake when Config.HandshakeTimeout is
// zero.
const DefaultHandshakeTimeout = 10 * time.Second

// cipherSuites are the suites offered and accepted: ECC_SM4_CBC_SM3 only (see
// the package documentation for why not ECDHE or GCM).
var cipherSuites = []uint16{gmtls.GMTLS_SM2_WITH_SM4_SM3}

// Config describes one node's side of the link.
type Config struct {
	// Our node's certificates and keys (PEM; keys PKCS#8 or SEC 1 as written
	// by fpcerts).
	SignCertFile, SignKeyFile, EncCertFile, EncKeyFile string
	// CAFile holds the project CA certificate(s) in PEM.
	CAFile string
	// AllowedPeers lists the peers' SIGNING certificate fingerprints,
	// "sm3:<hex of SM3(DER)>" (gm.Certificate.Fingerprint). Nobody else is
	// accepted; an empty list is an error.
	AllowedPeers []string
	// ServerName is the name a client checks in the server's certificates.
	// When empty, the host part of the dialled address is used.
	ServerName string
	// OnReject, if set, is called when a handshake fails or a peer is
	// refused, with the remote address and a reason, for the audit log. It
	// must be safe for concurrent use.
	OnReject func(remoteAddr, reason string)
	// HandshakeTimeout bounds each handshake; zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

func (c *Config) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout > 0 {
		return c.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (c *Config) reject(addr, reason string) {
	if c.OnReject != nil {
		c.OnReject(addr, reason)
	}
}

// identity is what a Config loads into.
type identity struct {
	certs   []gmtls.Certificate // sign, enc
	pool    *tx509.CertPool
	allowed map[string]bool
}

func load(cfg *Config) (*identity, error) {
	allowed, err := allowList(cfg.AllowedPeers)
	if err != nil {
		return nil, err
	}
	sign, err := loadPair(cfg.SignCertFile, cfg.SignKeyFile, gm.UsageSign)
	if err != nil {
		return nil, err
	}
	enc, err := loadPair(cfg.EncCertFile, cfg.EncKeyFile, gm.UsageEncrypt)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("tlsgm: CA: %w", err)
	}
	pool := tx509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("tlsgm: no CA certificate in %s", cfg.CAFile)
	}
	return &identity{certs: []gmtls.Certificate{sign, enc}, pool: pool, allowed: allowed}, nil
}

func allowList(peers []string) (map[string]bool, error) {
	if len(peers) == 0 {
		return nil, errors.New("tlsgm: AllowedPeers is empty: no peer could connect (default deny)")
	}
	m := make(map[string]bool, len(peers))
	for _, p := range peers {
		fp := strings.ToLower(strings.TrimSpace(p))
		h, ok := strings.CutPrefix(fp, "sm3:")
		if b, err := hex.DecodeString(h); !ok || err != nil || len(b) != 32 {
			return nil, fmt.Errorf("tlsgm: allowed peer %q is not an \"sm3:<64 hex digits>\" fingerprint", p)
		}
		m[fp] = true
	}
	return m, nil
}

// loadPair reads a certificate and its key and converts them for gmtls.
func loadPair(certFile, keyFile string, usage gm.Usage) (gmtls.Certificate, error) {
	var none gmtls.Certificate
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return none, fmt.Errorf("tlsgm: %s certificate: %w", usage, err)
	}
	block := firstBlock(certPEM, "CERTIFICATE")
	if block == nil {
		return none, fmt.Errorf("tlsgm: no CERTIFICATE in %s", certFile)
	}
	leaf, err := tx509.ParseCertificate(block.Bytes)
	if err != nil {
		return none, fmt.Errorf("tlsgm: %s: %w", certFile, err)
	}
	const encUsages = tx509.KeyUsageKeyEncipherment | tx509.KeyUsageDataEncipherment | tx509.KeyUsageKeyAgreement
	switch {
	case usage == gm.UsageSign && leaf.KeyUsage&tx509.KeyUsageDigitalSignature == 0:
		return none, fmt.Errorf("tlsgm: %s lacks the digitalSignature key usage a signing certificate needs", certFile)
	case usage == gm.UsageEncrypt && leaf.KeyUsage&encUsages == 0:
		return none, fmt.Errorf("tlsgm: %s lacks the encipherment key usages an encryption certificate needs", certFile)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != tsm2.P256Sm2() {
		return none, fmt.Errorf("tlsgm: %s: not an SM2 certificate (%T)", certFile, leaf.PublicKey)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return none, fmt.Errorf("tlsgm: %s key: %w", usage, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return none, fmt.Errorf("tlsgm: %s: %w", keyFile, err)
	}
	if key.X.Cmp(pub.X) != 0 || key.Y.Cmp(pub.Y) != 0 {
		return none, fmt.Errorf("tlsgm: key %s does not match certificate %s", keyFile, certFile)
	}
	return gmtls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key, Leaf: leaf}, nil
}

func firstBlock(data []byte, typ string) *pem.Block {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil || b.Type == typ {
			return b
		}
	}
}

// parseKey reads an SM2 private key with emmansun's parser (which knows the
// PKCS#8 layouts OpenSSL 3 and emmansun write) and rebuilds it for tjfoc.
func parseKey(keyPEM []byte) (*tsm2.PrivateKey, error) {
	var k *esm2.PrivateKey
	for rest := keyPEM; k == nil; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PRIVATE KEY or EC PRIVATE KEY block")
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = smx509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = smx509.ParseTypedECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		var ok bool
		if k, ok = key.(*esm2.PrivateKey); !ok {
			return nil, fmt.Errorf("not an SM2 key (%T)", key)
		}
	}
	curve := tsm2.P256Sm2()
	x, y := curve.ScalarBaseMult(k.D.FillBytes(make([]byte, 32)))
	if x.Cmp(k.X) != 0 || y.Cmp(k.Y) != 0 {
		return nil, errors.New("SM2 key is inconsistent")
	}
	return &tsm2.PrivateKey{PublicKey: tsm2.PublicKey{Curve: curve, X: x, Y: y}, D: k.D}, nil
}

// verifyPeer returns the gmtls VerifyPeerCertificate callback: it runs after
// the library has verified the chain and checks the signing (first)
// certificate against the allow-list.
func (id *identity) verifyPeer(rawCerts [][]byte, _ [][]*tx509.Certificate) error {
	if len(rawCerts) == 0 {
		return fmt.Errorf("%w: no certificate", ErrPeerNotAllowed)
	}
	fp := gm.FingerprintDER(rawCerts[0])
	if !id.allowed[fp] {
		cn := "?"
		if c, err := tx509.ParseCertificate(rawCerts[0]); err == nil {
			cn = c.Subject.CommonName
		}
		return fmt.Errorf("%w: %s (CN %q)", ErrPeerNotAllowed, fp, cn)
	}
	return nil
}

func (id *identity) baseConfig() *gmtls.Config {
	return &gmtls.Config{
		GMSupport:              gmtls.NewGMSupport(),
		Certificates:           id.certs,
		CipherSuites:           cipherSuites,
		MinVersion:             gmtls.VersionGMSSL,
		MaxVersion:             gmtls.VersionGMSSL,
		SessionTicketsDisabled: true,
		Renegotiation:          gmtls.RenegotiateNever,
		VerifyPeerCertificate:  id.verifyPeer,
	}
}

func (id *identity) serverConfig() *gmtls.Config {
	c := id.baseConfig()
	c.ClientAuth = gmtls.RequireAndVerifyClientCert
	c.ClientCAs = id.pool
	return c
}

func (id *identity) clientConfig(serverName string) *gmtls.Config {
	c := id.baseConfig()
	c.RootCAs = id.pool
	c.ServerName = serverName
	return c
}

// handshake runs h on conn with a deadline (the earlier of timeout and
// ctx's), abandoning it when ctx ends. Panics inside the library become
// errors: a malformed message must not take the process down.
func handshake(ctx context.Context, raw net.Conn, timeout time.Duration, h func() error) (err error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := raw.SetDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(aLongTimeAgo) })
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("tlsgm: handshake panicked: %v", r)
		}
		if !stop() {
			err = ctx.Err() // the handshake was cut short by ctx
		}
		if err == nil {
			err = raw.SetDeadline(time.Time{})
		}
	}()
	return h()
}

// reason turns a handshake error into an audit reason.
func reason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, ErrPeerNotAllowed):
		return err.Error()
	case errors.As(err, &ne) && ne.Timeout():
		return "handshake timed out: " + err.Error()
	default:
		return "handshake failed: " + err.Error()
	}
}

// Conn is a GM TLS connection whose handshake has completed.
type Conn struct {
	*gmtls.Conn
	peer string
}

// PeerFingerprint returns the fingerprint of the peer's signing certificate.
func (c *Conn) PeerFingerprint() string { return c.peer }

// closeNotifyTimeout bounds the close_notify alert Close sends.
const closeNotifyTimeout = 5 * time.Second

// Close sends close_notify and closes the connection. Unlike gmtls.Conn.Close
// it cannot block for ever on a peer that has stopped reading: the alert is
// given closeNotifyTimeout, as crypto/tls does.
func (c *Conn) Close() error {
	c.Conn.SetWriteDeadline(time.Now().Add(closeNotifyTimeout))
	return c.Conn.Close()
}

func newConn(tc *gmtls.Conn) *Conn {
	st := tc.ConnectionState()
	c := &Conn{Conn: tc}
	if len(st.PeerCertificates) > 0 {
		c.peer = gm.FingerprintDER(st.PeerCertificates[0].Raw)
	}
	return c
}

// PeerFingerprint returns the peer's signing certificate fingerprint for a
// connection returned by this package's listeners (server side) or Dial
// (client side). ok is false for any other connection.
func PeerFingerprint(c net.Conn) (string, bool) {
	gc, ok := c.(*Conn)
	if !ok || gc.peer == "" {
		return "", false
	}
	return gc.peer, true
}

type peerKey struct{}

// ConnContext is meant for http.Server.ConnContext: it records the peer
// fingerprint of the connection in the context of its requests.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if fp, ok := PeerFingerprint(c); ok {
		return context.WithValue(ctx, peerKey{}, fp)
	}
	return ctx
}

// PeerFromContext returns the fingerprint ConnContext recorded.
func PeerFromContext(ctx context.Context) (fingerprint string, ok bool) {
	fp, ok := ctx.Value(peerKey{}).(string)
	return fp, ok && fp != ""
}
