package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAgingBound: one slot, and a continuous stream of priority-100 jobs
// that keeps it busy (one arrives and one can run every tick, so a high job
// is always waiting). A priority-0 job submitted at t0 is placed within its
// aging bound MaxAge = (100-0) * AgingRate, plus 2 ticks. Without aging it is
// never placed.
func TestAgingBound(t *testing.T) {
	const tick = time.Second
	run := func(agingRate time.Duration, ticks int) (placedAt time.Duration, ok bool) {
		s := newTest(t, Config{AgingRate: agingRate})
		upsert(t, s, t0, Worker{ID: "w", Capacity: res(1, 1000, gib)})
		var running *Placement
		start := t0.Add(20 * tick)
		for i := range ticks {
			now := t0.Add(time.Duration(i) * tick)
			if running != nil {
				s.Release(running.JobID, running.Attempt)
				running = nil
			}
			_ = s.Heartbeat("w", Telemetry{At: now})
			submit(t, s, now, Job{ID: fmt.Sprintf("high%d", i), Attempt: 1, Priority: 100, Resources: res(1, 1000, gib)})
			if now.Equal(start) {
				submit(t, s, now, Job{ID: "low", Attempt: 1, Priority: 0, Resources: res(1, 1000, gib)})
			}
			r := s.ScheduleRound(now, 0)
			if len(r.Placements) != 1 {
				t.Fatalf("tick %d: %d placements, want 1 (the slot is free)", i, len(r.Placements))
			}
			running = &r.Placements[0]
			if running.JobID == "low" {
				return now.Sub(start), true
			}
		}
		return 0, false
	}
	rate := time.Second
	maxAge := 100 * rate
	waited, ok := run(rate, 400)
	if !ok || waited > maxAge+2*tick {
		t.Fatalf("low-priority job placed after %v (placed %v), want within MaxAge %v + 2 ticks", waited, ok, maxAge)
	}
	t.Logf("placed after %v; aging bound %v", waited, maxAge)
	if _, ok := run(1000*time.Hour, 400); ok {
		t.Fatalf("without aging the low-priority job was placed: the stream does not starve it, so the test proves nothing")
	}
}

// TestPriorityOrder: with equal submit times the higher priority goes
// first; with equal priority, the earlier submit (FIFO).
func TestPriorityOrder(t *testing.T) {
	s := newTest(t, Config{})
	upsert(t, s, t0, Worker{ID: "w", Capacity: res(1, 1000, gib)})
	submit(t, s, t0,
		Job{ID: "a", Attempt: 1, Priority: 10, SubmittedAt: t0, Resources: res(1, 0, 0)},
		Job{ID: "b", Attempt: 1, Priority: 90, SubmittedAt: t0, Resources: res(1, 0, 0)},
		Job{ID: "c", Attempt: 1, Priority: 10, SubmittedAt: t0.Add(-time.Second), Resources: res(1, 0, 0)},
	)
	var order []string
	for i := range 3 {
		r := s.ScheduleRound(t0.Add(time.Duration(i)*time.Millisecond), 0)
		if len(r.Placements) != 1 {
			t.Fatalf("round %d: %d placements", i, len(r.Placements))
		}
		order = append(order, r.Placements[0].JobID)
		s.Release(r.Placements[0].JobID, 1)
	}
	if got := strings.Join(order, ","); got != "b,c,a" {
		t.Fatalf("order = %s, want b,c,a", got)
	}
}

