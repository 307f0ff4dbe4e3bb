// Package gapsim simulates a network gap appliance (网闸) for the spool transport's tests and for
// drills (command gapsim): it takes the files each side writes into its outgoing directory and
// delivers them into the other side's incoming directory, the way an appliance moves files
// between its two sides, and misbehaves on purpose:
//
//   - delays: each file arrives after a random delay in [MinDelay, MaxDelay], so files overtake
//     one another; with probability Reorder a file is held back a further 2–4 × MaxDelay;
//   - duplication: with probability Duplicate a file is delivered twice (the second copy under
//     another name);
//   - loss: with probability Loss a file is never delivered;
//   - truncation: with probability Truncate a copy is written in place cut short, as a crash in
//     the middle of a copy leaves it, and with probability Complete it is written whole later;
//   - renaming: with probability Rename a copy arrives under an unrelated name;
//   - foreign files: with probability Foreign per file taken, a file that is not the ferry's
//     (random bytes, or a fake bundle magic followed by garbage) is put into the incoming
//     directory.
//
// Each file's fate is drawn from a generator seeded with Seed and the file's name (and how often
// that name was seen), so a run's faults can be replayed whatever the timing. The simulator is
// bounded: it stops taking files after MaxFiles files or MaxDuration, delivers what it holds,
// and returns.
package gapsim

import (
	"container/heap"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"finepay/shared/gm"
)

// Route is one direction of the appliance: files written into From arrive in To.
type Route struct {
	From, To string
}

// Faults are the misbehaviours' probabilities (0 to 1) and the delays.
type Faults struct {
	MinDelay, MaxDelay time.Duration
	Reorder            float64
	Duplicate          float64
	Loss               float64
	Truncate           float64
	Complete           float64
	Rename             float64
	Foreign            float64
}

// Config configures a run.
type Config struct {
	Routes []Route
	Faults
	Seed        int64
	Poll        time.Duration // how often the From directories are read [10ms]
	MaxFiles    int           // stop taking files after this many (0: no bound)
	MaxDuration time.Duration // stop taking files after this long (0: until ctx ends)
	Logger      *slog.Logger
}

// Stats count what a run did.
type Stats struct {
	Taken, Delivered, Duplicated, Lost, Truncated, Completed, Renamed, Foreign int
	// ForeignSums are the SM3 digests (hex) of the foreign files put in; PartialSums those of
	// the truncated files that stayed truncated (never completed or replaced). The ferry must
	// quarantine them all.
	ForeignSums, PartialSums []string
}

// delivery is a file to write at a time.
type delivery struct {
	at      time.Time
	n       int // order of scheduling, to break ties
	path    string
	data    []byte
	partial bool // write in place (not via a temporary name), and remember it as truncated
	kind    string
}

type queue []*delivery

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].n < q[j].n
	}
	return q[i].at.Before(q[j].at)
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*delivery)) }
func (q *queue) Pop() any {
	old := *q
	d := old[len(old)-1]
	*q = old[:len(old)-1]
	return d
}

// Sim is a simulated appliance; Stats may be read while it runs.
type Sim struct {
	cfg  Config
	log  *slog.Logger
	seen map[string]int
	q    queue
	n    int

	mu       sync.Mutex
	stats    Stats
	partials map[string]string // path → SM3 of the truncated content still there
}

// New checks cfg and returns a simulator.
func New(cfg Config) (*Sim, error) {
	if len(cfg.Routes) == 0 {
		return nil, errors.New("gapsim: no routes")
	}
	for _, r := range cfg.Routes {
		for _, d := range []string{r.From, r.To} {
			if st, err := os.Stat(d); err != nil || !st.IsDir() {
				return nil, fmt.Errorf("gapsim: %s: not a directory", d)
			}
		}
	}
	if cfg.MaxDelay < cfg.MinDelay || cfg.MinDelay < 0 {
		return nil, fmt.Errorf("gapsim: delays %s..%s", cfg.MinDelay, cfg.MaxDelay)
	}
	for _, p := range []float64{cfg.Reorder, cfg.Duplicate, cfg.Loss, cfg.Truncate, cfg.Complete, cfg.Rename, cfg.Foreign} {
		if p < 0 || p > 1 {
			return nil, fmt.Errorf("gapsim: probability %v out of [0, 1]", p)
		}
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 10 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sim{cfg: cfg, log: cfg.Logger, seen: map[string]int{}, partials: map[string]string{}}, nil
}

// Stats returns the counts so far.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ForeignSums = slices.Clone(st.ForeignSums)
	st.PartialSums = nil
	for _, sum := range s.partials {
		st.PartialSums = append(st.PartialSums, sum)
	}
	slices.Sort(st.PartialSums)
	return st
}

