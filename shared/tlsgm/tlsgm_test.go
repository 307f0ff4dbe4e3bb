package tlsgm_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"finepay/shared/tlsgm"

	"github.com/tjfoc/gmsm/gmtls"
)

// serveHTTP starts an http.Server on a GM TLS listener for server and returns
// its address.
func serveHTTP(t *testing.T, cfg tlsgm.Config) string {
	t.Helper()
	ln, err := tlsgm.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/peer", func(w http.ResponseWriter, r *http.Request) {
		fp, ok := tlsgm.PeerFromContext(r.Context())
		if !ok {
			http.Error(w, "no peer", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, fp)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// HTTP/1.x: read the whole body before writing the response.
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write(b)
	})
	srv := &http.Server{Handler: mux, ConnContext: tlsgm.ConnContext, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestMutualAuthHTTP(t *testing.T) {
	ca := newTestCA(t, "FinePay Test CA")
	srvNode, cliNode := ca.node(t, "ferry-intranet"), ca.node(t, "ferry-dmz")
	onReject, rejected := rejections()
	scfg := srvNode.allowing(cliNode)
	scfg.OnReject = onReject
	addr := serveHTTP(t, scfg)

	_, port, _ := net.SplitHostPort(addr)
	tests := []struct {
		name       string
		serverName string
		url        string
	}{
		{"by IP", "", "https://" + addr},
		{"by name", "localhost", "https://localhost:" + port},
		{"explicit ServerName", "ferry-intranet", "https://" + addr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ccfg := cliNode.allowing(srvNode)
			ccfg.ServerName = tc.serverName
			tr, err := tlsgm.HTTPTransport(ccfg)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}

			code, body := get(t, client, tc.url+"/peer")
			if code != http.StatusOK || body != cliNode.fp() {
				t.Fatalf("GET /peer = %d %q, want 200 %q", code, body, cliNode.fp())
			}
			payload := strings.Repeat("bundle-bytes ", 5000)
			resp, err := client.Post(tc.url+"/echo", "application/octet-stream", strings.NewReader(payload))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != payload {
				t.Fatalf("echo returned %d bytes, want %d", len(b), len(payload))
			}
		})
	}
	select {
	case r := <-rejected:
		t.Fatalf("unexpected rejection: %+v", r)
	default:
	}
}

func TestDialPeerFingerprintAndSuite(t *testing.T) {
	ca := newTestCA(t, "FinePay Test CA")
	srvNode, cliNode := ca.node(t, "core"), ca.node(t, "gateway")
	ln, err := tlsgm.Listen("tcp", "127.0.0.1:0", srvNode.allowing(cliNode))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	type accepted struct {
		fp   string
		ok   bool
		line string
		err  error
	}
	got := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- accepted{err: err}
			return
		}
		defer c.Close()
		fp, ok := tlsgm.PeerFingerprint(c)
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			_, err = io.WriteString(c, "pong\n")
		}
		got <- accepted{fp, ok, line, err}
	}()

	c, err := tlsgm.Dial(context.Background(), "tcp", ln.Addr().String(), cliNode.allowing(srvNode))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if fp, ok := tlsgm.PeerFingerprint(c); !ok || fp != srvNode.fp() {
		t.Fatalf("client sees peer %q %v, want %q", fp, ok, srvNode.fp())
	}
	st := c.(*tlsgm.Conn).ConnectionState()
	if st.CipherSuite != gmtls.GMTLS_SM2_WITH_SM4_SM3 || st.Version != gmtls.VersionGMSSL {
		t.Fatalf("negotiated suite %#x version %#x, want ECC_SM4_CBC_SM3 (0xe013) over GM TLS 0x0101", st.CipherSuite, st.Version)
	}
	if len(st.PeerCertificates) != 2 {
		t.Fatalf("server sent %d certificates, want sign + enc", len(st.PeerCertificates))
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || reply != "pong\n" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	a := <-got
	if a.err != nil || !a.ok || a.fp != cliNode.fp() || a.line != "ping\n" {
		t.Fatalf("server side: %+v, want fp %s", a, cliNode.fp())
	}
	if _, ok := tlsgm.PeerFingerprint(&net.TCPConn{}); ok {
		t.Fatal("PeerFingerprint of a plain conn reported ok")
	}
	if _, ok := tlsgm.PeerFromContext(context.Background()); ok {
		t.Fatal("PeerFromContext of an empty context reported ok")
	}
}

