package domain

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound is returned when a command other than Submit or Register
	// targets a job or worker that has no events.
	ErrNotFound = errors.New("not found")

	// ErrAlreadyExists is returned by Submit and Register when the job or
	// worker already has events.
	ErrAlreadyExists = errors.New("already exists")

	// ErrInvalidTransition is returned (inside a *TransitionError) when a
	// command is not allowed in the aggregate's current status.
	ErrInvalidTransition = errors.New("invalid state transition")

	// ErrJobTerminal is returned (inside a *TransitionError) for any command on
	// a job that has succeeded, failed, been cancelled or timed out.
	ErrJobTerminal = errors.New("job has ended")

	// ErrWorkerDeregistered is returned (inside a *TransitionError) for any
	// command on a worker that has been deregistered.
	ErrWorkerDeregistered = errors.New("worker is deregistered")

	// ErrStaleAttempt is returned (inside a *StaleAttemptError) for a report
	// that does not name the job's running attempt on its assigned worker. The
	// agent that sent it must stop that attempt.
	ErrStaleAttempt = errors.New("stale attempt")

	// ErrNotAssigned is returned (inside a *StaleAttemptError) when a worker
	// reports on a job attempt that was never assigned to it.
	ErrNotAssigned = errors.New("attempt not assigned to this worker")

	// ErrNotDue is returned by TimeOut when the job has no timeout or its
	// deadline has not passed at the command's time.
	ErrNotDue = errors.New("deadline not reached")

	// ErrInvalidJobSpec is returned (inside a *FieldError) by JobSpec.Validate
	// and Submit for a bad job spec.
	ErrInvalidJobSpec = errors.New("invalid job spec")

	// ErrInvalidWorkerInfo is returned (inside a *FieldError) by
	// WorkerInfo.Validate, Register and Reconnect for bad worker details.
	ErrInvalidWorkerInfo = errors.New("invalid worker info")

	// ErrInvalidCommand is returned (inside a *FieldError) when a command's own
	// fields are bad: a missing time, an id with bad syntax, an empty reason.
	ErrInvalidCommand = errors.New("invalid command")
)

// FieldError names the bad field of outside input. Field is the JSON name,
// prefixed by the command name for command fields ("schedule.worker_id") and
// dotted for nested fields ("resources.cpu_millis").
type FieldError struct {
	Field  string
	Reason string
	Err    error // ErrInvalidJobSpec, ErrInvalidWorkerInfo or ErrInvalidCommand
}

// Error implements error.
func (e *FieldError) Error() string { return fmt.Sprintf("%v: %s: %s", e.Err, e.Field, e.Reason) }

// Unwrap returns the sentinel: ErrInvalidJobSpec, ErrInvalidWorkerInfo or
// ErrInvalidCommand.
func (e *FieldError) Unwrap() error { return e.Err }

// TransitionError is a command that the aggregate's status does not allow.
type TransitionError struct {
	Aggregate string // "job" or "worker"
	ID        string
	From      string // the current status
	Command   string // the command's name
}

// Error implements error.
func (e *TransitionError) Error() string {
	return fmt.Sprintf("%s %s %s: not allowed when %s: %v", e.Command, e.Aggregate, e.ID, e.From, e.cause())
}

func (e *TransitionError) cause() error {
	switch {
	case e.Aggregate == "job" && JobStatus(e.From).Terminal():
		return ErrJobTerminal
	case e.Aggregate == "worker" && WorkerStatus(e.From) == WorkerStatusDeregistered:
		return ErrWorkerDeregistered
	}
	return ErrInvalidTransition
}

// Is makes errors.Is true for ErrInvalidTransition always, and also for
// ErrJobTerminal or ErrWorkerDeregistered when that is the status.
func (e *TransitionError) Is(target error) bool {
	return target == ErrInvalidTransition || target == e.cause()
}

// StaleAttemptError is a report from an agent (accept, start, finish) or about
// an attempt (fail-attempt) that does not name the job's running attempt on
// the worker assigned to it. errors.Is(err, ErrStaleAttempt) is true for every
// such report, so one check tells the server to stop the agent's attempt;
// errors.Is(err, ErrNotAssigned) is also true when the worker never held the
// named attempt at all (a wrong or forged report, not just a late one).
type StaleAttemptError struct {
	JobID    string
	Worker   string    // the worker the report came from
	Attempt  uint32    // the attempt the report named
	Current  uint32    // the job's current attempt, 0 if never scheduled
	Assigned string    // the worker that held the named attempt, "" if none
	Status   JobStatus // the job's status
}

// Error implements error.
func (e *StaleAttemptError) Error() string {
	if e.notAssigned() {
		return fmt.Sprintf("job %s attempt %d: worker %s: %v", e.JobID, e.Attempt, e.Worker, ErrNotAssigned)
	}
	return fmt.Sprintf("job %s attempt %d on worker %s: current attempt is %d, job is %s: %v",
		e.JobID, e.Attempt, e.Worker, e.Current, e.Status, ErrStaleAttempt)
}

func (e *StaleAttemptError) notAssigned() bool { return e.Assigned != e.Worker }

// Is makes errors.Is true for ErrStaleAttempt always, and for ErrNotAssigned
// when Worker never held Attempt.
func (e *StaleAttemptError) Is(target error) bool {
	return target == ErrStaleAttempt || target == ErrNotAssigned && e.notAssigned()
}

func commandError(cmd, field, format string, args ...any) error {
	return &FieldError{Field: cmd + "." + field, Reason: fmt.Sprintf(format, args...), Err: ErrInvalidCommand}
}
