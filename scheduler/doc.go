// Package scheduler decides where Hodei's jobs run: filter, score and
// reserve, in memory, with no I/O and no clock of its own. The orchestration
// core feeds it what the event log and the agents say (workers, telemetry,
// submitted and ended jobs), calls ScheduleRound, and turns each Placement
// into a JobScheduled event and an assignment on the agent's stream (the
// assign step, which lives in the core).
//
// # Vocabulary
//
//   - Worker: an agent as the scheduler sees it: labels, declared capacity
//     (slots, CPU millis, memory bytes), state (ready, draining, lost).
//   - Telemetry: a heartbeat's measured CPU and memory use. Not an event.
//   - Job: one attempt of a job asking for Resources, with a Selector (hard
//     label requirements) and Affinity (soft, weighted preferences).
//   - Reservation: capacity held on a worker for one (job id, attempt), from
//     placement until Release. Reserved never exceeds declared capacity.
//   - Queue: a tenant for fair share. Each has a DRF weight.
//   - Round: one ScheduleRound: a batch of decisions at one instant.
//   - Blocked: a job that fits some worker's declared capacity but found no
//     room now. It backs off and is woken by releases.
//   - Parked: a job that no worker could run as things stand (no worker has
//     its labels, none is big enough, all are draining or silent). It is
//     reported once with a reason and retried when matching capacity appears
//     or on a slow, jittered timer.
//   - Shape: (selector, resources). Jobs of one shape share verdicts.
//
// # Invariants
//
//   - Reserved resources never exceed a worker's declared capacity: every
//     reservation is made by one function that checks fits() under the
//     worker's lock; the filter uses the same fits(), so the two never
//     disagree. Lowering a worker's capacity below what it holds keeps the
//     reservations and admits nothing new until it fits again.
//   - At most one reservation per (job id, attempt), cluster-wide.
//   - Release is idempotent; RemoveWorker drops and returns the worker's
//     reservations so the core can re-queue their jobs.
//   - No time.Now(): every time comes in as an argument, and randomness
//     comes from Config.Seed, so a replay with the same inputs makes the same
//     decisions.
//   - A round decides each pending job at most once and never waits: no
//     tight loops. Blocked jobs come back on releases (a bounded number per
//     release) or after a backoff of 1s doubling to 10s, parked shapes on a
//     matching worker event or after 5s doubling to 5m, all with +-20%
//     jitter.
//
// # Ordering and fairness
//
// Across queues, weighted dominant resource fairness (Ghodsi et al., NSDI
// 2011) by progressive filling: the queue with the smallest dominant share
// max_r(used_r / (weight * total_r)) over the ready workers' capacity goes
// next. Within a queue, priority with linear aging via the fixed key
// submittedAt - priority*AgingRate (smaller first, FIFO among equals), which
// ages every job with no re-sorting. Aging bound: a job of priority p
// submitted at t is ahead of every job of that queue submitted after
// t + (P-p)*AgingRate, P the highest priority in use (at most MaxPriority;
// 100 for the domain's jobs), so under a stream that keeps the queue's
// capacity busy it waits at most that long plus the time to run the jobs
// already ahead of it (TestAgingBound). Priority orders jobs within a queue;
// it does not let one queue take another's fair share.
//
// # A decision
//
// Filter: the selector is evaluated on a label index (key=value -> set of
// worker slots) into a bitset cached per selector and worker-table
// generation, intersected with ready workers and workers with a free slot.
// Sample: starting at a uniformly random feasible worker, take the next k
// that pass fits() and are alive, k = max(2, ceil(log2 N)) (Nomad's limit),
// more for jobs with affinities. Score: a weighted mean of allocation
// (spread or bin-pack), load (Koordinator's P = A + B + C: reported usage,
// this job's estimate, estimates of jobs placed since the report; neutral when
// the report is older than StaleAfter) and affinity. Reserve the best, ties
// at random; if a concurrent Reserve took the room, the next best. See
// README.md for the picture.
//
// # Concurrency
//
// Every method is safe for concurrent use. Queue operations (Submit, Remove,
// ScheduleRound) serialize on one mutex. The worker table takes a
// read-write lock for its shape, a sharded lock for the reservation map and
// a lock per worker for reservations; heartbeats, Release and Reserve never
// wait for a round, they leave a note that the next round reads. The lock
// order and why stale reads are harmless are written down on cluster.
//
// # Use
//
//	s, err := scheduler.New(scheduler.Config{})
//	s.UpsertWorker(now, scheduler.Worker{ID: "w1", Labels: labels, Capacity: capacity})
//	s.Submit(now, scheduler.Job{ID: "j1", Attempt: 1, Priority: 50, Resources: req})
//	for {
//		r := s.ScheduleRound(now, 1000)
//		for _, p := range r.Placements { /* append JobScheduled, send; on failure s.Release(p.JobID, p.Attempt) */ }
//		for _, p := range r.Parked { /* record "unschedulable: " + p.Reason */ }
//		if r.Pending > 0 { continue }
//		// wait for s.Ready(), or a timer at r.NextRetry
//	}
package scheduler
