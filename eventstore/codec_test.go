package eventstore

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type testSubmitted struct {
	JobID  string            `json:"job_id"`
	Labels map[string]string `json:"labels"`
	Slots  int               `json:"slots"`
}

func (testSubmitted) EventType() string          { return "test.submitted" }
func (testSubmitted) EventSchemaVersion() uint16 { return 2 }

func TestCodecRoundTripAndUpcast(t *testing.T) {
	c := NewCodec(testSubmitted{})
	// Version 1 called the field "slot_count".
	c.RegisterUpcaster("test.submitted", 1, func(f map[string]any) (map[string]any, error) {
		f["slots"] = f["slot_count"]
		delete(f, "slot_count")
		return f, nil
	})
	in := testSubmitted{JobID: "j1", Labels: map[string]string{"b": "2", "a": "1"}, Slots: 3}
	d, err := c.EventData(in, EventData{ID: NewID()})
	if err != nil {
		t.Fatalf("EventData() = %v", err)
	}
	env := Envelope{Position: 4, Type: d.Type, SchemaVersion: d.SchemaVersion, Payload: d.Payload}
	got, err := c.Decode(&env)
	if err != nil || !cmp.Equal(got, in) {
		t.Fatalf("Decode() = %+v, %v; want %+v", got, err, in)
	}
	// Equal values give equal bytes (sorted map keys).
	for i := 0; i < 20; i++ {
		again, _ := c.Marshal(in)
		if string(again) != string(d.Payload) {
			t.Fatalf("Marshal() is not deterministic")
		}
	}
	old, _ := marshalPayload(map[string]any{"job_id": "j0", "slot_count": 5})
	got, err = c.Decode(&Envelope{Position: 9, Type: "test.submitted", SchemaVersion: 1, Payload: old})
	if err != nil || got.(testSubmitted).Slots != 5 || got.(testSubmitted).JobID != "j0" {
		t.Fatalf("Decode(v1) = %+v, %v; want upcast slots 5", got, err)
	}
}

func TestCodecErrors(t *testing.T) {
	c := NewCodec(testSubmitted{})
	if _, err := c.Decode(&Envelope{Position: 3, Type: "nope", SchemaVersion: 1}); !errors.Is(err, ErrUnknownEventType) {
		t.Errorf("Decode(unknown) = %v", err)
	}
	if _, err := c.Decode(&Envelope{Position: 3, Type: "test.submitted", SchemaVersion: 3}); !errors.Is(err, ErrNewerSchema) {
		t.Errorf("Decode(newer) = %v", err)
	}
	if _, err := c.Decode(&Envelope{Position: 3, Type: "test.submitted", SchemaVersion: 1, Payload: []byte{0x80}}); err == nil {
		t.Errorf("Decode(v1 without upcaster) = nil error")
	}
	if _, err := c.Decode(&Envelope{Position: 3, Type: "test.submitted", SchemaVersion: 2, Payload: []byte{0xc1}}); err == nil {
		t.Errorf("Decode(garbage) = nil error")
	}
	if _, err := c.Decode(&Envelope{Position: 3, Type: "test.submitted", SchemaVersion: 2, Payload: []byte{0x80, 0x80}}); err == nil {
		t.Errorf("Decode(trailing bytes) = nil error")
	}
}

func FuzzCodecDecode(f *testing.F) {
	c := NewCodec(testSubmitted{})
	good, _ := c.Marshal(testSubmitted{JobID: "x", Slots: 1})
	f.Add(good, uint16(2))
	f.Fuzz(func(t *testing.T, payload []byte, v uint16) {
		_, _ = c.Decode(&Envelope{Type: "test.submitted", SchemaVersion: v, Payload: payload})
	})
}
