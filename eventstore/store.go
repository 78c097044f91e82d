package eventstore

import (
	"context"
	"fmt"
	"time"
)

// Store is the port every event-log adapter implements. All methods are safe
// for concurrent use. Slices returned by reads belong to the caller.
type Store interface {
	// Append atomically appends events to one stream if the stream's current
	// version satisfies expected. It returns only after the events are durable.
	//
	// Errors: *VersionConflictError (ErrVersionConflict) when expected does not
	// hold, ErrIdempotencyConflict when an event id is already stored with other
	// content or only part of the batch is stored, *InvalidEventError
	// (ErrInvalidEvent) for bad input, ErrClosed, a context error, or a commit
	// error. On any error nothing is written.
	//
	// Retrying an append whose event ids and content are all stored already
	// returns the original result, whatever expected says.
	Append(ctx context.Context, stream string, expected ExpectedVersion, events []EventData) (AppendResult, error)

	// AppendMany submits independent appends together so the adapter can commit
	// them in one transaction. Each request succeeds or fails on its own,
	// exactly as Append would; outcomes are in request order. The returned error
	// is for the whole call (ErrClosed, context, a commit failure): then no
	// request was written.
	AppendMany(ctx context.Context, reqs []AppendRequest) ([]AppendOutcome, error)

	// ReadStream returns up to limit events of stream with version >= from, in
	// version order. A missing stream reads as empty.
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]Envelope, error)

	// ReadAll returns up to limit events with position >= from, in position
	// order. It returns a *CorruptError (ErrCorrupt) naming the position when
	// stored data cannot be decoded.
	ReadAll(ctx context.Context, from uint64, limit int) ([]Envelope, error)

	// Head returns the last committed position and its hash (zero for an empty
	// log).
	Head(ctx context.Context) (Head, error)

	// Subscribe returns a subscription that delivers every committed event with
	// position > after, exactly once and in order. The caller must Close it.
	Subscribe(after uint64) *Subscription

	// Close waits for in-flight appends, then releases the store. Appends after
	// Close return ErrClosed.
	Close() error
}

// Reader is the read side a Subscription pulls from when the Bus ring has
// moved on. Every Store is a Reader.
type Reader interface {
	ReadAll(ctx context.Context, from uint64, limit int) ([]Envelope, error)
}

// ExpectedVersion is the stream version an append expects to find. Values
// >= 1 are exact versions; Any, NoStream and StreamExists are the special cases.
type ExpectedVersion int64

const (
	// Any accepts whatever the stream's version is, including no stream.
	Any ExpectedVersion = -1
	// NoStream requires that the stream has no events yet.
	NoStream ExpectedVersion = 0
	// StreamExists requires at least one event in the stream.
	StreamExists ExpectedVersion = -2
)

// Exact expects the stream to be at version v (its last event's version).
// Exact(0) is NoStream.
func Exact(v uint64) ExpectedVersion { return ExpectedVersion(v) }

// Check reports whether a stream at version current satisfies e.
func (e ExpectedVersion) Check(current uint64) bool {
	switch {
	case e == Any:
		return true
	case e == StreamExists:
		return current > 0
	case e >= 0:
		return uint64(e) == current
	default:
		return false
	}
}

// Valid reports whether e is one of the defined modes.
func (e ExpectedVersion) Valid() bool { return e >= StreamExists }

func (e ExpectedVersion) String() string {
	switch e {
	case Any:
		return "any"
	case NoStream:
		return "no stream"
	case StreamExists:
		return "stream exists"
	}
	if e < 0 {
		return fmt.Sprintf("invalid(%d)", int64(e))
	}
	return fmt.Sprintf("version %d", int64(e))
}

// EventData is an event to append. The store assigns position, stream version
// and hash.
type EventData struct {
	// ID identifies the event store-wide; it is the idempotency key.
	ID ID
	// Type is the stable wire name, e.g. "job.submitted".
	Type string
	// SchemaVersion of the payload, from 1.
	SchemaVersion uint16
	// Time is when the event happened. Zero means the store's clock.
	Time time.Time
	// Actor names who caused the event: "user:NAME", "agent:ID" or "system:PART".
	Actor string
	// CorrelationID groups the events of one request; CausationID is the
	// event or command that caused this one. Both may be zero.
	CorrelationID ID
	CausationID   ID
	// Payload is the msgpack-encoded body (see Codec).
	Payload []byte
}

// AppendRequest is one append of AppendMany.
type AppendRequest struct {
	Stream   string
	Expected ExpectedVersion
	Events   []EventData
}

// AppendResult says where an append's events landed.
type AppendResult struct {
	// FirstPosition and LastPosition are the global positions of the first and
	// last appended event.
	FirstPosition, LastPosition uint64
	// Version is the stream's version after the append (its last event's).
	Version uint64
	// Duplicate is true when the append was an idempotent retry of events
	// already stored: nothing new was written.
	Duplicate bool
}

// AppendOutcome is the outcome of one request of AppendMany.
type AppendOutcome struct {
	Result AppendResult
	Err    error
}

// Head is the last committed position of the log and its hash.
type Head struct {
	Position uint64
	Hash     Hash
}
