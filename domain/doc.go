// Package domain is Hodei's core model: the Job and Worker aggregates, the
// commands they accept, the typed events they produce and the domain errors.
// Every job and worker state change in Hodei is decided here and stored as
// one of these events; everything else is a projection of them.
//
// The package is pure. It imports only the standard library and does no I/O,
// reads no clock and draws no random numbers: times and ids arrive in the
// commands, so deciding and replaying are deterministic.
//
// # Decide, then apply
//
// Each aggregate is a value folded from its own stream and has two methods:
//
//	Decide(command) ([]Event, error)  // what should happen; never mutates
//	Apply(event) State                // what did happen; returns a new value
//
// A command handler (outside this package) loads a stream, folds it, decides,
// and appends the events at the expected version, retrying on a conflict:
//
//	job := domain.Fold(domain.Job{}, events)        // events of "job-<id>"
//	evs, err := job.Decide(domain.Schedule{WorkerID: w, At: now})
//	if err != nil { ... }                            // nothing to append
//	store.Append(ctx, domain.JobStream(job.ID), eventstore.Exact(job.Version), encode(evs))
//	job = domain.Fold(job, evs)                      // state after the append
//
// Decide returning no events and no error means the command is already
// satisfied (an agent repeating a report, a second cancel); append nothing.
//
// # Vocabulary
//
//   - Job: a user's shell script with its spec (JobSpec). Stream "job-<id>".
//   - Worker: the server's record of one agent (one host, container or pod).
//     Stream "worker-<id>". It holds what the agent declared (WorkerInfo), not
//     what it runs: reservations and placements are projections of job events.
//   - Attempt: one run of a job on one worker, numbered from 1. The number is
//     the fencing token: every report from an agent names (job, attempt), and
//     reports about any attempt but the running one are refused with
//     ErrStaleAttempt, so the server tells that agent to stop.
//   - Parked: a queued job that no worker can run, with the reason
//     (unschedulable). It stays queued and can be scheduled at any time.
//   - Terminal: succeeded, failed, cancelled, timed out. Every job ends in
//     exactly one of them, and nothing follows it.
//
// # Job lifecycle
//
//	submit ─► queued ◄─(park/unpark)
//	            │ ▲
//	   schedule │ │ fail-attempt, attempts remain (job.requeued)
//	            ▼ │
//	        scheduled ─accept─► accepted ─start─► running
//	            └────────────────┴──────────────────┴─► finish / fail-attempt /
//	                                                    time-out ─► terminal
//	cancel: queued ─► cancelled at once; on a worker ─► job.cancel_requested,
//	        then cancelled when the agent reports or the attempt fails.
//
// An attempt that ends without a result from the job (agent lost, assignment
// failed or refused, accept deadline missed) is re-queued as a new attempt
// while fewer than Spec.MaxAttempts were made, else the job fails with that
// reason. A job that exits non-zero fails at once; it is not retried.
//
// # Invariants
//
//   - A job has at most one assigned worker, and only while an attempt is
//     active (scheduled, accepted, running).
//   - Attempt numbers only grow, by one per job.scheduled, and never exceed
//     Spec.MaxAttempts.
//   - Exactly one terminal event per finished job, and it is the last event
//     of the stream: every command on a terminal job is ErrJobTerminal.
//   - A deregistered worker is final likewise (ErrWorkerDeregistered).
//   - Events never contain secret values: JobSpec.Secrets holds names only.
//   - Heartbeats and telemetry are not events.
//   - Fold is deterministic: the same events give the same state, also after
//     the events went through an encoder and back.
//
// # Events and their evolution
//
// Events are structs named in the past tense with a stable wire name
// ("job.submitted") and a schema version; Events lists one of each for the
// event store's codec. Wire names are append-only. Payload fields are named by
// json tags; adding a field whose zero value reads correctly keeps the schema
// version, any other change bumps it and registers an upcaster. JobSpec and
// WorkerInfo are part of the job.submitted and worker.* payloads.
//
// # Errors
//
// Errors are sentinels for errors.Is, some carried by typed errors with
// details: *FieldError (bad input, naming the JSON field), *TransitionError,
// *StaleAttemptError. The server maps them to API statuses in one place.
package domain
