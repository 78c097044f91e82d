package domain

import (
	"strings"
	"time"
)

// Event is a typed domain event: a past-tense fact about one job or worker.
// Event values are plain structs (never pointers) whose payload fields are
// named by json tags; the event store's codec encodes them as they are.
type Event interface {
	// EventType is the stable wire name, e.g. "job.submitted". Names are
	// append-only: never renamed, never reused.
	EventType() string
	// EventSchemaVersion is the version of the payload's current shape.
	// Adding a field with a usable zero value keeps the version; any other
	// change bumps it and registers an upcaster from the old one.
	EventSchemaVersion() uint16
	// StreamID is the stream the event belongs to: JobStream or WorkerStream
	// of the aggregate's id.
	StreamID() string
}

// Events returns one zero value of every event type, job events then worker
// events, for registering with the event store's codec. Projections that
// dispatch on event types should cover exactly this list.
func Events() []Event {
	return []Event{
		JobSubmitted{},
		JobParked{},
		JobUnparked{},
		JobScheduled{},
		JobAccepted{},
		JobStarted{},
		JobCancelRequested{},
		JobRequeued{},
		JobSucceeded{},
		JobFailed{},
		JobCancelled{},
		JobTimedOut{},
		WorkerRegistered{},
		WorkerReconnected{},
		WorkerDrainStarted{},
		WorkerResumed{},
		WorkerLost{},
		WorkerDeregistered{},
		WorkerEnrolled{},
		WorkerIdentityRenewed{},
		WorkerIdentityRevoked{},
		InstanceRequested{},
		InstanceStarted{},
		InstanceConnected{},
		InstanceFailed{},
		InstanceTerminated{},
	}
}

// Stream id prefixes. A stream id is the prefix followed by the aggregate id.
const (
	JobStreamPrefix      = "job-"
	WorkerStreamPrefix   = "worker-"
	InstanceStreamPrefix = "instance-"
)

// JobStream returns the stream id of job id: "job-<id>".
func JobStream(id string) string { return JobStreamPrefix + id }

// WorkerStream returns the stream id of worker id: "worker-<id>".
func WorkerStream(id string) string { return WorkerStreamPrefix + id }

// InstanceStream returns the stream id of instance id: "instance-<id>".
func InstanceStream(id string) string { return InstanceStreamPrefix + id }

// ParseStream splits a stream id into its aggregate ("job", "worker" or
// "instance") and id. ok is false for any other stream.
func ParseStream(stream string) (aggregate, id string, ok bool) {
	if id, ok := strings.CutPrefix(stream, JobStreamPrefix); ok && id != "" {
		return "job", id, true
	}
	if id, ok := strings.CutPrefix(stream, WorkerStreamPrefix); ok && id != "" {
		return "worker", id, true
	}
	if id, ok := strings.CutPrefix(stream, InstanceStreamPrefix); ok && id != "" {
		return "instance", id, true
	}
	return "", "", false
}

// Fold applies events to state in order and returns the result:
// Fold(Job{}, events) is the job's current state; Fold(snapshot, newer) moves
// a snapshot forward. It never mutates state.
func Fold[S interface{ Apply(Event) S }](state S, events []Event) S {
	for _, e := range events {
		state = state.Apply(e)
	}
	return state
}

// utc normalises times taken from events, so state does not depend on the
// location a decoder chose.
func utc(t time.Time) time.Time { return t.UTC() }
