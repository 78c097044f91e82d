package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/logstore/logstoretest"
	"github.com/hodei-jobs/hodei/logstore/postgres"
)

// open opens a store on dsn; the caller closes it.
func open(t testing.TB, dsn string, opts postgres.Options) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	return s
}

// The PostgreSQL store passes the conformance suite, each test on a fresh
// database.
func TestConformance(t *testing.T) {
	dsns := map[logstore.Logs]string{}
	logstoretest.Run(t, logstoretest.Harness{
		Open: func(t testing.TB, limit int64) logstore.Logs {
			dsn := pgtest.NewDatabase(t)
			s := open(t, dsn, postgres.Options{MaxBytesPerAttempt: limit})
			dsns[s] = dsn
			return s
		},
		Reopen: func(t testing.TB, s logstore.Logs, limit int64) logstore.Logs {
			if err := s.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			s2 := open(t, dsns[s], postgres.Options{MaxBytesPerAttempt: limit})
			dsns[s2] = dsns[s]
			return s2
		},
	})
}

// drain reads c to its end; the bytes and the ending arrive on the channel.
func drain(c logstore.Cursor) <-chan followResult {
	out := make(chan followResult, 1)
	go func() {
		defer c.Close()
		var got []byte
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				out <- followResult{got, err}
				return
			}
		}
	}()
	return out
}

type followResult struct {
	data []byte
	err  error
}

func await(t testing.TB, ch <-chan followResult) followResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(logstoretest.Deadline):
		t.Fatalf("follower did not end within %v", logstoretest.Deadline)
		return followResult{}
	}
}