// startListener starts a GM TLS listener that accepts and holds connections
// until the test ends.
func startListener(t *testing.T, cfg tlsgm.Config) net.Listener {
	t.Helper()
	ln, err := tlsgm.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return ln
}

func TestRefusals(t *testing.T) {
	ca := newTestCA(t, "FinePay Test CA")
	otherCA := newTestCA(t, "Intruder CA")
	sameNameCA := newTestCA(t, "FinePay Test CA") // an impostor CA with our CA's name
	srvNode := ca.node(t, "ferry-intranet")
	allowed := ca.node(t, "ferry-dmz")
	sameCA := ca.node(t, "gateway")         // valid chain, not on the list
	foreign := otherCA.node(t, "ferry-dmz") // other CA, same name
	foreign.cfg.CAFile = srvNode.cfg.CAFile // it trusts our server
	impostor := sameNameCA.node(t, "ferry-dmz")
	impostor.cfg.CAFile = srvNode.cfg.CAFile

	tests := []struct {
		name      string
		client    tlsgm.Config
		reasonHas string // in the server's OnReject reason
	}{
		{"valid CA, not allow-listed", sameCA.allowing(srvNode), tlsgm.ErrPeerNotAllowed.Error()},
		// gmtls clients only offer a certificate whose issuer the server
		// names in its request, so this client sends none.
		{"certificate from another CA", foreign.allowing(srvNode), "client didn't provide a certificate"},
		// Same issuer name: the certificate is sent, and its signature
		// fails verification against our CA.
		{"certificate from an impostor CA of the same name", impostor.allowing(srvNode), "verify client's certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			onReject, rejected := rejections()
			scfg := srvNode.allowing(allowed)
			scfg.OnReject = onReject
			ln := startListener(t, scfg)

			c, err := tlsgm.Dial(context.Background(), "tcp", ln.Addr().String(), tc.client)
			if err == nil {
				// The handshake may complete on the client's side before
				// the server's refusal arrives: the first read must fail.
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
				if err == nil {
					t.Fatal("refused client could read from the connection")
				}
			}
			r := waitReject(t, rejected)
			if !strings.Contains(r.reason, tc.reasonHas) {
				t.Fatalf("OnReject reason %q lacks %q", r.reason, tc.reasonHas)
			}
			if r.addr == "" {
				t.Fatal("OnReject got no remote address")
			}
		})
	}
}

func TestClientRefusesServerNotOnList(t *testing.T) {
	ca := newTestCA(t, "FinePay Test CA")
	srvNode, cliNode, expected := ca.node(t, "impostor"), ca.node(t, "ferry-dmz"), ca.node(t, "ferry-intranet")
	ln := startListener(t, srvNode.allowing(cliNode))

	onReject, rejected := rejections()
	ccfg := cliNode.allowing(expected)
	ccfg.OnReject = onReject
	_, err := tlsgm.Dial(context.Background(), "tcp", ln.Addr().String(), ccfg)
	if !errors.Is(err, tlsgm.ErrPeerNotAllowed) {
		t.Fatalf("Dial error %v, want ErrPeerNotAllowed", err)
	}
	r := waitReject(t, rejected)
	if r.addr != ln.Addr().String() || !strings.Contains(r.reason, srvNode.fp()) {
		t.Fatalf("client OnReject %+v", r)
	}
}

