package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"finepay/ferry/bundle"
	"finepay/shared/gm"
)

// offline are the generous limits of an offline check: a bundle rejected for its size can
// still be examined.
var offline = bundle.Limits{MaxBytes: 256 << 20, MaxMessages: 1 << 20}

// verifyBundle checks a bundle's or acknowledgement's signature with the sender's certificate
// and, given the receiver's encryption key, its contents; it says why a check fails.
func verifyBundle(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("verify-bundle", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	peerCert := fs.String("peer-cert", "", "the signing certificate of the node that sent the bundle")
	caFile := fs.String("ca", "", "CA certificate to check -peer-cert against (optional)")
	keyFile := fs.String("key", "", "the receiver's encryption key, to check the contents too (optional)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *peerCert == "" {
		return fmt.Errorf("%w: verify-bundle -peer-cert FILE [-ca FILE] [-key FILE] FILE", errUsage)
	}
	raw, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	cert, err := signer(*peerCert, *caFile, out)
	if err != nil {
		return err
	}
	if bytes.HasPrefix(raw, []byte(bundle.AckMagic)) {
		return verifyAck(raw, cert, out)
	}
	p, err := bundle.Parse(raw, offline)
	if err != nil {
		return fmt.Errorf("%w: not a well-formed bundle: %v", errCheck, err)
	}
	h := p.Header
	fmt.Fprintf(out, "bundle %s: %s → %s, lane %s, sequences %d..%d (%d messages), created %s, %d bytes\n",
		h.BundleID, h.From, h.To, h.Lane, h.FirstSeq, h.LastSeq, h.Count(), h.Created.Format("2006-01-02T15:04:05.000000Z"), len(raw))
	if err := p.Verify(cert.PublicKey()); err != nil {
		return fmt.Errorf("%w: signature does not verify with %s (%s): %s", errCheck, cert.CommonName(), cert.Fingerprint(), whySignature(h, cert))
	}
	fmt.Fprintf(out, "signature: OK, signed by %s (%s)\n", cert.CommonName(), cert.Fingerprint())
	if *keyFile == "" {
		fmt.Fprintln(out, "contents: not checked (give -key, the receiver's encryption key)")
		return nil
	}
	key, err := gm.LoadPrivateKey(*keyFile)
	if err != nil {
		return err
	}
	_, msgs, err := bundle.Open(raw, cert.PublicKey(), key, offline)
	if err != nil {
		return fmt.Errorf("%w: contents (%s): %v", errCheck, bundle.Reason(err), err)
	}
	fmt.Fprintf(out, "contents: OK, %d messages\n", len(msgs))
	for _, m := range msgs {
		fmt.Fprintf(out, "  %d\t%s\t%s\n", m.Seq, m.Envelope.Type, m.Envelope.ID)
	}
	return nil
}

func signer(certFile, caFile string, out io.Writer) (*gm.Certificate, error) {
	cert, err := gm.LoadCertificate(certFile)
	if err != nil {
		return nil, err
	}
	if caFile == "" {
		return cert, nil
	}
	ca, err := gm.LoadCertificate(caFile)
	if err != nil {
		return nil, err
	}
	if err := cert.VerifySignedBy(ca); err != nil {
		return nil, fmt.Errorf("%w: %s is not a valid certificate of %s: %v", errCheck, certFile, ca.CommonName(), err)
	}
	fmt.Fprintf(out, "certificate: %s, issued by %s: OK\n", cert.CommonName(), ca.CommonName())
	return cert, nil
}

// whySignature explains a signature failure as far as the bundle allows.
func whySignature(h bundle.Header, cert *gm.Certificate) string {
	if h.From != cert.CommonName() {
		return fmt.Sprintf("the header names %q as the sender, the certificate is %q's: check -peer-cert", h.From, cert.CommonName())
	}
	return "the signed bytes (preamble, header, or the digest of wrapped key, nonce and ciphertext) are not what the sender signed: the bundle was altered, or signed with another key"
}

func verifyAck(raw []byte, cert *gm.Certificate, out io.Writer) error {
	p, err := bundle.ParseAck(raw)
	if err != nil {
		return fmt.Errorf("%w: not a well-formed acknowledgement: %v", errCheck, err)
	}
	a := p.Ack
	fmt.Fprintf(out, "acknowledgement: %s → %s, lane %s committed up to %d, bundle %s, at %s\n",
		a.From, a.To, a.Lane, a.Seq, dash(a.BundleID), a.At.Format("2006-01-02T15:04:05.000000Z"))
	if _, err := bundle.OpenAck(raw, cert.PublicKey()); err != nil {
		if errors.Is(err, bundle.ErrSignature) && a.From != cert.CommonName() {
			return fmt.Errorf("%w: signature does not verify: the acknowledgement names %q, the certificate is %q's", errCheck, a.From, cert.CommonName())
		}
		return fmt.Errorf("%w: signature does not verify with %s: the acknowledgement was altered or signed with another key", errCheck, cert.CommonName())
	}
	fmt.Fprintf(out, "signature: OK, signed by %s (%s)\n", cert.CommonName(), cert.Fingerprint())
	return nil
}
