package eventstore

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func sampleEnvelope() Envelope {
	d := EventData{ID: NewID(), Type: "job.submitted", SchemaVersion: 2, Actor: "user:alice",
		CorrelationID: NewID(), Payload: []byte("payload bytes"), Time: time.Unix(1700000000, 123456789)}
	return NewEnvelope(&d, 7, "job-1", 3, time.Time{}, Hash{1, 2, 3})
}

func TestEnvelopeRoundTrip(t *testing.T) {
	e := sampleEnvelope()
	b := MarshalEnvelope(nil, &e)
	got, err := UnmarshalEnvelope(b)
	if err != nil {
		t.Fatalf("UnmarshalEnvelope() = %v", err)
	}
	if d := cmp.Diff(e, got); d != "" {
		t.Fatalf("round trip differs (-want +got):\n%s", d)
	}
	if err := VerifyLink(6, Hash{1, 2, 3}, &got); err != nil {
		t.Fatalf("VerifyLink() = %v", err)
	}
}

func TestUnmarshalEnvelopeErrors(t *testing.T) {
	e := sampleEnvelope()
	b := MarshalEnvelope(nil, &e)
	for cut := 0; cut < len(b); cut++ {
		if _, err := UnmarshalEnvelope(b[:cut]); err == nil {
			t.Fatalf("UnmarshalEnvelope(first %d of %d bytes) = nil error", cut, len(b))
		}
	}
	if _, err := UnmarshalEnvelope(append(b, 0)); err == nil || !strings.Contains(err.Error(), "trailing") {
		t.Fatalf("UnmarshalEnvelope(extra byte) = %v, want trailing bytes error", err)
	}
	bad := append([]byte{9}, b[1:]...)
	if _, err := UnmarshalEnvelope(bad); err == nil || !strings.Contains(err.Error(), "format 9") {
		t.Fatalf("UnmarshalEnvelope(format 9) = %v", err)
	}
}

func TestChainDetectsChanges(t *testing.T) {
	e := sampleEnvelope()
	mutations := map[string]func(*Envelope){
		"payload":  func(e *Envelope) { e.Payload = []byte("payload bytez") },
		"version":  func(e *Envelope) { e.StreamVersion++ },
		"stream":   func(e *Envelope) { e.StreamID = "job-2" },
		"time":     func(e *Envelope) { e.Time = e.Time.Add(1) },
		"actor":    func(e *Envelope) { e.Actor = "user:mallory" },
		"prevhash": func(e *Envelope) { e.PrevHash[0] ^= 1 },
	}
	for name, mut := range mutations {
		c := e
		mut(&c)
		if err := VerifyLink(6, c.PrevHash, &c); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s changed: VerifyLink() = %v, want ErrCorrupt", name, err)
		}
	}
	if err := VerifyLink(5, e.PrevHash, &e); err == nil || !strings.Contains(err.Error(), "position 6") {
		t.Errorf("VerifyLink() with a missing predecessor = %v, want it to name position 6", err)
	}
}

func TestID(t *testing.T) {
	id := NewID()
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID(%s) = %s, %v", id, got, err)
	}
	for _, bad := range []string{"", "xyz", strings.Repeat("g", 36), "0123456789abcdef0123456789abcdef0"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) = nil error", bad)
		}
	}
}

func TestExpectedVersion(t *testing.T) {
	cases := []struct {
		e    ExpectedVersion
		cur  uint64
		want bool
	}{
		{Any, 0, true}, {Any, 5, true}, {NoStream, 0, true}, {NoStream, 1, false},
		{StreamExists, 0, false}, {StreamExists, 2, true}, {Exact(2), 2, true}, {Exact(2), 3, false},
		{ExpectedVersion(-9), 0, false},
	}
	for _, c := range cases {
		if got := c.e.Check(c.cur); got != c.want {
			t.Errorf("%s.Check(%d) = %v, want %v", c.e, c.cur, got, c.want)
		}
	}
}

func FuzzUnmarshalEnvelope(f *testing.F) {
	e := sampleEnvelope()
	f.Add(MarshalEnvelope(nil, &e))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := UnmarshalEnvelope(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes.
		if again := MarshalEnvelope(nil, &got); string(again) != string(b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func TestValidateAppendDuplicateIDs(t *testing.T) {
	// Small appends compare ids pairwise, large ones use a map: both must
	// name the first repeated event.
	for _, n := range []int{2, 16, 17, 40} {
		events := make([]EventData, n)
		for i := range events {
			events[i] = EventData{ID: NewID(), Type: "t", SchemaVersion: 1}
		}
		if err := ValidateAppend("s", Any, events); err != nil {
			t.Fatalf("%d distinct events: ValidateAppend() = %v, want nil", n, err)
		}
		events[n-1].ID = events[n/2-1].ID
		var ie *InvalidEventError
		if err := ValidateAppend("s", Any, events); !errors.As(err, &ie) || ie.Index != n-1 || ie.Field != "id" {
			t.Fatalf("%d events, last repeats an id: ValidateAppend() = %v, want an id error at index %d", n, err, n-1)
		}
	}
}

func TestNewIDIsVersion7AndTimeOrdered(t *testing.T) {
	base := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	var prev ID
	seen := map[ID]bool{}
	for i := range 10000 {
		at := base.Add(time.Duration(i) * 300 * time.Microsecond)
		id := newIDAt(at)
		if v := id[6] >> 4; v != 7 {
			t.Fatalf("id %s: version %d, want 7", id, v)
		}
		if id[8]&0xc0 != 0x80 {
			t.Fatalf("id %s: variant bits %02b, want 10", id, id[8]>>6)
		}
		if ms := uint64(id[0])<<40 | uint64(id[1])<<32 | uint64(id[2])<<24 | uint64(id[3])<<16 | uint64(id[4])<<8 | uint64(id[5]); ms != uint64(at.UnixMilli()) {
			t.Fatalf("id %s: timestamp %d ms, want %d", id, ms, at.UnixMilli())
		}
		if i > 0 && bytes.Compare(prev[:], id[:]) >= 0 {
			t.Fatalf("id %s made 300µs after %s sorts before it", id, prev)
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		prev = id
	}
	// Ids made in the same instant still differ in their random bits.
	a, b := newIDAt(base), newIDAt(base)
	if a == b {
		t.Fatalf("two ids at one instant are equal: %s", a)
	}
}