func TestClientChecksServerName(t *testing.T) {
	ca := newTestCA(t, "FinePay Test CA")
	srvNode, cliNode := ca.node(t, "core"), ca.node(t, "gateway")
	ln := startListener(t, srvNode.allowing(cliNode))
	ccfg := cliNode.allowing(srvNode)
	ccfg.ServerName = "sandbox"
	if _, err := tlsgm.Dial(context.Background(), "tcp", ln.Addr().String(), ccfg); err == nil {
		t.Fatal("Dial accepted a server certificate for another name")
	}
}

func TestPlainClientsFail(t *testing.T) {
	ca := newTestCA(t, "FinePay Test CA")
	srvNode, cliNode := ca.node(t, "core"), ca.node(t, "gateway")
	onReject, rejected := rejections()
	scfg := srvNode.allowing(cliNode)
	scfg.OnReject = onReject
	addr := serveHTTP(t, scfg)

	t.Run("crypto/tls", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			t.Fatal("crypto/tls handshake succeeded")
		}
		waitReject(t, rejected)
	})
	t.Run("crypto/tls HTTPS", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		if resp, err := client.Get("https://" + addr + "/peer"); err == nil {
			resp.Body.Close()
			t.Fatal("crypto/tls HTTPS request succeeded")
		}
		waitReject(t, rejected)
	})
	t.Run("plain HTTP", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/peer")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Fatalf("plain HTTP got %d %q", resp.StatusCode, b)
		}
		r := waitReject(t, rejected)
		if !strings.Contains(r.reason, "handshake failed") {
			t.Fatalf("reason %q", r.reason)
		}
	})
	t.Run("our transport refuses http://", func(t *testing.T) {
		tr, err := tlsgm.HTTPTransport(cliNode.allowing(srvNode))
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/peer"); err == nil {
			resp.Body.Close()
			t.Fatal("transport sent a plain-text request")
		}
	})
}

func TestHandshakeTimeoutAndClose(t *testing.T) {
	ca := newTestCA(t, "FinePay Test CA")
	srvNode, cliNode := ca.node(t, "core"), ca.node(t, "gateway")
	onReject, rejected := rejections()
	scfg := srvNode.allowing(cliNode)
	scfg.OnReject = onReject
	scfg.HandshakeTimeout = 50 * time.Millisecond
	ln, err := tlsgm.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	acceptErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if c != nil {
			c.Close()
		}
		acceptErr <- err
	}()

	// A client that connects and says nothing is cut off by the deadline.
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	r := waitReject(t, rejected)
	if !strings.Contains(r.reason, "timed out") {
		t.Fatalf("reason %q", r.reason)
	}
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatal("silent client's connection still open")
	}

	// Close ends Accept with net.ErrClosed.
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Accept after Close: %v", err)
	}
}

// notifyListener reports each connection its Accept returns.
type notifyListener struct {
	net.Listener
	accepted chan struct{}
}

func (l notifyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted <- struct{}{}
	}
	return c, err
}

func TestCloseEndsPendingHandshakes(t *testing.T) {
	ca := newTestCA(t, "FinePay Test CA")
	srvNode, cliNode := ca.node(t, "core"), ca.node(t, "gateway")
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 1)
	ln, err := tlsgm.NewServerListener(notifyListener{inner, accepted}, srvNode.allowing(cliNode))
	if err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	<-accepted // the server holds the connection, waiting for a ClientHello
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = silent.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
		t.Fatalf("connection in handshake not closed by Close: %v", err)
	}
}

