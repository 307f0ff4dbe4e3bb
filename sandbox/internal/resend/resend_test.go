package resend_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"finepay/sandbox/internal/resend"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server answers each request with the next status of its script (the last repeats).
type server struct {
	*httptest.Server
	mu    sync.Mutex
	plan  []int
	count int
	got   chan int
}

func newServer(t *testing.T, plan ...int) *server {
	s := &server{plan: plan, got: make(chan int, 64)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		st := s.plan[min(s.count, len(s.plan)-1)]
		s.count++
		n := s.count
		s.mu.Unlock()
		w.WriteHeader(st)
		s.got <- n
	}))
	t.Cleanup(s.Close)
	return s
}

func start(t *testing.T, cfg resend.Config) *resend.Queue {
	t.Helper()
	tr := &http.Transport{}
	cfg.Client = &http.Client{Transport: tr, Timeout: 5 * time.Second}
	q := resend.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	q.Start(ctx)
	t.Cleanup(func() { cancel(); q.Wait(); tr.CloseIdleConnections() })
	return q
}

func ok200(status int, _ []byte) bool { return status == http.StatusOK }

func wait(t *testing.T, d *resend.Delivery) {
	t.Helper()
	select {
	case <-d.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the delivery did not finish")
	}
}

func TestResendUntilAcknowledged(t *testing.T) {
	t.Parallel()
	srv := newServer(t, 500, 503, 200)
	var sent, acked int
	var mu sync.Mutex
	q := start(t, resend.Config{Schedule: []time.Duration{time.Second, time.Second, time.Second}, Scale: 0.01,
		Sent: func() { mu.Lock(); sent++; mu.Unlock() }, Acked: func() { mu.Lock(); acked++; mu.Unlock() }})
	d := q.Add("k", resend.Request{URL: srv.URL, Header: http.Header{}, Body: []byte("x")}, ok200, 0, false)
	wait(t, d)
	st := q.State(d)
	if !st.Acknowledged || len(st.Attempts) != 3 || st.Attempts[0].Status != 500 || st.Attempts[2].Round != 2 {
		t.Fatalf("state %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if sent != 3 || acked != 1 {
		t.Fatalf("sent %d acked %d", sent, acked)
	}
}

func TestDuplicateSentAfterAcknowledgement(t *testing.T) {
	t.Parallel()
	srv := newServer(t, 200)
	q := start(t, resend.Config{Schedule: []time.Duration{time.Second}, DuplicateRate: 1, Float: func() float64 { return 0.1 }})
	d := q.Add("k", resend.Request{URL: srv.URL, Header: http.Header{}}, ok200, 0, false)
	wait(t, d)
	for range 2 {
		select {
		case <-srv.got:
		case <-time.After(10 * time.Second):
			t.Fatal("the duplicate was not sent")
		}
	}
}

func TestDrop(t *testing.T) {
	t.Parallel()
	srv := newServer(t, 500)
	q := start(t, resend.Config{Schedule: []time.Duration{time.Hour}})
	dropped := q.Add("a", resend.Request{URL: srv.URL, Header: http.Header{}}, ok200, 0, true)
	wait(t, dropped)
	if st := q.State(dropped); !st.Dropped || len(st.Attempts) != 0 {
		t.Fatalf("dropped at once: %+v", st)
	}
	d := q.Add("b", resend.Request{URL: srv.URL, Header: http.Header{}}, ok200, 0, false)
	<-srv.got // the first round was sent and failed; the next is due in an hour
	q.Drop(d)
	wait(t, d)
	if st := q.State(d); !st.Dropped || st.Acknowledged || st.NextAt != "" {
		t.Fatalf("dropped while pending: %+v", st)
	}
}
