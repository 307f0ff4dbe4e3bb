package tlsgm

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/tjfoc/gmsm/gmtls"
)

// maxPendingHandshakes bounds the handshakes a listener runs at once; further
// connections wait in the kernel's accept queue.
const maxPendingHandshakes = 256

// Listen listens on addr and returns a GM TLS server listener (see
// NewServerListener).
func Listen(network, addr string, cfg Config) (net.Listener, error) {
	id, err := load(&cfg)
	if err != nil {
		return nil, err
	}
	inner, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return newListener(inner, id, cfg), nil
}

// NewServerListener wraps inner. Accept returns *Conn values that have
// completed a GM TLS handshake in which the client presented a certificate
// chain verified against cfg.CAFile and a signing certificate on
// cfg.AllowedPeers. Failed handshakes and refused peers are closed and
// reported to cfg.OnReject; Accept never returns them. Closing the listener
// closes inner and any handshakes in progress.
func NewServerListener(inner net.Listener, cfg Config) (net.Listener, error) {
	id, err := load(&cfg)
	if err != nil {
		return nil, err
	}
	return newListener(inner, id, cfg), nil
}

type acceptResult struct {
	c   net.Conn
	err error
}

type listener struct {
	inner   net.Listener
	conf    *gmtls.Config
	cfg     Config
	results chan acceptResult
	done    chan struct{}
	once    sync.Once
	sem     chan struct{}

	mu      sync.Mutex
	pending map[net.Conn]struct{}
}

func newListener(inner net.Listener, id *identity, cfg Config) *listener {
	l := &listener{
		inner:   inner,
		conf:    id.serverConfig(),
		cfg:     cfg,
		results: make(chan acceptResult),
		done:    make(chan struct{}),
		sem:     make(chan struct{}, maxPendingHandshakes),
		pending: make(map[net.Conn]struct{}),
	}
	go l.acceptLoop()
	return l
}

func (l *listener) acceptLoop() {
	for {
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return
		}
		raw, err := l.inner.Accept()
		if err != nil {
			<-l.sem
			// Pass the error on (net/http retries temporary ones); stop
			// once the inner listener is closed.
			select {
			case l.results <- acceptResult{err: err}:
			case <-l.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !l.track(raw) {
			<-l.sem
			raw.Close()
			return
		}
		go l.serve(raw)
	}
}

// track registers a connection in handshake; false if the listener is closed.
func (l *listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

func (l *listener) serve(raw net.Conn) {
	defer func() { <-l.sem }()
	tc := gmtls.Server(raw, l.conf)
	err := handshake(context.Background(), raw, l.cfg.handshakeTimeout(), tc.Handshake)
	l.untrack(raw)
	if err != nil {
		raw.Close()
		select {
		case <-l.done: // cut short by Close: not a refusal
		default:
			l.cfg.reject(raw.RemoteAddr().String(), reason(err))
		}
		return
	}
	c := newConn(tc)
	select {
	case l.results <- acceptResult{c: c}:
	case <-l.done:
		c.Close()
	}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case r := <-l.results:
		return r.c, r.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.mu.Lock()
		for c := range l.pending {
			c.Close()
		}
		l.pending = nil
		l.mu.Unlock()
	})
	return err
}

func (l *listener) Addr() net.Addr { return l.inner.Addr() }

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)
