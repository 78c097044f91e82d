package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
)

// sourceLog returns the envelopes of a seeded workload run on the memory
// adapter: a log to import.
func sourceLog(t *testing.T, seed int64, ops int) []eventstore.Envelope {
	t.Helper()
	clock := func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC) }
	m := memory.New(memory.Options{Clock: clock})
	for _, op := range equivalenceWorkload(seed, ops) {
		if _, err := m.AppendMany(context.Background(), op); err != nil {
			t.Fatalf("AppendMany() = %v", err)
		}
	}
	return readAll(t, m)
}

// rechain recomputes the hashes of envs from prev on, after a test edited
// them, so that only the edit (not a broken chain) is wrong.
func rechain(envs []eventstore.Envelope, prev eventstore.Hash) []eventstore.Envelope {
	out := make([]eventstore.Envelope, len(envs))
	copy(out, envs)
	for i := range out {
		out[i].PrevHash = prev
		out[i].Hash = eventstore.ChainHash(&out[i])
		prev = out[i].Hash
	}
	return out
}

func importAll(t *testing.T, s *postgres.Store, envs []eventstore.Envelope, batch int) {
	t.Helper()
	for i := 0; i < len(envs); i += batch {
		if err := s.Import(context.Background(), envs[i:min(i+batch, len(envs))]); err != nil {
			t.Fatalf("Import(%d..) = %v", envs[i].Position, err)
		}
	}
}

func TestImportCopiesVerbatim(t *testing.T) {
	src := sourceLog(t, 7, 150)
	s := open(t, pgtest.NewDatabase(t), postgres.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sub := s.Subscribe(0)
	defer sub.Close()

	importAll(t, s, src, 97)
	got := readAll(t, s)
	if d := cmp.Diff(src, got); d != "" {
		t.Fatalf("imported log differs (-source +postgres):\n%s", d)
	}
	for i := range src {
		if string(eventstore.MarshalEnvelope(nil, &src[i])) != string(eventstore.MarshalEnvelope(nil, &got[i])) {
			t.Fatalf("position %d: stored bytes differ", src[i].Position)
		}
	}
	last := src[len(src)-1]
	if h, err := s.Head(ctx); err != nil || h != (eventstore.Head{Position: last.Position, Hash: last.Hash}) {
		t.Fatalf("Head() = %+v, %v; want position %d hash %s", h, err, last.Position, last.Hash)
	}

	// Subscribers get the imported events, in order.
	var seen []eventstore.Envelope
	for len(seen) < len(src) {
		page, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Subscription.Next() = %v after %d events", err, len(seen))
		}
		seen = append(seen, page...)
	}
	if d := cmp.Diff(src, seen); d != "" {
		t.Fatalf("subscription differs from the source (-source +delivered):\n%s", d)
	}

	// Appends continue the imported log: next position, next stream version,
	// and a retry of an imported event is a duplicate.
	stream := src[0].StreamID
	ver := uint64(0)
	for _, e := range src {
		if e.StreamID == stream {
			ver = e.StreamVersion
		}
	}
	res, err := s.Append(ctx, stream, eventstore.Exact(ver), []eventstore.EventData{{ID: eventstore.NewID(), Type: "job.finished", SchemaVersion: 1}})
	if err != nil || res.FirstPosition != last.Position+1 || res.Version != ver+1 {
		t.Fatalf("Append after import = %+v, %v; want position %d version %d", res, err, last.Position+1, ver+1)
	}
	first := src[0]
	retry := eventstore.EventData{ID: first.EventID, Type: first.Type, SchemaVersion: first.SchemaVersion, Time: first.Time,
		Actor: first.Actor, CorrelationID: first.CorrelationID, CausationID: first.CausationID, Payload: first.Payload}
	if res, err := s.Append(ctx, first.StreamID, eventstore.Any, []eventstore.EventData{retry}); err != nil || !res.Duplicate || res.FirstPosition != 1 {
		t.Fatalf("retry of imported event 1 = %+v, %v; want the original result as a duplicate", res, err)
	}
}

