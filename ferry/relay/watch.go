package relay

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
)

// watcher keeps a snapshot of the outgoing lanes and wakes waiters when it changes.
type watcher struct {
	db *sqldb.DB

	mu    sync.Mutex
	lanes map[string]outbox.Lane // replaced, never modified, on change
	// discovered is when refresh last read every lane (outbox.Lanes) rather than the known ones.
	discovered time.Time
	ch         chan struct{} // closed on change
	err        error
}

func newWatcher(db *sqldb.DB) *watcher {
	return &watcher{db: db, lanes: map[string]outbox.Lane{}, ch: make(chan struct{})}
}

// discoverEvery is how often refresh looks for lanes not seen before; in between it reads only
// the lanes it knows, which on PostgreSQL is much cheaper (outbox.LaneStates). A lane's first
// message ever may thus wait this long.
const discoverEvery = time.Second

// refresh reads the lanes and wakes waiters if anything changed.
func (w *watcher) refresh(ctx context.Context) error {
	w.mu.Lock()
	known := slices.Collect(maps.Keys(w.lanes))
	// Not "no lanes known": a side that sends nothing (the DMZ in a quiet week) would then read
	// every lane's sequence at every poll.
	discover := time.Since(w.discovered) >= discoverEvery
	w.mu.Unlock()
	var list []outbox.Lane
	var err error
	if discover {
		list, err = outbox.Lanes(ctx, w.db)
	} else {
		list, err = outbox.LaneStates(ctx, w.db, known)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.err = fmt.Errorf("outgoing lanes: %w", err)
		return w.err
	}
	if discover {
		w.discovered = time.Now()
	}
	w.err = nil
	lanes := make(map[string]outbox.Lane, len(list))
	for _, l := range list {
		lanes[l.Lane] = l
	}
	if !maps.Equal(lanes, w.lanes) {
		w.lanes = lanes
		w.wakeLocked()
	}
	return nil
}

// notify wakes waiters without a change of lanes (a lease was released).
func (w *watcher) notify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wakeLocked()
}

func (w *watcher) wakeLocked() {
	close(w.ch)
	w.ch = make(chan struct{})
}

// snapshot returns the lanes (not to be modified) and a channel closed at the next change.
func (w *watcher) snapshot() (map[string]outbox.Lane, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lanes, w.ch
}

func (w *watcher) lane(name string) (outbox.Lane, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lanes[name], w.ch
}

func (w *watcher) error() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
