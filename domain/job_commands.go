package domain

import (
	"fmt"
	"time"
)

// JobCommand is a command on a Job: Submit, Park, Unpark, Schedule, Accept,
// Start, Finish, FailAttempt, Cancel or TimeOut. Commands carry the time of
// the decision (At) and any ids; Decide reads nothing else.
type JobCommand interface {
	// CommandName is the command's name in errors and test scripts.
	CommandName() string
	jobCommand()
}

// Reasons for FailAttempt used by the server. Reasons are free text; these
// are the ones other code matches on.
const (
	ReasonAgentLost          = "agent-lost"          // the worker missed its heartbeats
	ReasonAssignFailed       = "assignment-failed"   // the assignment could not be sent
	ReasonAcceptTimeout      = "accept-timeout"      // the agent did not accept by AcceptBy
	ReasonRejected           = "rejected"            // the agent refused the assignment
	ReasonWorkerDeregistered = "worker-deregistered" // the worker left with the attempt on it
)

// Submit creates a job from a user's spec. Allowed only on the zero Job.
type Submit struct {
	JobID     string    `json:"job_id"`
	Spec      JobSpec   `json:"spec"`
	Submitter string    `json:"submitter"`
	At        time.Time `json:"at"`
}

// Park records that no worker can run the queued job and why. Parking again
// with the same reason decides nothing.
type Park struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Unpark clears a parked job. It decides nothing unless the job is parked.
type Unpark struct {
	At time.Time `json:"at"`
}

// Schedule assigns the queued job to a worker as a new attempt, reserving the
// spec's resources there. The caller has checked the worker can run it.
type Schedule struct {
	WorkerID string    `json:"worker_id"`
	AcceptBy time.Time `json:"accept_by"` // zero: no deadline
	At       time.Time `json:"at"`
}

// Accept is the agent's report that it took the assignment. A repeat for the
// same attempt decides nothing.
type Accept struct {
	WorkerID string    `json:"worker_id"`
	Attempt  uint32    `json:"attempt"`
	At       time.Time `json:"at"`
}

// Start is the agent's report that the job's process started. A repeat for
// the same attempt decides nothing.
type Start struct {
	WorkerID string    `json:"worker_id"`
	Attempt  uint32    `json:"attempt"`
	At       time.Time `json:"at"`
}

// Finish is the agent's report that the job's process ended. The outcome is,
// in order: timed out if TimedOut, cancelled if a cancel was requested,
// succeeded on exit status 0 without a signal, else failed.
type Finish struct {
	WorkerID string        `json:"worker_id"`
	Attempt  uint32        `json:"attempt"`
	ExitCode int           `json:"exit_code"` // -1 if killed by a signal
	Signal   string        `json:"signal"`    // e.g. "SIGKILL"; "" if it exited
	TimedOut bool          `json:"timed_out"` // the agent killed it at the job's timeout
	Reason   string        `json:"reason"`    // optional detail from the agent, e.g. "oom"
	Runtime  time.Duration `json:"runtime"`
	At       time.Time     `json:"at"`
}

// FailAttempt ends the current attempt without a result from the job: the
// agent was lost, the assignment failed or was refused. The job is re-queued
// while attempts remain, else fails with Reason; a job with a cancel request
// is cancelled instead.
type FailAttempt struct {
	WorkerID string    `json:"worker_id"`
	Attempt  uint32    `json:"attempt"`
	Reason   string    `json:"reason"` // e.g. ReasonAgentLost
	At       time.Time `json:"at"`
}

