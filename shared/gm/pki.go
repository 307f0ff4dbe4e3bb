package gm

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// Issued is a certificate with its private key.
type Issued struct {
	Cert *Certificate
	Key  *PrivateKey
}

// Usage selects the key usages of a node certificate. GM TLS (TLCP) gives
// each node two certificates: one for signing and one for key exchange.
type Usage int

const (
	// UsageSign is a signing certificate: DigitalSignature.
	UsageSign Usage = iota
	// UsageEncrypt is an encryption certificate: KeyEncipherment,
	// DataEncipherment and KeyAgreement.
	UsageEncrypt
)

func (u Usage) String() string {
	switch u {
	case UsageSign:
		return "sign"
	case UsageEncrypt:
		return "enc"
	}
	return fmt.Sprintf("Usage(%d)", int(u))
}

// backdate allows for clock skew between nodes.
const backdate = 5 * time.Minute

func serialNumber(r io.Reader) (*big.Int, error) {
	if r == nil {
		r = rand.Reader
	}
	// 127 bits: positive and within the 20 octets RFC 5280 allows.
	n, err := rand.Int(r, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("gm: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func subjectKeyID(pub *PublicKey) []byte {
	d := SM3(pub.bytes())
	return d[:20]
}

// NewCA makes a self-signed SM2 CA certificate (SM2-with-SM3) valid from
// now until notAfter.
func NewCA(rand io.Reader, commonName string, notAfter time.Time) (*Issued, error) {
	if !notAfter.After(time.Now()) {
		return nil, errors.New("gm: CA notAfter is in the past")
	}
	key, err := GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	sn, err := serialNumber(rand)
	if err != nil {
		return nil, err
	}
	tmpl := &smx509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"FinePay"}},
		NotBefore:             time.Now().Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SignatureAlgorithm:    smx509.SM2WithSM3,
		SubjectKeyId:          subjectKeyID(key.Public()),
	}
	return create(rand, tmpl, tmpl, key.Public(), key, key)
}

// IssueNode makes a node certificate for a fresh SM2 key, signed by ca and
// valid from now until notAfter (clamped to the CA's own notAfter). Both
// usages carry the server and client authentication extended key usages, as
// every ferry node both listens and dials.
func (ca *Issued) IssueNode(rand io.Reader, commonName string, usage Usage, dnsNames []string, ips []net.IP, notAfter time.Time) (*Issued, error) {
	var ku x509.KeyUsage
	switch usage {
	case UsageSign:
		ku = x509.KeyUsageDigitalSignature
	case UsageEncrypt:
		ku = x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement
	default:
		return nil, fmt.Errorf("gm: unknown certificate usage %d", int(usage))
	}
	if caEnd := ca.Cert.c.NotAfter; notAfter.After(caEnd) {
		notAfter = caEnd
	}
	if !notAfter.After(time.Now()) {
		return nil, errors.New("gm: node notAfter is in the past")
	}
	key, err := GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	sn, err := serialNumber(rand)
	if err != nil {
		return nil, err
	}
	tmpl := &smx509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"FinePay"}, OrganizationalUnit: []string{usage.String()}},
		NotBefore:             time.Now().Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              ku,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		SignatureAlgorithm:    smx509.SM2WithSM3,
		SubjectKeyId:          subjectKeyID(key.Public()),
		AuthorityKeyId:        ca.Cert.c.SubjectKeyId,
	}
	return create(rand, tmpl, ca.Cert.c, key.Public(), ca.Key, key)
}

func create(rand io.Reader, tmpl, parent *smx509.Certificate, pub *PublicKey, signer, key *PrivateKey) (*Issued, error) {
	der, err := smx509.CreateCertificate(rand, tmpl, parent, pub.k, signer.k)
	if err != nil {
		return nil, fmt.Errorf("gm: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	c, err := ParseCertificateDER(der)
	if err != nil {
		return nil, err
	}
	return &Issued{Cert: c, Key: key}, nil
}
