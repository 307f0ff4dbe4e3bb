package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"finepay/ferry/sqldb"
)

// status prints the outgoing lanes (backlog, oldest unacknowledged message, last acknowledgement,
// state), the incoming lanes (high-water mark, last bundle received, inbox pending) and the
// peer's state.
func status(ctx context.Context, db *sqldb.DB, out io.Writer) error {
	now := time.Now().UTC()
	lanes, err := lanesOut(ctx, db)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	printLanesOut(w, lanes, now)
	fmt.Fprintln(w, "\nPEER\tLANE IN\tHWM\tLAST RECEIVED\tPENDING")
	var lastIn time.Time
	err = eachRow(ctx, db, `SELECT l.peer, l.lane, l.hwm, l.updated_at,
		(SELECT count(*) FROM ferry_inbox i WHERE i.peer = l.peer AND i.lane = l.lane AND i.consumed_at IS NULL)
		FROM ferry_lane_in l ORDER BY l.peer, l.lane`, func(rows *sql.Rows) error {
		var peer, lane string
		var hwm, pending int64
		var updated time.Time
		if err := rows.Scan(&peer, &lane, &hwm, &updated, &pending); err != nil {
			return err
		}
		if updated.After(lastIn) {
			lastIn = updated.UTC()
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%d\n", peer, lane, hwm, when(now, updated), pending)
		return nil
	})
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	printPeer(out, lanes, lastIn, now)
	return nil
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
