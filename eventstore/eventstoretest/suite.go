package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hodei-jobs/hodei/eventstore"
)

// Run runs the whole conformance suite against the adapter h drives.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("eventstoretest: Harness.Open is nil")
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"AppendAndRead", testAppendAndRead},
		{"ExpectedVersions", testExpectedVersions},
		{"InvalidInput", testInvalidInput},
		{"Times", testTimes},
		{"AppendMany", testAppendMany},
		{"ExactVersionRace", testExactVersionRace},
		{"NoStreamRace", testNoStreamRace},
		{"Idempotency", testIdempotency},
		{"IdempotencyAcrossReopen", testIdempotencyAcrossReopen},
		{"ChainAndHead", testChainAndHead},
		{"SubscribeUnderLoad", testSubscribeUnderLoad},
		{"SlowSubscriber", testSlowSubscriber},
		{"SubscribeAfterPosition", testSubscribeAfterPosition},
		{"CommitFailure", testCommitFailure},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// open opens a store and closes it when the test ends.
func open(t *testing.T, h Harness) eventstore.Store {
	t.Helper()
	s := h.Open(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Event returns an event of about size payload bytes with a fresh id, for
// tests and benchmarks.
func Event(typ string, size int) eventstore.EventData {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	return eventstore.EventData{ID: eventstore.NewID(), Type: typ, SchemaVersion: 1, Actor: "system:test", Payload: p}
}

func events(n int) []eventstore.EventData {
	out := make([]eventstore.EventData, n)
	for i := range out {
		out[i] = Event("test.happened", 16)
		out[i].Payload = []byte(fmt.Sprintf("event %d", i))
	}
	return out
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, exp eventstore.ExpectedVersion, evs []eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), stream, exp, evs)
	if err != nil {
		t.Fatalf("Append(%s, %s) = %v", stream, exp, err)
	}
	return res
}

