package bench

import (
	"context"
	"testing"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/replay"
)

// TestWriteMixedLog: exactly the events asked for, every event type, and a
// log the read models fold without complaint.
func TestWriteMixedLog(t *testing.T) {
	ctx := context.Background()
	s := memory.New(memory.Options{})
	const n = 15_000
	if err := WriteMixedLog(ctx, s, MixedLogConfig{Events: n, Workers: 10, JobsPerRound: 40}); err != nil {
		t.Fatalf("WriteMixedLog() error = %v", err)
	}
	head, _ := s.Head(ctx)
	if head.Position != n {
		t.Fatalf("log holds %d events, want %d", head.Position, n)
	}
	seen := map[string]int{}
	log, _ := s.ReadAll(ctx, 1, n)
	for i := range log {
		seen[log[i].Type]++
		if i > 0 && !log[i].Time.After(log[i-1].Time) {
			t.Fatalf("position %d: time %s is not after the previous event's", log[i].Position, log[i].Time)
		}
	}
	for _, ev := range domain.Events() {
		if seen[ev.EventType()] == 0 {
			t.Errorf("no %s event in the mixed log", ev.EventType())
		}
	}
	t.Logf("mix: %v", seen)
	if rep, err := replay.Verify(ctx, s, nil); err != nil || !rep.OK() {
		t.Fatalf("Verify() = %+v, %v", rep, err)
	}
	if _, err := replay.StateAt(ctx, s, command.NewCodec(), n, replay.StateOptions{}); err != nil {
		t.Fatalf("read models over the mixed log: %v", err)
	}
}
