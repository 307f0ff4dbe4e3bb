// Package coredb holds the core's schema: its own numbered, embedded migrations (bills,
// payments and receipts, durable tasks, console users and sessions) and, applied with them, the
// ferry's outbox and inbox tables, which live in the core's database.
package coredb

import (
	"context"
	"embed"
	"io/fs"

	"finepay/ferry/schema"
	"finepay/ferry/sqldb"
)

//go:embed migrations/*.sql
var files embed.FS

// Component is the name under which the core's migrations are recorded.
const Component = "core"

// Migrations returns the core's numbered migrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(files, "migrations")
	if err != nil {
		panic(err)
	}
	return sub
}

// Migrate applies the ferry's migrations and then the core's. It is idempotent.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	if err := schema.Migrate(ctx, db); err != nil {
		return err
	}
	return db.Migrate(ctx, Component, Migrations())
}
