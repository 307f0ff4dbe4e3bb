package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"finepay/ferry/audit"
	"finepay/ferry/sqldb"
)

// auditCmd prints the most recent audit records. Reading the trail is itself an administrative
// action: it is recorded first (admin.audit-read), and nothing is shown if that fails.
// With a subcommand it exports, verifies or purges the log instead.
func (g globals) auditCmd(ctx context.Context, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "export":
			return g.auditExport(ctx, args[1:])
		case "verify":
			return auditVerify(args[1:], g.stdout)
		case "purge":
			return g.auditPurge(ctx, args[1:])
		}
	}
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	n := fs.Int("n", 50, "how many records")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *n < 1 {
		return fmt.Errorf("%w: audit [-n COUNT]", errUsage)
	}
	return g.withDB(ctx, func(db *sqldb.DB) error {
		log := audit.New(audit.Config{DB: db, Node: g.node, Actor: g.actor})
		if err := log.Record(ctx, audit.Record{Event: audit.AdminPrefix + "audit-read", Result: audit.OK,
			Reason: fmt.Sprintf("ferryctl audit -n %d", *n)}); err != nil {
			return err
		}
		recs, err := audit.Recent(ctx, db, *n)
		if err != nil {
			return err
		}
		return printAudit(g.stdout, recs)
	})
}

func printAudit(out io.Writer, recs []audit.Stored) error {
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tAT\tNODE\tACTOR\tEVENT\tRESULT\tLANE\tSEQ\tBUNDLE\tPEER\tLEAF\tREASON")
	for _, s := range recs {
		r := s.Record
		seq := "-"
		if r.FirstSeq != 0 || r.LastSeq != 0 {
			seq = fmt.Sprintf("%d..%d", r.FirstSeq, r.LastSeq)
		}
		leaf := "ok"
		if !s.Intact() {
			leaf = "MISMATCH"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, stamp(r.At), r.Node, r.Actor, r.Event, r.Result,
			dash(r.Lane), seq, dash(r.BundleID), dash(r.Peer), leaf, dash(oneLine(r.Reason)))
	}
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