func readAll(t *testing.T, s eventstore.Store) []eventstore.Envelope {
	t.Helper()
	var out []eventstore.Envelope
	from := uint64(1)
	for {
		page, err := s.ReadAll(context.Background(), from, 5000)
		if err != nil {
			t.Fatalf("ReadAll(%d) = %v", from, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		from = page[len(page)-1].Position + 1
	}
}

// verifyLog checks that the whole log is dense, chained and agrees with Head
// and with every stream's reads, and returns it.
func verifyLog(t *testing.T, s eventstore.Store) []eventstore.Envelope {
	t.Helper()
	all := readAll(t, s)
	var prev eventstore.Hash
	versions := map[string]uint64{}
	for i := range all {
		e := &all[i]
		if err := eventstore.VerifyLink(uint64(i), prev, e); err != nil {
			t.Fatalf("chain: %v", err)
		}
		prev = e.Hash
		versions[e.StreamID]++
		if e.StreamVersion != versions[e.StreamID] {
			t.Fatalf("position %d: stream %s version %d, want %d", e.Position, e.StreamID, e.StreamVersion, versions[e.StreamID])
		}
	}
	head, err := s.Head(context.Background())
	if err != nil {
		t.Fatalf("Head() = %v", err)
	}
	want := eventstore.Head{Position: uint64(len(all)), Hash: prev}
	if head != want {
		t.Fatalf("Head() = %+v, want %+v", head, want)
	}
	for stream, n := range versions {
		got, err := s.ReadStream(context.Background(), stream, 1, int(n)+1)
		if err != nil {
			t.Fatalf("ReadStream(%s) = %v", stream, err)
		}
		if uint64(len(got)) != n {
			t.Fatalf("ReadStream(%s) returned %d events, log holds %d", stream, len(got), n)
		}
		for i := range got {
			if d := cmp.Diff(all[got[i].Position-1], got[i]); d != "" {
				t.Fatalf("ReadStream(%s)[%d] differs from ReadAll (-all +stream):\n%s", stream, i, d)
			}
		}
	}
	return all
}

func testAppendAndRead(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	if head, err := s.Head(ctx); err != nil || head != (eventstore.Head{}) {
		t.Fatalf("Head() of empty store = %+v, %v; want zero, nil", head, err)
	}
	a := events(3)
	res := mustAppend(t, s, "job-a", eventstore.NoStream, a)
	if want := (eventstore.AppendResult{FirstPosition: 1, LastPosition: 3, Version: 3}); res != want {
		t.Fatalf("Append() = %+v, want %+v", res, want)
	}
	res = mustAppend(t, s, "job-b", eventstore.NoStream, events(2))
	if want := (eventstore.AppendResult{FirstPosition: 4, LastPosition: 5, Version: 2}); res != want {
		t.Fatalf("Append() = %+v, want %+v", res, want)
	}
	mustAppend(t, s, "job-a", eventstore.Exact(3), events(1))

	got, err := s.ReadStream(ctx, "job-a", 2, 10)
	if err != nil {
		t.Fatalf("ReadStream() = %v", err)
	}
	if len(got) != 3 || got[0].StreamVersion != 2 || got[2].Position != 6 {
		t.Fatalf("ReadStream(job-a, 2) = %d events starting %+v, want versions 2..4 ending at position 6", len(got), got)
	}
	if string(got[0].Payload) != string(a[1].Payload) || got[0].EventID != a[1].ID || got[0].Actor != a[1].Actor {
		t.Fatalf("ReadStream(job-a)[0] = %+v, want the content of %+v", got[0], a[1])
	}
	if got, _ := s.ReadStream(ctx, "job-a", 1, 2); len(got) != 2 {
		t.Fatalf("ReadStream(limit 2) returned %d events", len(got))
	}
	if got, err := s.ReadStream(ctx, "job-missing", 1, 10); err != nil || len(got) != 0 {
		t.Fatalf("ReadStream(missing) = %v, %v; want empty, nil", got, err)
	}
	// "job-a" must not see "job-ab", nor a prefix stream.
	mustAppend(t, s, "job-ab", eventstore.NoStream, events(1))
	mustAppend(t, s, "job-", eventstore.NoStream, events(1))
	if got, _ := s.ReadStream(ctx, "job-a", 1, 100); len(got) != 4 {
		t.Fatalf("ReadStream(job-a) returned %d events, want 4 (prefix streams must not leak in)", len(got))
	}
	all, err := s.ReadAll(ctx, 5, 2)
	if err != nil || len(all) != 2 || all[0].Position != 5 || all[1].Position != 6 {
		t.Fatalf("ReadAll(5, 2) = %v, %v", all, err)
	}
	if all, _ := s.ReadAll(ctx, 100, 10); len(all) != 0 {
		t.Fatalf("ReadAll past head returned %d events", len(all))
	}
	verifyLog(t, s)
}

func testExpectedVersions(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	conflict := func(exp eventstore.ExpectedVersion, stream string, actual uint64) {
		t.Helper()
		_, err := s.Append(ctx, stream, exp, events(1))
		var vc *eventstore.VersionConflictError
		if !errors.As(err, &vc) || !errors.Is(err, eventstore.ErrVersionConflict) {
			t.Fatalf("Append(%s, %s) = %v, want a *VersionConflictError", stream, exp, err)
		}
		if vc.Actual != actual || vc.Stream != stream || vc.Expected != exp {
			t.Fatalf("Append(%s, %s) conflict = %+v, want actual %d", stream, exp, vc, actual)
		}
	}
	conflict(eventstore.StreamExists, "s", 0)
	conflict(eventstore.Exact(1), "s", 0)
	mustAppend(t, s, "s", eventstore.NoStream, events(2))
	conflict(eventstore.NoStream, "s", 2)
	conflict(eventstore.Exact(1), "s", 2)
	conflict(eventstore.Exact(3), "s", 2)
	mustAppend(t, s, "s", eventstore.StreamExists, events(1))
	mustAppend(t, s, "s", eventstore.Any, events(1))
	mustAppend(t, s, "t", eventstore.Any, events(1))
	if res := mustAppend(t, s, "s", eventstore.Exact(4), events(1)); res.Version != 5 {
		t.Fatalf("Append(Exact(4)) version = %d, want 5", res.Version)
	}
	// Conflicts wrote nothing.
	if all := verifyLog(t, s); len(all) != 6 {
		t.Fatalf("log holds %d events after conflicts, want 6", len(all))
	}
}

func testInvalidInput(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	big := Event("test.big", eventstore.MaxPayloadSize+1)
	dup := events(2)
	dup[1].ID = dup[0].ID
	zero := events(1)
	zero[0].ID = eventstore.ID{}
	noType := events(1)
	noType[0].Type = ""
	noSchema := events(1)
	noSchema[0].SchemaVersion = 0
	cases := []struct {
		name   string
		stream string
		exp    eventstore.ExpectedVersion
		evs    []eventstore.EventData
		field  string
	}{
		{"empty stream", "", eventstore.Any, events(1), "stream"},
		{"control char in stream", "job-\n1", eventstore.Any, events(1), "stream"},
		{"long stream", string(make([]byte, eventstore.MaxStreamIDLen+1)), eventstore.Any, events(1), "stream"},
		{"bad expected", "s", eventstore.ExpectedVersion(-7), events(1), "expected version"},
		{"no events", "s", eventstore.Any, nil, "events"},
		{"oversized", "s", eventstore.Any, []eventstore.EventData{big}, "payload"},
		{"duplicate id", "s", eventstore.Any, dup, "id"},
		{"zero id", "s", eventstore.Any, zero, "id"},
		{"no type", "s", eventstore.Any, noType, "type"},
		{"no schema", "s", eventstore.Any, noSchema, "schema version"},
	}
	for _, c := range cases {
		_, err := s.Append(ctx, c.stream, c.exp, c.evs)
		var ie *eventstore.InvalidEventError
		if !errors.As(err, &ie) || !errors.Is(err, eventstore.ErrInvalidEvent) || ie.Field != c.field {
			t.Errorf("%s: Append() = %v, want an *InvalidEventError for field %q", c.name, err, c.field)
		}
	}
	if head, _ := s.Head(ctx); head.Position != 0 {
		t.Fatalf("invalid appends wrote %d events", head.Position)
	}
	// A maximal event is accepted.
	mustAppend(t, s, "s", eventstore.Any, []eventstore.EventData{Event("test.max", eventstore.MaxPayloadSize)})
	verifyLog(t, s)
}

func testTimes(t *testing.T, h Harness) {
	s := open(t, h)
	ev := events(2)
	at := time.Date(2026, 11, 27, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
	ev[0].Time = at
	mustAppend(t, s, "s", eventstore.NoStream, ev)
	got, _ := s.ReadStream(context.Background(), "s", 1, 2)
	if !got[0].Time.Equal(at) || got[0].Time.Location() != time.UTC {
		t.Fatalf("Time = %v, want %v in UTC to the nanosecond", got[0].Time, at)
	}
	if got[1].Time.IsZero() {
		t.Fatalf("an event appended with a zero time got no time from the store")
	}
}

func testAppendMany(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	mustAppend(t, s, "x", eventstore.NoStream, events(1))
	out, err := s.AppendMany(ctx, []eventstore.AppendRequest{
		{Stream: "a", Expected: eventstore.NoStream, Events: events(2)},
		{Stream: "x", Expected: eventstore.NoStream, Events: events(1)}, // conflicts
		{Stream: "a", Expected: eventstore.Exact(2), Events: events(1)}, // sees the first request
		{Stream: "", Expected: eventstore.Any, Events: events(1)},       // invalid
		{Stream: "b", Expected: eventstore.Any, Events: events(1)},
	})
	if err != nil {
		t.Fatalf("AppendMany() = %v", err)
	}
	if len(out) != 5 {
		t.Fatalf("AppendMany() returned %d outcomes, want 5", len(out))
	}
	if out[0].Err != nil || out[0].Result != (eventstore.AppendResult{FirstPosition: 2, LastPosition: 3, Version: 2}) {
		t.Errorf("outcome 0 = %+v", out[0])
	}
	if !errors.Is(out[1].Err, eventstore.ErrVersionConflict) {
		t.Errorf("outcome 1 = %+v, want a version conflict", out[1])
	}
	if out[2].Err != nil || out[2].Result != (eventstore.AppendResult{FirstPosition: 4, LastPosition: 4, Version: 3}) {
		t.Errorf("outcome 2 = %+v", out[2])
	}
	if !errors.Is(out[3].Err, eventstore.ErrInvalidEvent) {
		t.Errorf("outcome 3 = %+v, want invalid", out[3])
	}
	if out[4].Err != nil || out[4].Result.FirstPosition != 5 {
		t.Errorf("outcome 4 = %+v", out[4])
	}
	verifyLog(t, s)
}

// testExactVersionRace: many goroutines append to one stream, each reading the
// version and appending at Exact(version) until it wins. Every version has
// exactly one winner and the stream is contiguous.
func testExactVersionRace(t *testing.T, h Harness) {
	s := open(t, h)
	n := 1000
	if testing.Short() {
		n = 200
	}
	ctx := context.Background()
	winners := make([]atomic.Int32, n+1)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ev := events(1)
			exp := eventstore.NoStream
			for attempt := 0; attempt < 10*n; attempt++ {
				res, err := s.Append(ctx, "race", exp, ev)
				var vc *eventstore.VersionConflictError
				switch {
				case err == nil:
					winners[res.Version].Add(1)
					return
				case errors.As(err, &vc):
					exp = eventstore.Exact(vc.Actual)
				default:
					errs <- err
					return
				}
			}
			errs <- fmt.Errorf("gave up after %d attempts", 10*n)
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("appender: %v", err)
	}
	for v := 1; v <= n; v++ {
		if w := winners[v].Load(); w != 1 {
			t.Fatalf("version %d had %d winners, want exactly 1", v, w)
		}
	}
	all := verifyLog(t, s)
	if len(all) != n {
		t.Fatalf("log holds %d events, want %d", len(all), n)
	}
	ids := map[eventstore.ID]bool{}
	for _, e := range all {
		if ids[e.EventID] {
			t.Fatalf("event id %s appears twice in the log", e.EventID)
		}
		ids[e.EventID] = true
	}
}

func testNoStreamRace(t *testing.T, h Harness) {
	s := open(t, h)
	var ok, conflicts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < 100; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.Append(context.Background(), "created-once", eventstore.NoStream, events(2))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, eventstore.ErrVersionConflict):
				conflicts.Add(1)
			default:
				t.Errorf("Append() = %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || conflicts.Load() != 99 {
		t.Fatalf("%d creators succeeded and %d conflicted, want 1 and 99", ok.Load(), conflicts.Load())
	}
	if all := verifyLog(t, s); len(all) != 2 {
		t.Fatalf("log holds %d events, want 2", len(all))
	}
}

func testIdempotency(t *testing.T, h Harness) {
	s := open(t, h)
	checkIdempotency(t, s)
}

func testIdempotencyAcrossReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("adapter has no durable state to reopen")
	}
	s := h.Open(t)
	ctx := context.Background()
	ev := events(3)
	first := mustAppend(t, s, "idem", eventstore.NoStream, ev)
	mustAppend(t, s, "other", eventstore.NoStream, events(1))
	s = h.Reopen(t, s)
	t.Cleanup(func() { _ = s.Close() })
	res, err := s.Append(ctx, "idem", eventstore.NoStream, ev)
	want := first
	want.Duplicate = true
	if err != nil || res != want {
		t.Fatalf("retry after reopen = %+v, %v; want %+v, nil", res, err, want)
	}
	changed := append([]eventstore.EventData(nil), ev...)
	changed[2].Payload = []byte("other content")
	if _, err := s.Append(ctx, "idem", eventstore.Any, changed); !errors.Is(err, eventstore.ErrIdempotencyConflict) {
		t.Fatalf("reused id with other content after reopen = %v, want ErrIdempotencyConflict", err)
	}
	if all := verifyLog(t, s); len(all) != 4 {
		t.Fatalf("log holds %d events after retries, want 4", len(all))
	}
	// The store keeps numbering densely after a reopen.
	if res := mustAppend(t, s, "idem", eventstore.Exact(3), events(1)); res.FirstPosition != 5 || res.Version != 4 {
		t.Fatalf("append after reopen = %+v, want position 5 version 4", res)
	}
}

