package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// NanoTimeFormat is the time format of machine output (export, -o json):
// RFC 3339 in UTC with all nine fractional digits, so it sorts as text and
// round-trips exactly.
const NanoTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// StreamReader reads one stream; every eventstore.Store is one.
type StreamReader interface {
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.Envelope, error)
}

// Entry is one event of a timeline: where and when it happened, who caused
// it, and what it says.
type Entry struct {
	Position      uint64 `json:"position"`
	StreamVersion uint64 `json:"stream_version"`
	Time          string `json:"time"` // NanoTimeFormat
	Actor         string `json:"actor"`
	Type          string `json:"type"`
	SchemaVersion uint16 `json:"schema_version"`
	EventID       string `json:"event_id"`
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
	Summary       string `json:"summary"`
	// Known is false for a type (or schema version) this binary cannot
	// decode; Summary then lists the raw fields and DecodeError says why.
	Known       bool   `json:"known"`
	DecodeError string `json:"decode_error,omitempty"`
	// Payload is the stored payload's fields as they are at the stored
	// schema version (eventstore.DecodeFields), not upcast.
	Payload map[string]any `json:"payload"`

	// At is Time parsed; Event is the decoded, upcast event (nil unless Known).
	At    time.Time        `json:"-"`
	Event eventstore.Event `json:"-"`
}

// NewEntry describes env: decoded through codec when it knows the type,
// from the raw fields otherwise. A payload that does not decode at all is
// reported in DecodeError, not as an error, so a timeline always shows every
// event.
func NewEntry(codec *eventstore.Codec, env *eventstore.Envelope) Entry {
	e := Entry{
		Position: env.Position, StreamVersion: env.StreamVersion, Time: env.Time.UTC().Format(NanoTimeFormat),
		Actor: env.Actor, Type: env.Type, SchemaVersion: env.SchemaVersion, EventID: env.EventID.String(), At: env.Time,
	}
	if !env.CorrelationID.IsZero() {
		e.CorrelationID = env.CorrelationID.String()
	}
	if !env.CausationID.IsZero() {
		e.CausationID = env.CausationID.String()
	}
	fields, ferr := eventstore.DecodeFields(env.Payload)
	e.Payload = jsonFields(fields)
	ev, err := codec.Decode(env)
	switch {
	case err == nil:
		if _, ok := ev.(domain.Event); ok {
			e.Known, e.Event, e.Summary = true, ev, Summary(ev)
			return e
		}
		e.DecodeError = fmt.Sprintf("%s is not a domain event", env.Type)
	default:
		e.DecodeError = err.Error()
	}
	if ferr != nil {
		e.Summary = "undecodable payload: " + ferr.Error()
		if e.DecodeError == "" {
			e.DecodeError = ferr.Error()
		}
		return e
	}
	e.Summary = FieldsSummary(fields)
	return e
}

// Timeline returns every event of stream, in stream order, as entries. A
// stream with no events gives an empty timeline and no error.
func Timeline(ctx context.Context, r StreamReader, codec *eventstore.Codec, stream string) ([]Entry, error) {
	var out []Entry
	for from := uint64(1); ; {
		page, err := r.ReadStream(ctx, stream, from, 1000)
		if err != nil {
			return nil, fmt.Errorf("timeline %s: %w", stream, err)
		}
		for i := range page {
			out = append(out, NewEntry(codec, &page[i]))
		}
		if len(page) < 1000 {
			return out, nil
		}
		from = page[len(page)-1].StreamVersion + 1
	}
}

// jsonFields makes decoded msgpack fields safe and deterministic for
// encoding/json, in place: maps with non-string keys get string keys and
// times are put in UTC, recursively. Byte slices (base64) and numbers encode
// as they are.
func jsonFields(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	for k, v := range m {
		m[k] = jsonValue(v)
	}
	return m
}

func jsonValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return jsonFields(v)
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[fmt.Sprint(k)] = jsonValue(x)
		}
		return out
	case []any:
		for i, x := range v {
			v[i] = jsonValue(x)
		}
		return v
	case time.Time:
		return v.UTC()
	}
	return v
}
