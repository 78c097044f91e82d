package domain

import (
	"fmt"
	"slices"
	"time"
)

// InstanceStatus is where a provisioned agent instance (a container, a Pod)
// is in its life.
type InstanceStatus string

// Instance statuses. Failed and terminated are terminal: a retry is a new
// instance.
const (
	InstanceStatusRequested  InstanceStatus = "requested"
	InstanceStatusStarted    InstanceStatus = "started"
	InstanceStatusConnected  InstanceStatus = "connected"
	InstanceStatusFailed     InstanceStatus = "failed"
	InstanceStatusTerminated InstanceStatus = "terminated"
)

// Ended reports whether s is terminal.
func (s InstanceStatus) Ended() bool {
	return s == InstanceStatusFailed || s == InstanceStatusTerminated
}

// Instance is an agent instance a provider started on demand, folded from
// its stream "instance-<id>". Its events say why it existed: which jobs
// asked for it, when it started and connected, and why it ended.
type Instance struct {
	ID        string         `json:"id"`
	Provider  string         `json:"provider"`
	Driver    string         `json:"driver"`
	Ephemeral bool           `json:"ephemeral"`
	Jobs      []string       `json:"jobs"` // the jobs it was requested for
	Status    InstanceStatus `json:"status"`
	Handle    string         `json:"handle"`    // container id, Pod name
	WorkerID  string         `json:"worker_id"` // once connected
	Reason    string         `json:"reason"`    // why requested, then why it ended

	RequestedAt time.Time `json:"requested_at"`
	StartedAt   time.Time `json:"started_at"`
	ConnectedAt time.Time `json:"connected_at"`
	EndedAt     time.Time `json:"ended_at"`

	Version uint64 `json:"version"`
}

// Exists reports whether the instance has been requested.
func (i Instance) Exists() bool { return i.Status != "" }

// Apply returns the state after e.
func (i Instance) Apply(e Event) Instance {
	i.Version++
	switch e := e.(type) {
	case InstanceRequested:
		return Instance{ID: e.InstanceID, Provider: e.Provider, Driver: e.Driver, Ephemeral: e.Ephemeral,
			Jobs: slices.Clone(e.Jobs), Status: InstanceStatusRequested, Reason: e.Reason,
			RequestedAt: utc(e.At), Version: i.Version}
	case InstanceStarted:
		i.Status, i.Handle, i.StartedAt = InstanceStatusStarted, e.Handle, utc(e.At)
	case InstanceConnected:
		i.Status, i.WorkerID, i.ConnectedAt = InstanceStatusConnected, e.WorkerID, utc(e.At)
	case InstanceFailed:
		i.Status, i.Reason, i.EndedAt = InstanceStatusFailed, e.Reason, utc(e.At)
	case InstanceTerminated:
		i.Status, i.Reason, i.EndedAt = InstanceStatusTerminated, e.Reason, utc(e.At)
	}
	return i
}

// InstanceCommand is a command on an Instance: RequestInstance,
// MarkInstanceStarted, MarkInstanceConnected, FailInstance or
// TerminateInstance.
type InstanceCommand interface {
	// CommandName is the command's name in errors.
	CommandName() string
	instanceCommand()
}

