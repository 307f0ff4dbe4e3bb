// Package schema holds the ferry's tables (outbox, inbox, lanes, audit), which live in the
// database of the service each ferryd serves. The service and its ferryd both apply them at
// start; Migrate is idempotent and safe to run concurrently.
package schema

import (
	"context"
	"embed"
	"io/fs"

	"finepay/ferry/sqldb"
)

//go:embed migrations/*.sql
var files embed.FS

// Component is the name under which the ferry's migrations are recorded.
const Component = "ferry"

// Migrations returns the ferry's numbered migrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(files, "migrations")
	if err != nil {
		panic(err)
	}
	return sub
}

// Migrate applies the ferry's migrations to db.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	return db.Migrate(ctx, Component, Migrations())
}