func checkIdempotency(t *testing.T, s eventstore.Store) {
	ctx := context.Background()
	ev := events(3)
	first := mustAppend(t, s, "idem", eventstore.NoStream, ev)
	mustAppend(t, s, "idem", eventstore.Exact(3), events(1))
	// A retry returns the original result, whatever its expected version.
	for _, exp := range []eventstore.ExpectedVersion{eventstore.NoStream, eventstore.Any, eventstore.Exact(3), eventstore.Exact(9)} {
		res, err := s.Append(ctx, "idem", exp, ev)
		want := first
		want.Duplicate = true
		if err != nil || res != want {
			t.Fatalf("retry with %s = %+v, %v; want %+v, nil", exp, res, err, want)
		}
	}
	conflicts := map[string][]eventstore.EventData{}
	changed := append([]eventstore.EventData(nil), ev...)
	changed[1].Payload = []byte("different")
	conflicts["different payload"] = changed
	changedType := append([]eventstore.EventData(nil), ev...)
	changedType[0].Type = "test.other"
	conflicts["different type"] = changedType
	conflicts["partial overlap"] = append([]eventstore.EventData{ev[2]}, events(1)...)
	conflicts["reordered"] = []eventstore.EventData{ev[1], ev[0], ev[2]}
	for name, evs := range conflicts {
		if _, err := s.Append(ctx, "idem", eventstore.Any, evs); !errors.Is(err, eventstore.ErrIdempotencyConflict) {
			t.Errorf("%s: Append() = %v, want ErrIdempotencyConflict", name, err)
		}
	}
	if _, err := s.Append(ctx, "elsewhere", eventstore.Any, ev); !errors.Is(err, eventstore.ErrIdempotencyConflict) {
		t.Errorf("same ids on another stream: Append() = %v, want ErrIdempotencyConflict", err)
	}
	// Within one AppendMany, a repeated request is a retry of the first.
	again := events(1)
	out, err := s.AppendMany(ctx, []eventstore.AppendRequest{
		{Stream: "many", Expected: eventstore.NoStream, Events: again},
		{Stream: "many", Expected: eventstore.NoStream, Events: again},
	})
	if err != nil || out[0].Err != nil || out[1].Err != nil || out[1].Result.FirstPosition != out[0].Result.FirstPosition || !out[1].Result.Duplicate {
		t.Fatalf("AppendMany with a repeated request = %+v, %v; want the second to be a duplicate of the first", out, err)
	}
	if all := verifyLog(t, s); len(all) != 5 {
		t.Fatalf("log holds %d events after retries and conflicts, want 5", len(all))
	}
}