func TestOnlyECCSuiteAccepted(t *testing.T) {
	ca := newTestCA(t, "FinePay Test CA")
	srvNode, cliNode := ca.node(t, "core"), ca.node(t, "gateway")
	onReject, rejected := rejections()
	scfg := srvNode.allowing(cliNode)
	scfg.OnReject = onReject
	ln := startListener(t, scfg)

	// A client offering only ECDHE_SM4_CBC_SM3 (whose server side v1.4.1
	// does not implement) is refused cleanly.
	conf, err := tlsgm.ClientGMConfig(cliNode.allowing(srvNode), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	conf.CipherSuites = []uint16{gmtls.GMTLS_ECDHE_SM2_WITH_SM4_SM3}
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := gmtls.Client(raw, conf).Handshake(); err == nil {
		t.Fatal("ECDHE-only handshake succeeded")
	}
	raw.Close()
	if r := waitReject(t, rejected); !strings.Contains(r.reason, "no cipher suite") {
		t.Fatalf("reason %q", r.reason)
	}

	// The server still serves a proper client.
	c, err := tlsgm.Dial(context.Background(), "tcp", ln.Addr().String(), cliNode.allowing(srvNode))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestConfigErrors(t *testing.T) {
	ca := newTestCA(t, "FinePay Test CA")
	n, peer := ca.node(t, "core"), ca.node(t, "gateway")
	good := n.allowing(peer)
	tests := []struct {
		name string
		edit func(c *tlsgm.Config)
		want string
	}{
		{"empty allow-list", func(c *tlsgm.Config) { c.AllowedPeers = nil }, "AllowedPeers is empty"},
		{"bad fingerprint", func(c *tlsgm.Config) { c.AllowedPeers = []string{"sha256:00"} }, "not an"},
		{"short fingerprint", func(c *tlsgm.Config) { c.AllowedPeers = []string{"sm3:abcd"} }, "not an"},
		{"missing CA", func(c *tlsgm.Config) { c.CAFile = c.CAFile + ".missing" }, "CA"},
		{"CA file without certificate", func(c *tlsgm.Config) { c.CAFile = c.SignKeyFile }, "no CA certificate"},
		{"missing key", func(c *tlsgm.Config) { c.SignKeyFile = "" }, "sign key"},
		{"key of another certificate", func(c *tlsgm.Config) { c.SignKeyFile = c.EncKeyFile }, "does not match"},
		{"sign and enc swapped", func(c *tlsgm.Config) {
			c.SignCertFile, c.EncCertFile = c.EncCertFile, c.SignCertFile
			c.SignKeyFile, c.EncKeyFile = c.EncKeyFile, c.SignKeyFile
		}, "digitalSignature"},
		{"certificate file holds a key", func(c *tlsgm.Config) { c.SignCertFile = c.SignKeyFile }, "no CERTIFICATE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			_, lerr := tlsgm.Listen("tcp", "127.0.0.1:0", cfg)
			_, derr := tlsgm.Dial(context.Background(), "tcp", "127.0.0.1:1", cfg)
			_, terr := tlsgm.HTTPTransport(cfg)
			for _, err := range []error{lerr, derr, terr} {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one containing %q", err, tc.want)
				}
			}
		})
	}
	// Fingerprints are matched case-insensitively and with spaces trimmed.
	cfg := good
	cfg.AllowedPeers = []string{"  " + strings.ToUpper(peer.fp()) + " "}
	ln, err := tlsgm.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

func TestDialContextCancel(t *testing.T) {
	ca := newTestCA(t, "FinePay Test CA")
	cliNode, srvNode := ca.node(t, "gateway"), ca.node(t, "core")
	// A server that accepts and never answers.
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	// The server reads the start of the ClientHello, so the client is in
	// its handshake when the context is cancelled.
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := inner.Accept()
		if err != nil {
			return
		}
		if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
			c.Close()
			return
		}
		accepted <- c
	}()
	ctx, cancel := context.WithCancel(context.Background())
	dialErr := make(chan error, 1)
	onReject, rejected := rejections()
	ccfg := cliNode.allowing(srvNode)
	ccfg.OnReject = onReject
	go func() {
		_, err := tlsgm.Dial(ctx, "tcp", inner.Addr().String(), ccfg)
		dialErr <- err
	}()
	c := <-accepted
	defer c.Close()
	cancel()
	if err := <-dialErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial error %v, want context.Canceled", err)
	}
	waitReject(t, rejected)
}
