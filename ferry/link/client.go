package link

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"finepay/ferry/bundle"
	"finepay/ferry/relay"
	"finepay/shared/tlsgm"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	URL      string       // the DMZ ferry's link, https://host:port
	TLS      tlsgm.Config // own certificates, the CA, the DMZ ferry's fingerprint
	MaxBytes int          // the bundle size limit
}

// maxIdleConns bounds the idle link connections kept for reuse.
const maxIdleConns = 128

// Client is the intranet side's end of the link; it implements relay.Transport.
type Client struct {
	base     string
	maxBytes int
	tr       *http.Transport
	hc       *http.Client
}

var _ relay.Transport = (*Client)(nil)

// NewClient loads the TLS configuration and returns a client of the DMZ ferry at cfg.URL.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("link: peer URL %q: want https://host:port", cfg.URL)
	}
	tr, err := tlsgm.HTTPTransport(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = bundle.DefaultMaxBytes
	}
	// Keep a connection for every request that may be in flight at once (a pusher per lane,
	// the pullers, acknowledgements), so that none is closed after its request and dialled
	// again: a GM TLS handshake costs about 10 ms of CPU on each end.
	tr.MaxIdleConns = maxIdleConns
	tr.MaxIdleConnsPerHost = maxIdleConns
	return &Client{base: strings.TrimSuffix(cfg.URL, "/"), maxBytes: cfg.MaxBytes, tr: tr, hc: &http.Client{Transport: tr}}, nil
}

// Addr is the peer's URL.
func (c *Client) Addr() string { return c.base }

// Close closes idle connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// Push implements relay.Transport.
func (c *Client) Push(ctx context.Context, raw []byte) ([]byte, error) {
	status, body, err := c.post(ctx, "/v1/bundles", BundleType, raw, bundle.MaxAckBytes)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, peerError(status, body)
	}
	return body, nil
}

// Pull implements relay.Transport.
func (c *Client) Pull(ctx context.Context, marks map[string]int64, wait time.Duration) ([]byte, error) {
	req, err := json.Marshal(PullRequest{Marks: marks, WaitMS: wait.Milliseconds()})
	if err != nil {
		return nil, fmt.Errorf("link: pull: %w", err)
	}
	status, body, err := c.post(ctx, "/v1/pull", "application/json", req, c.maxBytes)
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusNoContent:
		return nil, nil
	case status != http.StatusOK:
		return nil, peerError(status, body)
	}
	return body, nil
}

// PostAck implements relay.Transport.
func (c *Client) PostAck(ctx context.Context, raw []byte) error {
	status, body, err := c.post(ctx, "/v1/acks", AckType, raw, bundle.MaxAckBytes)
	if status == http.StatusOK && len(body) > bundle.MaxAckBytes {
		return fmt.Errorf("link: /v1/acks: answer larger than %d bytes", bundle.MaxAckBytes)
	}
	if err != nil {
		return err
	}
	if status != http.StatusNoContent && status != http.StatusOK {
		return peerError(status, body)
	}
	return nil
}

// post sends one request and reads up to limit+1 bytes of the answer. An oversized success
// answer (a bundle or an acknowledgement) is returned as read, limit+1 bytes: the relay refuses
// it for its size and audits that, as it does a bundle pushed to the DMZ; an oversized error
// answer is an error here.
func (c *Client) post(ctx context.Context, path, contentType string, body []byte, limit int) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("link: %s: %w", path, err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("link: %s: %w", path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return 0, nil, fmt.Errorf("link: %s: read answer: %w", path, err)
	}
	if len(out) > limit && resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("link: %s: %d answer larger than %d bytes", path, resp.StatusCode, limit)
	}
	return resp.StatusCode, out, nil
}

// peerError decodes an error answer: *relay.GapError for 409, *relay.PeerError otherwise.
func peerError(status int, body []byte) error {
	var b GapBody
	_ = json.Unmarshal(body, &b)
	if status == http.StatusConflict && b.Code == "SEQUENCE_GAP" && b.Expected > 0 {
		return &relay.GapError{Lane: b.Lane, Expected: b.Expected}
	}
	if b.Code == "" {
		b.Code, b.Message = http.StatusText(status), strings.TrimSpace(string(body))
	}
	return &relay.PeerError{Status: status, Code: b.Code, Message: b.Message}
}
