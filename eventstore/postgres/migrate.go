package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateLockKey is the transaction advisory lock that serializes concurrent
// migrations of one database ("hodeies" + 2).
const migrateLockKey int64 = 0x686f646569657302

// migration is one embedded schema change, migrations/NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
	sum     [32]byte
}

// migrations returns the embedded migrations in version order. Versions are
// dense from 1; a malformed set is a build error caught by the tests.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || rest == "" {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", name)
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", name))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(b), sum: sha256.Sum256(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (versions are dense from 1)", m.name, m.version, i+1)
		}
	}
	return out, nil
}

// SchemaVersion is the schema version this binary's migrations bring a
// database to.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

type appliedMigration struct {
	version int
	name    string
	sum     []byte
}

// migrate brings the database behind dsn to the latest schema. When the
// schema is current it only reads es_migrations (the runtime role may);
// otherwise it needs a role that may create roles and tables and change their
// owner (a superuser, in practice). Concurrent migrations of one database
// serialize on an advisory lock.
func migrate(ctx context.Context, dsn string) error {
	all, err := migrations()
	if err != nil {
		return err
	}
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

	applied, err := readApplied(ctx, conn)
	if err != nil {
		return err
	}
	if len(applied) == len(all) {
		return checkApplied(applied, all)
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS es_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		checksum   bytea       NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return permissionHint(fmt.Errorf("create es_migrations: %w", err))
	}
	if applied, err = readApplied(ctx, tx); err != nil {
		return err
	}
	if err := checkApplied(applied, all); err != nil && !errors.Is(err, errBehind) {
		return err
	}
	for _, m := range all[len(applied):] {
		if err := tx.Conn().PgConn().Exec(ctx, m.sql).Close(); err != nil {
			return permissionHint(fmt.Errorf("apply %s: %w", m.name, err))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO es_migrations (version, name, checksum) VALUES ($1, $2, $3)",
			m.version, m.name, m.sum[:]); err != nil {
			return fmt.Errorf("record %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// checkSchema verifies, without changing anything, that the database behind
// dsn has exactly this binary's migrations.
func checkSchema(ctx context.Context, dsn string) error {
	all, err := migrations()
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	applied, err := readApplied(ctx, conn)
	if err != nil {
		return err
	}
	if err := checkApplied(applied, all); err != nil {
		if errors.Is(err, errBehind) {
			return fmt.Errorf("schema at version %d, this binary needs %d: open it once read-write to migrate", len(applied), len(all))
		}
		return err
	}
	return nil
}

// errBehind says the database lacks some of this binary's migrations.
var errBehind = errors.New("schema behind")

// checkApplied compares the recorded migrations with the embedded ones: each
// recorded one must be known, in order, and unchanged.
func checkApplied(applied []appliedMigration, all []migration) error {
	for i, a := range applied {
		if i >= len(all) || a.version != all[i].version {
			return fmt.Errorf("database schema is at version %d, newer than this binary's %d: run a newer hodei",
				applied[len(applied)-1].version, len(all))
		}
		if !bytes.Equal(a.sum, all[i].sum[:]) {
			return fmt.Errorf("migration %s was edited after it was applied (checksum differs): released migrations must never change",
				all[i].name)
		}
	}
	if len(applied) < len(all) {
		return errBehind
	}
	return nil
}

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readApplied returns the recorded migrations, none when es_migrations does
// not exist yet.
func readApplied(ctx context.Context, q queryer) ([]appliedMigration, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass('es_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("read es_migrations: %w", err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := q.Query(ctx, "SELECT version, name, checksum FROM es_migrations ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("read es_migrations: %w", err)
	}
	var out []appliedMigration
	for rows.Next() {
		var a appliedMigration
		if err := rows.Scan(&a.version, &a.name, &a.sum); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read es_migrations: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read es_migrations: %w", err)
	}
	return out, nil
}

// permissionHint adds what to do when the connection may not change the schema.
func permissionHint(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return fmt.Errorf("%w (the schema needs migrating and this role may not: open once with an owner or superuser DSN in Options.MigrateDSN)", err)
	}
	return err
}
