package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"finepay/ferry/audit"
	"finepay/ferry/bundle"
	"finepay/ferry/evidence"
	"finepay/ferry/sqldb"
)

// prove prints and checks the evidence for one message: the bundle that carried it, the
// sender's signature, when it was received, and the receiver's signed acknowledgement. With
// -out it also writes the signed bytes, signatures and certificates for standard tools.
func (g globals) prove(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("prove", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	caFile := fs.String("ca", "", "the CA certificate you trust (default: the issuer ferryd kept with each certificate)")
	origin := fs.String("origin", "", "whose audit checkpoints to check the bundle's audit records in (default: the latest of any)")
	outDir := fs.String("out", "", "also write the evidence as files for openssl to this folder (created)")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return fmt.Errorf("%w: prove [-ca FILE] [-origin NAME] [-out DIR] MESSAGE_ID", errUsage)
	}
	ca, err := loadCA(*caFile)
	if err != nil {
		return err
	}
	id := pos[0]
	return g.withDB(ctx, func(db *sqldb.DB) error {
		log := audit.New(audit.Config{DB: db, Node: g.node, Actor: g.actor})
		if err := log.Record(ctx, audit.Record{Event: audit.AdminPrefix + "prove", Result: audit.OK, Reason: "ferryctl prove " + id}); err != nil {
			return err
		}
		p, err := evidence.Prove(ctx, db, id, evidence.ProveOptions{CA: ca, Origin: *origin})
		if err != nil {
			return fmt.Errorf("%w: %v", errCheck, err)
		}
		printProof(g.stdout, p)
		if *outDir != "" {
			if err := writeEvidence(*outDir, p); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "evidence files written to %s (see ferry/README.md for the openssl commands)\n", *outDir)
		}
		if !p.OK() {
			return fmt.Errorf("%w: the evidence for %s does not hold (see the FAILED lines)", errCheck, id)
		}
		return nil
	})
}

func printProof(out io.Writer, p *evidence.Proof) {
	h := p.Header
	side := "this ferry received it"
	if p.Role == evidence.Sent {
		side = "this ferry sent it"
	}
	fmt.Fprintf(out, "message %s: lane %s, sequence %d, SM3 %s (%s)\n", p.MessageID, h.Lane, p.Seq, dash(p.Digest), side)
	fmt.Fprintf(out, "bundle %s: %s → %s, sequences %d..%d (%d messages), created %s\n", dash(h.BundleID), h.From, h.To,
		h.FirstSeq, h.LastSeq, h.Count(), h.Created.Format(time.RFC3339Nano))
	if p.Role == evidence.Received {
		fmt.Fprintf(out, "received: %s, by %s\n", p.At.Format(time.RFC3339Nano), h.To)
	} else {
		fmt.Fprintf(out, "sent: %s; received: %s, as the receiver's acknowledgement states\n", p.At.Format(time.RFC3339Nano), ackTime(p))
	}
	for _, c := range p.Checks {
		verdict := "OK"
		if !c.OK {
			verdict = "FAILED"
		}
		fmt.Fprintf(out, "%s: %s", c.What, verdict)
		if c.Detail != "" {
			fmt.Fprintf(out, ": %s", c.Detail)
		}
		fmt.Fprintln(out)
	}
	if p.OK() {
		fmt.Fprintln(out, "proof: OK")
	} else {
		fmt.Fprintln(out, "proof: FAILED")
	}
}

func ackTime(p *evidence.Proof) string {
	if p.AckRaw == nil || p.Ack.At.IsZero() {
		return "not acknowledged yet"
	}
	return p.Ack.At.Format(time.RFC3339Nano)
}

// writeEvidence writes what an auditor needs to check the proof with openssl: the bundle's
// signed bytes and signature, the acknowledgement's, and both certificates.
func writeEvidence(dir string, p *evidence.Proof) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	files := map[string][]byte{"bundle.signed": p.Signed, "bundle.sig": p.Signature}
	if p.Sender != nil {
		files["sender.pem"] = p.Sender.PEM()
	}
	if p.AckRaw != nil {
		if a, err := bundle.ParseAck(p.AckRaw); err == nil {
			files["ack.signed"], files["ack.sig"] = a.Signed, a.Signature
		}
	}
	if p.Receiver != nil {
		files["receiver.pem"] = p.Receiver.PEM()
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
			return err
		}
	}
	return nil
}
