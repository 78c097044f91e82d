package postgres

import (
	"context"
	"embed"

	"github.com/jackc/pgx/v5"

	"github.com/hodei-jobs/hodei/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrationsTable records the applied migrations of the log tables. It is
// not the event store's es_migrations: the two schemas share a database and
// evolve independently.
const MigrationsTable = "job_log_migrations"

// schema is the log tables' migrations. The transaction advisory lock
// ("hodeils" + 1; the event store's keys differ) serialises concurrent
// migrations.
var schema = pgmigrate.Set{
	Files:   migrationFiles,
	Dir:     "migrations",
	Table:   MigrationsTable,
	LockKey: 0x686f6465696c7301,
	What:    "log tables' schema",
	PermissionHint: "the log tables are created by the role the DSN logs in as: " +
		"grant it CREATE on the schema, or start once with their owner",
}

// SchemaVersion is the version of the log tables this binary brings a
// database to.
func SchemaVersion() int { return schema.Version() }

// migrate brings the log tables of the database behind conn to the latest
// schema, recording each step in MigrationsTable.
func migrate(ctx context.Context, conn *pgx.Conn) error { return schema.Apply(ctx, conn) }
