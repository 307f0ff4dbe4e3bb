// Command ferrybench measures the ferry end to end against NATS JetStream on the same machine,
// in the same run, and prints both figures and their ratio. `make bench` runs it.
//
//	ferrybench [-n 200000] [-size 512] [-runs 3] [-nats nats://127.0.0.1:4222] [-rate 2000] [-rate-for 10s]
//
// JetStream: n messages of -size bytes, published asynchronously with a Nats-Msg-Id each to a
// stream with file storage and a duplicate window, taken by a durable pull consumer with explicit
// acknowledgements; from the first publish to the last acknowledgement.
//
// The ferry: the same number of bill.published messages whose canonical envelope is -size bytes
// (the unit name is padded; the catalogue's schema is checked as always), committed to the
// core's outbox by producer transactions running alongside the ferry, then bundled, signed and
// encrypted, carried over GM TLS on loopback, verified, committed to the gateway's inbox, and
// acknowledged back; from the first producer commit to the last outbox row retired by a signed
// acknowledgement. Both databases are fresh ones on the local PostgreSQL, with its durability
// settings as they are (synchronous_commit stays on). The relays are wired as ferryd wires them,
// with its defaults (-poll, -linger, bundle limits) and the audit log and non-repudiation
// evidence it keeps (-evidence=false leaves the evidence out, for comparison only).
//
// Latency: messages offered at -rate per second for -rate-for, each in a statement of its own,
// run alone (as the gateway queues a payment's confirmation), after -warmup of the same traffic that
// is not counted; a message's latency runs from when it was offered to the commit of the bundle
// that carried it into the gateway's inbox.
//
// The output ends with "ferry msgs/s: N" and then "ferry/jetstream ratio: R".
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"finepay/ferry/bundle"
	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
	"finepay/shared/envelope"
)

type result struct {
	n        int
	elapsed  time.Duration
	produced time.Duration // ferry: when the last producer transaction committed
}

