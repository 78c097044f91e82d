package postgres_test

// This test imports the bbolt adapter: adapters never import each other,
// but the equivalence of two adapters can only be tested with both. Only
// this external test package does; the postgres package itself does not.

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/bolt"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
)

// TestEquivalenceWithBolt runs the seeded workload of
// TestEquivalenceWithMemory (fixed ids, times and clock; appends, batches,
// conflicts, retries, invalid input) on the bbolt adapter and on PostgreSQL.
// Every outcome, every stored envelope (byte for byte in the storage layout,
// read back from the closed bbolt file) and the head hash must be identical.
// Then the bbolt log is imported into an empty PostgreSQL database
// (Store.Import, as hodei migrate does): the copy is identical too.
func TestEquivalenceWithBolt(t *testing.T) {
	clock := func() time.Time { return time.Date(2026, 11, 27, 4, 5, 6, 789012345, time.UTC) }
	ops := equivalenceWorkload(42, 400)
	path := filepath.Join(t.TempDir(), "events.db")
	bs, err := bolt.Open(path, bolt.Options{Clock: clock, NoSync: true})
	if err != nil {
		t.Fatalf("bolt.Open() = %v", err)
	}
	defer bs.Close()
	stores := []struct {
		name string
		s    eventstore.Store
	}{
		{"bolt", bs},
		{"postgres", open(t, pgtest.NewDatabase(t), postgres.Options{Clock: clock})},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	outcomes := map[string][]string{}
	for _, st := range stores {
		for _, op := range ops {
			out, err := st.s.AppendMany(ctx, op)
			outcomes[st.name] = append(outcomes[st.name], describeOutcomes(out, err))
		}
	}
	if d := cmp.Diff(outcomes["bolt"], outcomes["postgres"]); d != "" {
		t.Fatalf("outcomes differ (-bolt +postgres):\n%s", d)
	}
	pgs := stores[1].s
	for i := 0; i < 12; i++ {
		stream := fmt.Sprintf("job-%d", i)
		a, errA := bs.ReadStream(ctx, stream, 1, 1000)
		b, errB := pgs.ReadStream(ctx, stream, 1, 1000)
		if errA != nil || errB != nil {
			t.Fatalf("ReadStream(%s) = %v, %v", stream, errA, errB)
		}
		if d := cmp.Diff(a, b); d != "" {
			t.Fatalf("ReadStream(%s) differs (-bolt +postgres):\n%s", stream, d)
		}
	}

	// Export both logs: the bbolt one from the closed file, read-only.
	if err := bs.Close(); err != nil {
		t.Fatalf("bolt Close() = %v", err)
	}
	ro, err := bolt.Open(path, bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("bolt.Open(read-only) = %v", err)
	}
	defer ro.Close()
	boltLog, pgLog := readAll(t, ro), readAll(t, pgs)
	if len(boltLog) < 500 {
		t.Fatalf("the workload stored only %d events", len(boltLog))
	}
	if !bytes.Equal(export(boltLog), export(pgLog)) {
		if d := cmp.Diff(boltLog, pgLog); d != "" {
			t.Fatalf("logs differ (-bolt +postgres):\n%s", d)
		}
		t.Fatal("exported logs differ, envelopes compare equal")
	}
	hb, errB := ro.Head(ctx)
	hp, errP := pgs.Head(ctx)
	if errB != nil || errP != nil || hb != hp {
		t.Fatalf("Head() bolt = %+v, %v; postgres = %+v, %v", hb, errB, hp, errP)
	}

	// Round trip: the bbolt log imported verbatim into an empty database.
	copyOf := open(t, pgtest.NewDatabase(t), postgres.Options{})
	for i := 0; i < len(boltLog); i += 128 {
		if err := copyOf.Import(ctx, boltLog[i:min(i+128, len(boltLog))]); err != nil {
			t.Fatalf("Import(%d..) = %v", boltLog[i].Position, err)
		}
	}
	if !bytes.Equal(export(boltLog), export(readAll(t, copyOf))) {
		t.Fatal("the imported copy of the bolt log differs from it")
	}
	if hc, err := copyOf.Head(ctx); err != nil || hc != hb {
		t.Fatalf("Head() of the imported copy = %+v, %v; want %+v", hc, err, hb)
	}
	t.Logf("%d operations, %d events; bolt, postgres and the imported copy end at head %d %s", len(ops), len(boltLog), hb.Position, hb.Hash)
}

// export is a log in the storage layout, envelope after envelope, each
// length-prefixed: the byte form the adapters must agree on.
func export(log []eventstore.Envelope) []byte {
	var out, b []byte
	for i := range log {
		b = eventstore.MarshalEnvelope(b[:0], &log[i])
		out = fmt.Appendf(out, "%d:", len(b))
		out = append(out, b...)
	}
	return out
}
