// Package core is Hodei's orchestrator: it turns the event log, the read
// models, the scheduler and the connected agents into a running system.
//
//	API (submit, cancel, drain) ─┐                 ┌─> projections (jobs, workers)
//	                             ├─> command ─> Store ─┤
//	agents (hwp: reports) ───────┘   (decide,         └─> observe ─> scheduler queue,
//	                                  append)                       agent sessions
//	scheduling loop: ScheduleRound ─> command (job.scheduled) ─> Agent.Assign
//	lifecycle loop:  lost workers, accept timeouts, job timeouts ─> command
//
// Every state change goes through the command handler as a domain command and
// lands in the log first; everything else (the scheduler's queue and
// reservations, what is sent to agents) follows the committed events through
// the projections runner's Observe hook. So a restart rebuilds the same state
// from the log: the read models from their snapshots plus the tail, the
// scheduler from the read models.
//
// Invariants kept here:
//   - a job attempt is assigned to at most one worker (the domain decides
//     job.scheduled once per attempt; a stale report is fenced);
//   - a worker that misses heartbeats past LostAfter is marked lost and its
//     active attempts fail with reason agent-lost (re-queued while attempts
//     remain);
//   - the server enforces job timeouts (plus a grace) even when the agent is
//     unreachable;
//   - a reservation is released when its attempt ends, is re-queued, or its
//     job.scheduled append fails.
package core
