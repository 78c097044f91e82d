package eventstore

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Event is a typed event the Codec can encode: a Go value with a stable wire
// name and the schema version of its current Go shape. Payload fields are
// named by their `json` struct tags, so the same names serve msgpack and JSON
// export.
type Event interface {
	EventType() string
	EventSchemaVersion() uint16
}

// Upcaster turns the decoded fields of an event at schema version v into the
// fields of version v+1. It must be pure and must not keep fields.
type Upcaster func(fields map[string]any) (map[string]any, error)

// Codec encodes typed events to msgpack payloads and decodes them back,
// upcasting older schema versions. Register every type before use; after that
// a Codec is safe for concurrent use.
type Codec struct {
	mu        sync.RWMutex
	types     map[string]codecType
	upcasters map[upcastKey]Upcaster
}

type codecType struct {
	version uint16
	typ     reflect.Type // the struct type (not pointer)
}

type upcastKey struct {
	name string
	from uint16
}

// NewCodec returns a codec that knows the given events' types at their
// current schema versions.
func NewCodec(events ...Event) *Codec {
	c := &Codec{types: map[string]codecType{}, upcasters: map[upcastKey]Upcaster{}}
	for _, e := range events {
		c.Register(e)
	}
	return c
}

// Register adds an event type. It panics on a duplicate name or a non-struct
// type: both are programming errors found at start-up.
func (c *Codec) Register(e Event) {
	t := reflect.TypeOf(e)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("eventstore: register %s: %s is not a struct", e.EventType(), t))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.types[e.EventType()]; dup {
		panic(fmt.Sprintf("eventstore: event type %q registered twice", e.EventType()))
	}
	if e.EventSchemaVersion() == 0 {
		panic(fmt.Sprintf("eventstore: event type %q has schema version 0", e.EventType()))
	}
	c.types[e.EventType()] = codecType{version: e.EventSchemaVersion(), typ: t}
}

// RegisterUpcaster adds the step from schema version from to from+1 of the
// named type.
func (c *Codec) RegisterUpcaster(name string, from uint16, up Upcaster) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.upcasters[upcastKey{name, from}] = up
}

// Types returns the registered type names, sorted.
func (c *Codec) Types() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	names := make([]string, 0, len(c.types))
	for n := range c.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Marshal encodes e's payload. Map keys are sorted so equal values give
// equal bytes on every adapter.
func (c *Codec) Marshal(e Event) ([]byte, error) {
	c.mu.RLock()
	_, ok := c.types[e.EventType()]
	c.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("marshal %q: %w", e.EventType(), ErrUnknownEventType)
	}
	return marshalPayload(e)
}

func marshalPayload(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	enc.SetCustomStructTag("json")
	enc.SetSortMapKeys(true)
	enc.SetOmitEmpty(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// EventData builds the EventData for e with the given metadata.
func (c *Codec) EventData(e Event, meta EventData) (EventData, error) {
	p, err := c.Marshal(e)
	if err != nil {
		return EventData{}, err
	}
	meta.Type = e.EventType()
	meta.SchemaVersion = e.EventSchemaVersion()
	meta.Payload = p
	return meta, nil
}

// Decode returns the typed event stored in env, upcast to the current schema
// version. Errors name the position: ErrUnknownEventType, ErrNewerSchema, a
// missing upcaster, or a payload that does not decode.
func (c *Codec) Decode(env *Envelope) (Event, error) {
	c.mu.RLock()
	ct, ok := c.types[env.Type]
	c.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("decode position %d: type %q: %w", env.Position, env.Type, ErrUnknownEventType)
	}
	if env.SchemaVersion > ct.version {
		return nil, fmt.Errorf("decode position %d: %s schema %d, this binary reads up to %d: %w",
			env.Position, env.Type, env.SchemaVersion, ct.version, ErrNewerSchema)
	}
	payload := env.Payload
	if env.SchemaVersion < ct.version {
		var err error
		payload, err = c.upcast(env.Type, env.SchemaVersion, ct.version, payload)
		if err != nil {
			return nil, fmt.Errorf("decode position %d: %w", env.Position, err)
		}
	}
	v := reflect.New(ct.typ)
	if err := unmarshalPayload(payload, v.Interface()); err != nil {
		return nil, fmt.Errorf("decode position %d: %s payload: %w", env.Position, env.Type, err)
	}
	return v.Elem().Interface().(Event), nil
}

func unmarshalPayload(b []byte, v any) error {
	// The decoder sizes allocations by declared lengths: refuse lengths
	// the bytes cannot back before it sees them.
	if err := checkPayload(b); err != nil {
		return err
	}
	r := bytes.NewReader(b)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r) // a bytes.Reader is an io.ByteScanner: the decoder reads no further than it needs
	dec.SetCustomStructTag("json")
	if err := dec.Decode(v); err != nil {
		return err
	}
	if r.Len() > 0 {
		return fmt.Errorf("%d trailing bytes after payload", r.Len())
	}
	return nil
}

// DecodeFields decodes a payload into a generic map, for tools that show
// events of types this binary does not know.
func DecodeFields(payload []byte) (map[string]any, error) {
	var m map[string]any
	if err := unmarshalPayload(payload, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *Codec) upcast(name string, from, to uint16, payload []byte) ([]byte, error) {
	fields, err := DecodeFields(payload)
	if err != nil {
		return nil, fmt.Errorf("%s schema %d payload: %w", name, from, err)
	}
	for v := from; v < to; v++ {
		c.mu.RLock()
		up, ok := c.upcasters[upcastKey{name, v}]
		c.mu.RUnlock()
		if !ok {
			return nil, fmt.Errorf("%s: no upcaster from schema %d to %d", name, v, v+1)
		}
		if fields, err = up(fields); err != nil {
			return nil, fmt.Errorf("%s: upcast schema %d to %d: %w", name, v, v+1, err)
		}
	}
	return marshalPayload(fields)
}
