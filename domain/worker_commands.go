package domain

import (
	"fmt"
	"time"
)

// WorkerCommand is a command on a Worker: Register, Reconnect, Drain, Resume,
// MarkLost, Deregister, or an identity command (Enrol, RenewIdentity,
// RevokeIdentity).
type WorkerCommand interface {
	// CommandName is the command's name in errors and test scripts.
	CommandName() string
	workerCommand()
}

// ReasonMissedHeartbeats is the MarkLost reason when the command gives none.
const ReasonMissedHeartbeats = "missed-heartbeats"

// Register records a new agent under the id the server gave it. Allowed
// only on the zero Worker.
type Register struct {
	WorkerID string     `json:"worker_id"`
	Info     WorkerInfo `json:"info"`
	At       time.Time  `json:"at"`
}

// Reconnect records that a known agent connected again.
type Reconnect struct {
	Info WorkerInfo `json:"info"`
	At   time.Time  `json:"at"`
}

// Drain stops new jobs going to the worker. A repeat decides nothing.
type Drain struct {
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Resume undoes Drain. It decides nothing unless the worker is draining.
type Resume struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// MarkLost records that an online worker missed its heartbeats past the
// deadline; the caller has checked the deadline against its heartbeat table.
// A repeat on a lost worker decides nothing.
type MarkLost struct {
	LastSeen time.Time `json:"last_seen"`
	Reason   string    `json:"reason"` // default ReasonMissedHeartbeats
	At       time.Time `json:"at"`
}

// Deregister removes the worker for good.
type Deregister struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// CommandName implements WorkerCommand.
func (Register) CommandName() string { return "register" }

// CommandName implements WorkerCommand.
func (Reconnect) CommandName() string { return "reconnect" }

// CommandName implements WorkerCommand.
func (Drain) CommandName() string { return "drain" }

// CommandName implements WorkerCommand.
func (Resume) CommandName() string { return "resume" }

// CommandName implements WorkerCommand.
func (MarkLost) CommandName() string { return "mark-lost" }

// CommandName implements WorkerCommand.
func (Deregister) CommandName() string { return "deregister" }

func (Register) workerCommand()   {}
func (Reconnect) workerCommand()  {}
func (Drain) workerCommand()      {}
func (Resume) workerCommand()     {}
func (MarkLost) workerCommand()   {}
func (Deregister) workerCommand() {}

// Decide returns the events that command c causes on w, or an error and no
// events. It never changes w. A nil slice with a nil error means the command
// is already satisfied.
//
// Errors: *FieldError (ErrInvalidCommand, ErrInvalidWorkerInfo) for bad
// input, ErrNotFound, ErrAlreadyExists, *TransitionError
// (ErrInvalidTransition, ErrWorkerDeregistered).
func (w Worker) Decide(c WorkerCommand) ([]Event, error) {
	if c == nil {
		return nil, fmt.Errorf("decide worker %s: nil command: %w", w.ID, ErrInvalidCommand)
	}
	if err := validateWorkerCommand(c); err != nil {
		return nil, err
	}
	if r, ok := c.(Register); ok {
		if w.Exists() {
			return nil, fmt.Errorf("register worker %s: %w", r.WorkerID, ErrAlreadyExists)
		}
		return []Event{WorkerRegistered{WorkerID: r.WorkerID, Info: r.Info.clone(), At: r.At}}, nil
	}
	if !w.Exists() {
		return nil, fmt.Errorf("%s worker: %w", c.CommandName(), ErrNotFound)
	}
	if w.Status == WorkerStatusDeregistered {
		return nil, w.transition(c)
	}
	switch c := c.(type) {
	case Reconnect:
		return []Event{WorkerReconnected{WorkerID: w.ID, Info: c.Info.clone(), At: c.At}}, nil
	case Drain:
		if w.Draining {
			return nil, nil
		}
		return []Event{WorkerDrainStarted{WorkerID: w.ID, By: c.By, Reason: c.Reason, At: c.At}}, nil
	case Resume:
		if !w.Draining {
			return nil, nil
		}
		return []Event{WorkerResumed{WorkerID: w.ID, By: c.By, At: c.At}}, nil
	case MarkLost:
		if w.Status == WorkerStatusLost {
			return nil, nil
		}
		reason := c.Reason
		if reason == "" {
			reason = ReasonMissedHeartbeats
		}
		return []Event{WorkerLost{WorkerID: w.ID, LastSeen: c.LastSeen, Reason: reason, At: c.At}}, nil
	case Deregister:
		return []Event{WorkerDeregistered{WorkerID: w.ID, Reason: c.Reason, At: c.At}}, nil
	case identityCommand:
		return w.decideIdentity(c)
	}
	return nil, fmt.Errorf("decide worker %s: unknown command %T: %w", w.ID, c, ErrInvalidCommand)
}

func (w Worker) transition(c WorkerCommand) error {
	return &TransitionError{Aggregate: "worker", ID: w.ID, From: string(w.Status), Command: c.CommandName()}
}

func validateWorkerCommand(c WorkerCommand) error {
	name := c.CommandName()
	text := func(field, s string) error {
		if reason := checkText(s, maxTextBytes, true); reason != "" {
			return commandError(name, field, "%s", reason)
		}
		return nil
	}
	var at time.Time
	var err error
	switch c := c.(type) {
	case Register:
		at = c.At
		if reason := checkID(c.WorkerID); reason != "" {
			err = commandError(name, "worker_id", "%q: %s", c.WorkerID, reason)
		} else {
			err = c.Info.Validate()
		}
	case Reconnect:
		at = c.At
		err = c.Info.Validate()
	case Drain:
		at = c.At
		err = firstErr(text("by", c.By), text("reason", c.Reason))
	case Resume:
		at = c.At
		err = text("by", c.By)
	case MarkLost:
		at = c.At
		err = text("reason", c.Reason)
		if err == nil && (c.LastSeen.IsZero() || c.LastSeen.After(c.At)) {
			err = commandError(name, "last_seen", "must be set and not after at")
		}
	case Deregister:
		at = c.At
		err = text("reason", c.Reason)
	case identityCommand:
		at, err = validateIdentity(c)
	default: // a pointer to a command, or a type from elsewhere
		return fmt.Errorf("%s: unknown command type %T (pass command values): %w", name, c, ErrInvalidCommand)
	}
	if err == nil && at.IsZero() {
		err = commandError(name, "at", "zero time")
	}
	return err
}
