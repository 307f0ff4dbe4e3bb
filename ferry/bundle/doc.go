// Package bundle is the ferry's unit of transfer: a self-contained, signed and encrypted batch of
// consecutive messages of one lane, and the signed acknowledgement that answers it. Both are the
// same on every transport (the HTTP link, a gap appliance's spool directory), so their security
// does not depend on the transport.
//
// # Bundle, format version 1
//
// All integers are unsigned and big-endian. A bundle is one byte string:
//
//	offset        size  field
//	0             4     magic "FPB1" (46 50 42 31): FinePay bundle, format version 1
//	4             4     H, the length of the header
//	8             4     W, the length of the wrapped key
//	12            4     C, the length of the ciphertext (including the 16-byte GCM tag)
//	16            H     header: canonical JSON, see below
//	16+H          W     wrapped key: the SM4 key encrypted with SM2 to the receiver's
//	                    encryption certificate (GB/T 32918.4 C1C3C2, ASN.1 DER, GM/T 0009)
//	16+H+W        12    nonce of SM4-GCM
//	28+H+W        C     ciphertext: SM4-GCM (RFC 8998) of the body, with the header bytes as
//	                    additional authenticated data, tag appended
//	28+H+W+C      rest  signature: SM2 (SM3, user ID 1234567812345678), ASN.1 DER
//
// The signature covers every other byte of the bundle. The signed message is
//
//	bytes [0, 16+H)  ‖  SM3(bytes [16+H, 28+H+W+C))
//
// that is the 16-byte preamble and the header as they stand, followed by the 32-byte SM3 digest
// of wrapped key ‖ nonce ‖ ciphertext.
//
// The header is the JSON object below, with exactly these members in exactly this order, no
// white space, and Go's encoding/json escaping (the values are restricted so that none is needed):
//
//	{"version":1,"bundle_id":"<32 lowercase hex: 128 random bits>","from":"<sender node>",
//	 "to":"<receiver node>","lane":"<to-core.N|to-gateway.N>","first_seq":F,"last_seq":L,
//	 "created":"<RFC 3339 UTC time, Z, up to microseconds, trailing zeros dropped>",
//	 "digests":["<64 lowercase hex>",...]}
//
// digests holds, in sequence order, the SM3 digest of the canonical encoding of each message
// (package envelope), so there are L-F+1 of them. A header is accepted only if re-encoding the
// decoded value gives the same bytes, so every header has exactly one encoding.
//
// The body (the plaintext) is the messages in sequence order, each as a 4-byte length followed
// by the message's canonical envelope encoding; nothing follows the last one.
//
// # Acknowledgement, format version 1
//
//	offset   size  field
//	0        4     magic "FPA1" (46 50 41 31)
//	4        4     L, the length of the body
//	8        L     body: canonical JSON, see below
//	8+L      rest  signature: SM2 (SM3, user ID 1234567812345678), ASN.1 DER, of bytes [0, 8+L)
//
//	{"version":1,"from":"<acknowledging node>","to":"<sender node>","lane":"<lane>",
//	 "seq":S,"bundle_id":"<32 lowercase hex, or empty>","at":"<RFC 3339 UTC>"}
//
// seq is the highest contiguous sequence of the lane the acknowledging node has committed; the
// sender retires its outbox up to it. bundle_id names the bundle that was answered; it is empty
// in a cumulative acknowledgement not tied to a bundle.
//
// # Checking a bundle with OpenSSL
//
// An auditor holding a bundle file B and the sender's signing certificate sign.pem checks the
// signature with standard tools (GNU coreutils and OpenSSL 3):
//
//	u32() { od -An -tu4 --endian=big -j "$2" -N4 "$1" | tr -d ' '; }
//	H=$(u32 B 4); W=$(u32 B 8); C=$(u32 B 12)
//	head -c $((16+H)) B > signed
//	tail -c +$((17+H)) B | head -c $((W+12+C)) | openssl dgst -sm3 -binary >> signed
//	tail -c +$((29+H+W+C)) B > sig
//	openssl x509 -in sign.pem -pubkey -noout > pub.pem
//	openssl pkeyutl -verify -pubin -inkey pub.pem -in signed -sigfile sig \
//	    -rawin -digest sm3 -pkeyopt distid:1234567812345678
//
// and reads the header with `tail -c +17 B | head -c $H`. For an acknowledgement A:
//
//	L=$(u32 A 4); head -c $((8+L)) A > signed; tail -c +$((9+L)) A > sig
//
// and the same pkeyutl command.
//
// # Opening
//
// Open checks, in this order and before anything is decrypted: the magic, the lengths and the
// limits (bundle size, message count), the canonical header, then the signature against the
// trusted sender's key; then it unwraps the key and decrypts, and checks each message's digest,
// the sequence numbers and count, each envelope's canonical form and catalogue schema, and that
// each message type travels in its lane's direction. Each failure wraps one of the sentinel
// errors below; Reason gives a short word for it.
package bundle
