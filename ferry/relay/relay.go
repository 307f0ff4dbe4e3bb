// Package relay is the ferry engine: it turns outbox rows into sealed bundles, sends them one
// at a time per lane, opens and commits the bundles it receives, and answers and handles signed
// acknowledgements. It knows nothing of HTTP: package link carries its bundles.
//
// One Relay serves one side of the boundary:
//
//   - DMZ: it only answers. Accept commits the to-gateway bundles the intranet ferry pushes,
//     Pull hands out to-core bundles when the intranet ferry asks (a long poll), and AcceptAck
//     retires them when the intranet's acknowledgement arrives. Run refuses a Transport on this
//     side: there is no code path from the DMZ relay to the intranet.
//   - Intranet: Run dials out through a Transport: one pusher per to-gateway lane (bundles go
//     out one at a time, in order, resent after ResendAfter and with jittered, bounded backoff on
//     errors; the next bundle is sealed while one travels, and acknowledgements are retired while
//     the next ones travel), and Pullers concurrent pull loops for the to-core lanes.
//
// Every step writes its audit record before it takes effect (write-ahead, fail-closed): a bundle
// is not sent unless bundle.sent was recorded, not committed unless bundle.received was, and
// outbox rows are not retired unless bundle.acknowledged was. When a record cannot be written
// the step fails with ErrUnavailable and Ready reports why.
package relay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
	"finepay/shared/gm"
)

// Side is the side of the boundary a relay serves.
type Side string

// The two sides.
const (
	DMZ      Side = "dmz"
	Intranet Side = "intranet"
)

// Sends is the direction of the lanes the side sends.
func (s Side) Sends() envelope.Direction {
	if s == DMZ {
		return envelope.ToCore
	}
	return envelope.ToGateway
}

// Receives is the direction of the lanes the side receives.
func (s Side) Receives() envelope.Direction {
	if s == DMZ {
		return envelope.ToGateway
	}
	return envelope.ToCore
}

// Keys are a relay's own keys and its peer's public keys.
type Keys struct {
	Signer    gm.Signer     // own signing key: bundles and acknowledgements
	Decrypter gm.Decrypter  // own encryption key: unwraps bundle keys
	PeerSign  *gm.PublicKey // the peer's signing key: the only trusted signer
	PeerEnc   *gm.PublicKey // the peer's encryption key: bundle keys are wrapped to it
}

// Transport is how the intranet relay reaches the DMZ relay (package link implements it).
type Transport interface {
	// Push delivers one bundle and returns the peer's signed acknowledgement. A sequence gap
	// is a *GapError; any other answer of the peer a *PeerError.
	Push(ctx context.Context, bundle []byte) (ack []byte, err error)
	// Pull asks for a bundle of a lane with messages after marks (lane → high-water mark),
	// letting the peer wait up to wait for one; nil means none.
	Pull(ctx context.Context, marks map[string]int64, wait time.Duration) (bundle []byte, err error)
	// PostAck delivers a signed acknowledgement of a pulled bundle.
	PostAck(ctx context.Context, ack []byte) error
	// Addr names the peer for logs and audit records.
	Addr() string
}

// Errors.
var (
	// ErrUnavailable: the relay cannot do its part now (audit trail or database); retry later.
	ErrUnavailable = errors.New("relay: unavailable")
	// ErrWrongParty: a bundle or acknowledgement names other nodes than this pair.
	ErrWrongParty = errors.New("relay: wrong sender or receiver")
	// ErrForbiddenLane: a lane of the wrong direction for this side.
	ErrForbiddenLane = errors.New("relay: lane not accepted on this side")
	// ErrAckBeyondSent: an acknowledgement of sequences never sent.
	ErrAckBeyondSent = errors.New("relay: acknowledgement beyond the last sequence sent")
	errRetired       = errors.New("relay: rows already retired")
)

// GapError says the receiver expects an earlier sequence: the sender resends from Expected.
type GapError struct {
	Lane     string
	Expected int64
}

func (e *GapError) Error() string {
	return fmt.Sprintf("relay: sequence gap: lane %s expects %d", e.Lane, e.Expected)
}

// RejectedError says a bundle or acknowledgement failed verification: it was audited (and
// bundles quarantined) and nothing of it was applied. Reason is a short word.
type RejectedError struct {
	Reason string
	Err    error
}

func (e *RejectedError) Error() string { return "relay: rejected (" + e.Reason + "): " + e.Err.Error() }
func (e *RejectedError) Unwrap() error { return e.Err }

