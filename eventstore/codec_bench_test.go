package eventstore

import "testing"

// BenchmarkCodecDecode decodes a small typed payload: the per-event cost
// projections and replay pay.
func BenchmarkCodecDecode(b *testing.B) {
	c := NewCodec(testSubmitted{})
	p, err := c.Marshal(testSubmitted{JobID: "01m8dx94qwfk0eaj97eg06h98a", Labels: map[string]string{"team": "core", "os": "linux"}, Slots: 3})
	if err != nil {
		b.Fatal(err)
	}
	env := &Envelope{Type: "test.submitted", SchemaVersion: 2, Payload: p}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decode(env); err != nil {
			b.Fatal(err)
		}
	}
}
