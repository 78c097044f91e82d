package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/eventstoretest"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
)

// open opens a store on dsn and closes it when the test ends.
func open(t testing.TB, dsn string, opts postgres.Options) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	pgtest.AdminDSN(t)
	eventstoretest.Run(t, eventstoretest.Harness{
		Open: func(t testing.TB) eventstore.Store {
			return open(t, pgtest.NewDatabase(t), postgres.Options{})
		},
		Reopen: func(t testing.TB, s eventstore.Store) eventstore.Store {
			ps := s.(*postgres.Store)
			if err := ps.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			return open(t, ps.DSN(), ps.Opts())
		},
		SetBeforeCommit: func(s eventstore.Store, fn func() error) { s.(*postgres.Store).SetBeforeCommit(fn) },
		LargeEvents:     200_000,
	})
}

// TestCommitterLock: a second store on the same database either fails
// clearly (the default) or waits as a standby: it reads, its subscriptions
// follow the other process's appends, its appends wait, and it takes over
// when the first store goes away.
func TestCommitterLock(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := open(t, dsn, postgres.Options{})
	if _, err := a.Append(ctx, "job-1", eventstore.NoStream, []eventstore.EventData{newEvent(1)}); err != nil {
		t.Fatal(err)
	}

	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open() while another store holds the committer lock succeeded")
	}
	if !errors.Is(err, postgres.ErrLockHeld) || !strings.Contains(err.Error(), "hodei-committer") {
		t.Fatalf("Open() while the lock is held = %v, want ErrLockHeld naming the holder", err)
	}

	// A standby whose subscriptions never poll: only NOTIFY can wake them.
	b := open(t, dsn, postgres.Options{Standby: true, LockPollInterval: 20 * time.Millisecond, PollInterval: time.Hour})
	if b.CommitterPID() != 0 {
		t.Fatal("the standby holds the committer lock")
	}
	if head, err := b.Head(ctx); err != nil || head.Position != 1 {
		t.Fatalf("standby Head() = %+v, %v; want position 1", head, err)
	}
	sub := b.Subscribe(1)
	defer sub.Close()
	next := make(chan []eventstore.Envelope, 1)
	go func() {
		batch, err := sub.Next(ctx)
		if err != nil {
			t.Errorf("standby Next() = %v", err)
		}
		next <- batch
	}()
	if _, err := a.Append(ctx, "job-1", eventstore.Exact(1), []eventstore.EventData{newEvent(2)}); err != nil {
		t.Fatal(err)
	}
	if batch := <-next; len(batch) != 1 || batch[0].Position != 2 {
		t.Fatalf("standby subscription got %+v, want position 2 (woken by NOTIFY)", batch)
	}

	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = b.Append(short, "job-2", eventstore.NoStream, []eventstore.EventData{newEvent(3)})
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("standby Append() while the lock is held = %v, want it to wait until its deadline", err)
	}

	waiting := make(chan error, 1)
	go func() {
		res, err := b.Append(ctx, "job-2", eventstore.NoStream, []eventstore.EventData{newEvent(4)})
		if err == nil && res.FirstPosition != 3 {
			err = fmt.Errorf("result %+v, want position 3", res)
		}
		waiting <- err
	}()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil {
		t.Fatalf("standby Append() after the committer closed = %v", err)
	}
	if b.CommitterPID() == 0 {
		t.Fatal("the standby did not take the committer lock")
	}
	if got := readAll(t, b); len(got) != 3 {
		t.Fatalf("log holds %d events, want 3 (the timed-out append must not be written)", len(got))
	}
}

