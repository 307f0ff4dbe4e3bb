package spool

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/internal/fixture"
	"finepay/ferry/outbox"
	"finepay/ferry/relay"
	"finepay/ferry/sqldb"
	"finepay/shared/logging"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable clock for the tests that drive steps by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// options shape both sides of a world.
type options struct {
	oneWay           bool
	maxBytes         int64
	retireAfter      time.Duration
	manifestInterval time.Duration
	resendAfter      time.Duration
	poll             time.Duration
	clock            *clock // nil: real time
}

// side is one ferry with the spool transport over its own database.
type side struct {
	name             string
	db               *sqldb.DB
	r                *relay.Relay
	s                *Spool
	reg              *prometheus.Registry
	out, in, quarDir string
}

// world is the two ferries, their spool directories and (in live tests) the appliance.
type world struct {
	dmz, in *side // in: the intranet ferry
	o       options
}

func setup(t *testing.T, o options) *world {
	t.Helper()
	if o.manifestInterval == 0 {
		o.manifestInterval = 200 * time.Millisecond
	}
	if o.resendAfter == 0 {
		o.resendAfter = time.Second
	}
	if o.poll == 0 {
		o.poll = 20 * time.Millisecond
	}
	pki := fixture.NewPKI(t)
	dmzNode, inNode := pki.Node(t, fixture.DMZ), pki.Node(t, fixture.Intranet)
	root := t.TempDir()
	w := &world{o: o}
	w.dmz = newSide(t, o, root, relay.DMZ, dmzNode, inNode)
	w.in = newSide(t, o, root, relay.Intranet, inNode, dmzNode)
	return w
}

func newSide(t *testing.T, o options, root string, sideOf relay.Side, self, peer *fixture.Node) *side {
	t.Helper()
	sd := &side{name: self.Name, db: fixture.DB(t), reg: prometheus.NewRegistry()}
	base := filepath.Join(root, self.Name)
	sd.out, sd.in, sd.quarDir = filepath.Join(base, "out"), filepath.Join(base, "in"), filepath.Join(base, "quarantine")
	for _, d := range []string{sd.out, sd.in} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	log := logging.Discard()
	if testing.Verbose() && os.Getenv("SPOOL_TEST_LOG") != "" {
		log = logging.New(os.Stderr, "debug", self.Name)
	}
	now := time.Now
	if o.clock != nil {
		now = o.clock.now
	}
	var err error
	sd.r, err = relay.New(relay.Config{
		Side: sideOf, Node: self.Name, Peer: peer.Name, DB: sd.db,
		Audit: audit.New(audit.Config{DB: sd.db, Node: self.Name, Actor: "ferryd", Now: now}),
		Keys: relay.Keys{Signer: self.Sign.Key, Decrypter: self.Enc.Key,
			PeerSign: peer.Sign.Cert.PublicKey(), PeerEnc: peer.Enc.Cert.PublicKey()},
		Limits: bundle.Limits{MaxMessages: 8, MaxBytes: 80 << 10}, Poll: 10 * time.Millisecond,
		ResendAfter: o.resendAfter, Quarantine: sd.quarDir, Logger: log, Now: now,
		Metrics: relay.NewMetrics(sd.reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	sd.s, err = New(Config{Relay: sd.r, Out: sd.out, In: sd.in, Poll: o.poll, ManifestInterval: o.manifestInterval,
		OneWay: o.oneWay, RetireAfter: o.retireAfter, MaxBytes: o.maxBytes, Registry: sd.reg})
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

// run starts both ferries (relay and spool) until the test ends.
func (w *world) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, sd := range []*side{w.dmz, w.in} {
		wg.Go(func() {
			if err := sd.r.RunDriver(ctx, sd.s); err != nil {
				t.Errorf("%s: %v", sd.name, err)
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// step runs one step of a side's spool by hand.
func (sd *side) step(t *testing.T) {
	t.Helper()
	lanes, err := outbox.Lanes(context.Background(), sd.db)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]outbox.Lane{}
	for _, l := range lanes {
		if dir, _ := bundle.LaneDirection(l.Lane); dir == sd.r.Settings().Side.Sends() {
			m[l.Lane] = l
		}
	}
	sd.s.step(context.Background(), m)
}

func count(t *testing.T, db *sqldb.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// files lists the regular files of dir (not .tmp/), sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

// withSuffix keeps the names ending in suffix.
func withSuffix(names []string, suffix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, suffix) {
			out = append(out, n)
		}
	}
	return out
}

// move moves the files of from (those keep accepts) into to, as the appliance would.
func move(t *testing.T, from, to string, keep func(name string) bool) []string {
	t.Helper()
	var moved []string
	for _, n := range files(t, from) {
		if keep != nil && !keep(n) {
			continue
		}
		if err := os.Rename(filepath.Join(from, n), filepath.Join(to, n)); err != nil {
			t.Fatal(err)
		}
		moved = append(moved, n)
	}
	return moved
}

// records returns the audit records of db, oldest first.
func records(t *testing.T, db *sqldb.DB) []audit.Record {
	t.Helper()
	recs, err := audit.Recent(context.Background(), db, 1000000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]audit.Record, len(recs))
	for i, r := range recs {
		out[len(recs)-1-i] = r.Record
	}
	return out
}

func countEvents(recs []audit.Record, event, result string) int {
	n := 0
	for _, r := range recs {
		if r.Event == event && (result == "" || r.Result == result) {
			n++
		}
	}
	return n
}

// metric returns the value of a gauge or counter (summed over its labels) in reg.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += value(m)
		}
	}
	return total
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

// placed is where each message of an outbox went: message ID → lane and sequence.
type placed map[string]string

func outboxPlaces(t *testing.T, db *sqldb.DB) placed {
	return places(t, db, `SELECT message_id, lane, seq FROM ferry_outbox`)
}

func inboxPlaces(t *testing.T, db *sqldb.DB) placed {
	return places(t, db, `SELECT message_id, lane, seq FROM ferry_inbox`)
}

func places(t *testing.T, db *sqldb.DB, q string) placed {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := placed{}
	for rows.Next() {
		var id, lane string
		var seq int64
		if err := rows.Scan(&id, &lane, &seq); err != nil {
			t.Fatal(err)
		}
		out[id] = lane + "#" + strconv.FormatInt(seq, 10)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
