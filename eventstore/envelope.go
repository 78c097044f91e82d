package eventstore

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// ID is a 16-byte identifier (event, correlation and causation ids), printed
// in UUID form.
type ID [16]byte

// NewID returns a time-ordered (version 7, RFC 9562) ID: 48 bits of Unix
// milliseconds, then 12 bits of the sub-millisecond fraction, then 62 random
// bits. Ids made one after another sort (nearly) in the order they were
// made, so the indexes that keep them unique (bbolt's event_ids bucket, the
// PostgreSQL unique index) grow at their right edge instead of rewriting
// pages all over the tree, while 62 random bits keep them unguessable
// enough for identifiers and collision-free in practice.
func NewID() ID {
	return newIDAt(time.Now())
}

func newIDAt(now time.Time) ID {
	var id ID
	if _, err := rand.Read(id[6:]); err != nil {
		panic(fmt.Sprintf("eventstore: crypto/rand: %v", err)) // never happens on Linux
	}
	ns := now.UnixNano()
	ms := uint64(ns / 1e6)
	frac := uint64(ns%1e6) * 4096 / 1e6 // sub-millisecond fraction in 12 bits
	id[0], id[1], id[2] = byte(ms>>40), byte(ms>>32), byte(ms>>24)
	id[3], id[4], id[5] = byte(ms>>16), byte(ms>>8), byte(ms)
	id[6] = 0x70 | byte(frac>>8)
	id[7] = byte(frac)
	id[8] = id[8]&0x3f | 0x80
	return id
}

// ParseID parses the 36-character UUID form (or 32 hex digits).
func ParseID(s string) (ID, error) {
	var id ID
	var hexs []byte
	switch len(s) {
	case 32:
		hexs = []byte(s)
	case 36:
		if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
			return id, fmt.Errorf("parse id %q: dashes misplaced", s)
		}
		hexs = []byte(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
	default:
		return id, fmt.Errorf("parse id %q: want 36 characters (UUID form)", s)
	}
	if _, err := hex.Decode(id[:], hexs); err != nil {
		return id, fmt.Errorf("parse id %q: %w", s, err)
	}
	return id, nil
}

// IsZero reports whether id is all zero bytes.
func (id ID) IsZero() bool { return id == ID{} }

func (id ID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

// Hash is a SHA-256 digest of the chain.
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zero bytes (the prev hash of position 1).
func (h Hash) IsZero() bool { return h == Hash{} }

// Envelope is a stored event with everything the log knows about it.
// Envelopes delivered by a Subscription are shared between subscribers: treat
// them, and their Payload, as read-only.
type Envelope struct {
	Position      uint64 // global, dense, from 1
	StreamID      string // "job-<id>", "worker-<id>"
	StreamVersion uint64 // per stream, contiguous, from 1
	Type          string
	SchemaVersion uint16
	EventID       ID
	Time          time.Time // UTC, nanosecond precision
	Actor         string
	CorrelationID ID
	CausationID   ID
	Payload       []byte
	PrevHash      Hash
	Hash          Hash
}

// Limits on appended events. Adapters enforce them through ValidateAppend.
const (
	MaxStreamIDLen    = 256
	MaxTypeLen        = 128
	MaxActorLen       = 256
	MaxPayloadSize    = 1 << 20 // 1 MiB per event
	MaxEventsPerWrite = 10000
	MaxBytesPerWrite  = 16 << 20
)

// ValidateAppend checks an append's arguments against the limits above. It
// returns an *InvalidEventError naming the first bad field.
func ValidateAppend(stream string, expected ExpectedVersion, events []EventData) error {
	bad := func(i int, field, reason string) error {
		return &InvalidEventError{Stream: stream, Index: i, Field: field, Reason: reason}
	}
	if err := checkName(stream, MaxStreamIDLen); err != "" {
		return bad(-1, "stream", err)
	}
	if !expected.Valid() {
		return bad(-1, "expected version", fmt.Sprintf("%d is not a defined mode", int64(expected)))
	}
	if len(events) == 0 {
		return bad(-1, "events", "no events to append")
	}
	if len(events) > MaxEventsPerWrite {
		return bad(-1, "events", fmt.Sprintf("%d events, at most %d per append", len(events), MaxEventsPerWrite))
	}
	total := 0
	// A map finds duplicate ids in large appends; small ones, the usual
	// case, compare with the earlier ids instead: a map per append costs
	// more than the rest of the validation.
	var seen map[ID]struct{}
	if len(events) > smallAppend {
		seen = make(map[ID]struct{}, len(events))
	}
	for i := range events {
		e := &events[i]
		if e.ID.IsZero() {
			return bad(i, "id", "zero")
		}
		dup := false
		if seen != nil {
			_, dup = seen[e.ID]
			seen[e.ID] = struct{}{}
		} else {
			for j := range i {
				if events[j].ID == e.ID {
					dup = true
					break
				}
			}
		}
		if dup {
			return bad(i, "id", fmt.Sprintf("%s appears twice in one append", e.ID))
		}
		if err := checkName(e.Type, MaxTypeLen); err != "" {
			return bad(i, "type", err)
		}
		if e.SchemaVersion == 0 {
			return bad(i, "schema version", "zero (versions start at 1)")
		}
		if len(e.Actor) > MaxActorLen || !utf8.ValidString(e.Actor) {
			return bad(i, "actor", fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxActorLen))
		}
		if len(e.Payload) > MaxPayloadSize {
			return bad(i, "payload", fmt.Sprintf("%d bytes, at most %d", len(e.Payload), MaxPayloadSize))
		}
		if !e.Time.IsZero() && (e.Time.Year() < 1970 || e.Time.Year() > 2262) {
			return bad(i, "time", fmt.Sprintf("%s is outside 1970-2262", e.Time))
		}
		total += len(e.Payload) + len(e.Type) + len(e.Actor)
	}
	if total > MaxBytesPerWrite {
		return bad(-1, "events", fmt.Sprintf("%d bytes, at most %d per append", total, MaxBytesPerWrite))
	}
	return nil
}