// TestDRFPaperExample is the example of Ghodsi et al. (NSDI'11): a cluster
// of <9 CPU, 18 GB>, tenant A's tasks need <1 CPU, 4 GB>, tenant B's
// <3 CPU, 1 GB>. Progressive filling gives A 3 tasks and B 2, both at a
// dominant share of 2/3.
func TestDRFPaperExample(t *testing.T) {
	s := newTest(t, Config{})
	upsert(t, s, t0, Worker{ID: "w", Capacity: res(100, 9000, 18*gib)})
	var jobs []Job
	for i := range 10 {
		jobs = append(jobs,
			Job{ID: fmt.Sprintf("a%d", i), Attempt: 1, Queue: "A", Priority: 50, Resources: res(1, 1000, 4*gib)},
			Job{ID: fmt.Sprintf("b%d", i), Attempt: 1, Queue: "B", Priority: 50, Resources: res(1, 3000, 1*gib)})
	}
	submit(t, s, t0, jobs...)
	r := s.ScheduleRound(t0, 0)
	got := map[string]int{}
	for _, p := range r.Placements {
		got[p.Queue]++
	}
	if got["A"] != 3 || got["B"] != 2 {
		t.Fatalf("placements per tenant = %v, want A:3 B:2", got)
	}
	if len(r.Parked) != 0 {
		t.Errorf("parked %v: these jobs fit the worker, they only wait for room", r.Parked)
	}
	checkQueueUsage(t, s)
}

// TestWeightedDRF: with weights 2:1 and identical jobs, the heavier queue
// gets twice the tasks.
func TestWeightedDRF(t *testing.T) {
	s := newTest(t, Config{QueueWeights: map[string]float64{"heavy": 2}})
	upsert(t, s, t0, Worker{ID: "w", Capacity: res(100, 12000, 100*gib)})
	var jobs []Job
	for i := range 20 {
		jobs = append(jobs,
			Job{ID: fmt.Sprintf("h%d", i), Attempt: 1, Queue: "heavy", Resources: res(1, 1000, gib)},
			Job{ID: fmt.Sprintf("l%d", i), Attempt: 1, Queue: "light", Resources: res(1, 1000, gib)})
	}
	submit(t, s, t0, jobs...)
	got := map[string]int{}
	for _, p := range s.ScheduleRound(t0, 0).Placements {
		got[p.Queue]++
	}
	if got["heavy"] != 8 || got["light"] != 4 {
		t.Fatalf("placements = %v, want heavy:8 light:4", got)
	}
}

// TestParkedReasonAndWake: a job nothing can run is parked with a reason an
// operator can act on, is not retried in a loop, and is placed once matching
// capacity appears.
func TestParkedReasonAndWake(t *testing.T) {
	s := newTest(t, Config{})
	upsert(t, s, t0, Worker{ID: "small", Labels: map[string]string{"zone": "eu"}, Capacity: res(4, 4000, 16*gib)})
	upsert(t, s, t0, Worker{ID: "ssd", Labels: map[string]string{"ssd": "true"}, Capacity: res(4, 4000, 16*gib)})
	submit(t, s, t0,
		job("gpu", res(1, 1000, gib), Eq("gpu", "true")),
		job("big", res(1, 1000, 64*gib)),
		job("zones", res(1, 1000, gib), Eq("zone", "eu"), Exists("ssd")),
		job("cpu", res(1, 8000, gib), In("zone", "eu", "us")),
	)
	r := s.ScheduleRound(t0, 0)
	want := map[string]string{
		"gpu":   "no worker has label gpu=true",
		"big":   "needs 64 GiB memory, largest worker offers 16 GiB",
		"zones": "no worker matches all of ssd,zone=eu",
		"cpu":   "needs 8 CPU, largest matching worker offers 4 CPU",
	}
	if len(r.Parked) != len(want) || len(r.Placements) != 0 {
		t.Fatalf("round = %+v, want 4 parked", r)
	}
	for _, p := range r.Parked {
		if p.Reason != want[p.JobID] {
			t.Errorf("%s parked for %q, want %q", p.JobID, p.Reason, want[p.JobID])
		}
	}
	if got := s.Parked(); len(got) != 4 {
		t.Errorf("Parked() = %v", got)
	}

	// No tight loop: more rounds at the same time decide nothing.
	before := s.Stats().Decisions
	for range 10 {
		if r := s.ScheduleRound(t0, 0); len(r.Parked)+len(r.Placements) != 0 {
			t.Fatalf("idle round did something: %+v", r)
		}
	}
	if d := s.Stats().Decisions - before; d != 0 {
		t.Fatalf("%d decisions in idle rounds, want 0", d)
	}

	// A worker that matches nothing parked wakes nothing.
	upsert(t, s, t0, Worker{ID: "other", Labels: map[string]string{"zone": "us"}, Capacity: res(1, 1000, gib)})
	s.ScheduleRound(t0, 0)
	if d := s.Stats().Decisions - before; d != 0 {
		t.Fatalf("%d decisions after an unrelated worker event, want 0", d)
	}

	// Matching capacity appears: gpu and big are placed on the next round.
	upsert(t, s, t0, Worker{ID: "gpu1", Labels: map[string]string{"gpu": "true"}, Capacity: res(4, 4000, 16*gib)})
	upsert(t, s, t0, Worker{ID: "huge", Capacity: res(4, 4000, 128*gib)})
	r = s.ScheduleRound(t0.Add(time.Millisecond), 0)
	got := map[string]string{}
	for _, p := range r.Placements {
		got[p.JobID] = p.WorkerID
	}
	if got["gpu"] != "gpu1" || got["big"] != "huge" || len(got) != 2 {
		t.Fatalf("placements after new workers = %v, want gpu on gpu1 and big on huge", got)
	}
	if st := s.Stats(); st.Parked != 2 {
		t.Fatalf("Stats().Parked = %d, want 2", st.Parked)
	}
	checkInvariants(t, s)
}

