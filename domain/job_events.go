package domain

import "time"

// Job events. Every event names its job; every event about an attempt names
// the attempt and its worker. ExitCode is -1 when there is none (killed by a
// signal, or the job never reported). At is the server's time of the decision.

// JobSubmitted: a user submitted a job. Spec has defaults filled in and holds
// secret names only, never values. The job is queued.
type JobSubmitted struct {
	JobID     string    `json:"job_id"`
	Spec      JobSpec   `json:"spec"`
	Submitter string    `json:"submitter"`
	At        time.Time `json:"at"`
}

// JobParked: the scheduler found no worker that can run the queued job
// (unschedulable); Reason says why. The job stays queued and can still be
// scheduled.
type JobParked struct {
	JobID  string    `json:"job_id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// JobUnparked: a parked job may be runnable again (matching capacity
// appeared).
type JobUnparked struct {
	JobID string    `json:"job_id"`
	At    time.Time `json:"at"`
}

// JobScheduled: the scheduler reserved Resources on WorkerID for a new
// attempt. Attempt is the previous attempt plus one and is the fencing token
// of everything reported about this run. The agent should accept by AcceptBy
// (zero: no deadline), else the server fails the attempt.
type JobScheduled struct {
	JobID     string    `json:"job_id"`
	Attempt   uint32    `json:"attempt"`
	WorkerID  string    `json:"worker_id"`
	Resources Resources `json:"resources"`
	AcceptBy  time.Time `json:"accept_by"`
	At        time.Time `json:"at"`
}

// JobAccepted: the agent took the assignment.
type JobAccepted struct {
	JobID    string    `json:"job_id"`
	Attempt  uint32    `json:"attempt"`
	WorkerID string    `json:"worker_id"`
	At       time.Time `json:"at"`
}

// JobStarted: the agent started the job's process. A timeout runs from At.
type JobStarted struct {
	JobID    string    `json:"job_id"`
	Attempt  uint32    `json:"attempt"`
	WorkerID string    `json:"worker_id"`
	At       time.Time `json:"at"`
}

// JobCancelRequested: someone asked to cancel a job that has an attempt on a
// worker. The agent is told to stop; the job ends when it reports back (as
// JobCancelled) or its attempt fails.
type JobCancelRequested struct {
	JobID  string    `json:"job_id"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// JobRequeued: Attempt on WorkerID ended without a result from the job (agent
// lost, assignment failed) and attempts remain. The job is queued again; its
// next JobScheduled carries Attempt+1.
type JobRequeued struct {
	JobID    string    `json:"job_id"`
	Attempt  uint32    `json:"attempt"`
	WorkerID string    `json:"worker_id"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// JobSucceeded (terminal): the job's process exited with status 0.
type JobSucceeded struct {
	JobID    string        `json:"job_id"`
	Attempt  uint32        `json:"attempt"`
	WorkerID string        `json:"worker_id"`
	Runtime  time.Duration `json:"runtime"` // as measured by the agent
	At       time.Time     `json:"at"`
}

// JobFailed (terminal): the process exited non-zero or was killed, or the
// last allowed attempt ended without a result (Reason then names why, e.g.
// "agent-lost", and ExitCode is -1).
type JobFailed struct {
	JobID    string        `json:"job_id"`
	Attempt  uint32        `json:"attempt"`
	WorkerID string        `json:"worker_id"`
	ExitCode int           `json:"exit_code"`
	Signal   string        `json:"signal"`
	Reason   string        `json:"reason"`
	Runtime  time.Duration `json:"runtime"`
	At       time.Time     `json:"at"`
}

// JobCancelled (terminal): the job was cancelled, while queued (Attempt is the
// last attempt, WorkerID empty) or after the agent stopped it.
type JobCancelled struct {
	JobID    string        `json:"job_id"`
	Attempt  uint32        `json:"attempt"`
	WorkerID string        `json:"worker_id"`
	By       string        `json:"by"`
	Reason   string        `json:"reason"`
	ExitCode int           `json:"exit_code"`
	Signal   string        `json:"signal"`
	Runtime  time.Duration `json:"runtime"`
	At       time.Time     `json:"at"`
}

// JobTimedOut (terminal): the attempt ran past the job's timeout. Either the
// agent killed it and reported (exit status set) or the server enforced the
// deadline without hearing from the agent (ExitCode -1).
type JobTimedOut struct {
	JobID    string        `json:"job_id"`
	Attempt  uint32        `json:"attempt"`
	WorkerID string        `json:"worker_id"`
	Reason   string        `json:"reason"`
	ExitCode int           `json:"exit_code"`
	Signal   string        `json:"signal"`
	Runtime  time.Duration `json:"runtime"`
	At       time.Time     `json:"at"`
}

// Wire names. Append-only: never rename or reuse one.
const (
	TypeJobSubmitted       = "job.submitted"
	TypeJobParked          = "job.parked"
	TypeJobUnparked        = "job.unparked"
	TypeJobScheduled       = "job.scheduled"
	TypeJobAccepted        = "job.accepted"
	TypeJobStarted         = "job.started"
	TypeJobCancelRequested = "job.cancel_requested"
	TypeJobRequeued        = "job.requeued"
	TypeJobSucceeded       = "job.succeeded"
	TypeJobFailed          = "job.failed"
	TypeJobCancelled       = "job.cancelled"
	TypeJobTimedOut        = "job.timed_out"
)

// EventType returns "job.submitted".
func (JobSubmitted) EventType() string { return TypeJobSubmitted }

// EventSchemaVersion implements Event.
func (JobSubmitted) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobSubmitted) StreamID() string { return JobStream(e.JobID) }

// EventType returns "job.parked".
func (JobParked) EventType() string { return TypeJobParked }

// EventSchemaVersion implements Event.
func (JobParked) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobParked) StreamID() string { return JobStream(e.JobID) }

// EventType returns "job.unparked".
func (JobUnparked) EventType() string { return TypeJobUnparked }

// EventSchemaVersion implements Event.
func (JobUnparked) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobUnparked) StreamID() string { return JobStream(e.JobID) }

// EventType returns "job.scheduled".
func (JobScheduled) EventType() string { return TypeJobScheduled }

// EventSchemaVersion implements Event.
func (JobScheduled) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobScheduled) StreamID() string { return JobStream(e.JobID) }

// EventType returns "job.accepted".
func (JobAccepted) EventType() string { return TypeJobAccepted }

// EventSchemaVersion implements Event.
func (JobAccepted) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobAccepted) StreamID() string { return JobStream(e.JobID) }

// EventType returns "job.started".
func (JobStarted) EventType() string { return TypeJobStarted }

// EventSchemaVersion implements Event.
func (JobStarted) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobStarted) StreamID() string { return JobStream(e.JobID) }

// EventType returns "job.cancel_requested".
func (JobCancelRequested) EventType() string { return TypeJobCancelRequested }

// EventSchemaVersion implements Event.
func (JobCancelRequested) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobCancelRequested) StreamID() string { return JobStream(e.JobID) }

// EventType returns "job.requeued".
func (JobRequeued) EventType() string { return TypeJobRequeued }

// EventSchemaVersion implements Event.
func (JobRequeued) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobRequeued) StreamID() string { return JobStream(e.JobID) }

// EventType returns "job.succeeded".
func (JobSucceeded) EventType() string { return TypeJobSucceeded }

// EventSchemaVersion implements Event.
func (JobSucceeded) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobSucceeded) StreamID() string { return JobStream(e.JobID) }

// EventType returns "job.failed".
func (JobFailed) EventType() string { return TypeJobFailed }

// EventSchemaVersion implements Event.
func (JobFailed) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobFailed) StreamID() string { return JobStream(e.JobID) }

// EventType returns "job.cancelled".
func (JobCancelled) EventType() string { return TypeJobCancelled }

// EventSchemaVersion implements Event.
func (JobCancelled) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobCancelled) StreamID() string { return JobStream(e.JobID) }

// EventType returns "job.timed_out".
func (JobTimedOut) EventType() string { return TypeJobTimedOut }

// EventSchemaVersion implements Event.
func (JobTimedOut) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e JobTimedOut) StreamID() string { return JobStream(e.JobID) }
