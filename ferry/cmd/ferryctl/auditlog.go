package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/sqldb"
	"finepay/shared/gm"
)

// parseInterspersed parses fs from args, allowing positional arguments before, between and
// after the flags, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func loadCA(file string) (*gm.Certificate, error) {
	if file == "" {
		return nil, nil
	}
	return gm.LoadCertificate(file)
}

// auditExport writes a segment of the log to a folder, verifies what it wrote, and records the
// export (which lets purge remove those records once they are past the retention).
func (g globals) auditExport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("out", "", "folder to write (created; must be empty)")
	from := fs.Int64("from", 0, "first record ID (default: the first not purged)")
	to := fs.Int64("to", 0, "last record ID (default: the latest checkpoint's size)")
	origin := fs.String("origin", "", "whose checkpoints (default: the origin of the latest)")
	caFile := fs.String("ca", "", "CA certificate to ship (default: the signer's issuer as ferryd kept it)")
	consistencyFrom := fs.Int64("consistency-from", 0, "add a consistency proof from the tree of this many records (an auditor's earlier checkpoint before -from)")
	const use = "audit export -out DIR [-from N] [-to N] [-origin NAME] [-ca FILE] [-consistency-from N]"
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *out == "" || *from < 0 || *to < 0 {
		return fmt.Errorf("%w: %s", errUsage, use)
	}
	ca, err := loadCA(*caFile)
	if err != nil {
		return err
	}
	return g.withDB(ctx, func(db *sqldb.DB) error {
		log := audit.New(audit.Config{DB: db, Node: g.node, Actor: g.actor})
		if err := log.Record(ctx, audit.Record{Event: audit.AdminPrefix + "audit-export", Result: audit.OK,
			Reason: "ferryctl audit " + strings.Join(args, " ")}); err != nil {
			return err
		}
		m, err := audit.Export(ctx, db, *out, audit.ExportOptions{Origin: *origin, First: *from, Last: *to, ConsistencyFrom: *consistencyFrom, CA: ca})
		if err != nil {
			return err
		}
		rep, err := audit.Verify(*out, audit.VerifyOptions{CA: ca})
		if err != nil {
			return fmt.Errorf("%w: exported to %s, but the segment does not verify, so it is not recorded as exported (purge keeps its records): %v",
				errCheck, *out, err)
		}
		if err := audit.RecordExport(ctx, db, m, *out, g.actor, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "exported records %d..%d of %s (%d records, %d checkpoints, %s) to %s\n", m.First, m.Last, m.Origin,
			m.Last-m.First+1, len(m.Checkpoints), m.Hash, *out)
		fmt.Fprintf(g.stdout, "covering checkpoint: %d records, root %x, %s\n", rep.Latest.Size, rep.Latest.Root, rep.Latest.Time.Format(time.RFC3339))
		fmt.Fprintln(g.stdout, "verified: OK")
		return nil
	})
}

// auditVerify checks an exported segment offline.
func auditVerify(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	caFile := fs.String("ca", "", "the CA certificate you trust (default: the export's own ca.pem, which only shows self-consistency)")
	trustedFile := fs.String("trusted-checkpoint", "", "a checkpoint you accepted before (an earlier export's checkpoint.txt): the log must extend it")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return fmt.Errorf("%w: audit verify [-ca FILE] [-trusted-checkpoint FILE] DIR", errUsage)
	}
	ca, err := loadCA(*caFile)
	if err != nil {
		return err
	}
	var trusted []byte
	if *trustedFile != "" {
		if trusted, err = os.ReadFile(*trustedFile); err != nil {
			return err
		}
	}
	rep, err := audit.Verify(pos[0], audit.VerifyOptions{CA: ca, Trusted: trusted})
	if err != nil {
		if errors.Is(err, audit.ErrSegment) {
			return fmt.Errorf("%w: %s: %v", errCheck, pos[0], err)
		}
		return err
	}
	fmt.Fprintf(out, "segment: %s records %d..%d (%d records), hash %s\n", rep.Origin, rep.First, rep.Last, rep.Last-rep.First+1, rep.Hash)
	anchor := "given by -ca"
	if rep.CAFromExport {
		anchor = "the export's own ca.pem: give -ca with the CA you trust"
	}
	fmt.Fprintf(out, "signing certificates: %s, issued by %s (%s): OK\n", strings.Join(rep.Signers, ", "), rep.CA, anchor)
	fmt.Fprintf(out, "checkpoints: %d signatures OK, each root recomputed from the records: OK\n", rep.Checkpoints)
	fmt.Fprintf(out, "records: IDs contiguous, times in order, required fields present, leaf hashes match: OK\n")
	fmt.Fprintf(out, "latest checkpoint: %d records, root %x, %s\n", rep.Latest.Size, rep.Latest.Root, rep.Latest.Time.Format(time.RFC3339))
	if rep.Trusted != nil {
		fmt.Fprintf(out, "trusted checkpoint of %d records: the log extends it: OK\n", rep.Trusted.Size)
	}
	fmt.Fprintln(out, "OK")
	return nil
}

// auditPurge removes records older than the retention that an export covers.
func (g globals) auditPurge(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("audit purge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	beforeFlag := fs.String("before", "", "purge records stamped before this date (YYYY-MM-DD, UTC midnight, or RFC 3339); never inside the retention")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *beforeFlag == "" {
		return fmt.Errorf("%w: audit purge -before DATE", errUsage)
	}
	before, err := time.Parse("2006-01-02", *beforeFlag)
	if err != nil {
		if before, err = time.Parse(time.RFC3339, *beforeFlag); err != nil {
			return fmt.Errorf("%w: -before %q: want YYYY-MM-DD or RFC 3339", errUsage, *beforeFlag)
		}
	}
	return g.withDB(ctx, func(db *sqldb.DB) error {
		now := time.Now()
		log := audit.New(audit.Config{DB: db, Node: g.node, Actor: g.actor})
		plan, perr := audit.PurgePlan(ctx, db, before, now)
		if perr != nil && !errors.Is(perr, audit.ErrNotExported) {
			return perr
		}
		rec := audit.Record{Event: audit.AdminPrefix + "audit-purge", Result: audit.OK,
			Reason: fmt.Sprintf("ferryctl audit purge -before %s: records %d..%d before %s", *beforeFlag, plan.From, plan.To, plan.Cutoff.Format(time.RFC3339))}
		if perr != nil {
			rec.Result, rec.Reason = audit.Rejected, rec.Reason+": "+perr.Error()
		}
		if err := log.Record(ctx, rec); err != nil {
			return err
		}
		if perr != nil {
			return fmt.Errorf("%w: %v", errCheck, perr)
		}
		if plan.Clamped {
			fmt.Fprintf(g.stdout, "records inside the retention are kept: purging before %s\n", plan.Cutoff.Format(time.RFC3339))
		}
		res, err := audit.Purge(ctx, db, before, now)
		if err != nil {
			return err
		}
		if res.To < res.From {
			fmt.Fprintln(g.stdout, "nothing to purge")
			return nil
		}
		fmt.Fprintf(g.stdout, "purged records %d..%d (%d); their leaf hashes are kept, so the log still verifies\n", res.From, res.To, res.To-res.From+1)
		return nil
	})
}
