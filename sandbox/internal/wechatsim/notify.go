package wechatsim

import (
	"bytes"
	"container/heap"
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"finepay/sandbox/internal/shanghai"
)

// Schedule is WeChat's resend schedule after a failed notification: 15 resends, 24h4m in all.
var Schedule = []time.Duration{
	15 * time.Second, 15 * time.Second, 30 * time.Second, 3 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 60 * time.Minute,
	3 * time.Hour, 3 * time.Hour, 3 * time.Hour, 6 * time.Hour, 6 * time.Hour,
}

// notification is the delivery state of an order's payment notification; guarded by Sim.mu.
type notification struct {
	url          string
	body         []byte
	lastHeader   http.Header
	attempts     []Attempt
	acknowledged bool
	abandoned    bool
	nextAt       time.Time
	done         chan struct{}
}

// Attempt is one notification request.
type Attempt struct {
	At string `json:"at"`
	// Status is the HTTP status answered, 0 when no answer came.
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
	// Round is 0 for the first delivery and n for the n-th resend.
	Round int `json:"round"`
	// Copy numbers the simultaneous duplicates of a round (see Config.Duplicates).
	Copy int `json:"copy"`
}

type job struct {
	due        time.Time
	outTradeNo string
	round      int
	// note, when set, is the notification delivered (a refund's); otherwise the order's.
	note *notification
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

// notifier runs deliveries: one dispatcher keeps the due jobs in time order and hands them to a
// fixed pool of workers, so that at most NotifyWorkers rounds are in flight. Scheduling uses the
// real clock, scaled by Config.ScheduleScale.
type notifier struct {
	s     *Sim
	mu    sync.Mutex
	queue jobHeap
	wake  chan struct{}
	work  chan job
	wg    sync.WaitGroup
	once  sync.Once
}

func newNotifier(s *Sim) *notifier {
	return &notifier{s: s, wake: make(chan struct{}, 1), work: make(chan job)}
}

func (n *notifier) enqueue(j job) {
	n.mu.Lock()
	heap.Push(&n.queue, j)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) start(ctx context.Context) {
	n.once.Do(func() {
		n.wg.Go(func() { n.dispatch(ctx) })
		for range n.s.cfg.NotifyWorkers {
			n.wg.Go(func() { n.worker(ctx) })
		}
	})
}

func (n *notifier) wait() { n.wg.Wait() }

func (n *notifier) dispatch(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n.mu.Lock()
		var (
			next  job
			ready bool
			wait  = time.Duration(-1)
		)
		if len(n.queue) > 0 {
			if d := time.Until(n.queue[0].due); d <= 0 {
				next, ready = heap.Pop(&n.queue).(job), true
			} else {
				wait = d
			}
		}
		n.mu.Unlock()
		if ready {
			select {
			case n.work <- next:
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
		case <-n.wake:
		case <-tick:
		}
	}
}

func (n *notifier) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-n.work:
			n.deliver(ctx, j)
		}
	}
}

func (n *notifier) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * n.s.cfg.ScheduleScale)
}

// deliver runs one round: Duplicates identical requests at once; the round succeeds when any
// of them is answered 200 or 204.
func (n *notifier) deliver(ctx context.Context, j job) {
	s := n.s
	s.mu.Lock()
	note := j.note
	if note == nil {
		if o := s.byTrade[j.outTradeNo]; o != nil {
			note = o.note
		}
	}
	if note == nil || note.acknowledged || note.abandoned {
		s.mu.Unlock()
		return
	}
	url, body := note.url, note.body
	s.mu.Unlock()

	h, err := s.platformHeaders(body)
	if err != nil {
		s.log.Error("signing a notification failed", "out_trade_no", j.outTradeNo, "err", err)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "*/*")
	h.Set("User-Agent", "Mozilla/4.0 (FinePay sandbox; WeChat Pay notification)")
	h.Set(HeaderSignatureType, AuthScheme)
	s.mu.Lock()
	note.lastHeader = h
	s.mu.Unlock()

	copies := s.cfg.Duplicates
	results := make([]Attempt, copies)
	var wg sync.WaitGroup
	for i := range copies {
		wg.Go(func() { results[i] = n.send(ctx, url, h, body, j.round, i) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // shutting down: the state goes with the process
	}
	acked := false
	for _, a := range results {
		s.metrics.sent.Inc()
		if a.Status == http.StatusOK || a.Status == http.StatusNoContent {
			acked = true
		}
	}
	last := j.round >= len(Schedule)
	var next time.Time
	if !acked && !last {
		next = time.Now().Add(n.scaled(Schedule[j.round]))
	}
	s.mu.Lock()
	note.attempts = append(note.attempts, results...)
	switch {
	case acked:
		note.acknowledged = true
		note.nextAt = time.Time{}
	case last:
		note.abandoned = true
		note.nextAt = time.Time{}
	default:
		note.nextAt = next
	}
	s.mu.Unlock()
	switch {
	case acked:
		s.metrics.acked.Inc()
		s.log.Info("wechat notification acknowledged", "out_trade_no", j.outTradeNo, "round", j.round)
		close(note.done)
	case last:
		s.metrics.abandoned.Inc()
		s.log.Warn("wechat notification abandoned after the last resend", "out_trade_no", j.outTradeNo)
		close(note.done)
	default:
		s.log.Info("wechat notification not acknowledged, will resend", "out_trade_no", j.outTradeNo,
			"round", j.round, "status", results[0].Status, "next_at", shanghai.Time(next))
		n.enqueue(job{due: next, outTradeNo: j.outTradeNo, round: j.round + 1, note: j.note})
	}
}

func (n *notifier) send(ctx context.Context, url string, h http.Header, body []byte, round, copyNo int) Attempt {
	a := Attempt{At: n.s.now().In(shanghai.Location).Format("2006-01-02T15:04:05.000Z07:00"), Round: round, Copy: copyNo}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		a.Error = err.Error()
		return a
	}
	req.Header = h.Clone()
	resp, err := n.s.cfg.Client.Do(req)
	if err != nil {
		a.Error = err.Error()
		return a
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	a.Status = resp.StatusCode
	return a
}
