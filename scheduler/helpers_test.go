package scheduler

import (
	"fmt"
	"maps"
	"testing"
	"time"
)

const gib = 1 << 30

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTest(t testing.TB, cfg Config) *Scheduler {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return s
}

func upsert(t testing.TB, s *Scheduler, now time.Time, w Worker) {
	t.Helper()
	if err := s.UpsertWorker(now, w); err != nil {
		t.Fatalf("UpsertWorker(%s) = %v", w.ID, err)
	}
}

func submit(t testing.TB, s *Scheduler, now time.Time, jobs ...Job) {
	t.Helper()
	if err := s.Submit(now, jobs...); err != nil {
		t.Fatalf("Submit() = %v", err)
	}
}

func res(slots, cpu int64, mem int64) Resources {
	return Resources{Slots: slots, CPUMillis: cpu, MemoryBytes: mem}
}

func job(id string, r Resources, sel ...Requirement) Job {
	return Job{ID: id, Attempt: 1, Priority: 50, Resources: r, Selector: sel}
}

// checkInvariants stops the world (the table's write lock) and checks every
// structural invariant of the worker table against brute force.
func checkInvariants(t testing.TB, s *Scheduler) {
	t.Helper()
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	inShards := 0
	for i := range c.shards {
		for k, r := range c.shards[i].m {
			inShards++
			if r.key != k {
				t.Errorf("shard key %v holds reservation for %v", k, r.key)
			}
			if c.ids[r.w.id] != r.w {
				t.Errorf("reservation %v on removed worker %s", k, r.w.id)
			}
		}
	}
	inWorkers := 0
	var total Resources
	for id, w := range c.ids {
		if c.slots[w.slot] != w {
			t.Errorf("worker %s: slot %d holds another worker", id, w.slot)
		}
		var sum Resources
		for i, r := range w.res {
			sum = sum.Add(r.res)
			if r.idx != i || r.w != w {
				t.Errorf("worker %s: reservation %v has idx %d at %d", id, r.key, r.idx, i)
			}
			if got := c.shard(r.key).m[r.key]; got != r {
				t.Errorf("worker %s: reservation %v missing from its shard", id, r.key)
			}
		}
		inWorkers += len(w.res)
		if got := w.reserved(); got != sum {
			t.Errorf("worker %s: reserved = %v, sum of reservations %v", id, got, sum)
		}
		if !sum.LessOrEqual(w.capacity) {
			t.Errorf("worker %s: over-committed: reserved %v > capacity %v", id, sum, w.capacity)
		}
		open := c.open[w.slot>>6].Load()&(1<<(w.slot&63)) != 0
		if want := sum.Slots < w.capacity.Slots; open != want {
			t.Errorf("worker %s: open bit %v, want %v", id, open, want)
		}
		if !hasBit(c.present, w.slot) || hasBit(c.ready, w.slot) != (w.state == StateReady) {
			t.Errorf("worker %s: present/ready bits wrong", id)
		}
		if w.state == StateReady {
			total = total.Add(w.capacity)
		}
		for k, v := range w.labels {
			ki := c.index[k]
			if ki == nil || !ki.all.has(w.slot) || ki.vals[v] == nil || !ki.vals[v].has(w.slot) {
				t.Errorf("worker %s: label %s=%s not indexed", id, k, v)
			}
		}
	}
	for k, ki := range c.index {
		n := 0
		for v, sp := range ki.vals {
			n += sp.n
			if sp.n == 0 {
				t.Errorf("index %s=%s: empty span kept", k, v)
			}
		}
		if n != ki.all.n {
			t.Errorf("index %s: %d workers by value, %d with key", k, n, ki.all.n)
		}
	}
	if inShards != inWorkers {
		t.Errorf("%d reservations in shards, %d on workers", inShards, inWorkers)
	}
	if total != c.total {
		t.Errorf("total ready capacity %v, want %v", c.total, total)
	}
	refs := 0
	for k, ls := range c.labelSets {
		refs += ls.refs
		if labelKey(ls.labels) != k || ls.refs <= 0 {
			t.Errorf("label set %q: refs %d, labels %v", k, ls.refs, ls.labels)
		}
	}
	if refs != len(c.ids) {
		t.Errorf("label sets hold %d references, %d workers", refs, len(c.ids))
	}
	for id, w := range c.ids {
		if c.labelSets[labelKey(w.labels)] != w.ls || !maps.Equal(w.ls.labels, w.labels) {
			t.Errorf("worker %s: labels not interned", id)
		}
		if c.hotPtr[w.slot] != w.hot {
			t.Errorf("worker %s: slot %d points at another hot record", id, w.slot)
		}
	}
	if popcount(c.present) != len(c.ids) {
		t.Errorf("present set has %d, table %d", popcount(c.present), len(c.ids))
	}
}

func ids(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}
