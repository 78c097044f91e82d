package domain

import "time"

// Instance events: the provisioning decisions of providers (see package
// provider), so the log explains why every container or Pod existed.

// InstanceRequested: a provider decided to start an instance for Jobs
// (queued, and no connected agent could take them); Reason says so in
// words.
type InstanceRequested struct {
	InstanceID string    `json:"instance_id"`
	Provider   string    `json:"provider"`
	Driver     string    `json:"driver"`
	Ephemeral  bool      `json:"ephemeral"`
	Jobs       []string  `json:"jobs"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
}

// InstanceStarted: the platform created and started it as Handle.
type InstanceStarted struct {
	InstanceID string    `json:"instance_id"`
	Handle     string    `json:"handle"`
	At         time.Time `json:"at"`
}

// InstanceConnected: its agent connected and registered as WorkerID.
type InstanceConnected struct {
	InstanceID string    `json:"instance_id"`
	WorkerID   string    `json:"worker_id"`
	At         time.Time `json:"at"`
}

// InstanceFailed (terminal): it could not start, or never connected; the
// provider retries with a new instance after a backoff.
type InstanceFailed struct {
	InstanceID string    `json:"instance_id"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
}

// InstanceTerminated (terminal): it was removed, and why.
type InstanceTerminated struct {
	InstanceID string    `json:"instance_id"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
}

// Wire names. Append-only: never rename or reuse one.
const (
	TypeInstanceRequested  = "instance.requested"
	TypeInstanceStarted    = "instance.started"
	TypeInstanceConnected  = "instance.connected"
	TypeInstanceFailed     = "instance.failed"
	TypeInstanceTerminated = "instance.terminated"
)

// EventType returns "instance.requested".
func (InstanceRequested) EventType() string { return TypeInstanceRequested }

// EventSchemaVersion implements Event.
func (InstanceRequested) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e InstanceRequested) StreamID() string { return InstanceStream(e.InstanceID) }

// EventType returns "instance.started".
func (InstanceStarted) EventType() string { return TypeInstanceStarted }

// EventSchemaVersion implements Event.
func (InstanceStarted) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e InstanceStarted) StreamID() string { return InstanceStream(e.InstanceID) }

// EventType returns "instance.connected".
func (InstanceConnected) EventType() string { return TypeInstanceConnected }

// EventSchemaVersion implements Event.
func (InstanceConnected) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e InstanceConnected) StreamID() string { return InstanceStream(e.InstanceID) }

// EventType returns "instance.failed".
func (InstanceFailed) EventType() string { return TypeInstanceFailed }

// EventSchemaVersion implements Event.
func (InstanceFailed) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e InstanceFailed) StreamID() string { return InstanceStream(e.InstanceID) }

// EventType returns "instance.terminated".
func (InstanceTerminated) EventType() string { return TypeInstanceTerminated }

// EventSchemaVersion implements Event.
func (InstanceTerminated) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e InstanceTerminated) StreamID() string { return InstanceStream(e.InstanceID) }