// TestParkedPeriodicRetry: parked shapes are re-checked on a jittered,
// doubling schedule, one probe per shape however many jobs it holds, and an
// unchanged reason is reported only once.
func TestParkedPeriodicRetry(t *testing.T) {
	s := newTest(t, Config{ParkedRetryMin: 10 * time.Second, ParkedRetryMax: 80 * time.Second})
	upsert(t, s, t0, Worker{ID: "w", Capacity: res(4, 4000, 16*gib)})
	var jobs []Job
	for i := range 100 {
		jobs = append(jobs, job(fmt.Sprintf("j%d", i), res(1, 1000, gib), Eq("gpu", "true")))
	}
	submit(t, s, t0, jobs...)
	r := s.ScheduleRound(t0, 0)
	if len(r.Parked) != 100 {
		t.Fatalf("first round parked %d, want 100 (each reported once)", len(r.Parked))
	}
	now := t0
	var gaps []time.Duration
	for range 6 {
		next := r.NextRetry
		if next.IsZero() {
			t.Fatalf("no retry scheduled for parked jobs")
		}
		gaps = append(gaps, next.Sub(now))
		now = next
		_ = s.Heartbeat("w", Telemetry{At: now})
		before := s.Stats().Decisions
		r = s.ScheduleRound(now, 0)
		if d := s.Stats().Decisions - before; d != 1 {
			t.Fatalf("retry at %v made %d decisions, want 1 probe for the shape", now.Sub(t0), d)
		}
		if len(r.Parked) != 0 {
			t.Fatalf("retry re-reported %d parked jobs with an unchanged reason", len(r.Parked))
		}
	}
	for i, g := range gaps {
		lo, hi := 10*time.Second<<i, 10*time.Second<<i
		if hi > 80*time.Second {
			lo, hi = 80*time.Second, 80*time.Second
		}
		if float64(g) < 0.8*float64(lo) || float64(g) > 1.2*float64(hi) {
			t.Errorf("retry gap %d = %v, want %v +-20%%", i, g, lo)
		}
	}
	// The matching worker arrives: the probe succeeds and the other 99 follow.
	upsert(t, s, now, Worker{ID: "gpu", Labels: map[string]string{"gpu": "true"}, Capacity: res(200, 200000, 200*gib)})
	r = s.ScheduleRound(now, 0)
	if len(r.Placements) != 100 {
		t.Fatalf("%d placed after the gpu worker joined, want 100", len(r.Placements))
	}
	if st := s.Stats(); st.Parked != 0 || st.Active != 0 {
		t.Fatalf("stats after placing all: %+v", st)
	}
}