func (r result) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ferrybench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	n := flag.Int("n", 200_000, "messages per throughput run")
	size := flag.Int("size", 512, "message size in bytes (JetStream payload; the ferry's canonical envelope)")
	runs := flag.Int("runs", 3, "throughput runs of each system (medians are reported)")
	natsURL := flag.String("nats", "nats://127.0.0.1:4222", "NATS server with JetStream")
	admin := flag.String("pg", adminURL(), "PostgreSQL server where the two ferry databases are created (and dropped)")
	rate := flag.Int("rate", 2000, "messages per second offered in the latency run (0 skips it)")
	rateFor := flag.Duration("rate-for", 10*time.Second, "length of the latency run's measured part")
	alsoRate := flag.Int("also-rate", 500, "a second, lower rate for the latency run, whose figures are printed too (0 skips it)")
	warmup := flag.Duration("warmup", 2*time.Second, "how long messages are offered at -rate before the latency run's measured part (connections opened, caches filled); not counted")
	producers := flag.Int("producers", 2, "concurrent producer transactions in the throughput run")
	batch := flag.Int("batch", 500, "messages per producer transaction (all of one lane) in the throughput run")
	lanes := flag.Int("lanes", 4, "ferry lanes (outbox partitions); the core's default, whose bill.published these messages are")
	maxMessages := flag.Int("max-messages", 1024, "most messages in one bundle")
	maxBytes := flag.Int("max-bundle-bytes", 1<<20, "largest bundle in bytes")
	linger := flag.Duration("linger", 5*time.Millisecond, "how long a sender waits to fill a bundle that is not full")
	poll := flag.Duration("poll", 20*time.Millisecond, "how often the outgoing lanes are read")
	keepEvidence := flag.Bool("evidence", true, "keep non-repudiation evidence of every bundle, as ferryd does")
	prefill := flag.Bool("prefill", false, "commit every message to the outbox before the ferry starts and the clock runs (measures the ferry alone)")
	onlyFerry := flag.Bool("only-ferry", false, "skip JetStream (for profiling the ferry)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the ferry's throughput runs to this file")
	flag.Parse()

	cfg := ferryConfig{lanes: *lanes, limits: bundle.Limits{MaxBytes: *maxBytes, MaxMessages: *maxMessages},
		linger: *linger, poll: *poll, pullers: 2, resendAfter: 30 * time.Second, evidence: *keepEvidence}
	fmt.Printf("# ferry vs NATS JetStream: %d messages of %d bytes, %d runs each; ferry: %d lanes, bundles of up to %d messages / %d bytes, linger %s, poll %s, evidence %t\n",
		*n, *size, *runs, cfg.lanes, cfg.limits.MaxMessages, cfg.limits.MaxBytes, cfg.linger, cfg.poll, cfg.evidence)
	envs, err := bills(*n, *size)
	if err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var js, fe []float64
	for i := range *runs {
		if !*onlyFerry {
			r, err := runJetStream(ctx, *natsURL, *n, *size)
			if err != nil {
				return err
			}
			js = append(js, r.rate())
			fmt.Printf("run %d: jetstream %8.0f msgs/s (%.2f s)\n", i+1, r.rate(), r.elapsed.Seconds())
		}
		r, err := runFerry(ctx, *admin, cfg, envs, *producers, *batch, *prefill)
		if err != nil {
			return err
		}
		fe = append(fe, r.rate())
		fmt.Printf("run %d: ferry     %8.0f msgs/s (%.2f s; producers done after %.2f s)\n", i+1, r.rate(), r.elapsed.Seconds(), r.produced.Seconds())
	}
	var lats []latency
	for _, r := range []int{*rate, *alsoRate} {
		if r <= 0 {
			continue
		}
		lat, err := runLatency(ctx, *admin, cfg, r, *rateFor, *warmup, *size)
		if err != nil {
			return err
		}
		lats = append(lats, lat)
	}
	fmt.Printf("jetstream end-to-end msgs/s: %.0f (median)\n", median(js))
	fmt.Printf("ferry end-to-end msgs/s: %.0f (median)\n", median(fe))
	for _, lat := range lats {
		fmt.Printf("ferry latency at %d msgs/s offered (%d messages after a %s warm-up, produced at %.0f msgs/s): p50 %.1f ms, p99 %.1f ms, max %.1f ms (of which the producer's own statement: p50 %.1f ms, p99 %.1f ms; %d bundles)\n",
			lat.offered, lat.n, *warmup, lat.rate, ms(lat.p50), ms(lat.p99), ms(lat.max), ms(lat.putP50), ms(lat.putP99), lat.bundles)
	}
	fmt.Printf("ferry msgs/s: %.0f\n", median(fe))
	if len(js) > 0 {
		fmt.Printf("ferry/jetstream ratio: %.2f\n", median(fe)/median(js))
	}
	return nil
}