// Cancel asks to cancel the job. A queued job is cancelled at once; a job on a
// worker gets a cancel request and ends when the agent reports. A repeat
// decides nothing.
type Cancel struct {
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// TimeOut is the server enforcing a running job's deadline when the agent has
// not reported. It returns ErrNotDue before the deadline.
type TimeOut struct {
	At time.Time `json:"at"`
}

// CommandName implements JobCommand.
func (Submit) CommandName() string { return "submit" }

// CommandName implements JobCommand.
func (Park) CommandName() string { return "park" }

// CommandName implements JobCommand.
func (Unpark) CommandName() string { return "unpark" }

// CommandName implements JobCommand.
func (Schedule) CommandName() string { return "schedule" }

// CommandName implements JobCommand.
func (Accept) CommandName() string { return "accept" }

// CommandName implements JobCommand.
func (Start) CommandName() string { return "start" }

// CommandName implements JobCommand.
func (Finish) CommandName() string { return "finish" }

// CommandName implements JobCommand.
func (FailAttempt) CommandName() string { return "fail-attempt" }

// CommandName implements JobCommand.
func (Cancel) CommandName() string { return "cancel" }

// CommandName implements JobCommand.
func (TimeOut) CommandName() string { return "time-out" }

func (Submit) jobCommand()      {}
func (Park) jobCommand()        {}
func (Unpark) jobCommand()      {}
func (Schedule) jobCommand()    {}
func (Accept) jobCommand()      {}
func (Start) jobCommand()       {}
func (Finish) jobCommand()      {}
func (FailAttempt) jobCommand() {}
func (Cancel) jobCommand()      {}
func (TimeOut) jobCommand()     {}

// Decide returns the events that command c causes on j, or an error and no
// events. It never changes j. A nil slice with a nil error means the command
// is already satisfied (a repeated report or request).
//
// Errors: *FieldError (ErrInvalidCommand, ErrInvalidJobSpec) for bad input,
// ErrNotFound, ErrAlreadyExists, *TransitionError (ErrInvalidTransition,
// ErrJobTerminal), *StaleAttemptError (ErrStaleAttempt, ErrNotAssigned) for
// reports that are not about the running attempt, ErrNotDue.
func (j Job) Decide(c JobCommand) ([]Event, error) {
	if c == nil {
		return nil, fmt.Errorf("decide job %s: nil command: %w", j.ID, ErrInvalidCommand)
	}
	if err := validateJobCommand(c); err != nil {
		return nil, err
	}
	if s, ok := c.(Submit); ok {
		return j.submit(s)
	}
	if !j.Exists() {
		return nil, fmt.Errorf("%s job: %w", c.CommandName(), ErrNotFound)
	}
	switch c := c.(type) {
	case Park:
		if j.Status != JobStatusQueued {
			return nil, j.transition(c)
		}
		if j.Parked == c.Reason {
			return nil, nil
		}
		return []Event{JobParked{JobID: j.ID, Reason: c.Reason, At: c.At}}, nil
	case Unpark:
		if j.Status.Terminal() {
			return nil, j.transition(c)
		}
		if j.Parked == "" {
			return nil, nil
		}
		return []Event{JobUnparked{JobID: j.ID, At: c.At}}, nil
	case Schedule:
		if j.Status != JobStatusQueued {
			return nil, j.transition(c)
		}
		return []Event{JobScheduled{
			JobID: j.ID, Attempt: j.Attempt + 1, WorkerID: c.WorkerID,
			Resources: j.Spec.Resources, AcceptBy: c.AcceptBy, At: c.At,
		}}, nil
	case Accept:
		if err := j.fence(c, c.WorkerID, c.Attempt); err != nil {
			return nil, err
		}
		if j.Status != JobStatusScheduled {
			return nil, nil // accepted or running: a repeat
		}
		return []Event{JobAccepted{JobID: j.ID, Attempt: c.Attempt, WorkerID: c.WorkerID, At: c.At}}, nil
	case Start:
		if err := j.fence(c, c.WorkerID, c.Attempt); err != nil {
			return nil, err
		}
		if j.Status == JobStatusRunning {
			return nil, nil
		}
		return []Event{JobStarted{JobID: j.ID, Attempt: c.Attempt, WorkerID: c.WorkerID, At: c.At}}, nil
	case Finish:
		if err := j.fence(c, c.WorkerID, c.Attempt); err != nil {
			return nil, err
		}
		if c.TimedOut && j.Spec.Timeout == 0 {
			return nil, commandError(c.CommandName(), "timed_out", "job %s has no timeout", j.ID)
		}
		return []Event{j.finish(c)}, nil
	case FailAttempt:
		if err := j.fence(c, c.WorkerID, c.Attempt); err != nil {
			return nil, err
		}
		return []Event{j.failAttempt(c)}, nil
	case Cancel:
		switch {
		case j.Status.Terminal():
			return nil, j.transition(c)
		case j.Status == JobStatusQueued:
			return []Event{JobCancelled{
				JobID: j.ID, Attempt: j.Attempt, By: c.By, Reason: c.Reason, ExitCode: -1, At: c.At,
			}}, nil
		case j.CancelRequested:
			return nil, nil
		}
		return []Event{JobCancelRequested{JobID: j.ID, By: c.By, Reason: c.Reason, At: c.At}}, nil
	case TimeOut:
		if j.Status != JobStatusRunning {
			return nil, j.transition(c)
		}
		if j.Spec.Timeout == 0 {
			return nil, fmt.Errorf("time-out job %s: job has no timeout: %w", j.ID, ErrNotDue)
		}
		if c.At.Before(j.Deadline) {
			return nil, fmt.Errorf("time-out job %s: deadline %s not reached at %s: %w",
				j.ID, j.Deadline.Format(time.RFC3339Nano), c.At.UTC().Format(time.RFC3339Nano), ErrNotDue)
		}
		return []Event{JobTimedOut{
			JobID: j.ID, Attempt: j.Attempt, WorkerID: j.Worker, ExitCode: -1, At: c.At,
			Reason: fmt.Sprintf("timeout of %s passed without a report from the agent", j.Spec.Timeout),
		}}, nil
	}
	return nil, fmt.Errorf("decide job %s: unknown command %T: %w", j.ID, c, ErrInvalidCommand)
}

func (j Job) submit(c Submit) ([]Event, error) {
	if j.Exists() {
		return nil, fmt.Errorf("submit job %s: %w", c.JobID, ErrAlreadyExists)
	}
	if err := c.Spec.Validate(); err != nil {
		return nil, err
	}
	return []Event{JobSubmitted{JobID: c.JobID, Spec: c.Spec.WithDefaults(), Submitter: c.Submitter, At: c.At}}, nil
}

func (j Job) finish(c Finish) Event {
	switch {
	case c.TimedOut:
		reason := c.Reason
		if reason == "" {
			reason = fmt.Sprintf("killed by the agent after the timeout of %s", j.Spec.Timeout)
		}
		return JobTimedOut{JobID: j.ID, Attempt: c.Attempt, WorkerID: c.WorkerID, Reason: reason,
			ExitCode: c.ExitCode, Signal: c.Signal, Runtime: c.Runtime, At: c.At}
	case j.CancelRequested:
		return JobCancelled{JobID: j.ID, Attempt: c.Attempt, WorkerID: c.WorkerID, By: j.CancelledBy,
			Reason: j.CancelReason, ExitCode: c.ExitCode, Signal: c.Signal, Runtime: c.Runtime, At: c.At}
	case c.ExitCode == 0 && c.Signal == "":
		return JobSucceeded{JobID: j.ID, Attempt: c.Attempt, WorkerID: c.WorkerID, Runtime: c.Runtime, At: c.At}
	}
	reason := c.Reason
	switch {
	case reason != "":
	case c.Signal != "":
		reason = "killed by " + c.Signal
	default:
		reason = fmt.Sprintf("exit status %d", c.ExitCode)
	}
	return JobFailed{JobID: j.ID, Attempt: c.Attempt, WorkerID: c.WorkerID, ExitCode: c.ExitCode,
		Signal: c.Signal, Reason: reason, Runtime: c.Runtime, At: c.At}
}

func (j Job) failAttempt(c FailAttempt) Event {
	switch {
	case j.CancelRequested:
		return JobCancelled{JobID: j.ID, Attempt: c.Attempt, WorkerID: c.WorkerID, By: j.CancelledBy,
			Reason: j.CancelReason, ExitCode: -1, At: c.At}
	case int(c.Attempt) < j.Spec.MaxAttempts:
		return JobRequeued{JobID: j.ID, Attempt: c.Attempt, WorkerID: c.WorkerID, Reason: c.Reason, At: c.At}
	}
	return JobFailed{JobID: j.ID, Attempt: c.Attempt, WorkerID: c.WorkerID, ExitCode: -1, Reason: c.Reason, At: c.At}
}

// fence checks that a report from worker names the job's running attempt
// and that worker holds it. The order matters to callers: a worker that never
// held the attempt is ErrNotAssigned even on an ended job; otherwise an ended
// job is ErrJobTerminal; otherwise any attempt that is not running is stale.
func (j Job) fence(c JobCommand, worker string, attempt uint32) error {
	held := j.heldBy(attempt)
	stale := &StaleAttemptError{JobID: j.ID, Worker: worker, Attempt: attempt,
		Current: j.Attempt, Assigned: held, Status: j.Status}
	switch {
	case held != worker:
		return stale
	case j.Status.Terminal():
		return j.transition(c)
	case attempt != j.Attempt || !j.Status.Active():
		return stale
	}
	return nil
}

func (j Job) transition(c JobCommand) error {
	return &TransitionError{Aggregate: "job", ID: j.ID, From: string(j.Status), Command: c.CommandName()}
}

// validateJobCommand checks a command's own fields, before any state.
func validateJobCommand(c JobCommand) error {
	name := c.CommandName()
	text := func(field, s string, allowEmpty bool) error {
		if reason := checkText(s, maxTextBytes, allowEmpty); reason != "" {
			return commandError(name, field, "%s", reason)
		}
		return nil
	}
	id := func(field, s string) error {
		if reason := checkID(s); reason != "" {
			return commandError(name, field, "%q: %s", s, reason)
		}
		return nil
	}
	attempt := func(n uint32) error {
		if n == 0 {
			return commandError(name, "attempt", "zero (attempts start at 1)")
		}
		return nil
	}
	var at time.Time
	var err error
	switch c := c.(type) {
	case Submit:
		at = c.At
		err = firstErr(id("job_id", c.JobID), text("submitter", c.Submitter, true))
	case Park:
		at = c.At
		err = text("reason", c.Reason, false)
	case Unpark:
		at = c.At
	case Schedule:
		at = c.At
		err = id("worker_id", c.WorkerID)
		if err == nil && !c.AcceptBy.IsZero() && c.AcceptBy.Before(c.At) {
			err = commandError(name, "accept_by", "before at")
		}
	case Accept:
		at = c.At
		err = firstErr(id("worker_id", c.WorkerID), attempt(c.Attempt))
	case Start:
		at = c.At
		err = firstErr(id("worker_id", c.WorkerID), attempt(c.Attempt))
	case Finish:
		at = c.At
		err = firstErr(id("worker_id", c.WorkerID), attempt(c.Attempt),
			text("signal", c.Signal, true), text("reason", c.Reason, true))
		switch {
		case err != nil:
		case c.ExitCode < -1 || c.ExitCode > 255:
			err = commandError(name, "exit_code", "%d is outside -1..255", c.ExitCode)
		case c.Runtime < 0:
			err = commandError(name, "runtime", "negative")
		}
	case FailAttempt:
		at = c.At
		err = firstErr(id("worker_id", c.WorkerID), attempt(c.Attempt), text("reason", c.Reason, false))
	case Cancel:
		at = c.At
		err = firstErr(text("by", c.By, true), text("reason", c.Reason, true))
	case TimeOut:
		at = c.At
	default: // a pointer to a command, or a type from elsewhere
		return fmt.Errorf("%s: unknown command type %T (pass command values): %w", name, c, ErrInvalidCommand)
	}
	if err == nil && at.IsZero() {
		err = commandError(name, "at", "zero time")
	}
	return err
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