// Run moves files until its bound is reached (then it delivers what it holds and returns) or
// ctx ends (what it holds is lost, as in a power cut of the appliance).
func (s *Sim) Run(ctx context.Context) (Stats, error) {
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		if (s.cfg.MaxFiles > 0 && s.stats.Taken >= s.cfg.MaxFiles) || (s.cfg.MaxDuration > 0 && now.Sub(start) >= s.cfg.MaxDuration) {
			for s.q.Len() > 0 {
				s.deliver(heap.Pop(&s.q).(*delivery))
			}
			return s.Stats(), nil
		}
		for _, r := range s.cfg.Routes {
			if err := s.take(r, now); err != nil {
				return s.Stats(), err
			}
		}
		for s.q.Len() > 0 && !s.q[0].at.After(now) {
			s.deliver(heap.Pop(&s.q).(*delivery))
		}
		wait := s.cfg.Poll
		if s.q.Len() > 0 {
			wait = min(wait, max(s.q[0].at.Sub(now), 0))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return s.Stats(), nil
		case <-timer.C:
		}
	}
}

// take reads and removes the files in r.From and schedules their fates.
func (s *Sim) take(r Route, now time.Time) error {
	entries, err := os.ReadDir(r.From)
	if err != nil {
		return fmt.Errorf("gapsim: %w", err)
	}
	for _, e := range entries {
		if s.cfg.MaxFiles > 0 && s.stats.Taken >= s.cfg.MaxFiles {
			return nil
		}
		name := e.Name()
		if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(r.From, name)
		data, err := os.ReadFile(path)
		if err != nil {
			continue // taken back by its writer
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("gapsim: %w", err)
		}
		s.fate(r, name, data, now)
	}
	return nil
}

func (s *Sim) schedule(d *delivery) {
	s.n++
	d.n = s.n
	heap.Push(&s.q, d)
}

// fate draws what happens to one file.
func (s *Sim) fate(r Route, name string, data []byte, now time.Time) {
	s.seen[name]++
	h := fnv.New64a()
	h.Write([]byte(name))
	rng := rand.New(rand.NewPCG(uint64(s.cfg.Seed), h.Sum64()+uint64(s.seen[name])))
	f := s.cfg.Faults
	delay := func() time.Duration {
		d := f.MinDelay + time.Duration(rng.Int64N(int64(f.MaxDelay-f.MinDelay)+1))
		if rng.Float64() < f.Reorder {
			d += time.Duration(2+rng.IntN(3)) * f.MaxDelay
		}
		return d
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Taken++
	lost := rng.Float64() < f.Loss
	copies := 1
	if rng.Float64() < f.Duplicate {
		copies = 2
	}
	foreign := rng.Float64() < f.Foreign
	switch {
	case lost:
		s.stats.Lost++
		s.log.Debug("gapsim: lost", "file", name)
	default:
		if copies == 2 {
			s.stats.Duplicated++
		}
		for i := range copies {
			to := name
			if rng.Float64() < f.Rename {
				to = fmt.Sprintf("renamed-%016x.dat", rng.Uint64())
				s.stats.Renamed++
			} else if i > 0 {
				to = name + ".copy"
			}
			at := now.Add(delay())
			path := filepath.Join(r.To, to)
			if rng.Float64() < f.Truncate && len(data) > 1 {
				s.stats.Truncated++
				cut := 1 + rng.IntN(len(data)-1)
				s.schedule(&delivery{at: at, path: path, data: data[:cut], partial: true, kind: "truncated"})
				if rng.Float64() < f.Complete {
					s.schedule(&delivery{at: at.Add(delay()), path: path, data: data, kind: "completed"})
				}
				continue
			}
			s.schedule(&delivery{at: at, path: path, data: data, kind: "copy"})
		}
	}
	if foreign {
		junk := make([]byte, 1+rng.IntN(2048))
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		switch rng.IntN(3) {
		case 0:
			junk = append([]byte("FPB1"), junk...) // a bundle's magic, then garbage
		case 1:
			junk = append([]byte("FPA1"), junk...)
		}
		to := fmt.Sprintf("foreign-%016x.fpb", rng.Uint64())
		s.schedule(&delivery{at: now.Add(delay()), path: filepath.Join(r.To, to), data: junk, kind: "foreign"})
	}
}

// deliver writes one file: a copy through a hidden temporary name and a rename (so that it
// appears whole), a truncated one in place.
func (s *Sim) deliver(d *delivery) {
	var err error
	if d.partial {
		err = os.WriteFile(d.path, d.data, 0o600)
	} else {
		tmp := filepath.Join(filepath.Dir(d.path), ".gapsim-"+filepath.Base(d.path))
		if err = os.WriteFile(tmp, d.data, 0o600); err == nil {
			err = os.Rename(tmp, d.path)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.log.Warn("gapsim: deliver", "file", d.path, "err", err)
		return
	}
	delete(s.partials, d.path) // whatever was there was replaced
	sum := gm.SM3(d.data)
	switch d.kind {
	case "truncated":
		s.partials[d.path] = hex.EncodeToString(sum[:])
	case "completed":
		s.stats.Completed++
	case "foreign":
		s.stats.Foreign++
		s.stats.ForeignSums = append(s.stats.ForeignSums, hex.EncodeToString(sum[:]))
	}
	if d.kind != "foreign" {
		s.stats.Delivered++
	}
	s.log.Debug("gapsim: delivered", "file", d.path, "kind", d.kind, "bytes", len(d.data))
}
