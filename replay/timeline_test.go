package replay_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/replay"
)

func TestTimelineOfAJob(t *testing.T) {
	s := loadRecorded(t)
	entries, err := replay.Timeline(context.Background(), s, command.NewCodec(), domain.JobStream("j-7"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"job.submitted", "job.scheduled", "job.accepted", "job.started", "job.requeued",
		"job.scheduled", "job.accepted", "job.started", "job.succeeded",
	}
	if len(entries) != len(want) {
		t.Fatalf("Timeline(j-7) has %d entries, want %d", len(entries), len(want))
	}
	for i, e := range entries {
		if e.Type != want[i] || !e.Known || e.StreamVersion != uint64(i+1) {
			t.Errorf("entry %d = %s v%d known=%v, want %s v%d", i, e.Type, e.StreamVersion, e.Known, want[i], i+1)
		}
	}
	if got := entries[5].Summary; got != "scheduled attempt 2 on w-3, reserving 1 slot, 500m CPU, 256Mi (accept by 2026-03-02T09:00:40.000Z)" {
		t.Errorf("summary of the second schedule = %q", got)
	}
	if got := entries[4].Actor; got != "system:heartbeat" {
		t.Errorf("actor of the requeue = %q", got)
	}
	if got := entries[4].Payload["reason"]; got != domain.ReasonAgentLost {
		t.Errorf("payload reason of the requeue = %v", got)
	}
}

// TestTimelineShowsUnknownEvents: events of a type (or schema version) this
// binary does not know are shown with their raw fields, not dropped.
func TestTimelineShowsUnknownEvents(t *testing.T) {
	ctx := context.Background()
	s := loadRecorded(t)
	add := func(typ string, version uint16, fields map[string]any) {
		p, err := msgpack.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		d := eventstore.EventData{ID: eventstore.NewID(), Type: typ, SchemaVersion: version, Actor: "agent:w-1",
			Time: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Payload: p}
		if _, err := s.Append(ctx, "worker-w-1", eventstore.Any, []eventstore.EventData{d}); err != nil {
			t.Fatal(err)
		}
	}
	add("worker.renamed", 1, map[string]any{"worker_id": "w-1", "token_id": "tok 1", "at": time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)})
	add(domain.TypeWorkerLost, 9, map[string]any{"worker_id": "w-1", "why": "future"})
	entries, err := replay.Timeline(ctx, s, command.NewCodec(), domain.WorkerStream("w-1"))
	if err != nil {
		t.Fatal(err)
	}
	enrolled, future := entries[len(entries)-2], entries[len(entries)-1]
	if enrolled.Known || enrolled.Summary != `at=2027-01-01T00:00:00Z token_id="tok 1" worker_id=w-1` || !strings.Contains(enrolled.DecodeError, "unknown event type") {
		t.Errorf("unknown type entry = %+v", enrolled)
	}
	if future.Known || future.Summary != "why=future worker_id=w-1" || !strings.Contains(future.DecodeError, "newer") {
		t.Errorf("newer schema entry = %+v", future)
	}
	var buf bytes.Buffer
	if err := replay.WriteTimeline(&buf, entries); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "worker.renamed@1?") || !strings.Contains(buf.String(), "worker.lost@9?") {
		t.Errorf("WriteTimeline does not mark unknown events:\n%s", buf.String())
	}
}