func TestMigrations(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := open(t, dsn, postgres.Options{})
	s.Close()
	s = open(t, dsn, postgres.Options{}) // migrated already: nothing to do
	s.Close()
	admin := pgtest.Conn(t, dsn)
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM es_migrations").Scan(&n); err != nil || n != postgres.SchemaVersion() {
		t.Fatalf("es_migrations holds %d rows (%v), want %d", n, err, postgres.SchemaVersion())
	}
	exec := func(q string) {
		t.Helper()
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var sum []byte
	if err := admin.QueryRow(ctx, "SELECT checksum FROM es_migrations WHERE version = 1").Scan(&sum); err != nil {
		t.Fatal(err)
	}
	exec("UPDATE es_migrations SET checksum = '\\x00' WHERE version = 1")
	if _, err := postgres.Open(ctx, dsn, postgres.Options{}); err == nil || !strings.Contains(err.Error(), "edited") {
		t.Fatalf("Open() with an edited migration = %v, want an error saying so", err)
	}
	if _, err := admin.Exec(ctx, "UPDATE es_migrations SET checksum = $1 WHERE version = 1", sum); err != nil {
		t.Fatal(err)
	}
	exec("INSERT INTO es_migrations (version, name, checksum) VALUES (999, '0999_future.sql', '\\x00')")
	if _, err := postgres.Open(ctx, dsn, postgres.Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open() of a newer schema = %v, want an error saying so", err)
	}
	exec("DELETE FROM es_migrations WHERE version = 999")
	s = open(t, dsn, postgres.Options{})
	if _, err := s.Append(ctx, "job-1", eventstore.NoStream, []eventstore.EventData{newEvent(1)}); err != nil {
		t.Fatal(err)
	}
}

// TestRuntimeLogin runs the store as a login role that is only a member of
// hodei_writer: everything works on a migrated database, and on a fresh one
// Open says that migrating needs an admin DSN.
func TestRuntimeLogin(t *testing.T) {
	admin := pgtest.AdminDSN(t)
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	login := fmt.Sprintf("hodei_app_%d", time.Now().UnixNano()%1e9)
	ac := pgtest.Conn(t, admin)
	if _, err := ac.Exec(ctx, "CREATE ROLE "+login+" LOGIN PASSWORD 'app-secret'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ac.Exec(context.Background(), "DROP ROLE IF EXISTS "+login) })

	// The admin migrates (MigrateDSN); the runtime DSN logs in as login.
	runtime := pgtest.WithUser(t, dsn, login, "app-secret")
	if _, err := postgres.Open(ctx, runtime, postgres.Options{MigrateDSN: dsn}); err == nil ||
		!strings.Contains(err.Error(), "GRANT "+postgres.DefaultRole) {
		t.Fatalf("Open() as a login that is not a member of %s = %v, want a hint to GRANT it", postgres.DefaultRole, err)
	}
	if _, err := ac.Exec(ctx, "GRANT "+postgres.DefaultRole+" TO "+login); err != nil {
		t.Fatal(err)
	}
	s := open(t, runtime, postgres.Options{})
	sub := s.Subscribe(0)
	defer sub.Close()
	if _, err := s.Append(ctx, "job-1", eventstore.NoStream, []eventstore.EventData{newEvent(1), newEvent(2)}); err != nil {
		t.Fatalf("Append() as %s = %v", login, err)
	}
	if _, err := s.Append(ctx, "job-1", eventstore.NoStream, []eventstore.EventData{newEvent(1), newEvent(2)}); err != nil {
		t.Fatalf("retry as %s = %v", login, err)
	}
	if batch, err := sub.Next(ctx); err != nil || len(batch) != 2 {
		t.Fatalf("Next() as %s = %v, %v", login, batch, err)
	}

	fresh := pgtest.WithUser(t, pgtest.NewDatabase(t), login, "app-secret")
	if _, err := postgres.Open(ctx, fresh, postgres.Options{}); err == nil || !strings.Contains(err.Error(), "MigrateDSN") {
		t.Fatalf("Open() of an unmigrated database as %s = %v, want a hint to use MigrateDSN", login, err)
	}
}

// TestTextLimits: PostgreSQL text cannot hold a NUL byte; an actor with one
// is refused as invalid input, naming the field, and fails nothing else.
func TestTextLimits(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), postgres.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bad := newEvent(1)
	bad.Actor = "user:a\x00b"
	out, err := s.AppendMany(ctx, []eventstore.AppendRequest{
		{Stream: "job-1", Expected: eventstore.NoStream, Events: []eventstore.EventData{bad}},
		{Stream: "job-2", Expected: eventstore.NoStream, Events: []eventstore.EventData{newEvent(2)}},
	})
	var ie *eventstore.InvalidEventError
	if err != nil || !errors.As(out[0].Err, &ie) || ie.Field != "actor" || out[1].Err != nil {
		t.Fatalf("AppendMany() = %+v, %v; want the first invalid (actor) and the second appended", out, err)
	}
}

