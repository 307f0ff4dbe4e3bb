// Package chaos is the ferry's crash harness. It runs both ferryd processes and a producer
// process per side (each putting messages into its service's outbox, one business transaction
// per message) on two fresh PostgreSQL databases, kills ferryds and producers with SIGKILL at the
// relay's failpoints (ferryd's FERRYD_CRASH_AT) or at random moments, starts them again, and at
// the end checks the invariants: every message produced is delivered, exactly once, in lane order;
// every outbox is retired.
//
// The crash test (make test) runs a fixed schedule that kills each ferryd at each failpoint and
// the producers mid-stream; `make chaos-ferry` (cmd/chaosferry) runs random kills for minutes.
package chaos

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"

	"finepay/ferry/internal/devpki"
	"finepay/ferry/outbox"
	"finepay/ferry/relay"
	"finepay/ferry/schema"
	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
)

// Victims.
const (
	DMZ      = "dmz"
	Intranet = "intranet"
	Producer = "producer"
)

// Kill is one crash: Victim is DMZ or Intranet (killed at failpoint Point, reached Count times,
// or at once when Point is empty) or Producer (both producers, at once).
type Kill struct {
	Victim string
	Point  string
	Count  int
}

func (k Kill) String() string {
	if k.Point == "" {
		return k.Victim + " (SIGKILL now)"
	}
	return fmt.Sprintf("%s at %s:%d", k.Victim, k.Point, k.Count)
}

// Config configures Run.
type Config struct {
	Ferryd   string    // the ferryd binary
	Producer []string  // the command that runs ProduceMain; its flags are appended
	Env      []string  // extra environment of the producer command
	AdminURL string    // PostgreSQL server where the two databases are made (and dropped)
	Dir      string    // working folder: certificates, quarantine, process logs
	Rate     int       // messages per second each producer offers [200]
	Log      io.Writer // progress lines [discarded]

	// A fixed schedule (Kills), or random kills (Random) every MinGap..MaxGap for Duration, at
	// most MaxKills of them.
	Kills            []Kill
	Random           *mrand.Rand
	Duration         time.Duration
	MinGap, MaxGap   time.Duration
	MaxKills         int
	FailpointTimeout time.Duration // how long a failpoint may take to be reached [20s]
	DrainTimeout     time.Duration // how long the ferries may take to deliver everything at the end [60s]
}

// Report is what Run saw.
type Report struct {
	Kills   []string // each kill done, in order
	Missed  []string // armed failpoints never reached (the process was then killed outright)
	Checks  []string // the invariant checks, one line per direction
	Errors  []string // violated invariants and unexpected process exits
	Elapsed time.Duration
}

// OK reports whether every invariant held.
func (r Report) OK() bool { return len(r.Errors) == 0 }

// String prints the report, ending with the verdict line.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kills: %d in %s", len(r.Kills), r.Elapsed.Round(time.Second))
	if len(r.Missed) > 0 {
		fmt.Fprintf(&b, " (%d armed failpoints not reached in time: %s)", len(r.Missed), strings.Join(r.Missed, "; "))
	}
	b.WriteString("\n")
	for _, c := range r.Checks {
		b.WriteString(c + "\n")
	}
	for _, e := range r.Errors {
		b.WriteString("VIOLATION: " + e + "\n")
	}
	if r.OK() {
		b.WriteString("invariant check: OK: every message delivered, exactly once, in lane order; outboxes retired\n")
	} else {
		fmt.Fprintf(&b, "invariant check: FAILED (%d problems)\n", len(r.Errors))
	}
	return b.String()
}

