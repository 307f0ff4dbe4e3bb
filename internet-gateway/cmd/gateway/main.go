// Command gateway is FinePay's internet-side gateway: the payer's cashier pages, the WeChat Pay,
// Alipay and UnionPay adapters (QR-code orders, active order queries with backoff) and their
// payment notifications, and the read
// model of payable bills fed by the core through the ferry. Confirmed payments leave through
// the ferry outbox as PaymentConfirmed messages; the gateway never connects to the intranet.
// Every flag can also be set by its environment variable (GATEWAY_ and the flag name in
// capitals): see README.md.
//
// Usage:
//
//	gateway [flags]           run the service
//	gateway migrate [flags]   apply the database migrations and exit
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
	if err := run(ctx, os.Args[1:], os.Stdout, hooks{}); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// run parses args and runs the service (or a subcommand) until ctx ends. Logs go to stdout.
func run(ctx context.Context, args []string, stdout io.Writer, h hooks) error {
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
	return serve(ctx, opts(), migrateOnly, stdout, h)
}
