package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/migrate"
)

// seeded returns a memory log of n events over 20 streams, drawn from seed
// with fixed ids and times.
func seeded(t testing.TB, n int, seed int64) *memory.Store {
	t.Helper()
	clock := func() time.Time { return time.Date(2026, 2, 3, 4, 5, 6, 7, time.UTC) }
	s := memory.New(memory.Options{Clock: clock})
	appendSeeded(t, s, n, seed)
	return s
}

// appendSeeded appends n seeded events to s.
func appendSeeded(t testing.TB, s eventstore.Store, n int, seed int64) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for n > 0 {
		evs := make([]eventstore.EventData, min(n, 1+rng.Intn(5)))
		for i := range evs {
			var id, corr eventstore.ID
			rng.Read(id[:])
			rng.Read(corr[:])
			p := make([]byte, rng.Intn(200))
			rng.Read(p)
			evs[i] = eventstore.EventData{ID: id, Type: "job.happened", SchemaVersion: 1, Actor: "system:test",
				CorrelationID: corr, Payload: p}
			if rng.Intn(3) > 0 {
				evs[i].Time = base.Add(time.Duration(rng.Int63n(int64(time.Hour))))
			}
		}
		if _, err := s.Append(context.Background(), fmt.Sprintf("job-%d", rng.Intn(20)), eventstore.Any, evs); err != nil {
			t.Fatalf("Append() = %v", err)
		}
		n -= len(evs)
	}
}

// sameLog fails t unless got holds exactly the envelopes of want, byte for
// byte in the storage layout.
func sameLog(t testing.TB, want, got []eventstore.Envelope) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("target holds %d events, the source %d", len(got), len(want))
	}
	for i := range want {
		if string(eventstore.MarshalEnvelope(nil, &want[i])) != string(eventstore.MarshalEnvelope(nil, &got[i])) {
			t.Fatalf("position %d differs (-source +target):\n%s", want[i].Position, cmp.Diff(want[i], got[i]))
		}
	}
}