// Run runs the harness: set up, kill as configured, drain, check. An error means the harness
// itself could not run; a broken invariant is in the report.
func Run(ctx context.Context, cfg Config) (rep Report, err error) {
	start := time.Now()
	defer func() { rep.Elapsed = time.Since(start) }()
	if cfg.Rate <= 0 {
		cfg.Rate = 200
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.FailpointTimeout <= 0 {
		cfg.FailpointTimeout = 20 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 60 * time.Second
	}
	h := &harness{cfg: cfg, rep: &rep}
	defer h.cleanup()
	if err := h.setup(ctx); err != nil {
		return rep, err
	}
	if err := h.startAll(); err != nil {
		return rep, err
	}
	if cfg.Random != nil {
		err = h.randomKills(ctx)
	} else {
		for _, k := range cfg.Kills {
			if err = h.kill(ctx, k); err != nil {
				break
			}
		}
	}
	if err != nil {
		return rep, err
	}
	for _, side := range []string{Core, Gateway} {
		if err := h.procs[side].stop(30 * time.Second); err != nil {
			return rep, fmt.Errorf("producer %s: %w", side, err)
		}
	}
	fmt.Fprintln(cfg.Log, "chaos: producers stopped; waiting for the ferries to deliver everything")
	if err := h.drain(ctx); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	for _, name := range []string{DMZ, Intranet} {
		p := h.procs[name]
		if p.exited() {
			rep.Errors = append(rep.Errors, fmt.Sprintf("ferryd %s exited by itself: %s (log %s)", name, p.state(), p.logPath))
			continue
		}
		if err := p.stop(30 * time.Second); err != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("ferryd %s did not stop: %v", name, err))
		}
	}
	checks, problems, err := Check(ctx, h.gw, h.core)
	if err != nil {
		return rep, err
	}
	rep.Checks, rep.Errors = checks, append(rep.Errors, problems...)
	return rep, nil
}

type harness struct {
	cfg         Config
	rep         *Report
	pki         *devpki.PKI
	gwURL       string
	coreURL     string
	gw, core    *sqldb.DB
	drop        []func()
	linkPort    int
	procs       map[string]*proc
	certs, logs string
}

