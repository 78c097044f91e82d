package domain

import (
	"slices"
	"time"
)

// JobStatus is where a job is in its lifecycle.
type JobStatus string

// Job statuses. A job starts queued; each attempt goes scheduled, accepted,
// running; it ends in exactly one of the four terminal statuses.
const (
	JobStatusQueued    JobStatus = "queued"    // waiting for a worker (maybe parked)
	JobStatusScheduled JobStatus = "scheduled" // assigned to a worker, not yet accepted
	JobStatusAccepted  JobStatus = "accepted"  // the agent took it, process not started
	JobStatusRunning   JobStatus = "running"   // the process started
	JobStatusSucceeded JobStatus = "succeeded" // terminal
	JobStatusFailed    JobStatus = "failed"    // terminal
	JobStatusCancelled JobStatus = "cancelled" // terminal
	JobStatusTimedOut  JobStatus = "timed_out" // terminal
)

// Terminal reports whether s is an end state: nothing may follow it.
func (s JobStatus) Terminal() bool {
	switch s {
	case JobStatusSucceeded, JobStatusFailed, JobStatusCancelled, JobStatusTimedOut:
		return true
	}
	return false
}

// Active reports whether an attempt is on a worker (scheduled, accepted or
// running): the only statuses in which the job holds a reservation.
func (s JobStatus) Active() bool {
	return s == JobStatusScheduled || s == JobStatusAccepted || s == JobStatusRunning
}

// Job is the state of one job, folded from its stream. The zero Job is a job
// that does not exist yet. Job values are immutable: Apply returns a new value
// and never writes to maps or slices it shares with the old one.
type Job struct {
	ID          string    `json:"id"`
	Spec        JobSpec   `json:"spec"` // with defaults filled in
	Submitter   string    `json:"submitter"`
	SubmittedAt time.Time `json:"submitted_at"`
	Status      JobStatus `json:"status"`
	// Parked is why the scheduler cannot place the queued job; "" if it can.
	Parked string `json:"parked"`

	// Attempt is the current attempt (while active) or the last one; 0 before
	// the first JobScheduled. It only grows.
	Attempt uint32 `json:"attempt"`
	// Worker holds the current attempt; "" unless Status is active.
	Worker    string    `json:"worker"`
	AcceptBy  time.Time `json:"accept_by"`
	StartedAt time.Time `json:"started_at"` // start of the current or last attempt
	Deadline  time.Time `json:"deadline"`   // StartedAt + Spec.Timeout while running with a timeout

	CancelRequested bool   `json:"cancel_requested"`
	CancelledBy     string `json:"cancelled_by"`
	CancelReason    string `json:"cancel_reason"`

	// Set by the terminal event.
	EndedAt  time.Time     `json:"ended_at"`
	ExitCode int           `json:"exit_code"`
	Signal   string        `json:"signal"`
	Reason   string        `json:"reason"`
	Runtime  time.Duration `json:"runtime"`

	// Attempts is every attempt so far, oldest first; Attempts[i].Number is i+1.
	Attempts []Attempt `json:"attempts"`
	// Version is the number of events applied: the stream version to expect
	// when appending what Decide returns.
	Version uint64 `json:"version"`
}

// Attempt is one run of a job on one worker.
type Attempt struct {
	Number      uint32    `json:"number"`
	Worker      string    `json:"worker"`
	ScheduledAt time.Time `json:"scheduled_at"`
	AcceptedAt  time.Time `json:"accepted_at"`
	StartedAt   time.Time `json:"started_at"`
	EndedAt     time.Time `json:"ended_at"`
	// Result is "" while the attempt is active, then "requeued" or the job's
	// terminal status.
	Result string `json:"result"`
	Reason string `json:"reason"`
}

// Exists reports whether the job has been submitted.
func (j Job) Exists() bool { return j.Status != "" }

// Settled reports whether the job has ended: no command changes it any
// more (command handlers need not keep its state at hand).
func (j Job) Settled() bool { return j.Status.Terminal() }