// RequestInstance records a provider's decision to start an instance, and
// why. Allowed only on the zero Instance.
type RequestInstance struct {
	InstanceID string    `json:"instance_id"`
	Provider   string    `json:"provider"`
	Driver     string    `json:"driver"`
	Ephemeral  bool      `json:"ephemeral"`
	Jobs       []string  `json:"jobs"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
}

// MarkInstanceStarted records that the platform created and started it.
type MarkInstanceStarted struct {
	Handle string    `json:"handle"`
	At     time.Time `json:"at"`
}

// MarkInstanceConnected records that its agent connected as WorkerID. A
// repeat decides nothing.
type MarkInstanceConnected struct {
	WorkerID string    `json:"worker_id"`
	At       time.Time `json:"at"`
}

// FailInstance records that it could not be started or never connected.
type FailInstance struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// TerminateInstance records that it was removed (idle, its one job done,
// not needed any more, exited, swept after a restart).
type TerminateInstance struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// CommandName implements InstanceCommand.
func (RequestInstance) CommandName() string { return "request-instance" }

// CommandName implements InstanceCommand.
func (MarkInstanceStarted) CommandName() string { return "mark-instance-started" }

// CommandName implements InstanceCommand.
func (MarkInstanceConnected) CommandName() string { return "mark-instance-connected" }

// CommandName implements InstanceCommand.
func (FailInstance) CommandName() string { return "fail-instance" }

// CommandName implements InstanceCommand.
func (TerminateInstance) CommandName() string { return "terminate-instance" }

func (RequestInstance) instanceCommand()       {}
func (MarkInstanceStarted) instanceCommand()   {}
func (MarkInstanceConnected) instanceCommand() {}
func (FailInstance) instanceCommand()          {}
func (TerminateInstance) instanceCommand()     {}

// Decide returns the events c causes on i, or an error. Ending an ended
// instance decides nothing; any other command on it is a *TransitionError.
func (i Instance) Decide(c InstanceCommand) ([]Event, error) {
	if c == nil {
		return nil, fmt.Errorf("decide instance %s: nil command: %w", i.ID, ErrInvalidCommand)
	}
	if err := validateInstanceCommand(c); err != nil {
		return nil, err
	}
	if r, ok := c.(RequestInstance); ok {
		if i.Exists() {
			return nil, fmt.Errorf("request instance %s: %w", r.InstanceID, ErrAlreadyExists)
		}
		return []Event{InstanceRequested{InstanceID: r.InstanceID, Provider: r.Provider, Driver: r.Driver,
			Ephemeral: r.Ephemeral, Jobs: slices.Clone(r.Jobs), Reason: r.Reason, At: r.At}}, nil
	}
	if !i.Exists() {
		return nil, fmt.Errorf("%s: %w", c.CommandName(), ErrNotFound)
	}
	if i.Status.Ended() {
		switch c.(type) {
		case FailInstance, TerminateInstance:
			return nil, nil
		}
		return nil, &TransitionError{Aggregate: "instance", ID: i.ID, From: string(i.Status), Command: c.CommandName()}
	}
	switch c := c.(type) {
	case MarkInstanceStarted:
		if i.Status != InstanceStatusRequested {
			if i.Handle == c.Handle {
				return nil, nil
			}
			return nil, &TransitionError{Aggregate: "instance", ID: i.ID, From: string(i.Status), Command: c.CommandName()}
		}
		return []Event{InstanceStarted{InstanceID: i.ID, Handle: c.Handle, At: c.At}}, nil
	case MarkInstanceConnected:
		if i.Status == InstanceStatusConnected {
			return nil, nil
		}
		return []Event{InstanceConnected{InstanceID: i.ID, WorkerID: c.WorkerID, At: c.At}}, nil
	case FailInstance:
		return []Event{InstanceFailed{InstanceID: i.ID, Reason: c.Reason, At: c.At}}, nil
	case TerminateInstance:
		return []Event{InstanceTerminated{InstanceID: i.ID, Reason: c.Reason, At: c.At}}, nil
	}
	return nil, fmt.Errorf("decide instance %s: unknown command %T: %w", i.ID, c, ErrInvalidCommand)
}

func validateInstanceCommand(c InstanceCommand) error {
	name := c.CommandName()
	text := func(field, s string, required bool) error {
		if reason := checkText(s, maxTextBytes, !required); reason != "" {
			return commandError(name, field, "%s", reason)
		}
		return nil
	}
	var at time.Time
	var err error
	switch c := c.(type) {
	case RequestInstance:
		at = c.At
		if reason := checkID(c.InstanceID); reason != "" {
			err = commandError(name, "instance_id", "%q: %s", c.InstanceID, reason)
		} else {
			err = firstErr(text("provider", c.Provider, true), text("driver", c.Driver, true), text("reason", c.Reason, true))
		}
		for k, j := range c.Jobs {
			if err == nil {
				if reason := checkID(j); reason != "" {
					err = commandError(name, fmt.Sprintf("jobs[%d]", k), "%q: %s", j, reason)
				}
			}
		}
	case MarkInstanceStarted:
		at = c.At
		err = text("handle", c.Handle, true)
	case MarkInstanceConnected:
		at = c.At
		if reason := checkID(c.WorkerID); reason != "" {
			err = commandError(name, "worker_id", "%q: %s", c.WorkerID, reason)
		}
	case FailInstance:
		at = c.At
		err = text("reason", c.Reason, true)
	case TerminateInstance:
		at = c.At
		err = text("reason", c.Reason, true)
	default:
		return fmt.Errorf("%s: unknown command type %T (pass command values): %w", name, c, ErrInvalidCommand)
	}
	if err == nil && at.IsZero() {
		err = commandError(name, "at", "zero time")
	}
	return err
}
