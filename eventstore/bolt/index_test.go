package bolt

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"slices"
	"testing"

	"github.com/hodei-jobs/hodei/eventstore"
)

// TestSortIDs: random (v4) ids, ids sharing their first bytes (time-ordered
// v7) and sizes around the thresholds all sort into byte order.
func TestSortIDs(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	random := func(eventstore.ID) eventstore.ID {
		var id eventstore.ID
		rng.Read(id[:])
		return id
	}
	sharedPrefix := func(eventstore.ID) eventstore.ID {
		var id eventstore.ID
		rng.Read(id[:])
		binary.BigEndian.PutUint32(id[:4], 0x01900000) // same millisecond-ish prefix
		id[4] = byte(rng.Intn(2))
		return id
	}
	for _, gen := range []func(eventstore.ID) eventstore.ID{random, sharedPrefix} {
		for _, n := range []int{0, 1, 17, 255, 256, 1000, 4096, 50000} {
			ids := make([]idPos, n)
			for i := range ids {
				ids[i] = newIDPos(gen(eventstore.ID{}), uint64(i+1))
			}
			if n > 10 {
				ids[n-1] = ids[3] // a repeated id must not be lost
			}
			want := slices.Clone(ids)
			slices.SortStableFunc(want, func(a, b idPos) int {
				x, y := a.id(), b.id()
				return bytes.Compare(x[:], y[:])
			})
			sortIDs(ids, nil)
			for i := range ids {
				if ids[i].id() != want[i].id() {
					t.Fatalf("n=%d: sortIDs()[%d] = %s, want %s", n, i, ids[i].id(), want[i].id())
				}
			}
			if !slices.IsSortedFunc(ids, cmpIDPos) {
				t.Fatalf("n=%d: sortIDs() not sorted", n)
			}
		}
	}
}

// TestGenerationEventID: ids are found in the sorted runs and in the
// unsorted rest, and a merged generation finds both halves' ids.
func TestGenerationEventID(t *testing.T) {
	const n = 3*idRun + 100
	g := newGeneration(0, 0)
	ids := make([]eventstore.ID, n)
	for i := range ids {
		ids[i] = eventstore.NewID()
		g.add(&eventstore.Envelope{Position: uint64(i + 1), EventID: ids[i], StreamID: "s", StreamVersion: uint64(i + 1)})
	}
	if g.sorted != 3*idRun {
		t.Fatalf("sorted = %d, want %d", g.sorted, 3*idRun)
	}
	for i, id := range ids {
		if p, ok := g.eventID(id); !ok || p != uint64(i+1) {
			t.Fatalf("eventID(ids[%d]) = %d, %v; want %d", i, p, ok, i+1)
		}
	}
	if _, ok := g.eventID(eventstore.NewID()); ok {
		t.Fatal("eventID(new id) found it")
	}
	h := newGeneration(g.hi, 0)
	more := make([]eventstore.ID, idRun/2)
	for i := range more {
		more[i] = eventstore.NewID()
		h.add(&eventstore.Envelope{Position: g.hi + uint64(i+1), EventID: more[i], StreamID: "t", StreamVersion: uint64(i + 1)})
	}
	m := mergeGenerations(g, h)
	for i, id := range append(slices.Clone(ids), more...) {
		if p, ok := m.eventID(id); !ok || p != uint64(i+1) {
			t.Fatalf("merged eventID(%d) = %d, %v; want %d", i, p, ok, i+1)
		}
	}
	sorted := m.sortedIDs()
	if len(sorted) != n+len(more) || !slices.IsSortedFunc(sorted, cmpIDPos) {
		t.Fatalf("sortedIDs() = %d ids, sorted %v; want %d sorted", len(sorted), slices.IsSortedFunc(sorted, cmpIDPos), n+len(more))
	}
}
