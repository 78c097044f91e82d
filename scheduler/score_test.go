package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestHerding: 2,000 jobs submitted at once onto 100 idle, identical workers
// whose telemetry says "idle" (fresh, stale, or absent) land no more than
// 1.5x the mean (30) on any worker: candidates are sampled, ties broken at
// random, and each placement is charged at once (reservation + Koordinator's
// C), so the old "idle" reading does not draw the whole burst.
func TestHerding(t *testing.T) {
	for _, tc := range []struct {
		name string
		age  time.Duration // age of the last telemetry at submit; -1 none
	}{{"fresh", time.Second}, {"stale", 20 * time.Second}, {"none", -1}} {
		for _, strat := range []Strategy{Spread} {
			t.Run(tc.name+"/"+strat.String(), func(t *testing.T) {
				s := newTest(t, Config{Strategy: strat, Seed: 42})
				now := t0.Add(time.Minute)
				for i := range 100 {
					id := fmt.Sprintf("w%d", i)
					upsert(t, s, now.Add(-2*time.Second), Worker{ID: id, Labels: map[string]string{"pool": "a"}, Capacity: res(64, 64000, 256*gib)})
					if tc.age >= 0 {
						if err := s.Heartbeat(id, Telemetry{At: now.Add(-tc.age), CPUFraction: 0.01, MemoryUsedBytes: gib}); err != nil {
							t.Fatal(err)
						}
					}
				}
				var jobs []Job
				for i := range 2000 {
					jobs = append(jobs, job(fmt.Sprintf("j%d", i), res(1, 1000, gib)))
				}
				submit(t, s, now, jobs...)
				r := s.ScheduleRound(now.Add(200*time.Millisecond), 0)
				if len(r.Placements) != 2000 {
					t.Fatalf("placed %d of 2000", len(r.Placements))
				}
				per := map[string]int{}
				for _, p := range r.Placements {
					per[p.WorkerID]++
				}
				most, least := 0, 2000
				for i := range 100 {
					n := per[fmt.Sprintf("w%d", i)]
					most, least = max(most, n), min(least, n)
				}
				if most > 30 {
					t.Fatalf("busiest worker got %d jobs, more than 1.5x the mean of 20", most)
				}
				t.Logf("per-worker jobs: min %d, max %d (mean 20)", least, most)
				checkInvariants(t, s)
			})
		}
	}
}

// twoWorkers returns a scheduler with identical workers a and b, registered
// at t0, and an item to score against them.
func twoWorkers(t *testing.T, cfg Config) (*Scheduler, *worker, *worker, *item) {
	t.Helper()
	s := newTest(t, cfg)
	for _, id := range []string{"a", "b"} {
		upsert(t, s, t0, Worker{ID: id, Capacity: res(8, 8000, 32*gib)})
	}
	j := job("x", res(1, 1000, 2*gib))
	s.mu.Lock()
	it, err := s.newItem(t0, &j)
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return s, s.c.ids["a"], s.c.ids["b"], it
}

// TestFreshTelemetryAvoidsHotWorker: with fresh telemetry, a worker that
// reports 95% CPU loses to an identical one at 5%.
func TestFreshTelemetryAvoidsHotWorker(t *testing.T) {
	s, _, _, _ := twoWorkers(t, Config{})
	now := t0.Add(time.Second)
	for i := range 20 {
		now = now.Add(time.Second)
		_ = s.Heartbeat("a", Telemetry{At: now, CPUFraction: 0.95, MemoryUsedBytes: 28 * gib})
		_ = s.Heartbeat("b", Telemetry{At: now, CPUFraction: 0.05, MemoryUsedBytes: 2 * gib})
		submit(t, s, now, job(fmt.Sprintf("j%d", i), res(1, 1000, gib)))
		r := s.ScheduleRound(now, 0)
		if len(r.Placements) != 1 || r.Placements[0].WorkerID != "b" {
			t.Fatalf("job %d placed %+v, want on the cool worker b", i, r.Placements)
		}
		s.Release(r.Placements[0].JobID, 1)
	}
}

// TestStaleTelemetryIsNeutral: once a report is older than StaleAfter (3
// heartbeat intervals), it no longer counts: a worker whose last, old report
// said 95% busy scores exactly like one that never reported. Before that it
// scores lower.
func TestStaleTelemetryIsNeutral(t *testing.T) {
	s, a, b, it := twoWorkers(t, Config{})
	_ = s.Heartbeat("a", Telemetry{At: t0, CPUFraction: 0.95, MemoryUsedBytes: 30 * gib})
	fresh := t0.Add(14 * time.Second)
	if sa, sb := s.score(a.slot, it, fresh.UnixNano()), s.score(b.slot, it, fresh.UnixNano()); sa >= sb {
		t.Fatalf("fresh busy report: score(a) = %v >= score(b) = %v", sa, sb)
	}
	stale := t0.Add(16 * time.Second) // > 3 x 5s
	if sa, sb := s.score(a.slot, it, stale.UnixNano()), s.score(b.slot, it, stale.UnixNano()); sa != sb {
		t.Fatalf("stale report: score(a) = %v, score(b) = %v, want equal (neutral)", sa, sb)
	}
}

