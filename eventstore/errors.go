package eventstore

import (
	"errors"
	"fmt"
)

var (
	// ErrVersionConflict is returned (inside a *VersionConflictError) when an
	// append's ExpectedVersion does not hold. Nothing was written.
	ErrVersionConflict = errors.New("version conflict")

	// ErrIdempotencyConflict is returned when an appended event id is already
	// stored with different content, on another stream, or when only some of a
	// batch's ids are stored. Nothing was written.
	ErrIdempotencyConflict = errors.New("event id reused with different content")

	// ErrInvalidEvent is returned (inside an *InvalidEventError) when an append
	// is malformed: empty or oversized fields, a zero id, too many events.
	ErrInvalidEvent = errors.New("invalid event")

	// ErrCorrupt is returned (inside a *CorruptError) when stored data cannot be
	// decoded or breaks an invariant of the log.
	ErrCorrupt = errors.New("corrupt event log")

	// ErrClosed is returned by operations on a closed store or subscription.
	ErrClosed = errors.New("event store closed")

	// ErrUnknownEventType is returned by the Codec for a type name that is not
	// registered.
	ErrUnknownEventType = errors.New("unknown event type")

	// ErrNewerSchema is returned by the Codec for an event whose schema version
	// is newer than this binary understands.
	ErrNewerSchema = errors.New("event schema version newer than supported")
)

// VersionConflictError describes a failed ExpectedVersion check.
type VersionConflictError struct {
	Stream   string
	Expected ExpectedVersion
	Actual   uint64 // the stream's version at the time of the check
}

func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("append %s: expected %s, stream is at version %d: %v", e.Stream, e.Expected, e.Actual, ErrVersionConflict)
}

// Is makes errors.Is(err, ErrVersionConflict) true.
func (e *VersionConflictError) Is(target error) bool { return target == ErrVersionConflict }

// InvalidEventError names what is wrong with an append.
type InvalidEventError struct {
	Stream string
	Index  int    // index of the event in the append, -1 for the append itself
	Field  string // e.g. "stream", "type", "payload"
	Reason string
}

func (e *InvalidEventError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("append %q: %s: %s", e.Stream, e.Field, e.Reason)
	}
	return fmt.Sprintf("append %q: event %d: %s: %s", e.Stream, e.Index, e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidEvent) true.
func (e *InvalidEventError) Is(target error) bool { return target == ErrInvalidEvent }

// CorruptError names the position at which stored data is bad.
type CorruptError struct {
	Position uint64
	Reason   string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("position %d: %s: %v", e.Position, e.Reason, ErrCorrupt)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
