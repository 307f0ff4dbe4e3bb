package tlsgm

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/tjfoc/gmsm/gmtls"
)

// Dialer makes client connections with one loaded Config. Load it once with
// NewDialer and reuse it: Dial reads the key and certificate files on every
// call.
type Dialer struct {
	id  *identity
	cfg Config
	net net.Dialer
}

// NewDialer loads cfg's certificates, keys, CA and allow-list.
func NewDialer(cfg Config) (*Dialer, error) {
	id, err := load(&cfg)
	if err != nil {
		return nil, err
	}
	return &Dialer{id: id, cfg: cfg, net: net.Dialer{KeepAlive: 30 * time.Second}}, nil
}

// Dial connects to addr and runs a GM TLS client handshake: the server's
// certificate chain is verified against cfg.CAFile and the server name, and
// its signing certificate must be on cfg.AllowedPeers. The returned
// connection is a *Conn.
func Dial(ctx context.Context, network, addr string, cfg Config) (net.Conn, error) {
	d, err := NewDialer(cfg)
	if err != nil {
		return nil, err
	}
	return d.DialContext(ctx, network, addr)
}

// DialContext is Dial with the Dialer's loaded configuration.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	serverName := d.cfg.ServerName
	if serverName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("tlsgm: %w", err)
		}
		serverName = host
	}
	raw, err := d.net.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("tlsgm: %w", err)
	}
	tc := gmtls.Client(raw, d.id.clientConfig(serverName))
	if err := handshake(ctx, raw, d.cfg.handshakeTimeout(), tc.Handshake); err != nil {
		raw.Close()
		d.cfg.reject(addr, reason(err))
		return nil, fmt.Errorf("tlsgm: handshake with %s: %w", addr, err)
	}
	return newConn(tc), nil
}

// HTTPTransport returns an http.Transport that reaches "https://host:port/"
// URLs over GM TLS with cfg (HTTP/1.1, no proxy; http:// URLs fail).
// Certificates are loaded once, now.
func HTTPTransport(cfg Config) (*http.Transport, error) {
	d, err := NewDialer(cfg)
	if err != nil {
		return nil, err
	}
	return d.HTTPTransport(), nil
}

// HTTPTransport returns an http.Transport dialling through d.
func (d *Dialer) HTTPTransport() *http.Transport {
	return &http.Transport{
		Proxy:          nil, // the ferry link never goes through a proxy
		DialTLSContext: d.DialContext,
		// Plain http:// URLs are refused rather than sent in clear.
		DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
			return nil, fmt.Errorf("tlsgm: refusing plain-text connection to %s: use an https:// URL", addr)
		},
		ForceAttemptHTTP2:     false,
		MaxIdleConns:          16,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
