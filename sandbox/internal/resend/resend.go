// Package resend delivers a simulated channel's asynchronous notifications the way the channels
// do: POST to the merchant's URL, resend on a schedule (scaled for tests) until the merchant
// acknowledges (each channel decides from the answer what that means), abandon after the last
// resend. Some rounds are sent twice within a second and some first deliveries held back, as a
// configured probability says, so that merchants meet duplicates and notifications out of order.
// A delivery can be dropped (for "the notification never arrives" tests). One dispatcher hands
// due rounds to a fixed pool of workers; everything stops with the context given to Start.
//
// It carries no protocol: the Alipay and UnionPay simulators build and sign their own requests.
package resend

import (
	"bytes"
	"container/heap"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Request is one notification request.
type Request struct {
	URL    string
	Header http.Header
	Body   []byte
}

// Acknowledged decides from the merchant's answer whether it took the notification.
type Acknowledged func(status int, body []byte) bool

// Config configures a Queue.
type Config struct {
	// Schedule is the wait before each resend after a round that was not acknowledged.
	Schedule []time.Duration
	// Scale multiplies Schedule (1 = the channel's real schedule).
	Scale float64
	// DuplicateRate is the probability that a round is sent a second time within a second.
	DuplicateRate float64
	// Workers bounds the rounds in flight; 16 when zero.
	Workers int
	// Client sends the requests; it must follow no redirect.
	Client *http.Client
	// Float returns a number in [0, 1) for the probabilities; math/rand/v2 when nil.
	Float func() float64
	Now   func() time.Time
	Log   *slog.Logger
	// Sent, Acked and Abandoned count requests sent, deliveries acknowledged and given up.
	Sent, Acked, Abandoned func()
}

// Attempt is one request of a delivery.
type Attempt struct {
	At     string `json:"at"`
	Status int    `json:"status"` // 0 when no answer came
	Answer string `json:"answer,omitempty"`
	Error  string `json:"error,omitempty"`
	Round  int    `json:"round"` // 0 for the first delivery, n for the n-th resend
	Copy   int    `json:"copy"`  // 1 for the duplicate of a round
}

// State is a delivery as the inspection endpoints show it.
type State struct {
	Key          string            `json:"key"`
	URL          string            `json:"url"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	Acknowledged bool              `json:"acknowledged"`
	Abandoned    bool              `json:"abandoned"`
	Dropped      bool              `json:"dropped"`
	NextAt       string            `json:"next_at,omitempty"`
	Attempts     []Attempt         `json:"attempts"`
}

// Delivery is one notification being delivered.
type Delivery struct {
	key  string
	req  Request
	ack  Acknowledged
	done chan struct{}

	// guarded by Queue.mu
	attempts     []Attempt
	acknowledged bool
	abandoned    bool
	dropped      bool
	nextAt       time.Time
}

// Done is closed once the delivery was acknowledged, abandoned or dropped.
func (d *Delivery) Done() <-chan struct{} { return d.done }

type job struct {
	due   time.Time
	d     *Delivery
	round int
	copy  int
}

type jobHeap []job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h jobHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)        { *h = append(*h, x.(job)) }
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	*h = old[:len(old)-1]
	return j
}

// Queue runs deliveries. Deliveries added before Start wait for it.
type Queue struct {
	cfg   Config
	mu    sync.Mutex
	queue jobHeap
	wake  chan struct{}
	work  chan job
	wg    sync.WaitGroup
	once  sync.Once
}

// New returns a queue.
func New(cfg Config) *Queue {
	if cfg.Scale <= 0 {
		cfg.Scale = 1
	}
	if cfg.Workers < 1 {
		cfg.Workers = 16
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Float == nil {
		cfg.Float = rand.Float64
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	for _, f := range []*func(){&cfg.Sent, &cfg.Acked, &cfg.Abandoned} {
		if *f == nil {
			*f = func() {}
		}
	}
	return &Queue{cfg: cfg, wake: make(chan struct{}, 1), work: make(chan job)}
}

// Scaled is d times the schedule scale.
func (q *Queue) Scaled(d time.Duration) time.Duration { return time.Duration(float64(d) * q.cfg.Scale) }

// Chance reports true with probability p.
func (q *Queue) Chance(p float64) bool { return p > 0 && q.cfg.Float() < p }

// Float returns a number in [0, 1).
func (q *Queue) Float() float64 { return q.cfg.Float() }

// Add starts delivering req after delay; ack decides what acknowledges it. A dropped delivery
// sends nothing and is final at once.
func (q *Queue) Add(key string, req Request, ack Acknowledged, delay time.Duration, dropped bool) *Delivery {
	d := &Delivery{key: key, req: req, ack: ack, done: make(chan struct{})}
	if dropped {
		d.dropped = true
		close(d.done)
		q.cfg.Log.Info("notification dropped by the sandbox", "key", key)
		return d
	}
	q.mu.Lock()
	d.nextAt = time.Now().Add(delay)
	q.mu.Unlock()
	q.enqueue(job{due: d.nextAt, d: d})
	return d
}

// Drop stops a delivery that is not final yet: nothing more is sent.
func (q *Queue) Drop(d *Delivery) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d.dropped || d.acknowledged || d.abandoned {
		return
	}
	d.dropped, d.nextAt = true, time.Time{}
	close(d.done)
	q.cfg.Log.Info("notification dropped by the sandbox", "key", d.key)
}

// State copies a delivery's state.
func (q *Queue) State(d *Delivery) State {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := State{Key: d.key, URL: d.req.URL, Headers: map[string]string{}, Body: string(d.req.Body), Acknowledged: d.acknowledged,
		Abandoned: d.abandoned, Dropped: d.dropped, Attempts: append([]Attempt{}, d.attempts...)}
	for k, v := range d.req.Header {
		if len(v) > 0 {
			st.Headers[k] = v[0]
		}
	}
	if !d.nextAt.IsZero() && !d.acknowledged && !d.abandoned && !d.dropped {
		st.NextAt = d.nextAt.Format(time.RFC3339Nano)
	}
	return st
}

func (q *Queue) enqueue(j job) {
	q.mu.Lock()
	heap.Push(&q.queue, j)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Start sends due rounds until ctx is done.
func (q *Queue) Start(ctx context.Context) {
	q.once.Do(func() {
		q.wg.Go(func() { q.dispatch(ctx) })
		for range q.cfg.Workers {
			q.wg.Go(func() { q.worker(ctx) })
		}
	})
}

// Wait blocks until the goroutines started by Start have stopped.
func (q *Queue) Wait() { q.wg.Wait() }

func (q *Queue) dispatch(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		var (
			next  job
			ready bool
			wait  = time.Duration(-1)
		)
		if len(q.queue) > 0 {
			if d := time.Until(q.queue[0].due); d <= 0 {
				next, ready = heap.Pop(&q.queue).(job), true
			} else {
				wait = d
			}
		}
		q.mu.Unlock()
		if ready {
			select {
			case q.work <- next:
				continue
			case <-ctx.Done():
				return
			}
		}
		timer.Stop()
		var tick <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-tick:
		}
	}
}

func (q *Queue) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q.work:
			q.deliver(ctx, j)
		}
	}
}

// deliver sends one request of a round. The first copy of a round decides whether to resend;
// a duplicate copy is sent even when the first was acknowledged already (the channel sent it
// twice), records its answer, and may acknowledge.
func (q *Queue) deliver(ctx context.Context, j job) {
	d := j.d
	q.mu.Lock()
	skip := d.dropped || (j.copy == 0 && (d.acknowledged || d.abandoned))
	q.mu.Unlock()
	if skip {
		return
	}
	if j.copy == 0 && q.Chance(q.cfg.DuplicateRate) {
		q.enqueue(job{due: time.Now().Add(time.Duration(q.Float() * float64(time.Second))), d: d, round: j.round, copy: 1})
	}
	a := q.send(ctx, d, j.round, j.copy)
	if ctx.Err() != nil {
		return // shutting down: the state goes with the process
	}
	q.cfg.Sent()
	acked := a.Error == "" && d.ack(a.Status, []byte(a.Answer))
	last := j.round >= len(q.cfg.Schedule)

	q.mu.Lock()
	d.attempts = append(d.attempts, a)
	switch {
	case d.acknowledged || d.abandoned || d.dropped:
		q.mu.Unlock() // answered after the delivery ended
	case acked:
		d.acknowledged, d.nextAt = true, time.Time{}
		q.mu.Unlock()
		q.cfg.Acked()
		q.cfg.Log.Info("notification acknowledged", "key", d.key, "round", j.round, "copy", j.copy)
		close(d.done)
	case j.copy != 0:
		q.mu.Unlock()
	case last:
		d.abandoned, d.nextAt = true, time.Time{}
		q.mu.Unlock()
		q.cfg.Abandoned()
		q.cfg.Log.Warn("notification abandoned after the last resend", "key", d.key)
		close(d.done)
	default:
		next := time.Now().Add(q.Scaled(q.cfg.Schedule[j.round]))
		d.nextAt = next
		q.mu.Unlock()
		q.cfg.Log.Info("notification not acknowledged, will resend", "key", d.key, "round", j.round, "status", a.Status,
			"error", a.Error, "next_at", next)
		q.enqueue(job{due: next, d: d, round: j.round + 1})
	}
}

func (q *Queue) send(ctx context.Context, d *Delivery, round, copyNo int) Attempt {
	a := Attempt{At: q.cfg.Now().Format("2006-01-02T15:04:05.000Z07:00"), Round: round, Copy: copyNo}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.req.URL, bytes.NewReader(d.req.Body))
	if err != nil {
		a.Error = err.Error()
		return a
	}
	req.Header = d.req.Header.Clone()
	resp, err := q.cfg.Client.Do(req)
	if err != nil {
		a.Error = err.Error()
		return a
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	a.Status, a.Answer = resp.StatusCode, string(body)
	return a
}
