package bolt

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/eventstoretest"
)

func TestConformance(t *testing.T) {
	eventstoretest.Run(t, harness())
}

func ev(payload string) eventstore.EventData {
	e := eventstoretest.Event("test.happened", 0)
	e.Payload = []byte(payload)
	return e
}

func evs(n int, prefix string) []eventstore.EventData {
	out := make([]eventstore.EventData, n)
	for i := range out {
		out[i] = ev(fmt.Sprintf("%s %d", prefix, i))
	}
	return out
}

func mustAppend(t testing.TB, s *Store, stream string, exp eventstore.ExpectedVersion, events []eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), stream, exp, events)
	if err != nil {
		t.Fatalf("Append(%s, %s) = %v", stream, exp, err)
	}
	return res
}

// TestIndexGenerations drives the write-behind index through many flushed
// generations and restarts, and checks reads, idempotent retries and the
// index views against the log after each step.
func TestIndexGenerations(t *testing.T) {
	opts := testOptions()
	opts.IndexGeneration = 40
	s := openTemp(t, opts)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(7))
	type appended struct {
		stream string
		events []eventstore.EventData
		res    eventstore.AppendResult
	}
	var history []appended
	versions := map[string]uint64{}
	rounds := 12
	if testing.Short() {
		rounds = 6
	}
	for round := 0; round < rounds; round++ {
		for i := 0; i < 60; i++ {
			stream := fmt.Sprintf("job-%d", rng.Intn(25))
			e := evs(1+rng.Intn(3), fmt.Sprintf("r%d i%d", round, i))
			res := mustAppend(t, s, stream, eventstore.Exact(versions[stream]), e)
			versions[stream] = res.Version
			history = append(history, appended{stream, e, res})
		}
		// Retries of appends from every age (flushed, frozen, active) are
		// recognised, and reusing an id elsewhere is refused.
		for _, k := range []int{0, len(history) / 2, len(history) - 1} {
			h := history[k]
			res, err := s.Append(ctx, h.stream, eventstore.Any, h.events)
			want := h.res
			want.Duplicate = true
			if err != nil || res != want {
				t.Fatalf("round %d: retry of append %d = %+v, %v; want %+v", round, k, res, err, want)
			}
			if _, err := s.Append(ctx, "elsewhere", eventstore.Any, h.events); !errors.Is(err, eventstore.ErrIdempotencyConflict) {
				t.Fatalf("round %d: reuse of append %d's ids = %v, want ErrIdempotencyConflict", round, k, err)
			}
		}
		if err := checkLog(s); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for stream, v := range versions {
			got, err := s.ReadStream(ctx, stream, 2, 1000)
			if err != nil || uint64(len(got)) != v-1 {
				t.Fatalf("round %d: ReadStream(%s, 2) = %d events, %v; want %d", round, stream, len(got), err, v-1)
			}
			for i, e := range got {
				if e.StreamVersion != uint64(i)+2 || e.StreamID != stream {
					t.Fatalf("round %d: ReadStream(%s)[%d] = %s version %d", round, stream, i, e.StreamID, e.StreamVersion)
				}
			}
		}
		if round%3 == 2 {
			s = reopen(t, s)
		}
	}
	ix, err := s.IndexedThrough()
	if err != nil || ix == 0 {
		t.Fatalf("IndexedThrough() = %d, %v; want > 0", ix, err)
	}
}

// TestCloseFlushesIndex: a cleanly closed file is fully indexed.
func TestCloseFlushesIndex(t *testing.T) {
	s := openTemp(t, testOptions())
	for i := 0; i < 30; i++ {
		mustAppend(t, s, fmt.Sprintf("s-%d", i%4), eventstore.Any, evs(3, "x"))
	}
	s = reopen(t, s)
	ix, err := s.IndexedThrough()
	h, _ := s.Head(context.Background())
	if err != nil || ix != h.Position || ix != 90 {
		t.Fatalf("IndexedThrough() after Close = %d, %v; want the head %d (90)", ix, err, h.Position)
	}
}

