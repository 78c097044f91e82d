package scheduler

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReserveRaceExactlyOneWins: 100 goroutines race to reserve a worker
// with room for exactly one job; exactly one wins, and the 99 others are
// then placed elsewhere by a round, never on the full worker.
func TestReserveRaceExactlyOneWins(t *testing.T) {
	s := newTest(t, Config{})
	upsert(t, s, t0, Worker{ID: "one", Capacity: res(1, 1000, gib)})
	const n = 100
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = s.Reserve(t0, Reservation{JobID: fmt.Sprintf("j%d", i), Attempt: 1, WorkerID: "one",
				Resources: res(1, 1000, gib)})
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	var losers []Job
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, ErrNoRoom):
			losers = append(losers, job(fmt.Sprintf("j%d", i), res(1, 1000, gib)))
		default:
			t.Errorf("Reserve(j%d) = %v, want nil or ErrNoRoom", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d goroutines won the last slot, want exactly 1", wins)
	}
	for i := range n - 1 {
		upsert(t, s, t0, Worker{ID: fmt.Sprintf("other%d", i), Capacity: res(1, 1000, gib)})
	}
	submit(t, s, t0, losers...)
	r := s.ScheduleRound(t0, 0)
	if len(r.Placements) != n-1 {
		t.Fatalf("round placed %d of the %d losers", len(r.Placements), n-1)
	}
	for _, p := range r.Placements {
		if p.WorkerID == "one" {
			t.Errorf("%s placed on the full worker", p.JobID)
		}
	}
	checkInvariants(t, s)
}

// TestNeverOvercommitUnderConcurrentFuzz runs reservers, releasers, worker
// churn (relabel, drain, remove and re-add), heartbeats and scheduling rounds
// concurrently. After every successful Reserve the worker's reserved
// resources are within its declared capacity, a watcher checks every worker
// continuously, and at the end the table's invariants hold exactly
// (reserved == sum of reservations). Run it with -race.
func TestNeverOvercommitUnderConcurrentFuzz(t *testing.T) {
	ops := 4000
	if testing.Short() {
		ops = 1000
	}
	s := newTest(t, Config{})
	const nw = 24
	names := ids(nw, "w")
	capOf := func(i int) Resources { return res(int64(2+i%3), int64(2000+1000*(i%4)), int64(2+i%5)*gib) }
	for i, id := range names {
		upsert(t, s, t0, Worker{ID: id, Labels: map[string]string{"zone": fmt.Sprint(i % 3)}, Capacity: capOf(i)})
	}
	var violations atomic.Int64
	check := func(id string) {
		if wi, ok := s.Worker(id); ok && !wi.Reserved.LessOrEqual(wi.Capacity) {
			violations.Add(1)
			t.Errorf("worker %s over-committed: %v > %v", id, wi.Reserved, wi.Capacity)
		}
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Reservers and releasers.
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			var held []Key
			for i := range ops {
				if len(held) > 0 && r.IntN(3) == 0 {
					k := held[r.IntN(len(held))]
					s.Release(k.JobID, k.Attempt)
					continue
				}
				k := Key{fmt.Sprintf("g%d-%d", g, i), 1}
				id := names[r.IntN(nw)]
				err := s.Reserve(t0, Reservation{JobID: k.JobID, Attempt: 1, WorkerID: id,
					Resources: res(1, int64(500*r.IntN(3)), int64(r.IntN(2))*gib)})
				if err == nil {
					held = append(held, k)
					check(id)
				} else if !errors.Is(err, ErrNoRoom) && !errors.Is(err, ErrUnknownWorker) {
					t.Errorf("Reserve = %v", err)
				}
			}
			for _, k := range held {
				s.Release(k.JobID, k.Attempt)
			}
		}()
	}
	// Worker churn and heartbeats. Capacity stays as declared, so
	// "reserved <= capacity" must hold at every instant.
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(99, 1))
		for i := range ops {
			k := r.IntN(nw)
			id := names[k]
			now := t0.Add(time.Duration(i) * time.Millisecond)
			switch r.IntN(5) {
			case 0:
				if _, err := s.RemoveWorker(id); err != nil && !errors.Is(err, ErrUnknownWorker) {
					t.Errorf("RemoveWorker = %v", err)
				}
			case 1:
				_ = s.SetWorkerState(id, State(r.IntN(3)))
			case 2:
				_ = s.Heartbeat(id, Telemetry{At: now, CPUFraction: r.Float64(), MemoryUsedBytes: int64(r.IntN(gib))})
			default:
				if err := s.UpsertWorker(now, Worker{ID: id, Labels: map[string]string{"zone": fmt.Sprint(r.IntN(3))},
					Capacity: capOf(k)}); err != nil {
					t.Errorf("UpsertWorker = %v", err)
				}
			}
		}
	}()
	// The scheduling loop: submit, round, release what it placed.
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(5, 5))
		var placed []Placement
		for i := range ops / 4 {
			now := t0.Add(time.Duration(i) * time.Millisecond)
			var sel Selector
			if r.IntN(2) == 0 {
				sel = Selector{Eq("zone", fmt.Sprint(r.IntN(3)))}
			}
			_ = s.Submit(now, Job{ID: fmt.Sprintf("s%d", i), Attempt: 1, Queue: fmt.Sprintf("q%d", r.IntN(3)),
				Priority: r.IntN(100), Resources: res(1, 500, gib/2), Selector: sel})
			round := s.ScheduleRound(now, 8)
			for _, p := range round.Placements {
				check(p.WorkerID)
			}
			placed = append(placed, round.Placements...)
			for len(placed) > 10 {
				s.Release(placed[0].JobID, placed[0].Attempt)
				placed = placed[1:]
			}
		}
	}()
	// A watcher checks every worker while all that runs.
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, id := range names {
				check(id)
			}
		}
	}()
	wg.Wait()
	close(stop)
	watch.Wait()
	if violations.Load() > 0 {
		t.Fatalf("%d over-commit observations", violations.Load())
	}
	checkInvariants(t, s)
	// Everything reserved is accounted for exactly once.
	per := map[string]Resources{}
	for _, r := range s.Reservations() {
		per[r.WorkerID] = per[r.WorkerID].Add(r.Resources)
	}
	for _, wi := range s.Workers() {
		if wi.Reserved != per[wi.ID] {
			t.Errorf("worker %s: reserved %v, reservations sum to %v", wi.ID, wi.Reserved, per[wi.ID])
		}
	}
	checkQueueUsage(t, s)
}

// checkQueueUsage: once a round has read the inbox, each queue's usage (the
// DRF numerator) equals the sum of its reservations.
func checkQueueUsage(t testing.TB, s *Scheduler) {
	t.Helper()
	s.ScheduleRound(t0, -1)
	perQueue := map[string]Resources{}
	for _, r := range s.Reservations() {
		perQueue[r.Queue] = perQueue[r.Queue].Add(r.Resources)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for q, tn := range s.tenants {
		if tn.usage != perQueue[q] {
			t.Errorf("queue %s: usage %v, reservations sum to %v", q, tn.usage, perQueue[q])
		}
		delete(perQueue, q)
	}
	for q, u := range perQueue {
		t.Errorf("queue %s holds %v but has no tenant", q, u)
	}
}
