package schema_test

import (
	"context"
	"testing"

	"finepay/ferry/schema"
	"finepay/ferry/sqldb"
	"finepay/ferry/sqldb/sqltest"
)

// The PostgreSQL-only migrations (0006, how the long digest columns are stored; 0007, the lane
// sequences) are applied on
// PostgreSQL and recorded without effect on SQLite, so both reach the same version and a second
// run changes nothing.
func TestMigrationsReachTheSameVersionOnBothEngines(t *testing.T) {
	sqltest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		sqltest.Must(t, schema.Migrate(ctx, db))
		sqltest.Must(t, schema.Migrate(ctx, db))
		var version, n int
		sqltest.Must(t, db.QueryRowContext(ctx, `SELECT max(version), count(*) FROM schema_migrations WHERE component = $1`, schema.Component).Scan(&version, &n))
		if version != 8 || n != 8 {
			t.Fatalf("at version %d with %d migrations recorded, want 8 and 8", version, n)
		}
		if db.Dialect != sqldb.Postgres {
			return
		}
		rows, err := db.QueryContext(ctx, `SELECT c.relname || '.' || a.attname, a.attcompression FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
			WHERE c.relname IN ('ferry_audit', 'ferry_audit_pending', 'ferry_evidence') AND a.attname IN ('digests', 'signed')`)
		sqltest.Must(t, err)
		defer rows.Close()
		seen := 0
		for rows.Next() {
			var col, method string
			sqltest.Must(t, rows.Scan(&col, &method))
			if method != "l" {
				t.Errorf("%s is compressed with %q, want lz4", col, method)
			}
			seen++
		}
		sqltest.Must(t, rows.Err())
		if seen != 4 {
			t.Fatalf("%d digest columns found, want 4", seen)
		}
	})
}
