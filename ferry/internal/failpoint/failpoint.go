// Package failpoint kills the process at named points, for crash tests. ferryd reads its
// points from FERRYD_CRASH_AT; the code is always compiled in and does nothing unless a point is
// set.
//
// A spec is a comma-separated list of NAME or NAME:COUNT: the process sends itself SIGKILL at
// the COUNT-th time (1 when omitted) it reaches point NAME. SIGKILL cannot be caught: nothing
// runs after it, no deferred function, no buffered write, exactly as in a power cut of the
// process (the database's committed transactions survive, as they would).
package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Set is a parsed spec.
type Set struct {
	mu     sync.Mutex
	left   map[string]int // hits left before the kill
	known  map[string]bool
	kill   func()
	before func(name string) // called just before the kill (to log it)
}

// Parse parses spec; known lists the valid point names. An empty spec gives a Set that never
// fires. before, when not nil, is called with the point's name just before the kill.
func Parse(spec string, known []string, before func(name string)) (*Set, error) {
	s := &Set{left: map[string]int{}, known: map[string]bool{}, before: before, kill: killSelf}
	for _, k := range known {
		s.known[k] = true
	}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, count, hasCount := strings.Cut(part, ":")
		n := 1
		if hasCount {
			var err error
			if n, err = strconv.Atoi(count); err != nil || n < 1 {
				return nil, fmt.Errorf("failpoint: %q: count must be a positive integer", part)
			}
		}
		if !s.known[name] {
			return nil, fmt.Errorf("failpoint: unknown point %q (known: %s)", name, strings.Join(known, ", "))
		}
		s.left[name] = n
	}
	return s, nil
}

// Active reports whether any point is set.
func (s *Set) Active() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.left) > 0
}

// Hit counts a pass through point name and kills the process when its count is reached.
func (s *Set) Hit(name string) {
	s.mu.Lock()
	n, ok := s.left[name]
	if ok {
		n--
		s.left[name] = n
	}
	s.mu.Unlock()
	if !ok || n > 0 {
		return
	}
	if s.before != nil {
		s.before(name)
	}
	s.kill()
}

func killSelf() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is delivered before this returns in practice; never go on
}
