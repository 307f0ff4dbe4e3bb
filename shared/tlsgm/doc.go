// Package tlsgm provides GM TLS (GB/T 38636, TLCP) with mutual SM2 certificate
// authentication for the ferry link.
//
// It wraps github.com/tjfoc/gmsm v1.4.1 (packages gmtls and x509). Every node
// has two SM2 certificates from the project CA, as TLCP requires: a signing
// certificate (digitalSignature) and an encryption certificate
// (keyEncipherment, dataEncipherment, keyAgreement). Both are loaded on both
// sides. A server requires and verifies a client certificate chain against the
// CA and then checks the client's signing certificate against an allow-list of
// fingerprints ("sm3:" + hex SM3 of the DER, as gm.Certificate.Fingerprint);
// a client verifies the server's chain, host name and allow-list entry in the
// same way. An empty allow-list is refused at construction (default deny).
//
// # What was found about tjfoc/gmsm v1.4.1 on Go 1.26
//
//   - It builds and handshakes on Go 1.26 with certificates signed with
//     SM2-with-SM3 (as gm.NewCA and IssueNode make them); its x509 package
//     verifies those chains.
//   - Cipher suites: v1.4.1 implements only two SM4 suites, both CBC with
//     HMAC-SM3: ECC_SM4_CBC_SM3 (0xe013, gmtls.GMTLS_SM2_WITH_SM4_SM3) and
//     ECDHE_SM4_CBC_SM3 (0xe011). There is no ECC_SM4_GCM_SM3 (0xe053) in this
//     version. The server side of the ECDHE suite is not implemented (its
//     generateServerKeyExchange panics), so both sides are pinned to
//     ECC_SM4_CBC_SM3 alone. The library's default list offers both, which is
//     why the pin matters.
//   - The library's double-certificate mode (the default build, without the
//     single_cert tag) is used: Config.Certificates holds the signing
//     certificate first and the encryption certificate second. A client sends
//     only its signing certificate, which is all the ECC suite needs.
//   - Keys: gmtls.LoadGMX509KeyPairs fails on these certificates ("tls:
//     unknown public key algorithm": tjfoc's x509 returns the SM2 key as an
//     *ecdsa.PublicKey and the function expects *sm2.PublicKey). tjfoc's
//     x509.ParsePKCS8UnecryptedPrivateKey does read the PKCS#8 keys fpcerts
//     writes, but this package parses keys with emmansun's smx509 (which also
//     takes SEC 1 "EC PRIVATE KEY" and OpenSSL 3's layout), rebuilds them as
//     tjfoc sm2.PrivateKey values from D, checks each against its
//     certificate and the certificate's key usage, and fills
//     gmtls.Config.Certificates itself.
//   - Session tickets are disabled, so every connection runs a full handshake
//     and a full allow-list check (allow-list changes apply at once). Only the
//     GM TLS version (0x0101) is accepted.
//   - The library prints "handshake error : ..." to standard output whenever a
//     handshake fails; this cannot be switched off. Use Config.OnReject for
//     the audit record.
//
// # Servers
//
// Listen and NewServerListener return a listener whose Accept yields only
// connections that have completed the handshake and passed the allow-list;
// handshakes run in their own goroutines with a deadline
// (Config.HandshakeTimeout), so a slow or hostile client cannot stall the
// accept loop. Refusals are reported through Config.OnReject. With net/http:
//
//	srv := &http.Server{Handler: h, ConnContext: tlsgm.ConnContext}
//	go srv.Serve(ln)
//	// in a handler: fp, ok := tlsgm.PeerFromContext(r.Context())
//
// r.TLS is nil for these connections (net/http only knows crypto/tls); use
// PeerFromContext instead.
//
// # Clients
//
// Dial, NewDialer and HTTPTransport: an http.Client with the transport speaks
// HTTPS over GM TLS to "https://host:port/..." URLs (HTTP/1.1; no proxy).
package tlsgm