// TestExpiredTelemetryExcludes: a worker silent for longer than ExpireAfter
// gets no new jobs; a job only it could run is parked with the reason; one
// fresh heartbeat brings the worker and the job back.
func TestExpiredTelemetryExcludes(t *testing.T) {
	s := newTest(t, Config{})
	upsert(t, s, t0, Worker{ID: "silent", Labels: map[string]string{"gpu": "true"}, Capacity: res(8, 8000, 32*gib)})
	upsert(t, s, t0, Worker{ID: "live", Capacity: res(16, 8000, 32*gib)})
	now := t0.Add(61 * time.Second)
	_ = s.Heartbeat("live", Telemetry{At: now})
	for i := range 10 {
		submit(t, s, now, job(fmt.Sprintf("j%d", i), res(1, 100, gib)))
	}
	submit(t, s, now, job("gpu", res(1, 100, gib), Eq("gpu", "true")))
	r := s.ScheduleRound(now, 0)
	for _, p := range r.Placements {
		if p.WorkerID == "silent" {
			t.Fatalf("%s placed on a worker silent for 61s", p.JobID)
		}
	}
	if len(r.Placements) != 10 || len(r.Parked) != 1 || !strings.Contains(r.Parked[0].Reason, "no heartbeat for over 1m0s") {
		t.Fatalf("round = %+v, want 10 placed on live and gpu parked for no heartbeat", r)
	}
	_ = s.Heartbeat("silent", Telemetry{At: now.Add(time.Second)})
	r = s.ScheduleRound(now.Add(time.Second), 0)
	if len(r.Placements) != 1 || r.Placements[0].WorkerID != "silent" {
		t.Fatalf("after a fresh heartbeat: %+v, want gpu placed on silent", r)
	}
}

// TestPlacedSinceHeartbeatCounts (Koordinator's C): jobs placed after a
// worker's last report count against its load until the next report, which
// already includes them.
func TestPlacedSinceHeartbeatCounts(t *testing.T) {
	s, a, b, it := twoWorkers(t, Config{AllocWeight: 0, LoadWeight: 1, AffinityWeight: 0})
	_ = s.Heartbeat("a", Telemetry{At: t0})
	_ = s.Heartbeat("b", Telemetry{At: t0})
	now := t0.Add(time.Second)
	if err := s.Reserve(now, Reservation{JobID: "r", Attempt: 1, WorkerID: "a", Resources: res(1, 4000, 16*gib)}); err != nil {
		t.Fatal(err)
	}
	n := now.UnixNano()
	if sa, sb := s.score(a.slot, it, n), s.score(b.slot, it, n); sa >= sb {
		t.Fatalf("after a placement since the report: score(a) = %v >= score(b) = %v", sa, sb)
	}
	// The next report includes the job's real usage; C drops to 0.
	later := now.Add(time.Second)
	_ = s.Heartbeat("a", Telemetry{At: later, CPUFraction: 0.1, MemoryUsedBytes: gib})
	if a.sinceCPU != 0 || a.sinceMem != 0 {
		t.Fatalf("C not reset by a newer report: %d, %d", a.sinceCPU, a.sinceMem)
	}
	s.Release("r", 1)
	if a.sinceCPU != 0 {
		t.Fatalf("release of a job placed before the report changed C: %d", a.sinceCPU)
	}
}

// TestBinPackPacks: bin-pack fills workers before opening new ones; spread
// uses them all.
func TestBinPackPacks(t *testing.T) {
	used := func(strat Strategy) int {
		s := newTest(t, Config{Strategy: strat, SampleSize: 100})
		for i := range 20 {
			upsert(t, s, t0, Worker{ID: fmt.Sprintf("w%d", i), Capacity: res(8, 8000, 32*gib)})
		}
		for i := range 40 {
			submit(t, s, t0, job(fmt.Sprintf("j%d", i), res(1, 1000, gib)))
		}
		per := map[string]int{}
		for _, p := range s.ScheduleRound(t0, 0).Placements {
			per[p.WorkerID]++
		}
		return len(per)
	}
	if b, sp := used(BinPack), used(Spread); b != 5 || sp != 20 {
		t.Fatalf("workers used: binpack %d (want 5), spread %d (want 20)", b, sp)
	}
}

// TestAffinityPrefers: soft preferences steer placement without excluding.
func TestAffinityPrefers(t *testing.T) {
	s := newTest(t, Config{})
	for i := range 50 {
		zone := "us"
		if i%10 == 0 {
			zone = "eu"
		}
		upsert(t, s, t0, Worker{ID: fmt.Sprintf("w%d", i), Labels: map[string]string{"zone": zone}, Capacity: res(8, 8000, 32*gib)})
	}
	for i := range 20 {
		j := job(fmt.Sprintf("j%d", i), res(1, 1000, gib))
		j.Affinity = []Preference{{Requirement: Eq("zone", "eu"), Weight: 100}}
		submit(t, s, t0, j)
	}
	eu := 0
	for _, p := range s.ScheduleRound(t0, 0).Placements {
		if w, _ := s.Worker(p.WorkerID); w.Labels["zone"] == "eu" {
			eu++
		}
	}
	if eu < 18 {
		t.Fatalf("%d of 20 jobs preferring eu landed there (5 of 50 workers are eu)", eu)
	}
}
