// Package pgmigrate applies embedded, versioned SQL migrations to a
// PostgreSQL database and records each one, with its checksum, in a table of
// the caller's choosing. The event store and the job log store each keep
// their own set (and table) in one database and evolve independently.
//
// Migration files are named NNNN_name.sql, numbered densely from 1. A set
// is applied in one transaction under a transaction advisory lock, so
// concurrent starts serialise and a failed step leaves nothing behind. A
// recorded migration whose file changed, or a database newer than the
// binary, is an error: released migrations are never edited.
package pgmigrate

import (
	"bytes"
	"context"
	"crypto/sha256"
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

// ErrBehind says the database lacks some of the set's migrations.
var ErrBehind = errors.New("schema behind")

// Set is one schema's migrations and where they are recorded.
type Set struct {
	// Files holds the migrations in the directory Dir.
	Files fs.FS
	Dir   string
	// Table records the applied migrations (version, name, checksum,
	// applied_at); a plain SQL identifier.
	Table string
	// LockKey is the transaction advisory lock the set applies under.
	LockKey int64
	// What names the schema in errors, e.g. "database schema".
	What string
	// PermissionHint is added to an error of a role that may not change the
	// schema (SQLSTATE 42501): what to do instead.
	PermissionHint string
}

// Migration is one schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
	Sum     [32]byte
}

// Migrations returns the set's migrations in version order. Versions must
// be dense from 1.
func (s Set) Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(s.Files, s.Dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || rest == "" || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(s.Files, path.Join(s.Dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b), Sum: sha256.Sum256(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (versions are dense from 1)", m.Name, m.Version, i+1)
		}
	}
	return out, nil
}

// Version is the schema version the set brings a database to, 0 if the set
// is malformed.
func (s Set) Version() int {
	ms, err := s.Migrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

// Apply brings the database behind conn to the set's latest version. When
// it is current Apply only reads Table; otherwise it needs a role that may
// run the migrations.
func (s Set) Apply(ctx context.Context, conn *pgx.Conn) error {
	all, err := s.Migrations()
	if err != nil {
		return err
	}
	done, err := s.applied(ctx, conn)
	if err != nil {
		return err
	}
	if len(done) == len(all) {
		return s.compare(done, all)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.LockKey); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.Table+` (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		checksum   bytea       NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return s.hint(fmt.Errorf("create %s: %w", s.Table, err))
	}
	if done, err = s.applied(ctx, tx); err != nil {
		return err
	}
	if err := s.compare(done, all); err != nil && !errors.Is(err, ErrBehind) {
		return err
	}
	for _, m := range all[len(done):] {
		if err := tx.Conn().PgConn().Exec(ctx, m.SQL).Close(); err != nil {
			return s.hint(fmt.Errorf("apply %s: %w", m.Name, err))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+s.Table+" (version, name, checksum) VALUES ($1, $2, $3)",
			m.Version, m.Name, m.Sum[:]); err != nil {
			return fmt.Errorf("record %s: %w", m.Name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Check verifies, changing nothing, that the database behind q has exactly
// the set's migrations. It returns the number applied; an error wrapping
// ErrBehind when some are missing.
func (s Set) Check(ctx context.Context, q Queryer) (int, error) {
	all, err := s.Migrations()
	if err != nil {
		return 0, err
	}
	done, err := s.applied(ctx, q)
	if err != nil {
		return 0, err
	}
	if err := s.compare(done, all); err != nil {
		if errors.Is(err, ErrBehind) {
			return len(done), fmt.Errorf("%s at version %d, this binary needs %d: %w", s.What, len(done), len(all), err)
		}
		return len(done), err
	}
	return len(done), nil
}

type applied struct {
	version int
	sum     []byte
}

// compare checks the recorded migrations against the embedded ones: each
// recorded one must be known, in order, and unchanged.
func (s Set) compare(done []applied, all []Migration) error {
	for i, a := range done {
		if i >= len(all) || a.version != all[i].Version {
			return fmt.Errorf("%s is at version %d, newer than this binary's %d: run a newer hodei",
				s.What, done[len(done)-1].version, len(all))
		}
		if !bytes.Equal(a.sum, all[i].Sum[:]) {
			return fmt.Errorf("migration %s was edited after it was applied (checksum differs): released migrations must never change",
				all[i].Name)
		}
	}
	if len(done) < len(all) {
		return ErrBehind
	}
	return nil
}

// Queryer is what Check reads through: a connection, a pool or a
// transaction.
type Queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// applied returns the recorded migrations, none when Table does not exist.
func (s Set) applied(ctx context.Context, q Queryer) ([]applied, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.Table).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Table, err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := q.Query(ctx, "SELECT version, checksum FROM "+s.Table+" ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Table, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (applied, error) {
		var a applied
		err := r.Scan(&a.version, &a.sum)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Table, err)
	}
	return out, nil
}

// hint adds PermissionHint to a permission error.
func (s Set) hint(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" && s.PermissionHint != "" {
		return fmt.Errorf("%w (%s)", err, s.PermissionHint)
	}
	return err
}
