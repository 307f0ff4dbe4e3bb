// Command sandbox runs the simulators of FinePay's outside parties (WeChat Pay, the finance
// non-tax and e-receipt systems, the police window platform) on one HTTP port, with their state
// in memory. See sandbox/README.md for the endpoints and the configuration.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"finepay/sandbox/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := server.Main(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
}
