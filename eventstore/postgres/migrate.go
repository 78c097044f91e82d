package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/hodei-jobs/hodei/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// schema is the event store's migrations, recorded in es_migrations. The
// transaction advisory lock ("hodeies" + 2) serialises concurrent migrations
// of one database.
var schema = pgmigrate.Set{
	Files:   migrationFiles,
	Dir:     "migrations",
	Table:   "es_migrations",
	LockKey: 0x686f646569657302,
	What:    "database schema",
	PermissionHint: "the schema needs migrating and this role may not: " +
		"open once with an owner or superuser DSN in Options.MigrateDSN",
}

// SchemaVersion is the schema version this binary's migrations bring a
// database to.
func SchemaVersion() int { return schema.Version() }

// migrate brings the database behind dsn to the latest schema. When the
// schema is current it only reads es_migrations (the runtime role may);
// otherwise it needs a role that may create roles and tables and change their
// owner (a superuser, in practice). Concurrent migrations of one database
// serialize on an advisory lock.
func migrate(ctx context.Context, dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("parse dsn: %w", err)
	}
	cfg.RuntimeParams["application_name"] = "hodei-migrate"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	return schema.Apply(ctx, conn)
}

// checkSchema verifies, without changing anything, that the database behind
// dsn has exactly this binary's migrations.
func checkSchema(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := schema.Check(ctx, conn); err != nil {
		if errors.Is(err, pgmigrate.ErrBehind) {
			return fmt.Errorf("%w: open it once read-write to migrate", err)
		}
		return err
	}
	return nil
}
