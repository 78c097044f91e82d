package postgres

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
)

// CreateDatabase creates an empty database called name (a lower-case SQL
// identifier) through adminDSN, whose role needs CREATEDB, and returns
// adminDSN pointed at it. Tests, benchmarks and tools use it for scratch logs.
func CreateDatabase(ctx context.Context, adminDSN, name string) (string, error) {
	if !validIdent(name) {
		return "", fmt.Errorf("create database %q: want a lower-case SQL identifier", name)
	}
	dsn, err := WithDatabase(adminDSN, name)
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return dsn, nil
}

// DropDatabase drops database name through adminDSN, ending its sessions
// first. A missing database is not an error.
func DropDatabase(ctx context.Context, adminDSN, name string) error {
	if !validIdent(name) {
		return fmt.Errorf("drop database %q: want a lower-case SQL identifier", name)
	}
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// WithDatabase returns dsn (URL or keyword/value form) naming database name.
func WithDatabase(dsn, name string) (string, error) {
	if !validIdent(name) {
		return "", fmt.Errorf("database name %q: want a lower-case SQL identifier", name)
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse dsn: not a valid URL") // err would quote the password
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In keyword/value form the last setting of a key wins.
	return strings.TrimSpace(dsn) + " dbname=" + name, nil
}