func adminURL() string {
	if u := os.Getenv("FINEPAY_TEST_PG_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// bill returns bill.published number i whose canonical envelope is exactly size bytes: the unit
// and item names are padded (each within the catalogue's 128-byte bound).
func bill(i, size int) (envelope.Envelope, error) {
	at := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	p := &envelope.BillPublished{
		BillNo: fmt.Sprintf("B%09d", i), Token: fmt.Sprintf("tok_%024d", i), DecisionNo: fmt.Sprintf("2301%012d", i),
		PartyMasked: "张*", PlateMasked: "黑A***12", Fine: 20000, ServedDate: "2025-02-20",
		FormNo: fmt.Sprintf("F%09d", i), PayCode: fmt.Sprintf("P%019d", i), IssuedAt: at,
	}
	id := fmt.Sprintf("bill.published:B%09d", i)
	e, err := envelope.New(id, p.BillNo, at, p)
	if err != nil {
		return e, err
	}
	raw, err := e.Marshal()
	if err != nil {
		return e, err
	}
	pad := size - len(raw)
	if pad < 0 || pad > 256 {
		return e, fmt.Errorf("a %d-byte message cannot be made from a bill (%d bytes unpadded)", size, len(raw))
	}
	// The payload length is a varint: padding may lengthen it by a byte, so adjust once.
	for range 2 {
		p.UnitName = strings.Repeat("U", min(pad, 128))
		p.ItemName = strings.Repeat("I", max(pad-128, 0))
		if e, err = envelope.New(id, p.BillNo, at, p); err != nil {
			return e, err
		}
		if raw, err = e.Marshal(); err != nil {
			return e, err
		}
		pad -= len(raw) - size
	}
	if len(raw) != size {
		return e, fmt.Errorf("bill %d is %d bytes, want %d", i, len(raw), size)
	}
	return e, nil
}

func bills(n, size int) ([]envelope.Envelope, error) {
	envs := make([]envelope.Envelope, n)
	for i := range envs {
		var err error
		if envs[i], err = bill(i, size); err != nil {
			return nil, err
		}
	}
	return envs, nil
}

// runFerry moves envs from the core's outbox to the gateway's inbox: producers commit them in
// transactions of batch messages while the ferry runs; the clock stops when the last outbox row
// is retired by the gateway's signed acknowledgement. It then checks that the inbox holds every
// message exactly once.
func runFerry(ctx context.Context, admin string, cfg ferryConfig, envs []envelope.Envelope, producers, batch int, prefill bool) (result, error) {
	dir, err := os.MkdirTemp("", "ferrybench-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	p, err := startPair(ctx, admin, dir, cfg, nil)
	if err != nil {
		return result{}, err
	}
	defer p.stop()
	n := len(envs)
	ob := outbox.New(cfg.lanes, outbox.WithMaxBacklog(int64(n)))
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, producers)
	start := time.Now()
	if !prefill {
		p.start()
	}
	jobs, err := laneBatches(envs, cfg.lanes, batch)
	if err != nil {
		return result{}, err
	}
	for range producers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				err := p.producer.Tx(ctx, func(tx *sql.Tx) error {
					_, err := ob.PutBatch(ctx, tx, jobs[i])
					return err
				})
				if err != nil {
					errc <- fmt.Errorf("ferry: produce: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return result{}, err
	}
	produced := time.Since(start)
	if prefill {
		start = time.Now()
		p.start()
	}
	if err := waitAcked(ctx, p.core, int64(n), 5*time.Minute); err != nil {
		return result{}, err
	}
	elapsed := time.Since(start)
	var total, distinct int
	if err := p.gw.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT message_id) FROM ferry_inbox`).Scan(&total, &distinct); err != nil {
		return result{}, err
	}
	if total != n || distinct != n {
		return result{}, fmt.Errorf("ferry: the inbox holds %d messages (%d distinct), want %d", total, distinct, n)
	}
	return result{n: n, elapsed: elapsed, produced: produced}, nil
}

// laneBatches cuts envs into producer transactions of up to batch messages of one lane each,
// taking the lanes in turn, as a busy service committing per key would: a transaction then holds
// one lane's row, not all of them.
func laneBatches(envs []envelope.Envelope, lanes, batch int) ([][]envelope.Envelope, error) {
	byLane := map[string][]envelope.Envelope{}
	var names []string
	for _, e := range envs {
		l, err := envelope.Lane(e.Type, e.Key, lanes)
		if err != nil {
			return nil, err
		}
		if _, ok := byLane[l]; !ok {
			names = append(names, l)
		}
		byLane[l] = append(byLane[l], e)
	}
	var jobs [][]envelope.Envelope
	for more := true; more; {
		more = false
		for _, l := range names {
			q := byLane[l]
			if len(q) == 0 {
				continue
			}
			k := min(len(q), batch)
			jobs = append(jobs, q[:k])
			byLane[l] = q[k:]
			more = true
		}
	}
	return jobs, nil
}

// waitAcked polls the core's outgoing lanes until want messages are acknowledged in all, or
// within passes.
func waitAcked(ctx context.Context, db *sqldb.DB, want int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		var acked int64
		if err := db.QueryRowContext(ctx, `SELECT COALESCE(sum(acked_seq), 0) FROM ferry_lane_acked`).Scan(&acked); err != nil {
			return err
		}
		if acked >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ferry: %d of %d messages acknowledged after %s", acked, want, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

type latency struct {
	n, bundles     int
	offered        int     // messages offered per second
	rate           float64 // messages produced per second in the measured part
	p50, p99, max  time.Duration
	putP50, putP99 time.Duration // of the producer statements alone
}

// runLatency offers rate messages per second for warmup and then d, each in its own producer
// statement, and measures each message of the second part from when it was offered to the DMZ's
// commit of its bundle.
func runLatency(ctx context.Context, admin string, cfg ferryConfig, rate int, d, warmup time.Duration, size int) (latency, error) {
	dir, err := os.MkdirTemp("", "ferrybench-")
	if err != nil {
		return latency{}, err
	}
	defer os.RemoveAll(dir)
	var mu sync.Mutex
	committed := map[string]time.Time{}
	p, err := startPair(ctx, admin, dir, cfg, func(id string) {
		now := time.Now()
		mu.Lock()
		committed[id] = now
		mu.Unlock()
	})
	if err != nil {
		return latency{}, err
	}
	defer p.stop()
	p.start()
	w := int(float64(rate) * warmup.Seconds()) // offered first, not counted
	n := int(float64(rate) * d.Seconds())
	envs, err := bills(w+n, size)
	if err != nil {
		return latency{}, err
	}
	ob := outbox.New(cfg.lanes)
	offered := make([]time.Time, w+n)
	took := make([]time.Duration, w+n) // each producer statement's own duration
	jobs := make(chan int, w+n)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	// A service's pool of connections produces: a message's latency runs from when it was
	// offered, so time spent waiting for a free connection counts.
	for range producerConns {
		wg.Go(func() {
			for i := range jobs {
				t0 := time.Now()
				if err := produceAlone(ctx, p.producer, ob, envs[i]); err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
				took[i] = time.Since(t0)
			}
		})
	}
	begin := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range w + n {
		// Pacing: offer message i at its scheduled time.
		offered[i] = begin.Add(time.Duration(i) * interval)
		if wait := time.Until(offered[i]); wait > 0 {
			time.Sleep(wait)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	produced := time.Since(offered[w])
	select {
	case err := <-errc:
		return latency{}, fmt.Errorf("latency: produce: %w", err)
	default:
	}
	if err := waitAcked(ctx, p.core, int64(w+n), 2*time.Minute); err != nil {
		return latency{}, err
	}
	rows, err := p.gw.QueryContext(ctx, `SELECT message_id, bundle_id FROM ferry_inbox`)
	if err != nil {
		return latency{}, err
	}
	defer rows.Close()
	index := map[string]int{}
	for i, e := range envs {
		index[e.ID] = i
	}
	mu.Lock()
	defer mu.Unlock()
	var lat []time.Duration
	seen := 0
	for rows.Next() {
		var id, b string
		if err := rows.Scan(&id, &b); err != nil {
			return latency{}, err
		}
		c, ok := committed[b]
		if !ok {
			return latency{}, fmt.Errorf("latency: no commit time for bundle %s", b)
		}
		seen++
		if i := index[id]; i >= w {
			lat = append(lat, c.Sub(offered[i]))
		}
	}
	if err := rows.Err(); err != nil {
		return latency{}, err
	}
	if seen != w+n || len(lat) != n {
		return latency{}, fmt.Errorf("latency: %d of %d messages in the inbox", seen, w+n)
	}
	took = took[w:]
	return latency{n: n, offered: rate, rate: float64(n) / produced.Seconds(), bundles: len(committed), p50: quantile(lat, 0.50), p99: quantile(lat, 0.99), max: quantile(lat, 1),
		putP50: quantile(took, 0.50), putP99: quantile(took, 0.99)}, nil
}

// producerConns is the size of the producing service's connection pool in the latency run. More
// connections than this only slow a 2-core server down (pgbench: 4,700 single-row inserts/s from
// 16 clients, 1,900 from 100).
const producerConns = 16

// produceAlone queues env as a service queues a message that is all its transaction holds (the
// gateway's payment notifications): one statement run on its own, whose outbox clauses take the
// lane's next sequence and insert the row.
func produceAlone(ctx context.Context, db *sqldb.DB, ob *outbox.Outbox, env envelope.Envelope) error {
	q, err := ob.Prepare(env)
	if err != nil {
		return err
	}
	clauses, args := ob.Clauses(q, "TRUE", 1)
	var seq int64
	return ob.Refused(db.QueryRowContext(ctx, `WITH `+clauses+` SELECT seq FROM ferry_msg`, args...).Scan(&seq), env.ID)
}

// quantile sorts v and returns its f-quantile (nearest rank).
func quantile(v []time.Duration, f float64) time.Duration {
	slices.Sort(v)
	return v[max(0, min(len(v)-1, int(math.Ceil(f*float64(len(v))))-1))]
}