// TestBlockedWaitsForRelease: a job that fits but finds no room is not
// reported as unschedulable, is not retried in a loop, and is placed when a
// release frees room.
func TestBlockedWaitsForRelease(t *testing.T) {
	s := newTest(t, Config{})
	upsert(t, s, t0, Worker{ID: "w", Capacity: res(1, 1000, gib)})
	submit(t, s, t0, job("first", res(1, 1000, gib)), job("second", res(1, 1000, gib)))
	r := s.ScheduleRound(t0, 0)
	if len(r.Placements) != 1 || len(r.Parked) != 0 {
		t.Fatalf("round = %+v, want 1 placement and nothing parked", r)
	}
	if r.NextRetry.IsZero() || r.NextRetry.Sub(t0) < 800*time.Millisecond {
		t.Fatalf("NextRetry = %v, want about 1s of backoff", r.NextRetry)
	}
	before := s.Stats().Decisions
	s.ScheduleRound(t0.Add(time.Millisecond), 0)
	if d := s.Stats().Decisions - before; d != 0 {
		t.Fatalf("%d decisions while backed off and nothing changed", d)
	}
	if _, ok := s.Release(r.Placements[0].JobID, 1); !ok {
		t.Fatal("Release() = false")
	}
	if _, ok := s.Release(r.Placements[0].JobID, 1); ok {
		t.Fatal("second Release() = true, want false (idempotent)")
	}
	r2 := s.ScheduleRound(t0.Add(2*time.Millisecond), 0)
	if len(r2.Placements) != 1 || r2.Placements[0].JobID == r.Placements[0].JobID {
		t.Fatalf("after release: %+v, want the other job placed", r2)
	}
	checkInvariants(t, s)
}

func TestRemovePendingJob(t *testing.T) {
	s := newTest(t, Config{})
	submit(t, s, t0, job("a", res(1, 0, 0)), job("b", res(1, 0, 0), Eq("x", "y")))
	s.ScheduleRound(t0, 0) // both parked: no workers
	if !s.Remove("a") || !s.Remove("b") {
		t.Fatal("Remove() = false for pending jobs")
	}
	if s.Remove("a") {
		t.Fatal("Remove() = true twice")
	}
	upsert(t, s, t0, Worker{ID: "w", Labels: map[string]string{"x": "y"}, Capacity: res(2, 0, 0)})
	if r := s.ScheduleRound(t0, 0); len(r.Placements) != 0 {
		t.Fatalf("removed jobs were placed: %+v", r.Placements)
	}
	if st := s.Stats(); st.Active+st.Blocked+st.Parked != 0 {
		t.Fatalf("stats after removing everything: %+v", st)
	}
	// Resubmitting as a new attempt works.
	submit(t, s, t0, Job{ID: "a", Attempt: 2, Resources: res(1, 0, 0)})
	if r := s.ScheduleRound(t0, 0); len(r.Placements) != 1 || r.Placements[0].Attempt != 2 {
		t.Fatalf("resubmitted attempt: %+v", r.Placements)
	}
}

