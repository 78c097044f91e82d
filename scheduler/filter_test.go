package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// feasibleForTest lists, through the real filter path (selector cache, label
// index, dense sets, sampler with no limit), every worker the job could be
// placed on now.
func (s *Scheduler) feasibleForTest(t testing.TB, j Job, now time.Time) []string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	it, err := s.newItem(now, &j)
	if err != nil {
		t.Fatalf("newItem: %v", err)
	}
	it.t = &tenant{name: "x"}
	s.c.mu.RLock()
	defer s.c.mu.RUnlock()
	e := s.entryLocked(it)
	n, _ := s.scanAll(e, it, now.UnixNano())
	out := make([]string, n)
	for i := range out {
		out[i] = s.c.slots[s.cand[i].slot].id
	}
	slices.Sort(out)
	return out
}

func randomLabels(r *rand.Rand) map[string]string {
	l := map[string]string{}
	for k := range 6 {
		if r.IntN(10) < 6 {
			l[fmt.Sprintf("k%d", k)] = fmt.Sprintf("v%d", r.IntN(4))
		}
	}
	if r.IntN(4) == 0 {
		l["host"] = fmt.Sprintf("h%d", r.IntN(1000)) // near-unique values
	}
	return l
}

func randomRequirement(r *rand.Rand) Requirement {
	k := fmt.Sprintf("k%d", r.IntN(7))                          // k6 exists on no worker
	v := func() string { return fmt.Sprintf("v%d", r.IntN(5)) } // v4 on none
	switch r.IntN(6) {
	case 0:
		return Eq(k, v())
	case 1:
		return NotEq(k, v())
	case 2:
		return Exists(k)
	case 3:
		return NotExists(k)
	case 4:
		return In(k, v(), v())
	}
	return NotIn(k, v(), v())
}

// TestFilterIndexAgreesWithBruteForce: for random workers (labels, capacity,
// reservations, states, liveness) and random jobs, the index-based filter
// returns exactly the workers brute force finds: no false positives or
// negatives. The table is mutated between rounds, so the selector cache's
// invalidation is exercised too. 3 rounds x 60 jobs x 300 workers = 54,000
// (job, worker) pairs.
func TestFilterIndexAgreesWithBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	s := newTest(t, Config{})
	now := t0
	const nw = 300
	names := ids(nw, "w")
	for _, id := range names {
		upsert(t, s, now.Add(-time.Duration(r.IntN(90))*time.Second), Worker{ID: id, Labels: randomLabels(r),
			Capacity: res(int64(1+r.IntN(4)), int64(1000*(1+r.IntN(8))), int64(1+r.IntN(16))*gib),
			State:    State(r.IntN(10) / 8)}) // 80% ready, 20% draining
	}
	// Random reservations so that free capacity varies.
	for i := range 600 {
		_ = s.Reserve(now, Reservation{JobID: fmt.Sprintf("r%d", i), Attempt: 1, WorkerID: names[r.IntN(nw)],
			Resources: res(1, int64(500*r.IntN(4)), int64(r.IntN(4))*gib)})
	}
	pairs := 0
	for round := range 3 {
		// Mutate: relabel, remove and re-add, change state.
		for range 40 {
			id := names[r.IntN(nw)]
			wi, ok := s.Worker(id)
			switch r.IntN(4) {
			case 0:
				if ok {
					if _, err := s.RemoveWorker(id); err != nil {
						t.Fatal(err)
					}
				}
			case 1:
				if !ok { // re-register a removed worker
					upsert(t, s, now, Worker{ID: id, Labels: randomLabels(r), Capacity: res(2, 4000, 8*gib)})
				}
			default:
				if ok {
					wi.Labels = randomLabels(r)
					wi.Worker.State = State(r.IntN(3))
					upsert(t, s, now.Add(-time.Duration(r.IntN(90))*time.Second), wi.Worker)
				}
			}
		}
		checkInvariants(t, s)
		for j := range 60 {
			var sel Selector
			for range r.IntN(4) {
				sel = append(sel, randomRequirement(r))
			}
			jb := job(fmt.Sprintf("j%d-%d", round, j), res(int64(r.IntN(3)), int64(500*r.IntN(8)), int64(r.IntN(10))*gib), sel...)
			got := s.feasibleForTest(t, jb, now)

			var want []string
			for _, wi := range s.Workers() {
				pairs++
				alive := now.Sub(wi.LastSeen) <= s.cfg.ExpireAfter
				req := jb.Resources
				req.Slots = max(req.Slots, 1)
				if wi.State == StateReady && alive && sel.Matches(wi.Labels) && fits(wi.Capacity, wi.Reserved, req) {
					want = append(want, wi.ID)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d job %s (%s, %v): index found %v, brute force %v", round, jb.ID, sel, jb.Resources, got, want)
			}
			// The label index alone against Selector.Matches.
			s.mu.Lock()
			s.c.mu.RLock()
			e := s.entryLocked(&item{entry: s.intern(sel)})
			for slot, w := range s.c.slots {
				if w != nil && hasBit(e.bits, slot) != sel.Matches(w.labels) {
					t.Errorf("index says %s matches %s = %v; labels %v", w.id, sel, hasBit(e.bits, slot), w.labels)
				}
			}
			s.c.mu.RUnlock()
			s.mu.Unlock()
		}
	}
	if pairs < 10000 {
		t.Fatalf("only %d pairs checked", pairs)
	}
	t.Logf("%d (job, worker) pairs agree", pairs)
}
