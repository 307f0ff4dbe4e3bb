package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/outbox"
	"finepay/ferry/relay"
)

// Audit events the spool writes besides the relay's.
const (
	// EventMissing: a bundle listed in the peer's manifest has not arrived (the appliance
	// dropped it); a resend was asked for (two-way) or is awaited (one-way).
	EventMissing = "bundle.missing"
	// EventRetired: one-way mode retired outbox rows without any confirmation from the peer,
	// after -spool-one-way-retire-after.
	EventRetired = "bundle.retired"
)

// Defaults.
const (
	DefaultPoll             = time.Second
	DefaultManifestInterval = 30 * time.Second
	DefaultRetireAfter      = 24 * time.Hour
	DefaultMaxBytes         = 1 << 30
	DefaultWindow           = 64
	// settleLooks is how many looks a file that fails verification gets, at least Settle apart
	// from its last change, before it is quarantined.
	settleLooks = 3
	// peerClockLead is how far ahead of this side's clock the time of the peer's latest manifest
	// is kept: a later manifest of the peer dated before it is stale (reordered by the appliance).
	peerClockLead = 5 * time.Minute
	// listPerLane bounds the bundles a manifest lists per lane (the oldest ones).
	listPerLane = 1024
	// fillPerStep bounds the new bundles one lane writes in one step.
	fillPerStep = 1024
	// maxKept bounds the bytes of written bundles kept in memory for identical resends.
	maxKept = 64 << 20
)

// Config configures a Spool. Zero durations and sizes take the defaults in brackets.
type Config struct {
	Relay            *relay.Relay  // the engine; its Node, Peer, keys, limits, clock, audit log and quarantine are the spool's
	Out, In          string        // outgoing and incoming directories (they must exist)
	Poll             time.Duration // how often in/ and out/ are looked at besides inotify [1s]
	ManifestInterval time.Duration // how often a manifest is written, besides after each batch [30s]
	OneWay           bool          // no acknowledgements or resend requests travel back
	RetireAfter      time.Duration // one-way: rows not confirmed are retired this long after the first write [24h]
	MaxBytes         int64         // bound of the bytes in out/, 7/8 of it for bundles [1 GiB]
	Window           int           // two-way: bundles written and not acknowledged per lane [64]
	Settle           time.Duration // a file failing verification must be unchanged this long before quarantine [5 × Poll]
	Registry         prometheus.Registerer
}

// Spool is the spool transport of one side. It is a relay.Driver.
type Spool struct {
	cfg       Config
	r         *relay.Relay
	rc        relay.Config
	log       *slog.Logger
	m         *metrics
	out       *outDir
	remoteOut string
	maxRead   int

	// Receiving.
	files      map[string]*seen  // what is known of the files in in/, by name
	marks      map[string]int64  // high-water marks of the receiving lanes, as last read
	peerAt     time.Time         // time of the latest manifest of the peer handled
	warnedMode bool              // the peer's manifest showed the other one-way setting
	reported   map[string]string // lane → the missing bundle last audited
	acks       map[string]queuedAck
	ackFiles   map[string]string // lane → the acknowledgement file last written
	request    *queuedFile
	lastReqAt  time.Time

	// Sending.
	lanes        map[string]*laneOut
	outBytes     int64
	keptBytes    int64 // bytes of the flights' kept files
	blocked      bool  // this step could not write a bundle: bound reached or write failed
	full         bool
	batch        bool // bundles were written since the last manifest
	lastManifest time.Time
	manifestFile string
	shortLists   bool // the last manifest listed fewer than listPerLane bundles of a lane, to fit
	requestFile  string
	serial       int64
	manifests    []sentManifest // the latest manifests written, oldest first

	mu      sync.Mutex
	err     error // the latest write failure, until a write succeeds
	readErr error // the latest failure to read in/, until a read succeeds
}

type queuedAck struct {
	seq      int64
	bundleID string
	raw      []byte
}

type queuedFile struct {
	name string
	raw  []byte
}

type sentManifest struct {
	id string
	at time.Time
}

var _ relay.Driver = (*Spool)(nil)

