// Command ferryd is one side's ferry: it moves the messages of its service's outbox across the
// network boundary in signed and encrypted bundles, commits the bundles it receives into its
// service's inbox, and acknowledges them. Run one per side:
//
//	ferryd -side dmz      -db postgres://.../gateway   # listens on -listen, never dials
//	ferryd -side intranet -db postgres://.../core -peer-url https://dmz-ferry:7443
//
// The intranet ferry dials the DMZ ferry over GM TLS with mutual certificate authentication,
// pushes its to-gateway bundles and pulls the DMZ's to-core bundles. Both serve /healthz,
// /readyz and /metrics on -metrics-listen, log JSON to standard error, and stop gracefully on
// SIGINT or SIGTERM. See ferry/README.md for every flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"finepay/shared/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ferryd:", err)
		os.Exit(1)
	}
}

// run is ferryd from flags to shutdown; it logs to logw.
func run(ctx context.Context, args []string, logw io.Writer) error {
	set, f := newFlags()
	if err := set.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	s, err := f.resolve()
	if err != nil {
		return err
	}
	log := logging.New(logw, s.logLevel, s.node).With("side", string(s.side))
	d, err := open(ctx, s, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return err
	}
	defer d.close()
	if err := d.serve(ctx); err != nil {
		log.Error("stopped", "err", err)
		return err
	}
	log.Info("stopped")
	return nil
}
