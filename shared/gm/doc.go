// Package gm is SM2/SM3/SM4 for FinePay: signatures, key wrapping, SM4-GCM,
// SM3, SM3-HMAC, keys and certificates (the Chinese commercial "ShangMi"
// algorithms).
//
// Signatures are SM2 over SM3(Z || message), where Z is computed with the
// default distinguishing identifier DefaultUID ("1234567812345678"), and are
// encoded as an ASN.1 DER SEQUENCE of r and s. This is what OpenSSL 3 produces
// and checks with
//
//	openssl pkeyutl -verify -pubin -inkey pub.pem -in msg -sigfile sig \
//	    -rawin -digest sm3 -pkeyopt distid:1234567812345678
//
// SM2 public-key encryption (used to wrap the per-bundle SM4 key of a digital
// envelope) uses the GB/T 32918.4-2016 C1C3C2 order in its ASN.1 encoding
// (GM/T 0009). SM4-GCM follows RFC 8998: 16-byte key, 12-byte nonce and a
// 16-byte tag appended to the ciphertext.
//
// Keys are stored as PKCS#8 "PRIVATE KEY" PEM and PKIX "PUBLIC KEY" PEM; the
// SEC 1 "EC PRIVATE KEY" form is accepted on input. Certificates are X.509 v3
// signed with SM2-with-SM3 (OID 1.2.156.10197.1.501); the helpers in pki.go make
// a development CA and node certificates that OpenSSL 3 and tjfoc/gmsm's gmtls
// both accept.
//
// The Signer and Decrypter interfaces are what callers should depend on, so
// that a hardware module (PKCS#11) or a signing server can later replace the
// file-based *PrivateKey.
//
// The primitives come from github.com/emmansun/gmsm.
package gm