func testChainAndHead(t *testing.T, h Harness) {
	s := open(t, h)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		stream := fmt.Sprintf("worker-%d", rng.Intn(7))
		mustAppend(t, s, stream, eventstore.Any, events(1+rng.Intn(4)))
	}
	all := verifyLog(t, s)
	if !all[0].PrevHash.IsZero() {
		t.Fatalf("position 1 prev hash = %s, want zero", all[0].PrevHash)
	}
}

// testSubscribeUnderLoad: a subscriber from position 0 while many events
// exist and 8 writers append sees every position exactly once, in order.
func testSubscribeUnderLoad(t *testing.T, h Harness) {
	s := open(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := h.LargeEvents
	if n == 0 {
		n = 1_000_000
	}
	if testing.Short() && n > 20_000 {
		n = 20_000
	}
	fill(t, s, "history", n)
	perWriter := 2000
	if testing.Short() {
		perWriter = 500
	}
	total := uint64(n + 8*perWriter)

	sub := s.Subscribe(0)
	defer sub.Close()
	got := make(chan error, 1)
	go func() { got <- consume(ctx, sub, total) }()

	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("writer-%d", w)
			for i := 0; i < perWriter; i++ {
				if _, err := s.Append(ctx, stream, eventstore.Any, events(1)); err != nil {
					t.Errorf("writer %d: Append() = %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// consume reads sub until it has delivered position last, checking that
// positions arrive exactly once and in order and that the chain holds.
func consume(ctx context.Context, sub *eventstore.Subscription, last uint64) error {
	want := sub.Position() + 1
	var prev eventstore.Hash
	for want <= last {
		batch, err := sub.Next(ctx)
		if err != nil {
			return fmt.Errorf("Next() after position %d = %v", want-1, err)
		}
		for i := range batch {
			e := &batch[i]
			if e.Position != want {
				return fmt.Errorf("subscription delivered position %d, want %d", e.Position, want)
			}
			if want > 1 && !prev.IsZero() && e.PrevHash != prev {
				return fmt.Errorf("position %d: prev hash does not match the delivered predecessor", e.Position)
			}
			prev = e.Hash
			want++
		}
	}
	return nil
}

// fill appends n events to streams named prefix-K in large AppendMany calls.
func fill(t *testing.T, s eventstore.Store, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	const perReq, perCall = 50, 40
	for done := 0; done < n; {
		var reqs []eventstore.AppendRequest
		for len(reqs) < perCall && done < n {
			k := perReq
			if n-done < k {
				k = n - done
			}
			evs := make([]eventstore.EventData, k)
			for i := range evs {
				evs[i] = Event("test.filled", 200)
			}
			reqs = append(reqs, eventstore.AppendRequest{Stream: fmt.Sprintf("%s-%d", prefix, done/1000), Expected: eventstore.Any, Events: evs})
			done += k
		}
		out, err := s.AppendMany(ctx, reqs)
		if err != nil {
			t.Fatalf("fill: AppendMany() = %v", err)
		}
		for _, o := range out {
			if o.Err != nil {
				t.Fatalf("fill: append = %v", o.Err)
			}
		}
	}
}

// testSlowSubscriber: a subscriber that does not read while writers append
// more than the bus ring holds neither blocks them nor loses or repeats events.
func testSlowSubscriber(t *testing.T, h Harness) {
	s := open(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mustAppend(t, s, "before", eventstore.NoStream, events(3))
	sub := s.Subscribe(1)
	defer sub.Close()
	// Read one batch so the subscriber is live, then stop reading.
	first, err := sub.Next(ctx)
	if err != nil || len(first) == 0 || first[0].Position != 2 {
		t.Fatalf("Next() = %v, %v; want position 2 first", first, err)
	}
	n := eventstore.DefaultRingSize + 5000
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fill(t, s, fmt.Sprintf("slow-w%d", w), n/8)
		}()
	}
	wg.Wait() // the writers finished while the subscriber was not reading
	if err := consume(ctx, sub, uint64(3+8*(n/8))); err != nil {
		t.Fatal(err)
	}
	// And it carries on live.
	res := mustAppend(t, s, "after", eventstore.NoStream, events(1))
	batch, err := sub.Next(ctx)
	if err != nil || len(batch) != 1 || batch[0].Position != res.FirstPosition {
		t.Fatalf("Next() after catching up = %v, %v; want position %d", batch, err, res.FirstPosition)
	}
}

func testSubscribeAfterPosition(t *testing.T, h Harness) {
	s := open(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mustAppend(t, s, "a", eventstore.NoStream, events(5))
	sub := s.Subscribe(3)
	defer sub.Close()
	batch, err := sub.Next(ctx)
	if err != nil || len(batch) != 2 || batch[0].Position != 4 || sub.Position() != 5 {
		t.Fatalf("Subscribe(3).Next() = %v, %v (position %d); want positions 4-5", batch, err, sub.Position())
	}
	// A subscriber waiting at the head is woken by the next commit.
	done := make(chan []eventstore.Envelope, 1)
	go func() {
		b, err := sub.Next(ctx)
		if err != nil {
			t.Errorf("Next() = %v", err)
		}
		done <- b
	}()
	mustAppend(t, s, "a", eventstore.Exact(5), events(1))
	if b := <-done; len(b) != 1 || b[0].Position != 6 {
		t.Fatalf("live Next() = %v, want position 6", b)
	}
	// Close unblocks a waiting Next.
	go func() { _ = sub.Close() }()
	if _, err := sub.Next(ctx); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Next() after Close = %v, want ErrClosed", err)
	}
}

// testCommitFailure: a failed commit fails its appends, publishes nothing,
// and the next append takes the next dense position.
func testCommitFailure(t *testing.T, h Harness) {
	if h.SetBeforeCommit == nil {
		t.Skip("adapter has no commit fault hook")
	}
	s := open(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mustAppend(t, s, "a", eventstore.NoStream, events(2))
	before, _ := s.Head(ctx)
	sub := s.Subscribe(before.Position)
	defer sub.Close()

	injected := errors.New("injected disk failure")
	h.SetBeforeCommit(s, func() error { return injected })
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Append(ctx, fmt.Sprintf("fail-%d", i), eventstore.NoStream, events(2)); err == nil {
				t.Errorf("Append() during injected commit failure succeeded")
			}
		}()
	}
	wg.Wait()
	h.SetBeforeCommit(s, nil)

	if head, _ := s.Head(ctx); head != before {
		t.Fatalf("Head() after failed commits = %+v, want unchanged %+v", head, before)
	}
	// The failed streams do not exist: NoStream succeeds now.
	res := mustAppend(t, s, "fail-0", eventstore.NoStream, events(1))
	if res.FirstPosition != before.Position+1 || res.Version != 1 {
		t.Fatalf("append after failure = %+v, want position %d version 1", res, before.Position+1)
	}
	batch, err := sub.Next(ctx)
	if err != nil || len(batch) != 1 || batch[0].Position != res.FirstPosition || batch[0].StreamID != "fail-0" {
		t.Fatalf("subscriber after failure got %+v, %v; want only the later event at position %d", batch, err, res.FirstPosition)
	}
	verifyLog(t, s)
}

func testClose(t *testing.T, h Harness) {
	s := h.Open(t)
	mustAppend(t, s, "a", eventstore.NoStream, events(1))
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if _, err := s.Append(context.Background(), "a", eventstore.Any, events(1)); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Append() after Close = %v, want ErrClosed", err)
	}
}
