package domain

import "time"

// Worker events. Heartbeats and their telemetry are not events: they are
// overwritten in memory. Enrolment and identity events are in
// worker_identity_events.go; provisioning events will be added
// beside these under new names.

// WorkerRegistered: an agent connected for the first time and the server gave
// it an id. The worker is online and may be given jobs.
type WorkerRegistered struct {
	WorkerID string     `json:"worker_id"`
	Info     WorkerInfo `json:"info"`
	At       time.Time  `json:"at"`
}

// WorkerReconnected: a known agent connected again, with what it declares
// now. A lost worker is online again (its old attempts stay fenced); a
// draining worker keeps draining.
type WorkerReconnected struct {
	WorkerID string     `json:"worker_id"`
	Info     WorkerInfo `json:"info"`
	At       time.Time  `json:"at"`
}

// WorkerDrainStarted: the worker takes no new jobs; running ones finish.
type WorkerDrainStarted struct {
	WorkerID string    `json:"worker_id"`
	By       string    `json:"by"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// WorkerResumed: a draining worker takes new jobs again.
type WorkerResumed struct {
	WorkerID string    `json:"worker_id"`
	By       string    `json:"by"`
	At       time.Time `json:"at"`
}

// WorkerLost: the worker missed its heartbeats past the deadline; LastSeen is
// its last heartbeat. The server fails its attempts (ReasonAgentLost).
type WorkerLost struct {
	WorkerID string    `json:"worker_id"`
	LastSeen time.Time `json:"last_seen"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// WorkerDeregistered (terminal): the worker left for good (drained and
// stopped, or removed by an operator). Nothing may follow it.
type WorkerDeregistered struct {
	WorkerID string    `json:"worker_id"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// Wire names. Append-only: never rename or reuse one.
const (
	TypeWorkerRegistered   = "worker.registered"
	TypeWorkerReconnected  = "worker.reconnected"
	TypeWorkerDrainStarted = "worker.drain_started"
	TypeWorkerResumed      = "worker.resumed"
	TypeWorkerLost         = "worker.lost"
	TypeWorkerDeregistered = "worker.deregistered"
)

// EventType returns "worker.registered".
func (WorkerRegistered) EventType() string { return TypeWorkerRegistered }

// EventSchemaVersion implements Event.
func (WorkerRegistered) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e WorkerRegistered) StreamID() string { return WorkerStream(e.WorkerID) }

// EventType returns "worker.reconnected".
func (WorkerReconnected) EventType() string { return TypeWorkerReconnected }

// EventSchemaVersion implements Event.
func (WorkerReconnected) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e WorkerReconnected) StreamID() string { return WorkerStream(e.WorkerID) }

// EventType returns "worker.drain_started".
func (WorkerDrainStarted) EventType() string { return TypeWorkerDrainStarted }

// EventSchemaVersion implements Event.
func (WorkerDrainStarted) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e WorkerDrainStarted) StreamID() string { return WorkerStream(e.WorkerID) }

// EventType returns "worker.resumed".
func (WorkerResumed) EventType() string { return TypeWorkerResumed }

// EventSchemaVersion implements Event.
func (WorkerResumed) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e WorkerResumed) StreamID() string { return WorkerStream(e.WorkerID) }

// EventType returns "worker.lost".
func (WorkerLost) EventType() string { return TypeWorkerLost }

// EventSchemaVersion implements Event.
func (WorkerLost) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e WorkerLost) StreamID() string { return WorkerStream(e.WorkerID) }

// EventType returns "worker.deregistered".
func (WorkerDeregistered) EventType() string { return TypeWorkerDeregistered }

// EventSchemaVersion implements Event.
func (WorkerDeregistered) EventSchemaVersion() uint16 { return 1 }

// StreamID implements Event.
func (e WorkerDeregistered) StreamID() string { return WorkerStream(e.WorkerID) }
