package tlsgm_test

import (
	"context"
	"testing"

	"finepay/shared/tlsgm"
)

// BenchmarkHandshake measures a full mutual-auth GM TLS handshake over
// loopback (client and server in the same process), with the Dialer loaded
// once.
func BenchmarkHandshake(b *testing.B) {
	ca := newTestCA(b, "FinePay Bench CA")
	srvNode, cliNode := ca.node(b, "core"), ca.node(b, "gateway")
	ln, err := tlsgm.Listen("tcp", "127.0.0.1:0", srvNode.allowing(cliNode))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	d, err := tlsgm.NewDialer(cliNode.allowing(srvNode))
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx := context.Background()
	for b.Loop() {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