func TestSubmitRejectsBadInput(t *testing.T) {
	s := newTest(t, Config{})
	tests := []struct {
		j     Job
		field string
	}{
		{Job{}, "id"},
		{Job{ID: "a", Resources: res(1, -1, 0)}, "resources.cpu_millis"},
		{Job{ID: "a", Resources: res(-1, 0, 0)}, "resources.slots"},
		{Job{ID: "a", Resources: res(0, 0, -5)}, "resources.memory_bytes"},
		{Job{ID: "a", Priority: 5000}, "priority"},
		{Job{ID: "a", Selector: Selector{{Key: "", Op: OpEq, Values: []string{"x"}}}}, "selector[0].key"},
		{Job{ID: "a", Selector: Selector{{Key: "k", Op: OpEq}}}, "selector[0].values"},
		{Job{ID: "a", Selector: Selector{{Key: "k", Op: 99}}}, "selector[0].op"},
		{Job{ID: "a", Affinity: []Preference{{Requirement: Exists("k"), Weight: 0}}}, "affinity[0].weight"},
		{Job{ID: "a", Queue: "bad queue"}, "queue"},
	}
	for _, tt := range tests {
		err := s.Submit(t0, job("ok", res(1, 0, 0)), tt.j)
		var ie *InvalidError
		if !errors.As(err, &ie) || ie.Field != tt.field {
			t.Errorf("Submit(%+v) = %v, want an InvalidError on %q", tt.j, err, tt.field)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "submit jobs[1]") {
			t.Errorf("error %q does not name the op and job", err)
		}
	}
	if st := s.Stats(); st.Active != 0 {
		t.Fatalf("a rejected batch was half-applied: %+v", st)
	}
	submit(t, s, t0, job("dup", res(1, 0, 0)))
	if err := s.Submit(t0, job("dup", res(1, 0, 0))); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Submit(dup) = %v, want ErrDuplicate", err)
	}
	if err := s.Submit(t0, job("x", res(1, 0, 0)), job("x", res(1, 0, 0))); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Submit(x, x) = %v, want ErrDuplicate", err)
	}
	if err := s.UpsertWorker(t0, Worker{ID: "w", Capacity: res(1, -1, 0)}); !errors.Is(err, ErrInvalid) ||
		!strings.Contains(err.Error(), "capacity.cpu_millis") {
		t.Errorf("UpsertWorker(negative cpu) = %v", err)
	}
	if err := s.UpsertWorker(t0, Worker{ID: "w", Labels: map[string]string{"a b": "c"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("UpsertWorker(bad label) = %v", err)
	}
	if err := s.Heartbeat("nope", Telemetry{At: t0}); !errors.Is(err, ErrUnknownWorker) {
		t.Errorf("Heartbeat(unknown) = %v", err)
	}
	if err := s.Heartbeat("nope", Telemetry{At: t0, CPUFraction: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Heartbeat(negative cpu) = %v", err)
	}
	if _, err := New(Config{Jitter: 2}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New(jitter 2) = %v", err)
	}
}

// TestRemoveWorkerReturnsReservations: the core re-queues the jobs of a lost
// worker from what RemoveWorker returns; queue usage follows.
func TestRemoveWorkerReturnsReservations(t *testing.T) {
	s := newTest(t, Config{})
	upsert(t, s, t0, Worker{ID: "w", Capacity: res(4, 4000, 4*gib)})
	submit(t, s, t0, Job{ID: "a", Attempt: 1, Queue: "q", Resources: res(1, 1000, gib)}, job("b", res(1, 1000, gib)))
	if r := s.ScheduleRound(t0, 0); len(r.Placements) != 2 {
		t.Fatalf("placements = %v", r.Placements)
	}
	got, err := s.RemoveWorker("w")
	if err != nil || len(got) != 2 {
		t.Fatalf("RemoveWorker() = %v, %v; want 2 reservations", got, err)
	}
	if _, err := s.RemoveWorker("w"); !errors.Is(err, ErrUnknownWorker) {
		t.Fatalf("RemoveWorker twice = %v", err)
	}
	if _, ok := s.Release("a", 1); ok {
		t.Fatal("Release after RemoveWorker = true")
	}
	checkQueueUsage(t, s)
	checkInvariants(t, s)
}

// TestDrainAndReady: a draining worker keeps its jobs and gets no new ones;
// a job only it could run is parked for that reason and placed when the
// worker is ready again.
func TestDrainAndReady(t *testing.T) {
	s := newTest(t, Config{})
	upsert(t, s, t0, Worker{ID: "w", Labels: map[string]string{"pool": "a"}, Capacity: res(4, 4000, 4*gib)})
	submit(t, s, t0, job("running", res(1, 1000, gib)))
	if r := s.ScheduleRound(t0, 0); len(r.Placements) != 1 {
		t.Fatalf("placements = %v", r.Placements)
	}
	if err := s.Drain("w"); err != nil {
		t.Fatal(err)
	}
	submit(t, s, t0, job("next", res(1, 1000, gib), Eq("pool", "a")))
	r := s.ScheduleRound(t0, 0)
	if len(r.Placements) != 0 || len(r.Parked) != 1 || !strings.Contains(r.Parked[0].Reason, "draining or lost") {
		t.Fatalf("round on a draining worker = %+v", r)
	}
	if wi, _ := s.Worker("w"); wi.Jobs != 1 || wi.State != StateDraining {
		t.Fatalf("draining worker = %+v, want its running job kept", wi)
	}
	if err := s.SetWorkerState("w", StateReady); err != nil {
		t.Fatal(err)
	}
	if r := s.ScheduleRound(t0, 0); len(r.Placements) != 1 || r.Placements[0].JobID != "next" {
		t.Fatalf("after undrain: %+v", r)
	}
	if err := s.Drain("nope"); !errors.Is(err, ErrUnknownWorker) {
		t.Fatalf("Drain(unknown) = %v", err)
	}
}

// TestCapacityShrinkKeepsReservations: declaring less capacity than is
// reserved keeps the reservations and admits nothing until jobs end.
func TestCapacityShrinkKeepsReservations(t *testing.T) {
	s := newTest(t, Config{})
	upsert(t, s, t0, Worker{ID: "w", Capacity: res(4, 4000, 4*gib)})
	submit(t, s, t0, job("a", res(1, 1000, gib)), job("b", res(1, 1000, gib)))
	if r := s.ScheduleRound(t0, 0); len(r.Placements) != 2 {
		t.Fatalf("placements = %v", r.Placements)
	}
	upsert(t, s, t0, Worker{ID: "w", Capacity: res(1, 1000, gib)})
	if err := s.Reserve(t0, Reservation{JobID: "c", Attempt: 1, WorkerID: "w", Resources: res(1, 0, 0)}); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("Reserve over shrunk capacity = %v, want ErrNoRoom", err)
	}
	s.Release("a", 1)
	if err := s.Reserve(t0, Reservation{JobID: "c", Attempt: 1, WorkerID: "w", Resources: res(1, 0, 0)}); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("Reserve with 1 of 1 slots still held = %v, want ErrNoRoom", err)
	}
	s.Release("b", 1)
	if err := s.Reserve(t0, Reservation{JobID: "c", Attempt: 1, WorkerID: "w", Resources: res(1, 0, 0)}); err != nil {
		t.Fatalf("Reserve after the jobs ended = %v", err)
	}
	checkInvariants(t, s)
}

