package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
)

// TestEquivalenceWithMemory runs one seeded workload (fixed ids, times and
// clock; appends, batches, conflicts, retries, invalid input) on the memory
// adapter and on PostgreSQL. Every outcome and every stored envelope,
// hashes included, must be identical, byte for byte in the storage layout.
// Other adapters (bolt) join by running the same workload.
func TestEquivalenceWithMemory(t *testing.T) {
	clock := func() time.Time { return time.Date(2026, 11, 27, 4, 5, 6, 789012345, time.UTC) }
	ops := equivalenceWorkload(42, 400)
	stores := map[string]eventstore.Store{
		"memory":   memory.New(memory.Options{Clock: clock}),
		"postgres": open(t, pgtest.NewDatabase(t), postgres.Options{Clock: clock}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	outcomes := map[string][]string{}
	for name, s := range stores {
		for _, op := range ops {
			out, err := s.AppendMany(ctx, op)
			outcomes[name] = append(outcomes[name], describeOutcomes(out, err))
		}
	}
	if d := cmp.Diff(outcomes["memory"], outcomes["postgres"]); d != "" {
		t.Fatalf("outcomes differ (-memory +postgres):\n%s", d)
	}
	mem, pg := readAll(t, stores["memory"]), readAll(t, stores["postgres"])
	if len(mem) < 500 {
		t.Fatalf("the workload stored only %d events", len(mem))
	}
	if d := cmp.Diff(mem, pg); d != "" {
		t.Fatalf("logs differ (-memory +postgres):\n%s", d)
	}
	for i := range mem {
		if string(eventstore.MarshalEnvelope(nil, &mem[i])) != string(eventstore.MarshalEnvelope(nil, &pg[i])) {
			t.Fatalf("position %d: stored bytes differ", mem[i].Position)
		}
	}
	hm, _ := stores["memory"].Head(ctx)
	hp, _ := stores["postgres"].Head(ctx)
	if hm != hp {
		t.Fatalf("Head() memory = %+v, postgres = %+v", hm, hp)
	}
	for i := 0; i < 12; i++ {
		stream := fmt.Sprintf("job-%d", i)
		a, errA := stores["memory"].ReadStream(ctx, stream, 2, 1000)
		b, errB := stores["postgres"].ReadStream(ctx, stream, 2, 1000)
		if errA != nil || errB != nil {
			t.Fatalf("ReadStream(%s) = %v, %v", stream, errA, errB)
		}
		if d := cmp.Diff(a, b); d != "" {
			t.Fatalf("ReadStream(%s) differs (-memory +postgres):\n%s", stream, d)
		}
	}
	all := strings.Join(outcomes["memory"], "")
	t.Logf("%d operations, %d events, head %s; %d duplicates, %d version conflicts, %d idempotency conflicts, %d invalid",
		len(ops), len(mem), hp.Hash, strings.Count(all, "Duplicate:true"), strings.Count(all, "conflict "),
		strings.Count(all, "idempotency conflict"), strings.Count(all, "invalid "))
	for _, k := range []string{"Duplicate:true", "conflict ", "idempotency conflict", "invalid "} {
		if !strings.Contains(all, k) {
			t.Errorf("the workload produced no %q outcome", k)
		}
	}
}

// equivalenceWorkload returns n AppendMany calls drawn from seed.
func equivalenceWorkload(seed int64, n int) [][]eventstore.AppendRequest {
	rng := rand.New(rand.NewSource(seed))
	newID := func() eventstore.ID {
		var id eventstore.ID
		rng.Read(id[:])
		return id
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	event := func() eventstore.EventData {
		e := eventstore.EventData{
			ID:            newID(),
			Type:          []string{"job.submitted", "job.scheduled", "job.finished", "worker.registered"}[rng.Intn(4)],
			SchemaVersion: uint16(1 + rng.Intn(3)),
			Actor:         []string{"user:ana", "agent:7", "system:scheduler", ""}[rng.Intn(4)],
			Payload:       make([]byte, rng.Intn(300)),
		}
		rng.Read(e.Payload)
		if rng.Intn(4) > 0 {
			e.Time = base.Add(time.Duration(rng.Int63n(int64(1000 * time.Hour))))
		}
		if rng.Intn(2) == 0 {
			e.CorrelationID, e.CausationID = newID(), newID()
		}
		return e
	}
	var done [][]eventstore.EventData // earlier batches, for retries
	var doneStreams []string
	request := func() eventstore.AppendRequest {
		stream := fmt.Sprintf("job-%d", rng.Intn(12))
		exp := []eventstore.ExpectedVersion{eventstore.Any, eventstore.NoStream, eventstore.StreamExists,
			eventstore.Exact(uint64(rng.Intn(8)))}[rng.Intn(4)]
		switch k := rng.Intn(20); {
		case k == 0 && len(done) > 0: // an exact retry
			i := rng.Intn(len(done))
			return eventstore.AppendRequest{Stream: doneStreams[i], Expected: exp, Events: done[i]}
		case k == 1 && len(done) > 0: // a partial overlap
			i := rng.Intn(len(done))
			return eventstore.AppendRequest{Stream: doneStreams[i], Expected: eventstore.Any,
				Events: append([]eventstore.EventData{done[i][0]}, event())}
		case k == 2: // invalid
			return eventstore.AppendRequest{Stream: stream, Expected: exp, Events: []eventstore.EventData{{ID: newID(), Type: ""}}}
		}
		evs := make([]eventstore.EventData, 1+rng.Intn(4))
		for i := range evs {
			evs[i] = event()
		}
		done, doneStreams = append(done, evs), append(doneStreams, stream)
		if rng.Intn(3) == 0 {
			exp = eventstore.Any // most appends should land
		}
		return eventstore.AppendRequest{Stream: stream, Expected: exp, Events: evs}
	}
	ops := make([][]eventstore.AppendRequest, n)
	for i := range ops {
		reqs := make([]eventstore.AppendRequest, 1+rng.Intn(3))
		for j := range reqs {
			reqs[j] = request()
		}
		ops[i] = reqs
	}
	return ops
}

// describeOutcomes renders AppendMany's outcomes for comparison: results,
// and errors by kind (a version conflict with its actual version).
func describeOutcomes(out []eventstore.AppendOutcome, err error) string {
	if err != nil {
		return "call error: " + err.Error()
	}
	s := ""
	for _, o := range out {
		var vc *eventstore.VersionConflictError
		var ie *eventstore.InvalidEventError
		switch {
		case o.Err == nil:
			s += fmt.Sprintf("%+v; ", o.Result)
		case errors.As(o.Err, &vc):
			s += fmt.Sprintf("conflict %s actual %d; ", vc.Expected, vc.Actual)
		case errors.As(o.Err, &ie):
			s += fmt.Sprintf("invalid %d %s; ", ie.Index, ie.Field)
		case errors.Is(o.Err, eventstore.ErrIdempotencyConflict):
			s += "idempotency conflict; "
		default:
			s += "error " + o.Err.Error() + "; "
		}
	}
	return s
}