func (h *harness) setup(ctx context.Context) error {
	h.certs, h.logs = filepath.Join(h.cfg.Dir, "certs"), filepath.Join(h.cfg.Dir, "logs")
	for _, d := range []string{h.certs, h.logs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	var err error
	if h.pki, err = devpki.New(h.certs); err != nil {
		return err
	}
	for _, t := range []struct {
		u  *string
		db **sqldb.DB
	}{{&h.gwURL, &h.gw}, {&h.coreURL, &h.core}} {
		u, drop, err := createDB(ctx, h.cfg.AdminURL)
		if err != nil {
			return err
		}
		h.drop = append(h.drop, drop)
		*t.u = u
		if *t.db, err = sqldb.Open(ctx, u); err != nil {
			return err
		}
		if err := schema.Migrate(ctx, *t.db); err != nil {
			return err
		}
		if _, err := (*t.db).ExecContext(ctx, producedTable); err != nil {
			return err
		}
	}
	if h.linkPort, err = freePort(); err != nil {
		return err
	}
	h.procs = map[string]*proc{}
	return nil
}

func (h *harness) cleanup() {
	for _, p := range h.procs {
		p.killNow()
	}
	for _, db := range []*sqldb.DB{h.gw, h.core} {
		if db != nil {
			db.Close()
		}
	}
	for _, d := range h.drop {
		d()
	}
}

func (h *harness) startAll() error {
	for _, name := range []string{DMZ, Intranet} {
		if err := h.startFerryd(name, ""); err != nil {
			return err
		}
	}
	for _, side := range []string{Core, Gateway} {
		if err := h.startProducer(side); err != nil {
			return err
		}
	}
	return nil
}

// ferrydArgs are the flags of side's ferryd: short intervals so that the harness runs quickly.
func (h *harness) ferrydArgs(side string) []string {
	link := "127.0.0.1:" + strconv.Itoa(h.linkPort)
	args := []string{"-side", side, "-certs", h.certs, "-metrics-listen", "127.0.0.1:0",
		"-quarantine", filepath.Join(h.cfg.Dir, "quarantine", side), "-poll", "20ms", "-linger", "5ms",
		"-long-poll", "1s", "-max-backoff", "300ms", "-resend-after", "3s", "-log-level", "info"}
	if side == DMZ {
		return append(args, "-db", h.gwURL, "-listen", link)
	}
	return append(args, "-db", h.coreURL, "-peer-url", "https://"+link)
}

func (h *harness) startFerryd(side, crashAt string) error {
	env := os.Environ()
	if crashAt != "" {
		env = append(env, "FERRYD_CRASH_AT="+crashAt)
	}
	p, err := start("ferryd-"+side, h.cfg.Ferryd, h.ferrydArgs(side), env, h.logs)
	if err != nil {
		return err
	}
	h.procs[side] = p
	return nil
}

func (h *harness) startProducer(side string) error {
	url := h.coreURL
	if side == Gateway {
		url = h.gwURL
	}
	argv := append(append([]string(nil), h.cfg.Producer...), "-db", url, "-side", side, "-rate", strconv.Itoa(h.cfg.Rate))
	p, err := start("producer-"+side, argv[0], argv[1:], append(os.Environ(), h.cfg.Env...), h.logs)
	if err != nil {
		return err
	}
	h.procs[side] = p
	return nil
}

// kill does one crash and starts the victim again.
func (h *harness) kill(ctx context.Context, k Kill) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fmt.Fprintln(h.cfg.Log, "chaos: kill", k)
	h.rep.Kills = append(h.rep.Kills, k.String())
	switch k.Victim {
	case Producer:
		for _, side := range []string{Core, Gateway} {
			h.procs[side].killNow()
			if err := h.startProducer(side); err != nil {
				return err
			}
		}
		return nil
	case DMZ, Intranet:
	default:
		return fmt.Errorf("chaos: unknown victim %q", k.Victim)
	}
	old := h.procs[k.Victim]
	if old.exited() {
		h.rep.Errors = append(h.rep.Errors, fmt.Sprintf("ferryd %s had exited by itself: %s (log %s)", k.Victim, old.state(), old.logPath))
	}
	old.killNow()
	if k.Point != "" {
		if err := h.startFerryd(k.Victim, k.Point+":"+strconv.Itoa(max(k.Count, 1))); err != nil {
			return err
		}
		p := h.procs[k.Victim]
		select {
		case <-p.done:
			if !p.killedBySIGKILL() {
				h.rep.Errors = append(h.rep.Errors, fmt.Sprintf("ferryd %s armed at %s exited otherwise: %s (log %s)", k.Victim, k.Point, p.state(), p.logPath))
			}
		case <-time.After(h.cfg.FailpointTimeout):
			h.rep.Missed = append(h.rep.Missed, k.String())
			p.killNow()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.startFerryd(k.Victim, "")
}

func (h *harness) randomKills(ctx context.Context) error {
	r := h.cfg.Random
	end := time.Now().Add(h.cfg.Duration)
	gap := func() time.Duration {
		return h.cfg.MinGap + time.Duration(r.Int64N(int64(h.cfg.MaxGap-h.cfg.MinGap)+1))
	}
	for n := 0; n < h.cfg.MaxKills && time.Now().Before(end); n++ {
		timer := time.NewTimer(gap())
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		var k Kill
		switch x := r.IntN(10); {
		case x < 2:
			k = Kill{Victim: Producer}
		default:
			k = Kill{Victim: []string{DMZ, Intranet}[r.IntN(2)], Count: 1 + r.IntN(3)}
			if r.IntN(5) > 0 {
				k.Point = relay.Failpoints[r.IntN(len(relay.Failpoints))]
			}
		}
		if err := h.kill(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// drain waits until each side's inbox holds as many messages as the other side produced and
// both outboxes are empty.
func (h *harness) drain(ctx context.Context) error {
	deadline := time.Now().Add(h.cfg.DrainTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := h.counts(ctx)
		if err != nil {
			return err
		}
		if c.done() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not delivered within %s: %+v", h.cfg.DrainTimeout, c)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

type counts struct {
	ProducedCore, ProducedGateway int64
	InboxGateway, InboxCore       int64
	OutboxCore, OutboxGateway     int64
	Unacknowledged                int64 // numbers handed out on either side's lanes, not yet acknowledged
}

func (c counts) done() bool {
	return c.InboxGateway == c.ProducedCore && c.InboxCore == c.ProducedGateway && c.OutboxCore == 0 && c.OutboxGateway == 0 &&
		c.Unacknowledged == 0
}

func (h *harness) counts(ctx context.Context) (counts, error) {
	var c counts
	for _, q := range []struct {
		db  *sqldb.DB
		sql string
		out *int64
	}{
		{h.core, `SELECT count(*) FROM chaos_produced`, &c.ProducedCore},
		{h.gw, `SELECT count(*) FROM chaos_produced`, &c.ProducedGateway},
		{h.gw, `SELECT count(*) FROM ferry_inbox WHERE type <> '` + envelope.TypeLaneGap + `'`, &c.InboxGateway},
		{h.core, `SELECT count(*) FROM ferry_inbox WHERE type <> '` + envelope.TypeLaneGap + `'`, &c.InboxCore},
		{h.core, `SELECT count(*) FROM ferry_outbox WHERE type <> '` + envelope.TypeLaneGap + `'`, &c.OutboxCore},
		{h.gw, `SELECT count(*) FROM ferry_outbox WHERE type <> '` + envelope.TypeLaneGap + `'`, &c.OutboxGateway},
	} {
		if err := q.db.QueryRowContext(ctx, q.sql).Scan(q.out); err != nil {
			return c, err
		}
	}
	for _, db := range []*sqldb.DB{h.core, h.gw} {
		lanes, err := outbox.Lanes(ctx, db)
		if err != nil {
			return c, err
		}
		for _, l := range lanes {
			c.Unacknowledged += l.Backlog()
		}
	}
	return c, nil
}

// proc is a child process whose output goes to a log file.
type proc struct {
	name, logPath string
	cmd           *exec.Cmd
	done          chan struct{}
	err           error
}

func start(name, bin string, args, env []string, logDir string) (*proc, error) {
	path := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "=== start %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	// Children die with the harness.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("chaos: start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: path, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// killNow sends SIGKILL and waits for the exit.
func (p *proc) killNow() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// stop sends SIGTERM and waits up to within for a clean exit.
func (p *proc) stop(within time.Duration) error {
	if p.exited() {
		return fmt.Errorf("%s had exited: %s", p.name, p.state())
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(within):
		p.killNow()
		return fmt.Errorf("%s did not stop within %s", p.name, within)
	}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
		return nil // stopped before it set up its handler: it was just started
	}
	if p.err != nil {
		return fmt.Errorf("%s: %v (log %s)", p.name, p.err, p.logPath)
	}
	return nil
}

func (p *proc) killedBySIGKILL() bool {
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func (p *proc) state() string {
	if p.cmd.ProcessState == nil {
		return "running"
	}
	return p.cmd.ProcessState.String()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// createDB creates an empty database on the server at admin and returns its URL and a function
// that drops it.
func createDB(ctx context.Context, admin string) (string, func(), error) {
	a, err := sql.Open("pgx", admin)
	if err != nil {
		return "", nil, err
	}
	defer a.Close()
	b := make([]byte, 6)
	rand.Read(b)
	name := "fp_chaos_" + hex.EncodeToString(b)
	if _, err := a.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("chaos: create database (is PostgreSQL running at %s?): %w", admin, err)
	}
	drop := func() {
		if a, err := sql.Open("pgx", admin); err == nil {
			a.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			a.Close()
		}
	}
	u, err := url.Parse(admin)
	if err != nil {
		drop()
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// AdminURL is FINEPAY_TEST_PG_URL or the local server with trust authentication.
func AdminURL() string {
	if u := os.Getenv("FINEPAY_TEST_PG_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}
