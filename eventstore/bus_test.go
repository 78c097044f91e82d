package eventstore

import (
	"context"
	"testing"
)

type sliceReader []Envelope

func (r sliceReader) ReadAll(_ context.Context, from uint64, limit int) ([]Envelope, error) {
	var out []Envelope
	for _, e := range r {
		if e.Position >= from && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func envs(from, to uint64) []Envelope {
	var out []Envelope
	for p := from; p <= to; p++ {
		out = append(out, Envelope{Position: p})
	}
	return out
}

func TestSubscriptionFallsBackToStoreWhenRingMovedOn(t *testing.T) {
	log := envs(1, 100)
	bus := NewBus(8, 0)
	bus.Publish(log)
	sub := NewSubscription(sliceReader(log), bus, 0, SubscriptionOptions{PageSize: 30})
	ctx := context.Background()
	var got []uint64
	for len(got) < 100 {
		b, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next() = %v", err)
		}
		for _, e := range b {
			got = append(got, e.Position)
		}
	}
	for i, p := range got {
		if p != uint64(i+1) {
			t.Fatalf("delivered %v, want 1..100 in order", got)
		}
	}
}

func TestSubscriptionReportsGap(t *testing.T) {
	log := append(envs(1, 3), envs(5, 6)...)
	bus := NewBus(4, 6)
	sub := NewSubscription(sliceReader(log), bus, 3, SubscriptionOptions{})
	if _, err := sub.Next(context.Background()); err == nil {
		t.Fatalf("Next() over a gap = nil error, want a *CorruptError")
	}
}

func TestBusIgnoresRepeatsAndResetsOnHole(t *testing.T) {
	bus := NewBus(16, 0)
	bus.Publish(envs(1, 4))
	bus.Publish(envs(3, 5)) // 3 and 4 again
	if evs, head, _ := bus.read(1, 100); len(evs) != 5 || head != 5 {
		t.Fatalf("read(1) = %d events, head %d; want 5, 5", len(evs), head)
	}
	bus.Publish(envs(9, 9)) // a hole: 6..8 never published here
	if evs, _, _ := bus.read(6, 100); len(evs) != 0 {
		t.Fatalf("read(6) across a hole returned %d events, want none (read the store)", len(evs))
	}
	if evs, _, _ := bus.read(9, 100); len(evs) != 1 {
		t.Fatalf("read(9) = %d events, want 1", len(evs))
	}
}