// TestCloseStandby: closing a standby fails the appends waiting for the
// committer lock with ErrClosed and writes nothing.
func TestCloseStandby(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := open(t, dsn, postgres.Options{})
	b := open(t, dsn, postgres.Options{Standby: true, LockPollInterval: time.Hour})
	done := make(chan error, 1)
	go func() {
		_, err := b.Append(ctx, "job-1", eventstore.NoStream, []eventstore.EventData{newEvent(1)})
		done <- err
	}()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Append() waiting on a standby that closed = %v, want ErrClosed", err)
	}
	if head, err := a.Head(ctx); err != nil || head.Position != 0 {
		t.Fatalf("Head() = %+v, %v; want an empty log", head, err)
	}
}

// TestReadOnly: a read-only store opens beside the committer, reads and
// follows the log, and refuses appends; on an unmigrated database it fails.
func TestReadOnly(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := postgres.Open(ctx, dsn, postgres.Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only Open() of an unmigrated database succeeded")
	}
	w := open(t, dsn, postgres.Options{})
	r := open(t, dsn, postgres.Options{ReadOnly: true, PollInterval: time.Hour})
	sub := r.Subscribe(0)
	defer sub.Close()
	if _, err := w.Append(ctx, "job-1", eventstore.NoStream, []eventstore.EventData{newEvent(1)}); err != nil {
		t.Fatal(err)
	}
	if batch, err := sub.Next(ctx); err != nil || len(batch) != 1 {
		t.Fatalf("read-only Next() = %v, %v; want the writer's event", batch, err)
	}
	if _, err := r.Append(ctx, "job-2", eventstore.NoStream, []eventstore.EventData{newEvent(2)}); !errors.Is(err, postgres.ErrReadOnly) {
		t.Fatalf("read-only Append() = %v, want ErrReadOnly", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStreamVersionsAfterTakeover: the committer caches stream versions;
// when another process appended while it had lost the committer lock, it
// must read them again rather than trust the cache.
func TestStreamVersionsAfterTakeover(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := open(t, dsn, postgres.Options{})
	if _, err := a.Append(ctx, "job-1", eventstore.NoStream, []eventstore.EventData{newEvent(1)}); err != nil {
		t.Fatal(err)
	}
	b := open(t, dsn, postgres.Options{Standby: true, LockPollInterval: 10 * time.Millisecond})

	// Kill a's committer session: its lock dies with it and b takes over.
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(a.CommitterPID())); err != nil {
		t.Fatal(err)
	}
	res, err := b.Append(ctx, "job-1", eventstore.Exact(1), []eventstore.EventData{newEvent(2)})
	if err != nil || res.Version != 2 {
		t.Fatalf("b.Append(job-1 at 1) = %+v, %v; want version 2", res, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// a finds its connection gone (the first append may fail with that),
	// reconnects, and must see version 2, not its cached 1.
	for attempt := 1; ; attempt++ {
		res, err = a.Append(ctx, "job-1", eventstore.Exact(2), []eventstore.EventData{newEvent(3)})
		var vc *eventstore.VersionConflictError
		if errors.As(err, &vc) {
			t.Fatalf("a.Append(job-1 at 2) after the takeover = %v: the committer trusted a stale cached version", err)
		}
		if err == nil || attempt == 5 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || res.Version != 3 || res.FirstPosition != 3 {
		t.Fatalf("a.Append(job-1 at 2) = %+v, %v; want version 3 at position 3", res, err)
	}
}
