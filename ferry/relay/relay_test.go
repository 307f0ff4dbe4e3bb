package relay_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/relay"
	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
	"finepay/shared/logging"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lossy carries calls straight to the DMZ relay and loses every third answer after the DMZ
// has acted on the request, as a broken connection would.
type lossy struct {
	dmz   *relay.Relay
	calls atomic.Int64
}

var errLost = errors.New("connection reset (answer lost)")

func (l *lossy) lose() bool { return l.calls.Add(1)%3 == 0 }

func (l *lossy) Push(ctx context.Context, raw []byte) ([]byte, error) {
	ack, err := l.dmz.Accept(ctx, raw, "mem")
	if l.lose() {
		return nil, errLost
	}
	return ack, asPeerError(err)
}

func (l *lossy) Pull(ctx context.Context, marks map[string]int64, wait time.Duration) ([]byte, error) {
	raw, err := l.dmz.Pull(ctx, marks, wait, "mem")
	if raw != nil && l.lose() {
		return nil, errLost
	}
	return raw, asPeerError(err)
}

func (l *lossy) PostAck(ctx context.Context, raw []byte) error {
	err := l.dmz.AcceptAck(ctx, raw, "mem")
	if l.lose() {
		return errLost
	}
	return asPeerError(err)
}

func (l *lossy) Addr() string { return "mem" }

// asPeerError turns relay errors into what the link client reports.
func asPeerError(err error) error {
	var rej *relay.RejectedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &rej):
		return &relay.PeerError{Status: http.StatusBadRequest, Code: strings.ToUpper(rej.Reason)}
	case errors.Is(err, relay.ErrUnavailable):
		return &relay.PeerError{Status: http.StatusServiceUnavailable, Code: "UNAVAILABLE"}
	}
	return err
}

type sides struct {
	dmz, in  *relay.Relay
	gw, core *sqldb.DB
}

func setup(t *testing.T) sides { return setupWith(t, nil) }

// setupWith is setup with the intranet relay's configuration changed by in.
func setupWith(t *testing.T, in func(*relay.Config)) sides {
	t.Helper()
	pki := fixture.NewPKI(t)
	dmzNode, inNode := pki.Node(t, fixture.DMZ), pki.Node(t, fixture.Intranet)
	s := sides{gw: fixture.DB(t), core: fixture.DB(t)}
	s.dmz = newRelay(t, relay.DMZ, dmzNode, inNode, s.gw)
	s.in = newRelay(t, relay.Intranet, inNode, dmzNode, s.core, in)
	return s
}

// newRelay makes small bundles (16 messages), so that a few hundred messages make many.
func newRelay(t *testing.T, side relay.Side, self, peer *fixture.Node, db *sqldb.DB, change ...func(*relay.Config)) *relay.Relay {
	t.Helper()
	cfg := relay.Config{
		Side: side, Node: self.Name, Peer: peer.Name, DB: db,
		Audit: audit.New(audit.Config{DB: db, Node: self.Name, Actor: "ferryd"}),
		Keys: relay.Keys{Signer: self.Sign.Key, Decrypter: self.Enc.Key,
			PeerSign: peer.Sign.Cert.PublicKey(), PeerEnc: peer.Enc.Cert.PublicKey()},
		Limits: bundle.Limits{MaxMessages: 16}, Poll: 10 * time.Millisecond, LongPoll: 200 * time.Millisecond,
		ResendAfter: 300 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Pullers: 2,
		Quarantine: t.TempDir(), Logger: logging.Discard(),
	}
	for _, f := range change {
		if f != nil {
			f(&cfg)
		}
	}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func run(t *testing.T, s sides, tr relay.Transport) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.dmz.Run(ctx, nil) })
	wg.Go(func() { _ = s.in.Run(ctx, tr) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// Answers lost after the peer acted on them (pushes, pulls, acknowledgements): every message
// still arrives exactly once, in order, and both outboxes are retired.
func TestLostAnswersStillExactlyOnce(t *testing.T) {
	s := setup(t)
	const n = 200
	var bills, payments []envelope.Envelope
	for i := range n {
		bills = append(bills, fixture.Bill(t, i))
		payments = append(payments, fixture.Payment(t, i))
	}
	fixture.Put(t, s.core, 2, bills...)
	fixture.Put(t, s.gw, 2, payments...)
	tr := &lossy{dmz: s.dmz}
	run(t, s, tr)
	fixture.Eventually(t, time.Minute, "both inboxes complete and both outboxes retired", func() bool {
		return count(t, s.gw, `SELECT count(*) FROM ferry_inbox`) == n && count(t, s.core, `SELECT count(*) FROM ferry_inbox`) == n &&
			count(t, s.gw, `SELECT count(*) FROM ferry_outbox`) == 0 && count(t, s.core, `SELECT count(*) FROM ferry_outbox`) == 0
	})
	for _, db := range []*sqldb.DB{s.gw, s.core} {
		if gaps := count(t, db, `SELECT count(*) FROM ferry_inbox a WHERE a.seq > 1 AND NOT EXISTS
			(SELECT 1 FROM ferry_inbox b WHERE b.lane = a.lane AND b.seq = a.seq - 1)`); gaps != 0 {
			t.Errorf("%d sequence holes", gaps)
		}
	}
	if d := count(t, s.gw, `SELECT count(*) FROM ferry_audit WHERE event = 'bundle.duplicate'`); d == 0 {
		t.Error("lost push answers should have caused resends acknowledged as duplicates")
	}
	if tr.calls.Load() < 10 {
		t.Errorf("only %d calls", tr.calls.Load())
	}
}

func TestDMZNeverDials(t *testing.T) {
	s := setup(t)
	if err := s.dmz.Run(context.Background(), &lossy{dmz: s.dmz}); err == nil {
		t.Fatal("the DMZ relay accepted a transport to dial with")
	}
	if err := s.in.Run(context.Background(), nil); err == nil {
		t.Fatal("the intranet relay ran without a transport")
	}
}

func TestConfigRefused(t *testing.T) {
	db := fixture.DB(t)
	for _, tc := range []struct {
		name string
		cfg  relay.Config
	}{
		{"fail/empty", relay.Config{}},
		{"fail/same-node", relay.Config{Side: relay.DMZ, Node: "a", Peer: "a", DB: db}},
		{"fail/side", relay.Config{Side: "both", Node: "a", Peer: "b", DB: db}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := relay.New(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func count(t *testing.T, db *sqldb.DB, q string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