// Apply returns the state after e. It trusts e: events come from the job's
// own stream and were produced by Decide. Events of other aggregates are
// ignored (but still counted in Version, which is why callers must only fold
// the job's own stream).
func (j Job) Apply(e Event) Job {
	j.Version++
	switch e := e.(type) {
	case JobSubmitted:
		return Job{
			ID:          e.JobID,
			Spec:        e.Spec,
			Submitter:   e.Submitter,
			SubmittedAt: utc(e.At),
			Status:      JobStatusQueued,
			Version:     j.Version,
		}
	case JobParked:
		j.Parked = e.Reason
	case JobUnparked:
		j.Parked = ""
	case JobScheduled:
		j.Status = JobStatusScheduled
		j.Parked = ""
		j.Attempt = e.Attempt
		j.Worker = e.WorkerID
		j.AcceptBy = utc(e.AcceptBy)
		j.StartedAt = time.Time{}
		j.Deadline = time.Time{}
		j.Attempts = append(slices.Clip(j.Attempts), Attempt{Number: e.Attempt, Worker: e.WorkerID, ScheduledAt: utc(e.At)})
	case JobAccepted:
		j.Status = JobStatusAccepted
		j.editAttempt(func(a *Attempt) { a.AcceptedAt = utc(e.At) })
	case JobStarted:
		j.Status = JobStatusRunning
		j.StartedAt = utc(e.At)
		if j.Spec.Timeout > 0 {
			j.Deadline = j.StartedAt.Add(j.Spec.Timeout)
		}
		j.editAttempt(func(a *Attempt) { a.StartedAt = utc(e.At) })
	case JobCancelRequested:
		j.CancelRequested = true
		j.CancelledBy = e.By
		j.CancelReason = e.Reason
	case JobRequeued:
		j.Status = JobStatusQueued
		j.Worker = ""
		j.AcceptBy = time.Time{}
		j.StartedAt = time.Time{}
		j.Deadline = time.Time{}
		j.editAttempt(func(a *Attempt) { a.EndedAt, a.Result, a.Reason = utc(e.At), "requeued", e.Reason })
	case JobSucceeded:
		j.end(JobStatusSucceeded, e.At, 0, "", "", e.Runtime)
	case JobFailed:
		j.end(JobStatusFailed, e.At, e.ExitCode, e.Signal, e.Reason, e.Runtime)
	case JobCancelled:
		j.CancelRequested = true
		j.CancelledBy = e.By
		j.CancelReason = e.Reason
		j.end(JobStatusCancelled, e.At, e.ExitCode, e.Signal, e.Reason, e.Runtime)
	case JobTimedOut:
		j.end(JobStatusTimedOut, e.At, e.ExitCode, e.Signal, e.Reason, e.Runtime)
	}
	return j
}

func (j *Job) end(s JobStatus, at time.Time, exit int, signal, reason string, runtime time.Duration) {
	wasActive := j.Status.Active()
	j.Status = s
	j.Parked = ""
	j.Worker = ""
	j.AcceptBy = time.Time{}
	j.Deadline = time.Time{}
	j.EndedAt = utc(at)
	j.ExitCode, j.Signal, j.Reason, j.Runtime = exit, signal, reason, runtime
	if wasActive {
		j.editAttempt(func(a *Attempt) { a.EndedAt, a.Result, a.Reason = utc(at), string(s), reason })
	}
}

// editAttempt changes the last attempt on a copy of the slice, so states that
// share the old backing array are not changed.
func (j *Job) editAttempt(f func(*Attempt)) {
	if len(j.Attempts) == 0 {
		return
	}
	j.Attempts = slices.Clone(j.Attempts)
	f(&j.Attempts[len(j.Attempts)-1])
}

// heldBy returns the worker that held attempt n, or "".
func (j Job) heldBy(n uint32) string {
	if n == 0 || int(n) > len(j.Attempts) {
		return ""
	}
	return j.Attempts[n-1].Worker
}