// PeerError is an error answer of the peer.
type PeerError struct {
	Status  int
	Code    string
	Message string
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("relay: peer answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Temporary reports whether the same request may succeed later.
func (e *PeerError) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout
}

// Config configures a Relay. Zero durations and counts take the defaults in brackets.
type Config struct {
	Side       Side
	Node, Peer string // node names; Peer is also the inbox's peer
	DB         *sqldb.DB
	Audit      *audit.Log
	Keys       Keys
	Limits     bundle.Limits // [1 MiB, 1024 messages]
	Linger     time.Duration // wait this long to fill a bundle that is not full [none]
	Poll       time.Duration // how often the outgoing lanes are read [100ms]
	LongPoll   time.Duration // how long a pull may wait [10s]
	// ResendAfter: the intranet resends a bundle not acknowledged in this time; the DMZ hands
	// out a lane's next bundle again when the last one was not acknowledged in it [30s].
	ResendAfter time.Duration
	MaxBackoff  time.Duration // bound of the jittered backoff after errors [30s]
	// GapGrace: how long a lane's next number may stay missing, while later ones were handed
	// out, before the sender closes the gap with a filler (gap.go) [1s].
	GapGrace   time.Duration
	Pullers    int      // concurrent pull loops on the intranet side [2]
	Quarantine string   // directory for rejected bundles; "" keeps none
	Evidence   Evidence // non-repudiation evidence of each bundle; nil keeps none
	Logger     *slog.Logger
	Now        func() time.Time // [time.Now]
	Rand       io.Reader        // [crypto/rand.Reader]
	Metrics    *Metrics         // [unregistered]
	// Failpoint, when not nil, is called at each of the Failpoints (crash tests kill the
	// process there).
	Failpoint func(name string)
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Poll, 100*time.Millisecond)
	def(&c.LongPoll, 10*time.Second)
	def(&c.ResendAfter, 30*time.Second)
	def(&c.MaxBackoff, 30*time.Second)
	def(&c.GapGrace, time.Second)
	if c.Linger < 0 {
		c.Linger = 0
	}
	if c.Limits.MaxBytes <= 0 {
		c.Limits.MaxBytes = bundle.DefaultMaxBytes
	}
	if c.Limits.MaxMessages <= 0 {
		c.Limits.MaxMessages = bundle.DefaultMaxMessages
	}
	if c.Pullers <= 0 {
		c.Pullers = 2
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.Side != DMZ && c.Side != Intranet {
		errs = append(errs, fmt.Errorf("side %q (want dmz or intranet)", c.Side))
	}
	if !bundle.ValidNode(c.Node) || !bundle.ValidNode(c.Peer) || c.Node == c.Peer {
		errs = append(errs, fmt.Errorf("node names %q and %q", c.Node, c.Peer))
	}
	if c.DB == nil || c.Audit == nil {
		errs = append(errs, errors.New("database and audit log are required"))
	}
	k := c.Keys
	if k.Signer == nil || k.Decrypter == nil || k.PeerSign == nil || k.PeerEnc == nil {
		errs = append(errs, errors.New("all four keys are required"))
	}
	if min := envelope.MaxEncoded + bundle.Overhead(1); c.Limits.MaxBytes < min {
		errs = append(errs, fmt.Errorf("bundle size limit %d is below one largest message (%d)", c.Limits.MaxBytes, min))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("relay: config: %w", err)
	}
	return nil
}

// Relay is one side's ferry engine.
type Relay struct {
	cfg      Config
	log      *slog.Logger
	m        *Metrics
	watch    *watcher
	locks    laneLocks
	inMarks  laneMarks // receiving lanes: the high-water mark last committed
	outAcked laneMarks // sending lanes: the sequence last acknowledged
	gaps     gapMarks  // sending lanes: the first missing number, since when
	leases   *leases
	acks     *ackQueue
	seenAt   atomic.Int64 // DMZ: when the peer last called, Unix nanoseconds
	rr       atomic.Uint64
	stopping chan struct{}
	stopOnce sync.Once
}

// New returns a relay for cfg.
func New(cfg Config) (*Relay, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Relay{
		cfg: cfg, log: cfg.Logger, m: cfg.Metrics,
		watch:    newWatcher(cfg.DB),
		leases:   newLeases(),
		acks:     newAckQueue(),
		stopping: make(chan struct{}),
	}, nil
}

// Run works until ctx ends: it watches the outgoing lanes and, on the intranet side, pushes and
// pulls through t. The DMZ side must be given no transport: it never dials.
func (r *Relay) Run(ctx context.Context, t Transport) error {
	switch {
	case r.cfg.Side == DMZ && t != nil:
		return errors.New("relay: the DMZ ferry never dials the intranet: it only answers")
	case r.cfg.Side == Intranet && t == nil:
		return errors.New("relay: the intranet ferry needs a transport to the DMZ ferry")
	}
	defer r.stop()
	if err := r.watch.refresh(ctx); err != nil {
		r.log.Error("relay: read outgoing lanes", "err", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.watchLoop(ctx) })
	if t != nil {
		wg.Go(func() { r.runPushers(ctx, t) })
		wg.Go(func() { r.runPullers(ctx, t) })
	}
	<-ctx.Done()
	r.stop()
	wg.Wait()
	return nil
}

// stop makes waiting pulls return at once.
func (r *Relay) stop() { r.stopOnce.Do(func() { close(r.stopping) }) }

func (r *Relay) watchLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.watch.refresh(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("relay: read outgoing lanes", "err", err)
		}
		if r.cfg.Side == DMZ {
			seen := time.Unix(0, r.seenAt.Load())
			r.linkUp(r.cfg.Now().Sub(seen) < 2*r.cfg.LongPoll+5*time.Second)
		}
	}
}

