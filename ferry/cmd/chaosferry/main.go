// Command chaosferry runs both ferryds and a producer per side on two fresh PostgreSQL
// databases, kills them with SIGKILL at random moments and at the relay's failpoints for a few
// minutes, then lets the ferries deliver everything and checks that every message arrived exactly
// once, in lane order (package internal/chaos). `make chaos-ferry` runs it.
//
//	chaosferry [-ferryd bin/ferryd] [-duration 3m] [-rate 100] [-max-kills 200] [-seed N]
//
// It ends with the invariant check and exits 1 when an invariant is broken.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"finepay/ferry/internal/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "produce" {
		os.Exit(chaos.ProduceMain(ctx, os.Args[2:], os.Stderr))
	}
	os.Exit(run(ctx))
}

func run(ctx context.Context) int {
	ferryd := flag.String("ferryd", "bin/ferryd", "the ferryd binary")
	duration := flag.Duration("duration", 3*time.Minute, "how long to kill processes")
	rate := flag.Int("rate", 100, "messages per second each producer offers")
	maxKills := flag.Int("max-kills", 200, "most kills")
	minGap := flag.Duration("min-gap", 500*time.Millisecond, "shortest time between kills")
	maxGap := flag.Duration("max-gap", 3*time.Second, "longest time between kills")
	seed := flag.Uint64("seed", 0, "random seed (0: from the clock); printed so that a run can be repeated")
	dir := flag.String("dir", "", "working folder (default a temporary one, removed at the end)")
	flag.Parse()
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	work := *dir
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "chaosferry-"); err != nil {
			fmt.Fprintln(os.Stderr, "chaosferry:", err)
			return 1
		}
		defer os.RemoveAll(work)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaosferry:", err)
		return 1
	}
	fmt.Printf("chaosferry: seed %d, %s of kills (at most %d), %d msgs/s per producer, logs in %s\n", *seed, *duration, *maxKills, *rate, work)
	rep, err := chaos.Run(ctx, chaos.Config{
		Ferryd: *ferryd, Producer: []string{self, "produce"}, AdminURL: chaos.AdminURL(), Dir: work, Rate: *rate,
		Log: os.Stdout, Random: rand.New(rand.NewPCG(*seed, *seed^0x9e3779b97f4a7c15)), Duration: *duration,
		MinGap: *minGap, MaxGap: *maxGap, MaxKills: *maxKills, DrainTimeout: 2 * time.Minute,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaosferry:", err)
		return 1
	}
	fmt.Print(rep)
	if !rep.OK() {
		return 1
	}
	return 0
}