// A follower in one process sees another process's appends: woken by
// NOTIFY (its poll interval is far longer than the test).
func TestFollowAcrossProcessesByNotify(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	writer := open(t, dsn, postgres.Options{})
	defer writer.Close()
	reader := open(t, dsn, postgres.Options{PollInterval: time.Hour})
	defer reader.Close()
	c, err := reader.Follow(context.Background(), "x", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	res := drain(c)
	data := logstoretest.RandomBytes(1, 50000)
	for off := 0; off < len(data); off += 5000 {
		if _, err := writer.Append("x", 1, uint64(off), data[off:off+5000]); err != nil {
			t.Fatal(err)
		}
	}
	if err := writer.Finish("x", 1, uint64(len(data)), logstoretest.CRC(data)); err != nil {
		t.Fatal(err)
	}
	if r := await(t, res); r.err != io.EOF || !bytes.Equal(r.data, data) {
		t.Errorf("follower in another process: %d bytes, %v; want %d, io.EOF", len(r.data), r.err, len(data))
	}
}

// Without any notification (rows written behind the store's back) a
// follower still sees new bytes, by polling.
func TestFollowPollsWithoutNotify(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn, postgres.Options{PollInterval: 20 * time.Millisecond})
	defer s.Close()
	if _, err := s.Append("p", 1, 0, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	c, err := s.Follow(context.Background(), "p", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	res := drain(c)
	conn := pgtest.Conn(t, dsn)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `INSERT INTO job_log_chunks (job_id, attempt, off, data) VALUES ('p', 1, 3, 'def')`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE job_logs SET size = 6, received = 6, finished_at = now(), sealed = true WHERE job_id = 'p'`); err != nil {
		t.Fatal(err)
	}
	if r := await(t, res); r.err != io.EOF || string(r.data) != "def" {
		t.Errorf("follower = %q, %v; want \"def\", io.EOF", r.data, r.err)
	}
}

// Two stores writing one log (a failover with the old server still up)
// never corrupt it: a store whose cached state is stale rereads the row.
func TestTwoWritersOneLog(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := open(t, dsn, postgres.Options{})
	defer a.Close()
	b := open(t, dsn, postgres.Options{})
	defer b.Close()
	data := logstoretest.RandomBytes(2, 300)
	for i, s := range []*postgres.Store{a, b, a, b, a, a, b} {
		off := uint64(i * 40)
		ack, err := s.Append("w", 1, off, data[off:off+50]) // overlaps the next chunk
		if err != nil || ack != off+50 {
			t.Fatalf("Append #%d = %d, %v; want %d", i, ack, err, off+50)
		}
	}
	if _, err := a.Append("w", 1, 400, []byte("x")); !errors.Is(err, logstore.ErrGap) {
		t.Errorf("Append(beyond the end) = %v, want ErrGap", err)
	}
	if err := b.Finish("w", 1, 290, logstoretest.CRC(data[:290])); err != nil {
		t.Fatalf("Finish() = %v", err)
	}
	if _, err := a.Append("w", 1, 290, []byte("late")); !errors.Is(err, logstore.ErrFinished) {
		t.Errorf("Append(after the other store finished) = %v, want ErrFinished", err)
	}
	if got := logstoretest.ReadAll(t, a, "w", 1); !bytes.Equal(got, data[:290]) {
		t.Errorf("log = %d bytes, want the %d written", len(got), 290)
	}
}

// The log tables have their own migration record, beside the event store's.
func TestSchema(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	open(t, dsn, postgres.Options{}).Close()
	open(t, dsn, postgres.Options{}).Close() // a second Open finds the schema current
	conn := pgtest.Conn(t, dsn)
	var n int
	var name string
	if err := conn.QueryRow(context.Background(), "SELECT count(*), max(name) FROM "+postgres.MigrationsTable).Scan(&n, &name); err != nil {
		t.Fatal(err)
	}
	if n != postgres.SchemaVersion() || name != "0001_init.sql" {
		t.Errorf("%s holds %d rows (last %q), want %d", postgres.MigrationsTable, n, name, postgres.SchemaVersion())
	}
	if _, err := conn.Exec(context.Background(), "UPDATE "+postgres.MigrationsTable+" SET checksum = '\\x00'"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s, err := postgres.Open(ctx, dsn, postgres.Options{}); err == nil || !strings.Contains(err.Error(), "edited after it was applied") {
		if s != nil {
			s.Close()
		}
		t.Errorf("Open(edited migration) = %v, want an error naming the edit", err)
	}
	if _, err := postgres.Open(ctx, "postgres://%zz", postgres.Options{}); err == nil {
		t.Error("Open(bad dsn) = nil")
	}
}

// TestRuntimeLogin runs the store as a login that is only a member of
// hodei_writer, on tables a superuser created (the README's production
// setup), and checks the hint on a fresh database it may not create tables
// in.
func TestRuntimeLogin(t *testing.T) {
	admin := pgtest.AdminDSN(t)
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ac := pgtest.Conn(t, admin)
	// The event store's migration creates the role; tolerate that it exists.
	if _, err := ac.Exec(ctx, `DO $$ BEGIN CREATE ROLE hodei_writer NOLOGIN;
		EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`); err != nil {
		t.Fatal(err)
	}
	login := fmt.Sprintf("hodei_logs_app_%d", time.Now().UnixNano()%1e9)
	if _, err := ac.Exec(ctx, "CREATE ROLE "+login+" LOGIN PASSWORD 'app-secret' IN ROLE hodei_writer"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ac.Exec(context.Background(), "DROP ROLE IF EXISTS "+login) })

	open(t, dsn, postgres.Options{}).Close() // the superuser creates the tables
	s := open(t, pgtest.WithUser(t, dsn, login, "app-secret"), postgres.Options{})
	defer s.Close()
	if _, err := s.Append("j", 1, 0, []byte("hello")); err != nil {
		t.Fatalf("Append() as %s = %v", login, err)
	}
	c, err := s.Follow(ctx, "j", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	res := drain(c)
	if err := s.Finish("j", 1, 5, logstoretest.CRC([]byte("hello"))); err != nil {
		t.Fatalf("Finish() as %s = %v", login, err)
	}
	if r := await(t, res); string(r.data) != "hello" || r.err != io.EOF {
		t.Errorf("follower as %s = %q, %v", login, r.data, r.err)
	}
	if err := s.Seal("j", 2); err != nil {
		t.Fatalf("Seal() as %s = %v", login, err)
	}
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync() as %s = %v", login, err)
	}

	fresh := pgtest.WithUser(t, pgtest.NewDatabase(t), login, "app-secret")
	if _, err := postgres.Open(ctx, fresh, postgres.Options{}); err == nil || !strings.Contains(err.Error(), "CREATE on the schema") {
		t.Fatalf("Open() of a fresh database as %s = %v, want a hint to grant CREATE", login, err)
	}
}
