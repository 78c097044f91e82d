package migrate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
	"github.com/hodei-jobs/hodei/migrate"
)

// The tests below copy into a real PostgreSQL (pgtest: skipped loudly
// without one, failed under CI=true).

func openPG(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatalf("postgres.Open() = %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var _ migrate.Importer = (*postgres.Store)(nil)

func TestRunIntoPostgres(t *testing.T) {
	src := seeded(t, 6000, 10)
	dst := openPG(t, pgtest.NewDatabase(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := migrate.Run(ctx, src, dst, migrate.Options{BatchSize: 1000})
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if want := (migrate.Result{Head: head(t, src), Copied: 6000, Batches: 6}); res != want {
		t.Fatalf("Run() = %+v, want %+v", res, want)
	}
	sameLog(t, readAll(t, src), readAll(t, dst))
	if h := head(t, dst); h != res.Head {
		t.Fatalf("target Head() = %+v, want %+v", h, res.Head)
	}
	// The stream rows came along: appends continue every stream.
	last, err := src.ReadAll(ctx, res.Head.Position, 1)
	if err != nil {
		t.Fatal(err)
	}
	ev := eventstore.EventData{ID: eventstore.NewID(), Type: "job.after", SchemaVersion: 1}
	if r, err := dst.Append(ctx, last[0].StreamID, eventstore.Exact(last[0].StreamVersion), []eventstore.EventData{ev}); err != nil ||
		r.FirstPosition != res.Head.Position+1 || r.Version != last[0].StreamVersion+1 {
		t.Fatalf("Append after migrating = %+v, %v", r, err)
	}
}

// TestRunIntoPostgresResumes interrupts a migration twice, once by
// cancelling between batches and once by a failed commit, and runs it again
// each time: the target ends equal to the source, every event once.
func TestRunIntoPostgresResumes(t *testing.T) {
	src := seeded(t, 5000, 11)
	dst := openPG(t, pgtest.NewDatabase(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cctx, interrupt := context.WithCancel(ctx)
	res, err := migrate.Run(cctx, src, dst, migrate.Options{BatchSize: 700, Progress: func(p migrate.Progress) {
		if p.Copied >= 1400 {
			interrupt()
		}
	}})
	interrupt()
	if !errors.Is(err, context.Canceled) || res.Copied != 1400 || head(t, dst).Position != 1400 {
		t.Fatalf("interrupted Run() = %+v, %v, target head %d; want context.Canceled at 1400", res, err, head(t, dst).Position)
	}

	commits := 0
	dst.SetBeforeCommit(func() error {
		if commits++; commits == 3 {
			return errors.New("injected: connection lost before commit")
		}
		return nil
	})
	res, err = migrate.Run(ctx, src, dst, migrate.Options{BatchSize: 700})
	if err == nil || res.Start != 1400 || res.Copied != 1400 || head(t, dst).Position != 2800 {
		t.Fatalf("Run() with a failed commit = %+v, %v, target head %d; want an error at 2800", res, err, head(t, dst).Position)
	}
	t.Logf("failed commit: %v", err)
	dst.SetBeforeCommit(nil)

	res, err = migrate.Run(ctx, src, dst, migrate.Options{BatchSize: 700})
	if err != nil || res.Start != 2800 || res.Copied != 2200 || res.Head != head(t, src) {
		t.Fatalf("resumed Run() = %+v, %v; want 2200 copied from 2800 to the source head", res, err)
	}
	sameLog(t, readAll(t, src), readAll(t, dst))
}

func TestRunIntoPostgresRefusesDifferentHistory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A target that already has a log of its own.
	src := seeded(t, 300, 12)
	dst := openPG(t, pgtest.NewDatabase(t))
	appendSeeded(t, dst, 50, 13)
	before := head(t, dst)
	_, err := migrate.Run(ctx, src, dst, migrate.Options{})
	var de *migrate.DivergedError
	if !errors.As(err, &de) || de.Position != 1 {
		t.Fatalf("Run() into a foreign log = %v, want a DivergedError at position 1", err)
	}
	if h := head(t, dst); h != before {
		t.Fatalf("a refused Run moved the target head from %+v to %+v", before, h)
	}
	t.Logf("Run() = %v", err)

	// A target that was migrated, then written to: the source grows in
	// another direction.
	dst2 := openPG(t, pgtest.NewDatabase(t))
	if _, err := migrate.Run(ctx, src, dst2, migrate.Options{}); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	appendSeeded(t, dst2, 1, 14)
	appendSeeded(t, src, 20, 15)
	_, err = migrate.Run(ctx, src, dst2, migrate.Options{})
	if !errors.As(err, &de) || de.Position != 301 {
		t.Fatalf("Run() into a log written after migrating = %v, want a DivergedError at position 301", err)
	}
	t.Logf("Run() = %v", err)
}