// TestGroupCommit: concurrent appenders share transactions.
func TestGroupCommit(t *testing.T) {
	s := openTemp(t, testOptions())
	const appenders, each = 64, 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	for a := 0; a < appenders; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < each; i++ {
				if _, err := s.Append(context.Background(), fmt.Sprintf("g-%d", a), eventstore.Exact(uint64(i)), evs(1, "g")); err != nil {
					t.Errorf("Append() = %v", err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	st := s.Stats()
	if st.Events != appenders*each || st.Appends != appenders*each {
		t.Fatalf("Stats() = %+v, want %d events and appends", st, appenders*each)
	}
	if st.Commits >= st.Events {
		t.Errorf("Stats() = %+v: %d commits for %d events, want group commits", st, st.Commits, st.Events)
	}
}

// TestCommitFailureDuringIndexFlush: failing commits that carry index chunks,
// including index-only commits, lose nothing, and the index completes once
// commits succeed again.
func TestCommitFailureDuringIndexFlush(t *testing.T) {
	opts := testOptions()
	opts.IndexGeneration = 20
	s := openTemp(t, opts)
	ctx := context.Background()
	for i := 0; i < 15; i++ {
		// 45 events: a generation is frozen and the next one is full, so
		// every commit carries index entries.
		mustAppend(t, s, "a", eventstore.Any, evs(3, "a"))
	}
	injected := errors.New("injected")
	s.SetBeforeCommit(func() error { return injected })
	for i := 0; i < 5; i++ {
		if _, err := s.Append(ctx, "b", eventstore.Any, evs(2, "b")); !errors.Is(err, injected) {
			t.Fatalf("Append() with failing commits = %v, want the injected error", err)
		}
	}
	s.SetBeforeCommit(nil)
	res := mustAppend(t, s, "b", eventstore.NoStream, evs(1, "b"))
	if res.FirstPosition != 46 {
		t.Fatalf("append after failures = %+v, want position 46", res)
	}
	if st := s.Stats(); st.FailedCommits < 5 {
		t.Fatalf("Stats() = %+v, want at least 5 failed commits", st)
	}
	if err := checkLog(s); err != nil {
		t.Fatal(err)
	}
}

// TestCloseWhileAppending: Close waits for queued appends; each append either
// succeeded and is in the file, or failed with ErrClosed and wrote nothing.
func TestCloseWhileAppending(t *testing.T) {
	s := openTemp(t, testOptions())
	var mu sync.Mutex
	acked := map[eventstore.ID]uint64{}
	var wg sync.WaitGroup
	started := make(chan struct{}, 32)
	for a := 0; a < 32; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				e := evs(2, "c")
				res, err := s.Append(context.Background(), fmt.Sprintf("c-%d", a), eventstore.Any, e)
				if errors.Is(err, eventstore.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append() = %v", err)
					return
				}
				mu.Lock()
				acked[e[0].ID], acked[e[1].ID] = res.FirstPosition, res.LastPosition
				mu.Unlock()
				if i == 3 {
					started <- struct{}{}
				}
			}
		}()
	}
	for i := 0; i < 32; i++ {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	wg.Wait()
	s = reopen(t, s)
	all, err := readAllEvents(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(acked) {
		t.Fatalf("log holds %d events, %d were acknowledged", len(all), len(acked))
	}
	for id, pos := range acked {
		if all[pos-1].EventID != id {
			t.Fatalf("acknowledged event %s at %d missing", id, pos)
		}
	}
}

// TestCancelledContext: an append whose context is done before it is queued
// fails and writes nothing.
func TestCancelledContext(t *testing.T) {
	s := openTemp(t, testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, "x", eventstore.Any, evs(1, "x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append(cancelled) = %v, want context.Canceled", err)
	}
	if _, err := s.AppendMany(ctx, []eventstore.AppendRequest{{Stream: "x", Expected: eventstore.Any, Events: evs(1, "x")}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("AppendMany(cancelled) = %v, want context.Canceled", err)
	}
	if h, _ := s.Head(context.Background()); h.Position != 0 {
		t.Fatalf("cancelled appends wrote %d events", h.Position)
	}
}

// TestOversizedEvent: limits are checked before anything is queued.
func TestOversizedEvent(t *testing.T) {
	s := openTemp(t, testOptions())
	big := ev("")
	big.Payload = make([]byte, eventstore.MaxPayloadSize+1)
	_, err := s.Append(context.Background(), "big", eventstore.Any, []eventstore.EventData{big})
	var ie *eventstore.InvalidEventError
	if !errors.As(err, &ie) || ie.Field != "payload" || ie.Index != 0 {
		t.Fatalf("Append(oversized) = %v, want an *InvalidEventError for event 0's payload", err)
	}
	many := make([]eventstore.EventData, eventstore.MaxEventsPerWrite+1)
	for i := range many {
		many[i] = ev("x")
	}
	out, err := s.AppendMany(context.Background(), []eventstore.AppendRequest{{Stream: "many", Expected: eventstore.Any, Events: many}})
	if err != nil || !errors.Is(out[0].Err, eventstore.ErrInvalidEvent) {
		t.Fatalf("AppendMany(too many events) = %v, %v; want ErrInvalidEvent", out, err)
	}
	if h, _ := s.Head(context.Background()); h.Position != 0 {
		t.Fatalf("invalid appends wrote %d events", h.Position)
	}
}

// TestLargeAppend: an append larger than the batch limits is committed whole.
func TestLargeAppend(t *testing.T) {
	opts := testOptions()
	opts.MaxBatchEvents, opts.MaxBatchBytes = 8, 1024
	s := openTemp(t, opts)
	big := evs(eventstore.MaxEventsPerWrite, "big")
	res := mustAppend(t, s, "big", eventstore.NoStream, big)
	if res.FirstPosition != 1 || res.LastPosition != eventstore.MaxEventsPerWrite {
		t.Fatalf("Append(%d events) = %+v", len(big), res)
	}
}

// TestReadOnly: a read-only store reads, serves the index views and refuses
// appends.
func TestReadOnly(t *testing.T) {
	s := openTemp(t, testOptions())
	mustAppend(t, s, "ro", eventstore.NoStream, evs(3, "ro"))
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("Open(read-only) = %v", err)
	}
	defer ro.Close()
	if _, err := ro.Append(context.Background(), "ro", eventstore.Any, evs(1, "x")); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Append(read-only) = %v, want ErrReadOnly", err)
	}
	got, err := ro.ReadStream(context.Background(), "ro", 1, 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("ReadStream(read-only) = %d events, %v", len(got), err)
	}
	if err := checkLog(ro); err != nil {
		t.Fatal(err)
	}
	// The index views stop at the first error fn returns.
	stop := errors.New("stop")
	if err := ro.ForEachStreamIndex(func(string, uint64, uint64) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ForEachStreamIndex() = %v, want fn's error", err)
	}
}

// TestLongReader: a read transaction held open while appends grow the file
// by many megabytes does not stall the committer (the initial memory map is
// large enough that no remap is needed).
func TestLongReader(t *testing.T) {
	s := openTemp(t, testOptions()) // 64 MiB map
	tx, err := s.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		payload := make([]byte, 4096)
		for i := 0; i < 40; i++ {
			batch := make([]eventstore.EventData, 100)
			for j := range batch {
				batch[j] = ev("")
				batch[j].Payload = payload
			}
			if _, err := s.Append(context.Background(), "grow", eventstore.Any, batch); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Append() while a reader is open = %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("appends stalled behind an open read transaction")
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.Head(context.Background()); h.Position != 4000 {
		t.Fatalf("Head() = %d, want 4000", h.Position)
	}
}

// TestOpenLocked: a file another store holds open for writing is refused
// after Options.Timeout instead of waiting forever.
func TestOpenLocked(t *testing.T) {
	s := openTemp(t, testOptions())
	_, err := Open(s.Path(), Options{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, berrors.ErrTimeout) || !strings.Contains(err.Error(), s.Path()) {
		t.Fatalf("Open() of a locked file = %v, want a timeout naming the file", err)
	}
}

// TestReadsAfterClose: reads and subscriptions of a closed store fail with
// ErrClosed.
func TestReadsAfterClose(t *testing.T) {
	s := openTemp(t, testOptions())
	mustAppend(t, s, "x", eventstore.NoStream, evs(1, "x"))
	sub := s.Subscribe(0)
	defer sub.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.ReadAll(ctx, 1, 10); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("ReadAll() after Close = %v, want ErrClosed", err)
	}
	if _, err := s.ReadStream(ctx, "x", 1, 10); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("ReadStream() after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Head(ctx); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("Head() after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
}

// TestIntermittentCommitFailures: while commits fail now and then under
// concurrent load, every append either fails with the commit error and wrote
// nothing, or succeeded at the position it was told, including the appends
// staged on top of a failed batch and staged again. Retries with the same
// event ids complete every stream with contiguous versions.
func TestIntermittentCommitFailures(t *testing.T) {
	opts := testOptions()
	opts.IndexGeneration = 64 // index chunks ride along, and fail too
	s := openTemp(t, opts)
	ctx := context.Background()
	injected := errors.New("injected")
	var commits atomic.Int64
	s.SetBeforeCommit(func() error {
		// A slow commit lets the next batch gather on top of it.
		time.Sleep(200 * time.Microsecond)
		if commits.Add(1)%3 == 0 {
			return injected
		}
		return nil
	})
	// Enough appenders for batches above inlineCommitEvents: the writer
	// commits them while the next batch is staged on top.
	const appenders, each = 96, 20
	var wg sync.WaitGroup
	var failures atomic.Int64
	for a := 0; a < appenders; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("s-%d", a)
			for v := uint64(0); v < each; {
				e := evs(1, stream)
				for {
					res, err := s.Append(ctx, stream, eventstore.Exact(v), e)
					if errors.Is(err, injected) {
						failures.Add(1)
						continue // retry the same event
					}
					if err != nil || res.Version != v+1 || res.Duplicate {
						t.Errorf("Append(%s, %d) = %+v, %v", stream, v, res, err)
						return
					}
					got, err := s.ReadAll(ctx, res.FirstPosition, 1)
					if err != nil || len(got) != 1 || got[0].EventID != e[0].ID || got[0].StreamVersion != v+1 {
						t.Errorf("ReadAll(%d) after Append(%s, %d) = %+v, %v", res.FirstPosition, stream, v, got, err)
						return
					}
					break
				}
				v++
			}
		}()
	}
	wg.Wait()
	s.SetBeforeCommit(nil)
	if failures.Load() == 0 {
		t.Fatal("no append failed: the hook did not inject failures")
	}
	for a := 0; a < appenders; a++ {
		stream := fmt.Sprintf("s-%d", a)
		got, err := s.ReadStream(ctx, stream, 1, 2*each)
		if err != nil || len(got) != each {
			t.Fatalf("ReadStream(%s) = %d events, %v; want %d", stream, len(got), err, each)
		}
	}
	if h, _ := s.Head(ctx); h.Position != appenders*each {
		t.Fatalf("Head() = %+v, want position %d: failed commits left events", h, appenders*each)
	}
	if err := checkLog(s); err != nil {
		t.Fatal(err)
	}
}