// smallAppend is the most events ValidateAppend checks for duplicate ids
// without a map.
const smallAppend = 16

func checkName(s string, max int) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > max:
		return fmt.Sprintf("%d bytes, at most %d", len(s), max)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Sprintf("control character %q", r)
		}
	}
	return ""
}

// NewEnvelope builds the envelope for event d at the given place in the log
// and computes its hash from prev. Adapters call it when they assign positions.
func NewEnvelope(d *EventData, position uint64, stream string, version uint64, now time.Time, prev Hash) Envelope {
	t := d.Time
	if t.IsZero() {
		t = now
	}
	e := Envelope{
		Position:      position,
		StreamID:      stream,
		StreamVersion: version,
		Type:          d.Type,
		SchemaVersion: d.SchemaVersion,
		EventID:       d.ID,
		Time:          time.Unix(0, t.UnixNano()).UTC(),
		Actor:         d.Actor,
		CorrelationID: d.CorrelationID,
		CausationID:   d.CausationID,
		Payload:       d.Payload,
		PrevHash:      prev,
	}
	e.Hash = ChainHash(&e)
	return e
}

// SameContent reports whether stored envelope e holds the content of d on
// stream: the test for an idempotent retry. Time is not compared when d.Time
// is zero (the store chose it).
func SameContent(e *Envelope, stream string, d *EventData) bool {
	if e.StreamID != stream || e.EventID != d.ID || e.Type != d.Type || e.SchemaVersion != d.SchemaVersion ||
		e.Actor != d.Actor || e.CorrelationID != d.CorrelationID || e.CausationID != d.CausationID ||
		string(e.Payload) != string(d.Payload) {
		return false
	}
	return d.Time.IsZero() || e.Time.UnixNano() == d.Time.UnixNano()
}

// envelopeFormat is the first byte of a marshalled envelope.
const envelopeFormat byte = 1

// MarshalEnvelope appends the binary storage form of e to dst. The layout is
// fixed (format byte, then fields in Envelope order, strings and payload
// length-prefixed with uvarints) so every adapter stores identical bytes.
func MarshalEnvelope(dst []byte, e *Envelope) []byte {
	dst = appendCanonical(dst, e)
	dst = append(dst, e.PrevHash[:]...)
	return append(dst, e.Hash[:]...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// errShort is reported for a truncated envelope.
var errShort = errors.New("truncated")

// UnmarshalEnvelope decodes the storage form written by MarshalEnvelope. The
// payload is copied, so b may be reused. Errors name the field that is bad.
func UnmarshalEnvelope(b []byte) (Envelope, error) {
	var e Envelope
	d := decoder{b: b}
	if f := d.byte("format"); d.err == nil && f != envelopeFormat {
		return e, fmt.Errorf("envelope format %d, this binary reads format %d", f, envelopeFormat)
	}
	e.Position = d.u64("position")
	e.StreamID = d.str("stream id", MaxStreamIDLen)
	e.StreamVersion = d.u64("stream version")
	e.Type = d.str("type", MaxTypeLen)
	e.SchemaVersion = d.u16("schema version")
	d.fixed(e.EventID[:], "event id")
	e.Time = time.Unix(0, int64(d.u64("time"))).UTC()
	e.Actor = d.str("actor", MaxActorLen)
	d.fixed(e.CorrelationID[:], "correlation id")
	d.fixed(e.CausationID[:], "causation id")
	if p := d.bytes("payload", MaxPayloadSize); d.err == nil {
		e.Payload = append([]byte(nil), p...)
	}
	d.fixed(e.PrevHash[:], "prev hash")
	d.fixed(e.Hash[:], "hash")
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes after hash", len(d.b))
	}
	return e, d.err
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int, field string) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%s: %w", field, errShort)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) byte(field string) byte {
	if p := d.take(1, field); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if p := d.take(2, field); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if p := d.take(8, field); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) fixed(dst []byte, field string) {
	if p := d.take(len(dst), field); p != nil {
		copy(dst, p)
	}
}

func (d *decoder) bytes(field string, max int) []byte {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.err = fmt.Errorf("%s: bad length", field)
		return nil
	}
	if k != uvarintLen(n) {
		// Only the shortest form is valid, so one envelope has one encoding.
		d.err = fmt.Errorf("%s: length not minimally encoded", field)
		return nil
	}
	if n > uint64(max) {
		d.err = fmt.Errorf("%s: length %d exceeds %d", field, n, max)
		return nil
	}
	d.b = d.b[k:]
	return d.take(int(n), field)
}

func (d *decoder) str(field string, max int) string {
	p := d.bytes(field, max)
	if d.err == nil && !utf8.Valid(p) {
		d.err = fmt.Errorf("%s: not valid UTF-8", field)
	}
	return string(p)
}

// uvarintLen is the length of the shortest uvarint encoding of n.
func uvarintLen(n uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], n)
}
