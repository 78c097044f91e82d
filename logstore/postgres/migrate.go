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

// MigrationsTable records the applied migrations of the log tables. It is
// not the event store's es_migrations: the two schemas share a database and
// evolve independently.
const MigrationsTable = "job_log_migrations"

// migrateLockKey is the transaction advisory lock that serialises concurrent
// migrations of the log tables ("hodeils" + 1; the event store's keys differ).
const migrateLockKey int64 = 0x686f6465696c7301

type migration struct {
	version int
	name    string
	sql     string
	sum     [32]byte
}

// migrations returns the embedded migrations in version order; versions are
// dense from 1.
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

// SchemaVersion is the version of the log tables this binary brings a
// database to.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

type applied struct {
	version int
	sum     []byte
}

// migrate brings the log tables of the database behind conn to the latest
// schema, recording each step in MigrationsTable. Concurrent migrations
// serialise on an advisory lock.
func migrate(ctx context.Context, conn *pgx.Conn) error {
	all, err := migrations()
	if err != nil {
		return err
	}
	done, err := readApplied(ctx, conn)
	if err != nil {
		return err
	}
	if len(done) == len(all) {
		return checkApplied(done, all)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+MigrationsTable+` (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		checksum   bytea       NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return permissionHint(fmt.Errorf("create %s: %w", MigrationsTable, err))
	}
	if done, err = readApplied(ctx, tx); err != nil {
		return err
	}
	if err := checkApplied(done, all); err != nil && !errors.Is(err, errBehind) {
		return err
	}
	for _, m := range all[len(done):] {
		if err := tx.Conn().PgConn().Exec(ctx, m.sql).Close(); err != nil {
			return permissionHint(fmt.Errorf("apply %s: %w", m.name, err))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+MigrationsTable+" (version, name, checksum) VALUES ($1, $2, $3)",
			m.version, m.name, m.sum[:]); err != nil {
			return fmt.Errorf("record %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

var errBehind = errors.New("schema behind")

// checkApplied compares the recorded migrations with the embedded ones.
func checkApplied(done []applied, all []migration) error {
	for i, a := range done {
		if i >= len(all) || a.version != all[i].version {
			return fmt.Errorf("log tables are at schema version %d, newer than this binary's %d: run a newer hodei",
				done[len(done)-1].version, len(all))
		}
		if !bytes.Equal(a.sum, all[i].sum[:]) {
			return fmt.Errorf("migration %s was edited after it was applied (checksum differs): released migrations must never change",
				all[i].name)
		}
	}
	if len(done) < len(all) {
		return errBehind
	}
	return nil
}

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readApplied(ctx context.Context, q queryer) ([]applied, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", MigrationsTable).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read %s: %w", MigrationsTable, err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := q.Query(ctx, "SELECT version, checksum FROM "+MigrationsTable+" ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", MigrationsTable, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (applied, error) {
		var a applied
		err := r.Scan(&a.version, &a.sum)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", MigrationsTable, err)
	}
	return out, nil
}

// permissionHint says what to do when the role may not create the tables.
func permissionHint(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return fmt.Errorf("%w (the log tables are created by the role the DSN logs in as: grant it CREATE on the schema, or start once with their owner)", err)
	}
	return err
}