func readAll(t testing.TB, r eventstore.Reader) []eventstore.Envelope {
	t.Helper()
	var out []eventstore.Envelope
	for from := uint64(1); ; {
		page, err := r.ReadAll(context.Background(), from, 5000)
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

// fake is an in-memory Importer that enforces Import's contract.
type fake struct {
	log     []eventstore.Envelope
	imports int
	fail    func(envs []eventstore.Envelope) error // when set and non-nil, Import fails
}

func (f *fake) head() eventstore.Head {
	if len(f.log) == 0 {
		return eventstore.Head{}
	}
	e := f.log[len(f.log)-1]
	return eventstore.Head{Position: e.Position, Hash: e.Hash}
}

func (f *fake) Import(_ context.Context, envs []eventstore.Envelope) error {
	if f.fail != nil {
		if err := f.fail(envs); err != nil {
			return err
		}
	}
	h := f.head()
	for i := range envs {
		if err := eventstore.VerifyLink(h.Position, h.Hash, &envs[i]); err != nil {
			return fmt.Errorf("fake import: %w", err)
		}
		h = eventstore.Head{Position: envs[i].Position, Hash: envs[i].Hash}
	}
	f.log = append(f.log, envs...)
	f.imports++
	return nil
}

func (f *fake) Head(context.Context) (eventstore.Head, error) { return f.head(), nil }

func (f *fake) ReadAll(_ context.Context, from uint64, limit int) ([]eventstore.Envelope, error) {
	if from < 1 {
		from = 1
	}
	if from > uint64(len(f.log)) {
		return nil, nil
	}
	end := min(uint64(len(f.log)), from-1+uint64(limit))
	return append([]eventstore.Envelope(nil), f.log[from-1:end]...), nil
}

func head(t testing.TB, s migrate.Source) eventstore.Head {
	t.Helper()
	h, err := s.Head(context.Background())
	if err != nil {
		t.Fatalf("Head() = %v", err)
	}
	return h
}

func TestRunCopiesIntoEmpty(t *testing.T) {
	src := seeded(t, 5000, 1)
	dst := &fake{}
	var reports []migrate.Progress
	res, err := migrate.Run(context.Background(), src, dst, migrate.Options{BatchSize: 700,
		Progress: func(p migrate.Progress) { reports = append(reports, p) }})
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	want := migrate.Result{Head: head(t, src), Start: 0, Copied: 5000, Batches: 8}
	if res != want {
		t.Fatalf("Run() = %+v, want %+v", res, want)
	}
	sameLog(t, readAll(t, src), dst.log)
	if len(reports) != 9 || reports[0].Copied != 0 || reports[8] != (migrate.Progress{Target: 5000, Source: 5000, Copied: 5000}) {
		t.Fatalf("progress reports = %+v, want 9 from 0 to 5000", reports)
	}
	for i := 1; i < len(reports); i++ {
		if reports[i].Target <= reports[i-1].Target || reports[i].Target-reports[i].Copied != reports[i].Start {
			t.Fatalf("progress report %d = %+v after %+v", i, reports[i], reports[i-1])
		}
	}

	// A second run finds nothing to do.
	res, err = migrate.Run(context.Background(), src, dst, migrate.Options{})
	if err != nil || res != (migrate.Result{Head: want.Head, Start: 5000}) {
		t.Fatalf("second Run() = %+v, %v; want nothing copied", res, err)
	}
}

func TestRunEmptySource(t *testing.T) {
	res, err := migrate.Run(context.Background(), memory.New(memory.Options{}), &fake{}, migrate.Options{})
	if err != nil || res != (migrate.Result{}) {
		t.Fatalf("Run() of an empty log = %+v, %v", res, err)
	}
}

func TestRunResumesAfterInterruption(t *testing.T) {
	src := seeded(t, 3000, 2)
	dst := &fake{}
	ctx, cancel := context.WithCancel(context.Background())
	res, err := migrate.Run(ctx, src, dst, migrate.Options{BatchSize: 250, Progress: func(p migrate.Progress) {
		if p.Copied == 750 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || res.Copied != 750 || len(dst.log) != 750 {
		t.Fatalf("interrupted Run() = %+v, %v with %d events in the target; want context.Canceled after 750", res, err, len(dst.log))
	}
	t.Logf("interrupted: %v", err)

	// A failing import (a lost connection, say) stops the run as well.
	boom := errors.New("connection reset")
	dst.fail = func(envs []eventstore.Envelope) error {
		if envs[0].Position > 1500 {
			return boom
		}
		return nil
	}
	res, err = migrate.Run(context.Background(), src, dst, migrate.Options{BatchSize: 250})
	if !errors.Is(err, boom) || res.Start != 750 || res.Copied != 750 || res.Head.Position != 1500 {
		t.Fatalf("Run() with a failing import = %+v, %v", res, err)
	}

	dst.fail = nil
	res, err = migrate.Run(context.Background(), src, dst, migrate.Options{BatchSize: 250})
	if err != nil || res.Start != 1500 || res.Copied != 1500 || res.Head != head(t, src) {
		t.Fatalf("resumed Run() = %+v, %v", res, err)
	}
	sameLog(t, readAll(t, src), dst.log)
}

func TestRunRefusesDifferentHistory(t *testing.T) {
	src := seeded(t, 400, 3)
	srcLog := readAll(t, src)
	other := readAll(t, seeded(t, 420, 4)) // same shape, other ids and payloads

	// chain builds a target from the source's first k events followed by
	// other events, rehashed so the target's own chain is sound.
	chain := func(k, extra int) *fake {
		f := &fake{}
		if err := f.Import(context.Background(), append([]eventstore.Envelope(nil), srcLog[:k]...)); k > 0 && err != nil {
			t.Fatal(err)
		}
		h := f.head()
		var envs []eventstore.Envelope
		for i := 0; i < extra; i++ {
			e := other[k+i]
			e.PrevHash = h.Hash
			e.Hash = eventstore.ChainHash(&e)
			h = eventstore.Head{Position: e.Position, Hash: e.Hash}
			envs = append(envs, e)
		}
		if extra > 0 {
			if err := f.Import(context.Background(), envs); err != nil {
				t.Fatal(err)
			}
		}
		return f
	}
	cases := []struct {
		name string
		dst  *fake
		at   uint64
	}{
		{"different from the start", chain(0, 10), 1},
		{"different after a common prefix", chain(123, 40), 124},
		{"different at its head only", chain(199, 1), 200},
		{"longer than the source", chain(400, 5), 401},
	}
	empty := memory.New(memory.Options{})
	if _, err := migrate.Run(context.Background(), empty, chain(0, 3), migrate.Options{}); !errors.Is(err, migrate.ErrDiverged) {
		t.Errorf("Run() from an empty source into a non-empty target = %v, want ErrDiverged", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(c.dst.log)
			imports := c.dst.imports
			_, err := migrate.Run(context.Background(), src, c.dst, migrate.Options{})
			var de *migrate.DivergedError
			if !errors.As(err, &de) || !errors.Is(err, migrate.ErrDiverged) || de.Position != c.at {
				t.Fatalf("Run() = %v, want a DivergedError at position %d", err, c.at)
			}
			if len(c.dst.log) != before || c.dst.imports != imports {
				t.Fatalf("a refused Run imported %d events", len(c.dst.log)-before)
			}
			t.Logf("Run() = %v", err)
		})
	}
}

// tampered is a source whose event at bad has a flipped payload byte.
type tampered struct {
	*memory.Store
	bad uint64
}

func (s tampered) ReadAll(ctx context.Context, from uint64, limit int) ([]eventstore.Envelope, error) {
	page, err := s.Store.ReadAll(ctx, from, limit)
	for i := range page {
		if page[i].Position == s.bad {
			p := append([]byte{}, page[i].Payload...)
			page[i].Payload = append(p, 'x')
		}
	}
	return page, err
}

func TestRunStopsAtCorruptSource(t *testing.T) {
	src := tampered{seeded(t, 1000, 5), 777}
	dst := &fake{}
	res, err := migrate.Run(context.Background(), src, dst, migrate.Options{BatchSize: 100})
	var ce *eventstore.CorruptError
	if !errors.As(err, &ce) || ce.Position != 777 {
		t.Fatalf("Run() = %v, want a CorruptError at position 777", err)
	}
	if len(dst.log) != 700 || res.Head.Position != 700 {
		t.Fatalf("target holds %d events (result %+v), want the 700 before the bad batch", len(dst.log), res)
	}
}

func TestRunBatchesByBytes(t *testing.T) {
	src := memory.New(memory.Options{})
	for i := 0; i < 40; i++ {
		ev := eventstore.EventData{ID: eventstore.NewID(), Type: "big", SchemaVersion: 1, Payload: make([]byte, 100<<10)}
		if _, err := src.Append(context.Background(), "big", eventstore.Any, []eventstore.EventData{ev}); err != nil {
			t.Fatal(err)
		}
	}
	maxBatch := 0
	dst := &fake{fail: func(envs []eventstore.Envelope) error {
		maxBatch = max(maxBatch, len(envs))
		return nil
	}}
	res, err := migrate.Run(context.Background(), src, dst, migrate.Options{MaxBatchBytes: 1 << 20})
	if err != nil || res.Copied != 40 {
		t.Fatalf("Run() = %+v, %v", res, err)
	}
	if maxBatch > 10 || res.Batches < 4 {
		t.Fatalf("largest batch %d events of 100 KiB, %d batches; want at most 1 MiB per batch", maxBatch, res.Batches)
	}
}

// TestRunFollowsAGrowingSource: events appended to the source during the
// run are copied too; the run ends when both heads agree.
func TestRunFollowsAGrowingSource(t *testing.T) {
	src := seeded(t, 500, 6)
	dst := &fake{}
	grown := false
	res, err := migrate.Run(context.Background(), src, dst, migrate.Options{BatchSize: 100, Progress: func(p migrate.Progress) {
		if p.Copied == 300 && !grown {
			grown = true
			appendSeeded(t, src, 250, 7)
		}
	}})
	if err != nil || res.Copied != 750 || res.Head != head(t, src) {
		t.Fatalf("Run() = %+v, %v; want 750 copied up to the source head %+v", res, err, head(t, src))
	}
	sameLog(t, readAll(t, src), dst.log)
}