func TestImportRefuses(t *testing.T) {
	src := sourceLog(t, 11, 40)
	if len(src) < 40 {
		t.Fatalf("source has only %d events", len(src))
	}
	s := open(t, pgtest.NewDatabase(t), postgres.Options{})
	ctx := context.Background()
	importAll(t, s, src[:10], 10)
	before := readAll(t, s)
	head := eventstore.Head{Position: src[9].Position, Hash: src[9].Hash}

	edit := func(from, to int, fn func(e *eventstore.Envelope)) []eventstore.Envelope {
		envs := append([]eventstore.Envelope(nil), src[from:to]...)
		fn(&envs[0])
		return rechain(envs, src[from-1].Hash)
	}
	cases := []struct {
		name string
		envs []eventstore.Envelope
		want error
	}{
		{"a gap after the head", src[12:20], postgres.ErrHeadMismatch},
		{"an overlap with the head", src[5:20], postgres.ErrHeadMismatch},
		{"another history", rechain(src[10:20], eventstore.Hash{1}), postgres.ErrHeadMismatch},
		{"a broken link inside the batch", func() []eventstore.Envelope {
			envs := append([]eventstore.Envelope(nil), src[10:20]...)
			envs[4].PrevHash[0] ^= 1
			return envs
		}(), eventstore.ErrCorrupt},
		{"a payload that does not match its hash", func() []eventstore.Envelope {
			envs := append([]eventstore.Envelope(nil), src[10:20]...)
			envs[3].Payload = append([]byte("x"), envs[3].Payload...)
			return envs
		}(), eventstore.ErrCorrupt},
		{"a stream version that skips", edit(10, 20, func(e *eventstore.Envelope) { e.StreamVersion += 5 }), eventstore.ErrCorrupt},
		{"an event id already stored", edit(10, 20, func(e *eventstore.Envelope) { e.EventID = src[2].EventID }), eventstore.ErrIdempotencyConflict},
		{"a NUL byte in the actor", edit(10, 20, func(e *eventstore.Envelope) { e.Actor = "user:\x00" }), eventstore.ErrInvalidEvent},
		{"an empty type", edit(10, 20, func(e *eventstore.Envelope) { e.Type = "" }), eventstore.ErrInvalidEvent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.Import(ctx, c.envs)
			if !errors.Is(err, c.want) {
				t.Fatalf("Import() = %v, want %v", err, c.want)
			}
			t.Logf("Import() = %v", err)
			if h, err := s.Head(ctx); err != nil || h != head {
				t.Fatalf("Head() after a refused import = %+v, %v; want %+v", h, err, head)
			}
		})
	}
	if d := cmp.Diff(before, readAll(t, s)); d != "" {
		t.Fatalf("a refused import wrote something:\n%s", d)
	}
	// The store still imports and appends.
	importAll(t, s, src[10:], 1000)
	if _, err := s.Append(ctx, "job-x", eventstore.NoStream, []eventstore.EventData{{ID: eventstore.NewID(), Type: "t", SchemaVersion: 1}}); err != nil {
		t.Fatalf("Append after refused imports = %v", err)
	}

	ro := open(t, s.DSN(), postgres.Options{ReadOnly: true})
	if err := ro.Import(ctx, src[len(src)-1:]); !errors.Is(err, postgres.ErrReadOnly) {
		t.Fatalf("Import on a read-only store = %v, want ErrReadOnly", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Import(ctx, src[len(src)-1:]); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Import after Close = %v, want ErrClosed", err)
	}
}

// TestImportBetweenAppends runs imports while appenders append: each import
// lands whole between append transactions or is refused because an append
// moved the head; the log stays one dense, chained log.
func TestImportBetweenAppends(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), postgres.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var appended atomic.Int64
	stop := make(chan struct{})
	for a := 0; a < 4; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				if _, err := s.Append(ctx, fmt.Sprintf("live-%d", a), eventstore.Any,
					[]eventstore.EventData{{ID: eventstore.NewID(), Type: "live", SchemaVersion: 1, Payload: []byte{byte(i)}}}); err != nil {
					t.Errorf("Append() = %v", err)
					return
				}
				appended.Add(1)
			}
		}()
	}
	go func() { wg.Wait(); close(stop) }()

	imported, refused := 0, 0
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for n := 0; !isClosed(stop) || imported == 0; n++ {
		h, err := s.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		envs := make([]eventstore.Envelope, 1+n%7)
		prev := h.Hash
		for i := range envs {
			d := eventstore.EventData{ID: eventstore.NewID(), Type: "imported", SchemaVersion: 1, Payload: []byte(fmt.Sprint(n, i))}
			envs[i] = eventstore.NewEnvelope(&d, h.Position+1+uint64(i), fmt.Sprintf("imported-%d", n), uint64(i+1), now, prev)
			prev = envs[i].Hash
		}
		switch err := s.Import(ctx, envs); {
		case err == nil:
			imported += len(envs)
		case errors.Is(err, postgres.ErrHeadMismatch):
			refused++
		default:
			t.Fatalf("Import() = %v", err)
		}
	}
	all := readAll(t, s)
	if want := int(appended.Load()) + imported; len(all) != want {
		t.Fatalf("log holds %d events, want %d appended + %d imported", len(all), appended.Load(), imported)
	}
	var prevPos uint64
	var prevHash eventstore.Hash
	versions := map[string]uint64{}
	for i := range all {
		if err := eventstore.VerifyLink(prevPos, prevHash, &all[i]); err != nil {
			t.Fatalf("chain: %v", err)
		}
		prevPos, prevHash = all[i].Position, all[i].Hash
		if versions[all[i].StreamID]++; versions[all[i].StreamID] != all[i].StreamVersion {
			t.Fatalf("position %d: stream %s version %d, want %d", all[i].Position, all[i].StreamID, all[i].StreamVersion, versions[all[i].StreamID])
		}
	}
	t.Logf("%d appended, %d imported, %d imports refused because an append moved the head", appended.Load(), imported, refused)
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
