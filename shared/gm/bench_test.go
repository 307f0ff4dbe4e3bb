package gm_test

import (
	"crypto/rand"
	"testing"

	"finepay/shared/gm"
)

func BenchmarkSM2Sign(b *testing.B) {
	k := newKey(b)
	msg := make([]byte, 256)
	for b.Loop() {
		if _, err := k.Sign(rand.Reader, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSM2Verify(b *testing.B) {
	k := newKey(b)
	msg := make([]byte, 256)
	sig, err := k.Sign(rand.Reader, msg)
	if err != nil {
		b.Fatal(err)
	}
	pub := k.Public()
	for b.Loop() {
		if err := pub.Verify(msg, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSM2EncryptKey(b *testing.B) {
	k := newKey(b)
	key := make([]byte, 16)
	pub := k.Public()
	for b.Loop() {
		if _, err := pub.Encrypt(rand.Reader, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSM2DecryptKey(b *testing.B) {
	k := newKey(b)
	ct, err := k.Public().Encrypt(rand.Reader, make([]byte, 16))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := k.Decrypt(ct); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSM4GCMSeal1KiB(b *testing.B) {
	key := make([]byte, 16)
	nonce := make([]byte, 12)
	pt := make([]byte, 1024)
	aead, err := gm.NewSM4GCM(key)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, len(pt)+aead.Overhead())
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		dst = aead.Seal(dst[:0], nonce, pt, nil)
	}
}

func BenchmarkSealSM4GCM1KiB(b *testing.B) {
	key := make([]byte, 16)
	nonce := make([]byte, 12)
	pt := make([]byte, 1024)
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		if _, err := gm.SealSM4GCM(key, nonce, pt, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSM3_1KiB(b *testing.B) {
	data := make([]byte, 1024)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		gm.SM3(data)
	}
}
