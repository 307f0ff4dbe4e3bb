// Command gapsim simulates a network gap appliance (网闸) between two ferries that use the spool
// transport: it moves the files side A writes into -a-out to B's -b-in, and those B writes into
// -b-out to A's -a-in, with delays, reordering, duplication, loss, truncation, renaming and
// foreign files as configured (package finepay/ferry/spool/gapsim). It stops by itself after
// -max-files files or -duration, and prints what it did as one JSON line; -seed replays a run's
// faults.
//
//	gapsim -a-out var/intranet/out -b-in var/dmz/in -b-out var/dmz/out -a-in var/intranet/in \
//	    -loss 0.05 -duplicate 0.05 -truncate 0.02 -max-delay 2s -duration 10m
//
// Leave -b-out and -a-in empty for a one-way appliance (A to B only).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"finepay/ferry/spool/gapsim"
	"finepay/shared/config"
	"finepay/shared/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gapsim:", err)
		os.Exit(1)
	}
}

func newFlags() (*config.Set, func() (gapsim.Config, string, error)) {
	s := config.New("gapsim", "GAPSIM")
	aOut := s.String("a-out", "", "side A's outgoing directory (its -spool-out)")
	bIn := s.String("b-in", "", "side B's incoming directory (its -spool-in)")
	bOut := s.String("b-out", "", "side B's outgoing directory; empty for a one-way appliance")
	aIn := s.String("a-in", "", "side A's incoming directory; empty for a one-way appliance")
	seed := s.Int("seed", 1, "seed of the faults: the same seed gives each file the same fate")
	minDelay := s.Duration("min-delay", 0, "shortest time a file takes across")
	maxDelay := s.Duration("max-delay", 200*time.Millisecond, "longest time a file takes across (files overtake one another)")
	reorder := s.Float("reorder", 0, "probability a file is held back a further 2-4 × -max-delay")
	dup := s.Float("duplicate", 0, "probability a file is delivered twice")
	loss := s.Float("loss", 0, "probability a file is never delivered")
	trunc := s.Float("truncate", 0, "probability a copy is written cut short, in place")
	complete := s.Float("complete", 0.5, "probability a truncated copy is completed later")
	rename := s.Float("rename", 0, "probability a copy arrives under an unrelated name")
	foreign := s.Float("foreign", 0, "probability, per file taken, of putting a foreign file into the receiving directory")
	poll := s.Duration("poll", 50*time.Millisecond, "how often the outgoing directories are read")
	maxFiles := s.Int("max-files", 0, "stop after taking this many files (0: no bound)")
	duration := s.Duration("duration", time.Hour, "stop after this long (0: until interrupted)")
	logLevel := s.String("log-level", "info", "debug (every file), info, warn or error")
	return s, func() (gapsim.Config, string, error) {
		cfg := gapsim.Config{Seed: int64(*seed), Poll: *poll, MaxFiles: *maxFiles, MaxDuration: *duration,
			Faults: gapsim.Faults{MinDelay: *minDelay, MaxDelay: *maxDelay, Reorder: *reorder, Duplicate: *dup, Loss: *loss,
				Truncate: *trunc, Complete: *complete, Rename: *rename, Foreign: *foreign}}
		if *aOut == "" || *bIn == "" {
			return cfg, "", errors.New("-a-out and -b-in are required")
		}
		cfg.Routes = append(cfg.Routes, gapsim.Route{From: *aOut, To: *bIn})
		switch {
		case *bOut != "" && *aIn != "":
			cfg.Routes = append(cfg.Routes, gapsim.Route{From: *bOut, To: *aIn})
		case *bOut != "" || *aIn != "":
			return cfg, "", errors.New("-b-out and -a-in go together (both empty: one way, A to B)")
		}
		return cfg, *logLevel, nil
	}
}

// run is gapsim from flags to its report on out; it logs to logw.
func run(ctx context.Context, args []string, out, logw io.Writer) error {
	set, resolve := newFlags()
	if err := set.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg, level, err := resolve()
	if err != nil {
		return err
	}
	cfg.Logger = logging.New(logw, level, "gapsim")
	sim, err := gapsim.New(cfg)
	if err != nil {
		return err
	}
	st, err := sim.Run(ctx)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(st)
}
