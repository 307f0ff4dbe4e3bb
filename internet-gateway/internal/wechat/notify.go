package wechat

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
)

// MaxNotification bounds the size of a notification body.
const MaxNotification = 64 << 10

// Notification is the outer (signed, not encrypted) part of a payment notification.
type Notification struct {
	ID           string   `json:"id"`
	CreateTime   string   `json:"create_time"`
	ResourceType string   `json:"resource_type"`
	EventType    string   `json:"event_type"`
	Summary      string   `json:"summary"`
	Resource     Resource `json:"resource"`
}

// Resource is the encrypted part of a notification.
type Resource struct {
	OriginalType   string `json:"original_type"`
	Algorithm      string `json:"algorithm"`
	Ciphertext     string `json:"ciphertext"` // base64 of ciphertext with the GCM tag appended
	AssociatedData string `json:"associated_data"`
	Nonce          string `json:"nonce"` // 12 characters, used as bytes
}

// Event types and constants of payment notifications.
const (
	EventTransactionSuccess = "TRANSACTION.SUCCESS"
	ResourceEncrypted       = "encrypt-resource"
	AlgorithmAESGCM         = "AEAD_AES_256_GCM"
)

// OpenNotification verifies and decrypts a payment notification: the platform signature over
// the raw body (ErrSerial, ErrTimestamp, ErrSignature), the envelope (ErrInvalid), the resource
// (ErrDecrypt), and the transaction: ours, paid, in CNY (ErrInvalid). Whether the order exists
// and the amount is right is for the caller to check.
func (c *Client) OpenNotification(h http.Header, body []byte) (Notification, Transaction, error) {
	var n Notification
	var t Transaction
	if len(body) > MaxNotification {
		return n, t, fmt.Errorf("%w: body of %d bytes", ErrInvalid, len(body))
	}
	if err := c.verifier.Verify(h, body); err != nil {
		return n, t, err
	}
	if err := json.Unmarshal(body, &n); err != nil {
		return n, t, fmt.Errorf("%w: notification: %w", ErrInvalid, err)
	}
	if n.ID == "" || len(n.ID) > 64 || n.EventType != EventTransactionSuccess || n.ResourceType != ResourceEncrypted ||
		n.Resource.Algorithm != AlgorithmAESGCM {
		return n, t, fmt.Errorf("%w: notification %.64q: event %.64q, resource %.64q, algorithm %.64q", ErrInvalid,
			n.ID, n.EventType, n.ResourceType, n.Resource.Algorithm)
	}
	plain, err := DecryptResource(c.apiV3Key, n.Resource)
	if err != nil {
		return n, t, err
	}
	dec := json.NewDecoder(bytes.NewReader(plain))
	if err := dec.Decode(&t); err != nil {
		return n, t, fmt.Errorf("%w: transaction: %w", ErrInvalid, err)
	}
	if _, err := t.CheckPaid(c.appID, c.mchID); err != nil {
		return n, t, err
	}
	if t.TradeState != StateSuccess {
		return n, t, fmt.Errorf("%w: trade_state %q", ErrInvalid, t.TradeState)
	}
	return n, t, nil
}

// DecryptResource opens an AEAD_AES_256_GCM resource with the APIv3 key. Failures wrap
// ErrDecrypt.
func DecryptResource(apiV3Key []byte, r Resource) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(r.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext is not base64", ErrDecrypt)
	}
	block, err := aes.NewCipher(apiV3Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	if len(r.Nonce) != 12 {
		return nil, fmt.Errorf("%w: nonce of %d bytes", ErrDecrypt, len(r.Nonce))
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	if len(ct) < gcm.Overhead() {
		return nil, fmt.Errorf("%w: ciphertext shorter than the tag", ErrDecrypt)
	}
	plain, err := gcm.Open(nil, []byte(r.Nonce), ct, []byte(r.AssociatedData))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	return plain, nil
}