// Ready reports why the relay cannot move messages now, or nil.
func (r *Relay) Ready(ctx context.Context) error {
	var errs []error
	if err := r.cfg.DB.PingContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("database: %w", err))
	}
	if err := r.cfg.Audit.Err(); err != nil {
		errs = append(errs, err)
	}
	if err := r.watch.error(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// LinkRefused audits a refused link peer or failed handshake; it suits tlsgm.Config.OnReject.
func (r *Relay) LinkRefused(remote, reason string) {
	r.log.Warn("link: peer refused", "remote", remote, "reason", reason)
	r.recordNow(audit.Record{Event: audit.LinkRefused, Result: audit.Rejected, Peer: remote, Reason: reason})
}

// RequestRejected audits a request from the allowed peer that the link refused before it reached
// a bundle or an acknowledgement (a pull that is not JSON, an unknown route, a body that could not
// be read): the peer passed the allow-list, so a malformed request is worth an auditor's look.
func (r *Relay) RequestRejected(remote, reason string) {
	r.log.Warn("link: request rejected", "remote", remote, "reason", reason)
	r.m.BundlesRejected.WithLabelValues("request").Inc()
	r.recordNow(audit.Record{Event: audit.RequestRejected, Result: audit.Rejected, Peer: r.peerName(remote), Reason: reason})
}

// recordNow writes an audit record of a refusal that has no request context to carry (a
// handshake, a request already answered), giving it 5 s; a failure is logged, since the refusal
// stands either way.
func (r *Relay) recordNow(rec audit.Record) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.cfg.Audit.Record(ctx, rec); err != nil {
		r.log.Error("link: cannot audit a refusal", "event", rec.Event, "peer", rec.Peer, "err", err)
	}
}

func (r *Relay) touch() { r.seenAt.Store(r.cfg.Now().UnixNano()) }

func (r *Relay) linkUp(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	r.m.LinkUp.Set(v)
}

func (r *Relay) now() time.Time { return r.cfg.Now().UTC() }

// record writes an audit record; a failure becomes ErrUnavailable.
func (r *Relay) record(ctx context.Context, rec audit.Record) error {
	if err := r.cfg.Audit.Record(ctx, rec); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

func (r *Relay) peerName(remote string) string {
	if remote == "" {
		return r.cfg.Peer
	}
	return r.cfg.Peer + "@" + remote
}

func bundleRecord(event, result string, h bundle.Header, peer, reason string) audit.Record {
	return audit.Record{Event: event, Result: result, BundleID: h.BundleID, Lane: h.Lane, FirstSeq: h.FirstSeq,
		LastSeq: h.LastSeq, Peer: peer, Digests: h.Digests, Reason: reason}
}

// reasonOf names an error for metrics and audit.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, ErrWrongParty):
		return "wrong_party"
	case errors.Is(err, ErrForbiddenLane):
		return "forbidden_lane"
	case errors.Is(err, ErrAckBeyondSent):
		return "beyond_sent"
	}
	return bundle.Reason(err)
}

// laneLocks serialises the receiving of each lane.
type laneLocks struct {
	mu sync.Mutex
	m  map[string]*sync.Mutex
}

func (l *laneLocks) lock(lane string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*sync.Mutex{}
	}
	mu, ok := l.m[lane]
	if !ok {
		mu = new(sync.Mutex)
		l.m[lane] = mu
	}
	l.mu.Unlock()
	mu.Lock()
	return mu.Unlock
}