// New checks cfg, prepares out/.tmp and removes what an earlier run of this node left in out/.
func New(cfg Config) (*Spool, error) {
	if cfg.Relay == nil {
		return nil, errors.New("spool: config: no relay")
	}
	rc := cfg.Relay.Settings()
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Poll, DefaultPoll)
	def(&cfg.ManifestInterval, DefaultManifestInterval)
	def(&cfg.RetireAfter, DefaultRetireAfter)
	def(&cfg.Settle, 5*cfg.Poll)
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	var errs []error
	for _, d := range []struct{ flag, dir string }{{"out", cfg.Out}, {"in", cfg.In}} {
		if d.dir == "" {
			errs = append(errs, fmt.Errorf("no %s directory", d.flag))
			continue
		}
		if st, err := os.Stat(d.dir); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("%s directory %s: not a directory (%v)", d.flag, d.dir, err))
		}
	}
	if a, b := filepath.Clean(cfg.Out), filepath.Clean(cfg.In); cfg.Out != "" && a == b {
		errs = append(errs, fmt.Errorf("out and in are the same directory %s", a))
	}
	if room := cfg.MaxBytes - cfg.MaxBytes/8; room < int64(rc.Limits.MaxBytes) {
		errs = append(errs, fmt.Errorf("spool bound %d bytes: its seven eighths for bundles (%d) are below one largest bundle (%d)", cfg.MaxBytes, room, rc.Limits.MaxBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("spool: config: %w", err)
	}
	s := &Spool{
		cfg: cfg, r: cfg.Relay, rc: rc, log: rc.Logger.With("transport", "spool"), m: newMetrics(cfg.Registry),
		out: &outDir{dir: cfg.Out}, remoteOut: "spool:" + cfg.Out,
		maxRead: max(rc.Limits.MaxBytes, MaxManifestBytes, bundle.MaxAckBytes),
		files:   map[string]*seen{}, marks: map[string]int64{}, reported: map[string]string{},
		acks: map[string]queuedAck{}, ackFiles: map[string]string{}, lanes: map[string]*laneOut{},
	}
	if err := s.out.prepare(rc.Node); err != nil {
		return nil, fmt.Errorf("spool: prepare %s: %w", cfg.Out, err)
	}
	return s, nil
}

// Drive moves bundles through the spool directories until ctx ends (relay.Driver).
func (s *Spool) Drive(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	if stop, err := watchDirs(s.cfg.In, s.cfg.Out, wake); err != nil {
		s.log.Warn("spool: polling only", "every", s.cfg.Poll.String(), "err", err)
	} else {
		defer stop()
	}
	tick := time.NewTicker(s.cfg.Poll)
	defer tick.Stop()
	s.log.Info("spool: started", "out", s.cfg.Out, "in", s.cfg.In, "one_way", s.cfg.OneWay, "max_bytes", s.cfg.MaxBytes)
	s.resync(ctx)
	for {
		lanes, changed := s.r.Lanes()
		s.step(ctx, lanes)
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
		case <-changed:
		}
	}
}

// step reads what arrived, then writes what is due.
func (s *Spool) step(ctx context.Context, lanes map[string]outbox.Lane) {
	now := s.rc.Now()
	s.receive(ctx, now)
	if ctx.Err() != nil {
		return
	}
	s.send(ctx, lanes, now)
	s.manifest(now)
}

// Err returns the latest failure to write into the outgoing directory or to read the incoming
// one, or nil once they work again (for /readyz).
func (s *Spool) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.err, s.readErr)
}

func (s *Spool) setReadErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readErr = err
}

// resync queues a cumulative acknowledgement of every lane received so far, so that
// acknowledgements lost before a restart (or with the appliance) still reach the peer.
func (s *Spool) resync(ctx context.Context) {
	marks, err := s.r.Marks(ctx)
	if err != nil {
		s.log.Warn("spool: cumulative acknowledgements at start", "err", err)
		return
	}
	s.marks = marks
	if s.cfg.OneWay {
		return
	}
	for lane, hwm := range marks {
		if hwm > 0 {
			s.reack(lane, hwm)
		}
	}
}

// reack queues a cumulative acknowledgement of lane up to hwm unless one as high is queued.
func (s *Spool) reack(lane string, hwm int64) {
	if q, ok := s.acks[lane]; ok && q.seq >= hwm {
		return
	}
	raw, err := s.r.CumulativeAck(lane, hwm)
	if err != nil {
		s.log.Error("spool: seal acknowledgement", "lane", lane, "err", err)
		return
	}
	s.queueAck(lane, hwm, "", raw)
}

func (s *Spool) queueAck(lane string, seq int64, bundleID string, raw []byte) {
	if q, ok := s.acks[lane]; ok && q.seq > seq {
		return
	}
	s.acks[lane] = queuedAck{seq: seq, bundleID: bundleID, raw: raw}
}

// record writes an audit record.
func (s *Spool) record(ctx context.Context, rec audit.Record) error {
	return s.rc.Audit.Record(ctx, rec)
}

func (s *Spool) peer(remote string) string { return s.rc.Peer + "@" + remote }

// writeFailed notes a failed write: it is retried at a later step.
func (s *Spool) writeFailed(what string, err error) {
	s.m.writeErrors.Inc()
	s.blocked = true
	s.mu.Lock()
	first := s.err == nil
	s.err = fmt.Errorf("spool: cannot write %s into %s: %w", what, s.cfg.Out, err)
	s.mu.Unlock()
	if first {
		s.log.Error("spool: cannot write into the outgoing directory; will retry, nothing is dropped", "file", what, "err", err)
	} else {
		s.log.Debug("spool: write failed again", "file", what, "err", err)
	}
}

func (s *Spool) writeOK() {
	s.mu.Lock()
	was := s.err
	s.err = nil
	s.mu.Unlock()
	if was != nil {
		s.log.Info("spool: the outgoing directory is written again")
	}
}

// write puts a file into out/, noting failures and successes.
func (s *Spool) write(name string, raw []byte) bool {
	if err := s.out.write(name, raw); err != nil {
		s.writeFailed(name, err)
		return false
	}
	s.writeOK()
	return true
}

func (s *Spool) newID() (string, error) { return bundle.NewID(s.rc.Rand) }

// nextSerial numbers manifests and requests: Unix milliseconds, strictly increasing.
func (s *Spool) nextSerial(now time.Time) int64 {
	s.serial = max(s.serial+1, now.UnixMilli())
	return s.serial
}
