// Package agent is hodei-agent: it dials the hodei server (reverse connect),
// registers, and runs the jobs it is assigned over one bidirectional HWP
// stream (package hwppb; the agent imports nothing else of the server).
//
// # Lifecycle
//
//	New(cfg) -> Run(ctx)
//	  connect (jittered exponential Backoff) -> Hello -> Welcome | Refused
//	  heartbeats every Welcome.heartbeat_interval with real CPU/RAM (gopsutil)
//	  Assign -> JobAccepted | JobRejected (slots, draining, invalid)
//	         -> JobStarted -> LogChunk... -> JobFinished -> (LogAck finished)
//	Drain(false)       take no new jobs, finish and deliver running ones, Goodbye, Run returns nil
//	Drain(true)        the same after cancelling the running jobs
//	cancel Run's ctx   cancel-all stop: SIGTERM, SIGKILL after grace, deliver within StopTimeout
//
// # Identity
//
// The agent enrols with a join token, whose last part pins the server's CA.
// It sends a CSR for its own key (ECDSA P-256, made on first start) in Hello
// and keeps what Welcome gives it, the worker id, an identity token and a
// client certificate, in WorkDir/identity (0700; files 0600, written
// atomically; see identity.go). It dials with that certificate (mutual TLS),
// takes renewed tokens and certificates from TokenRefresh, and asks for a new
// certificate (a CSR in Hello) in the last third of its life. Restarted with
// no join token, it trusts the saved CA fingerprint and reconnects as the same
// worker with its certificate. A refused identity is dropped and the join
// token tried once more; a token for another CA starts a fresh identity.
//
// # Jobs
//
// Each attempt runs as Shell + script (default /bin/sh -c) in a PTY, in its
// own session and process group (package proc), with a base environment (not
// the agent's: the token never reaches jobs), HODEI_JOB_ID, HODEI_JOB_ATTEMPT,
// HODEI_WORKDIR, the assignment's env and its secrets. Cancel and timeout send
// SIGTERM to the whole group and SIGKILL after the grace period; when the
// script exits, what it left in its group is killed too.
//
// # Log pipeline
//
//	PTY read -> mask.Masker -> spool.File (disk, per attempt) -> sender -> LogChunk
//
// Secrets are masked before anything is written or sent (package mask). The
// spool is the single source of the log: the sender reads from it at the
// offset it needs, so output is never lost while the server is away and is
// resent after a reconnect from the offset the server holds
// (Welcome.resume, else the last LogAck), in order, exactly once from the
// server's point of view. One goroutine sends; it takes control messages
// first, then serves jobs round-robin, one message per job per turn, and
// never waits for each acknowledgement: up to MaxInflightLog bytes per attempt
// are in flight (a flooding job cannot queue megabytes in TCP buffers ahead
// of another job's line), and small pending tails are served before bulk. A
// chunk is sent as soon as the sender is free, so chunks grow by themselves
// under load; with Limits.log_flush_interval the partial chunks of one
// attempt are spaced at least that far apart (the first after a quiet spell
// still goes at once).
//
// # Invariants
//
//   - An attempt (job id, attempt) runs at most once here; a repeated Assign
//     is answered, not rerun.
//   - Every report names job id and attempt. A Fence kills the attempt's
//     process group at once and drops its spool; nothing more is reported.
//   - Nothing from the server is trusted: assignments are validated (job id
//     becomes a file name) and bad messages are rejected or ignored, never
//     panicked on.
//   - Every goroutine the agent starts is waited for before Run returns.
package agent
