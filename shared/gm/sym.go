package gm

import (
	"crypto/cipher"
	"crypto/hmac"
	"fmt"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
)

// SM4-GCM sizes (RFC 8998).
const (
	SM4KeySize   = 16
	GCMNonceSize = 12
	GCMTagSize   = 16
)

// SM3 returns the SM3 digest of data.
func SM3(data []byte) [32]byte { return sm3.Sum(data) }

// HMACSM3 returns the 32-byte HMAC-SM3 of data under key.
func HMACSM3(key, data []byte) []byte {
	m := hmac.New(sm3.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// NewSM4GCM returns SM4 in GCM mode: 16-byte key, 12-byte nonce, 16-byte tag
// appended to the ciphertext.
func NewSM4GCM(key []byte) (cipher.AEAD, error) {
	if len(key) != SM4KeySize {
		return nil, fmt.Errorf("gm: SM4 key is %d bytes, want %d", len(key), SM4KeySize)
	}
	b, err := sm4.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("gm: sm4: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("gm: sm4-gcm: %w", err)
	}
	return a, nil
}

// SealSM4GCM encrypts and authenticates plaintext and aad; the result is the
// ciphertext followed by the 16-byte tag. The nonce must be 12 bytes and never
// reused with the same key.
func SealSM4GCM(key, nonce, plaintext, aad []byte) ([]byte, error) {
	a, err := NewSM4GCM(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != GCMNonceSize {
		return nil, fmt.Errorf("gm: nonce is %d bytes, want %d", len(nonce), GCMNonceSize)
	}
	return a.Seal(nil, nonce, plaintext, aad), nil
}

// OpenSM4GCM reverses SealSM4GCM. An authentication failure gives an error
// wrapping ErrDecrypt.
func OpenSM4GCM(key, nonce, ciphertext, aad []byte) ([]byte, error) {
	a, err := NewSM4GCM(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != GCMNonceSize {
		return nil, fmt.Errorf("gm: nonce is %d bytes, want %d", len(nonce), GCMNonceSize)
	}
	pt, err := a.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("%w (sm4-gcm)", ErrDecrypt)
	}
	return pt, nil
}
