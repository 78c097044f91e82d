// Package pgtest gives tests a real PostgreSQL server: the admin DSN from
// HODEI_TEST_POSTGRES_DSN, and fresh databases that are dropped when the test
// ends.
//
// With no DSN set, or no server reachable, tests skip with a loud message;
// under CI=true they fail instead, so CI cannot pass by skipping. Start a
// local server with
//
//	eval "$(bash .ci/postgres.sh)"
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable holding the admin DSN: a role that
// may create databases and roles (the superuser of the test cluster).
const EnvDSN = "HODEI_TEST_POSTGRES_DSN"

var (
	probeOnce sync.Once
	probeErr  error
	warnOnce  sync.Once
	seq       atomic.Int64
	runID     = randomHex(3)
)

// AdminDSN returns the admin DSN, or skips t (fails it under CI=true) when
// none is set or the server does not answer.
func AdminDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		unavailable(t, EnvDSN+" is not set")
		return ""
	}
	probeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			probeErr = err
			return
		}
		probeErr = conn.Ping(ctx)
		conn.Close(ctx)
	})
	if probeErr != nil {
		unavailable(t, fmt.Sprintf("no PostgreSQL server answers at %s: %v", EnvDSN, probeErr))
	}
	return dsn
}

func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL tests cannot run under CI=true: %s (start one with: eval \"$(bash .ci/postgres.sh)\")", why)
	}
	msg := strings.Repeat("*", 78) + "\n" +
		"*** SKIPPING PostgreSQL tests: " + why + "\n" +
		"*** Start a server with:  eval \"$(bash .ci/postgres.sh)\"\n" +
		strings.Repeat("*", 78)
	warnOnce.Do(func() { fmt.Fprintln(os.Stderr, msg) })
	t.Skip(msg)
}

// NewDatabase creates a uniquely named, empty database and returns a DSN for
// it (the admin role, so Open migrates it). The database is dropped, with its
// sessions ended, when t's test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := AdminDSN(t)
	name := fmt.Sprintf("hodei_t_%s_%d", runID, seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, err := postgres.CreateDatabase(ctx, admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := postgres.DropDatabase(ctx, admin, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return dsn
}

// Conn connects to dsn and closes the connection when t's test ends.
func Conn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// WithUser returns dsn logging in as user with password instead. A DSN that
// is not a URL skips the test: only URL DSNs carry a user to replace.
func WithUser(t testing.TB, dsn, user, password string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Skipf("needs a URL DSN: %v", err)
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}
