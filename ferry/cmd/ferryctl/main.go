// Command ferryctl inspects a ferry: the state of its lanes, its audit trail, and bundles kept in
// quarantine or captured on the way; it exports, verifies and purges the tamper-evident audit
// log, and proves who sent and who received a message.
//
//	ferryctl -db URL status                      lanes out (last, acked, backlog), lanes in (hwm), inbox pending
//	ferryctl -db URL audit [-n 50]               the most recent audit records (reading them is itself audited)
//	ferryctl -db URL audit export -out DIR [-from N] [-to N]
//	                                             write a segment of the log with its signed checkpoints and certificates
//	ferryctl audit verify [-ca FILE] [-trusted-checkpoint FILE] DIR
//	                                             check an exported segment offline (no database)
//	ferryctl -db URL audit purge -before DATE    remove exported records older than the retention
//	ferryctl -db URL prove MESSAGE_ID            the evidence of a message's origin and receipt, checked
//	ferryctl verify-bundle -peer-cert FILE [-ca FILE] [-key FILE] FILE
//	                                             check a bundle's (or acknowledgement's) signature offline and say why it fails
//
// Exit status: 0 when all is well, 1 when a check fails, 2 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"

	"finepay/ferry/sqldb"
	"finepay/shared/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// errCheck marks a failed check (exit status 1) as opposed to a usage or operational error.
var errCheck = errors.New("check failed")

// errUsage marks a usage error (exit status 2).
var errUsage = errors.New("usage")

const usage = `usage: ferryctl [-db URL] [-node NAME] COMMAND [ARGS]

commands:
  status                                        lanes out and in, inbox pending
  audit [-n 50]                                 recent audit records, newest first
  audit export -out DIR [-from N] [-to N] [-origin NAME] [-ca FILE] [-consistency-from N]
                                                export a segment of the audit log (and verify it)
  audit verify [-ca FILE] [-trusted-checkpoint FILE] DIR
                                                verify an exported segment offline
  audit purge -before DATE                      remove exported records older than the retention
  prove [-ca FILE] [-origin NAME] [-out DIR] MESSAGE_ID
                                                prove who sent a message and who acknowledged it
  verify-bundle -peer-cert FILE [-ca FILE] [-key FILE] FILE
                                                check a bundle or acknowledgement offline
`

type globals struct {
	db, node, actor string
	stdout          io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	set := config.New("ferryctl", "FERRYCTL")
	db := set.String("db", "", "database URL of the service whose ferry to inspect")
	node := set.String("node", "ferryctl", "node name written in the audit records ferryctl makes")
	global, rest := splitGlobal(args)
	if err := set.Parse(global); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprint(stderr, usage)
		return 2
	}
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	g := globals{db: *db, node: *node, actor: actor(), stdout: stdout}
	var err error
	switch rest[0] {
	case "status":
		err = g.withDB(ctx, func(db *sqldb.DB) error { return status(ctx, db, stdout) })
	case "audit":
		err = g.auditCmd(ctx, rest[1:])
	case "verify-bundle":
		err = verifyBundle(rest[1:], stdout)
	case "prove":
		err = g.prove(ctx, rest[1:])
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, rest[0])
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errCheck):
		fmt.Fprintln(stderr, "ferryctl:", err)
		return 1
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "ferryctl:", err)
		fmt.Fprint(stderr, usage)
		return 2
	}
	fmt.Fprintln(stderr, "ferryctl:", err)
	return 1
}

func (g globals) withDB(ctx context.Context, f func(*sqldb.DB) error) error {
	if g.db == "" {
		return fmt.Errorf("%w: -db (or FERRYCTL_DB) is required", errUsage)
	}
	db, err := sqldb.Open(ctx, g.db)
	if err != nil {
		return err
	}
	defer db.Close()
	return f(db)
}

// splitGlobal splits the global flags (each "-name value" or "-name=value") from the command
// and its arguments.
func splitGlobal(args []string) (global, rest []string) {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		if strings.Contains(args[i], "=") || args[i] == "-h" || args[i] == "-help" || args[i] == "--help" || i+1 == len(args) {
			i++
		} else {
			i += 2
		}
	}
	return args[:i], args[i:]
}

func actor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}
