package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"finepay/ferry/outbox"
	"finepay/ferry/sqldb"
)

// status prints the outgoing lanes, the incoming lanes and what the inbox holds unconsumed.
func status(ctx context.Context, db *sqldb.DB, out io.Writer) error {
	lanes, err := outbox.Lanes(ctx, db)
	if err != nil {
		return err
	}
	acked, err := ackedAt(ctx, db)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LANE OUT\tLAST\tACKED\tBACKLOG\tACKED AT")
	for _, l := range lanes {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\n", l.Lane, l.LastSeq, l.AckedSeq, l.Backlog(), acked[l.Lane])
	}
	fmt.Fprintln(w, "\nPEER\tLANE IN\tHWM\tUPDATED\tPENDING")
	err = eachRow(ctx, db, `SELECT l.peer, l.lane, l.hwm, l.updated_at,
		(SELECT count(*) FROM ferry_inbox i WHERE i.peer = l.peer AND i.lane = l.lane AND i.consumed_at IS NULL)
		FROM ferry_lane_in l ORDER BY l.peer, l.lane`, func(rows *sql.Rows) error {
		var peer, lane string
		var hwm, pending int64
		var updated time.Time
		if err := rows.Scan(&peer, &lane, &hwm, &updated, &pending); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%d\n", peer, lane, hwm, stamp(updated), pending)
		return nil
	})
	if err != nil {
		return err
	}
	return w.Flush()
}

func ackedAt(ctx context.Context, db *sqldb.DB) (map[string]string, error) {
	out := map[string]string{}
	err := eachRow(ctx, db, `SELECT lane, acked_at FROM ferry_lane_out`, func(rows *sql.Rows) error {
		var lane string
		var at sql.NullTime
		if err := rows.Scan(&lane, &at); err != nil {
			return err
		}
		out[lane] = "-"
		if at.Valid {
			out[lane] = stamp(at.Time)
		}
		return nil
	})
	return out, err
}

func eachRow(ctx context.Context, db *sqldb.DB, query string, f func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := f(rows); err != nil {
			return fmt.Errorf("status: %w", err)
		}
	}
	return rows.Err()
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
