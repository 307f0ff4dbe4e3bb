// Command core is FinePay's police-intranet core: the system of record for bills, payments and
// receipts. It serves the window API and the clerks' console, asks the non-tax system for
// payment forms, consumes payment confirmations ferried from the internet gateway, and runs the
// durable tasks that report payments and issue e-receipts. Every flag can also be set by its
// environment variable (CORE_ and the flag name in capitals): see README.md.
//
// Usage:
//
//	core [flags]           run the service
//	core migrate [flags]   apply the database migrations and exit
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "core:", err)
		os.Exit(1)
	}
}

// run parses args and runs the service (or a subcommand) until ctx ends. Logs go to stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	migrateOnly := false
	if len(args) > 0 && args[0] == "migrate" {
		migrateOnly, args = true, args[1:]
	}
	set, opts := newOptions()
	if err := set.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	return serve(ctx, opts(), migrateOnly, stdout)
}