// TestReadySignal: Submit and Release signal Ready; a heartbeat that
// changes nothing for the queue does not.
func TestReadySignal(t *testing.T) {
	s := newTest(t, Config{})
	drain := func() bool {
		select {
		case <-s.Ready():
			return true
		default:
			return false
		}
	}
	upsert(t, s, t0, Worker{ID: "w", Capacity: res(1, 1000, gib)})
	drain()
	submit(t, s, t0, job("a", res(1, 0, 0)))
	if !drain() {
		t.Fatal("Submit did not signal Ready")
	}
	s.ScheduleRound(t0, 0)
	if err := s.Heartbeat("w", Telemetry{At: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if drain() {
		t.Fatal("a routine heartbeat signalled Ready")
	}
	s.Release("a", 1)
	if !drain() {
		t.Fatal("Release did not signal Ready")
	}
}

func TestReasonForSlotsOnlyWorker(t *testing.T) {
	s := newTest(t, Config{})
	upsert(t, s, t0, Worker{ID: "w", Capacity: res(0, 4000, gib)})
	submit(t, s, t0, job("a", res(0, 0, 0)), job("b", res(2, 0, 0)))
	r := s.ScheduleRound(t0, 0)
	want := map[string]string{"a": "needs 1 slot, largest worker offers 0", "b": "needs 2 slots, largest worker offers 0"}
	if len(r.Parked) != 2 {
		t.Fatalf("round = %+v", r)
	}
	for _, p := range r.Parked {
		if p.Reason != want[p.JobID] {
			t.Errorf("%s parked for %q, want %q", p.JobID, p.Reason, want[p.JobID])
		}
	}
}
