package gm_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"finepay/shared/gm"

	"github.com/emmansun/gmsm/sm4"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ToLower(s))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestSM3Vector(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"GB/T 32905 example 1", "abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"},
		{"GB/T 32905 example 2", strings.Repeat("abcd", 16), "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := gm.SM3([]byte(tc.in))
			if hex.EncodeToString(got[:]) != tc.want {
				t.Fatalf("SM3(%q) = %x, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestSM4BlockVector(t *testing.T) {
	key := unhex(t, "0123456789abcdeffedcba9876543210")
	want := unhex(t, "681edf34d206965e86b3e94f536e4246")
	b, err := sm4.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 16)
	b.Encrypt(got, key) // plaintext equals the key in the standard's example
	if !bytes.Equal(got, want) {
		t.Fatalf("SM4 encrypt = %x, want %x", got, want)
	}
	back := make([]byte, 16)
	b.Decrypt(back, got)
	if !bytes.Equal(back, key) {
		t.Fatalf("SM4 decrypt = %x, want %x", back, key)
	}
}

func TestSM4GCMVector(t *testing.T) {
	// RFC 8998 appendix A.1.
	key := unhex(t, "0123456789ABCDEFFEDCBA9876543210")
	iv := unhex(t, "00001234567800000000ABCD")
	aad := unhex(t, "FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
	pt := unhex(t, "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDDEEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA")
	ct := unhex(t, "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D")
	tag := unhex(t, "83DE3541E4C2B58177E065A9BF7B62EC")
	want := append(append([]byte{}, ct...), tag...)

	got, err := gm.SealSM4GCM(key, iv, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("SealSM4GCM =\n%X\nwant\n%X", got, want)
	}
	back, err := gm.OpenSM4GCM(key, iv, want, aad)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, pt) {
		t.Fatalf("OpenSM4GCM = %X, want %X", back, pt)
	}

	tamper := []struct {
		name                string
		key, iv, data, aadt []byte
	}{
		{"ciphertext byte", key, iv, flip(want, 0), aad},
		{"tag byte", key, iv, flip(want, len(want)-1), aad},
		{"aad byte", key, iv, want, flip(aad, 3)},
		{"nonce byte", key, flip(iv, 11), want, aad},
		{"key byte", flip(key, 0), iv, want, aad},
		{"truncated", key, iv, want[:len(want)-1], aad},
		{"missing aad", key, iv, want, nil},
	}
	for _, tc := range tamper {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gm.OpenSM4GCM(tc.key, tc.iv, tc.data, tc.aadt)
			if !errors.Is(err, gm.ErrDecrypt) {
				t.Fatalf("OpenSM4GCM error = %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestSM4GCMBadSizes(t *testing.T) {
	key := make([]byte, 16)
	tests := []struct {
		name       string
		key, nonce []byte
	}{
		{"short key", key[:15], make([]byte, 12)},
		{"long key", make([]byte, 32), make([]byte, 12)},
		{"short nonce", key, make([]byte, 8)},
		{"long nonce", key, make([]byte, 16)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := gm.SealSM4GCM(tc.key, tc.nonce, []byte("x"), nil); err == nil {
				t.Fatal("SealSM4GCM accepted bad sizes")
			}
			if _, err := gm.OpenSM4GCM(tc.key, tc.nonce, make([]byte, 17), nil); err == nil {
				t.Fatal("OpenSM4GCM accepted bad sizes")
			}
		})
	}
}

func TestHMACSM3Vector(t *testing.T) {
	// Expected values computed with OpenSSL 3:
	//   printf DATA | openssl mac -digest SM3 -macopt key:KEY HMAC
	tests := []struct {
		name, key, data, want string
	}{
		{"short", "key", "data", "88a5a14b0fcf4a8a7b0c5084b8ee36e70efca4e8467fa264c3231bf16463b425"},
		{"RFC 2104 style", "Jefe", "what do ya want for nothing?", "2e87f1d16862e6d964b50a5200bf2b10b764faa9680a296a2405f24bec39f882"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := gm.HMACSM3([]byte(tc.key), []byte(tc.data))
			if hex.EncodeToString(got) != tc.want {
				t.Fatalf("HMACSM3 = %x, want %s", got, tc.want)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 0x01
	return c
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSM2KnownAnswer(t *testing.T) {
	pub, err := gm.ParsePublicKeyPEM(readTestdata(t, "sm2-kat-public.pem"))
	if err != nil {
		t.Fatal(err)
	}
	msg := readTestdata(t, "sm2-kat-message.txt")
	sig := readTestdata(t, "sm2-kat-signature.der")

	if err := pub.Verify(msg, sig); err != nil {
		t.Fatalf("known-answer signature: %v", err)
	}
	tests := []struct {
		name     string
		msg, sig []byte
	}{
		{"message first byte", flip(msg, 0), sig},
		{"message last byte", flip(msg, len(msg)-1), sig},
		{"message truncated", msg[:len(msg)-1], sig},
		{"message extended", append(append([]byte{}, msg...), '\n'), sig},
		{"signature r byte", msg, flip(sig, 10)},
		{"signature s last byte", msg, flip(sig, len(sig)-1)},
		{"signature DER header", msg, flip(sig, 0)},
		{"signature truncated", msg, sig[:len(sig)-1]},
		{"empty signature", msg, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := pub.Verify(tc.msg, tc.sig); !errors.Is(err, gm.ErrVerify) {
				t.Fatalf("Verify = %v, want ErrVerify", err)
			}
		})
	}
}
