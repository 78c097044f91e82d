package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/projections"
)

type counted struct {
	Stream string `json:"stream"`
}

func (counted) EventType() string          { return "test.counted" }
func (counted) EventSchemaVersion() uint16 { return 1 }

// counter counts events per stream.
type counter struct {
	name    string
	Counts  map[string]int `json:"counts"`
	applied int
}

func (c *counter) Name() string { return c.name }
func (c *counter) Apply(_ *eventstore.Envelope, ev eventstore.Event) error {
	c.Counts[ev.(counted).Stream]++
	c.applied++
	return nil
}
func (c *counter) MarshalState() ([]byte, error) { return json.Marshal(c.Counts) } // sorted keys
func (c *counter) UnmarshalState(b []byte) error {
	c.Counts = map[string]int{}
	if b == nil {
		return nil
	}
	return json.Unmarshal(b, &c.Counts)
}

var codec = eventstore.NewCodec(counted{})

func appendN(t *testing.T, s eventstore.Store, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		stream := fmt.Sprintf("s-%d", i%3)
		d, err := codec.EventData(counted{Stream: stream}, eventstore.EventData{ID: eventstore.NewID(), Actor: "system:test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(context.Background(), stream, eventstore.Any, []eventstore.EventData{d}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRunnerSnapshotsAndResumes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	s := memory.New(memory.Options{})
	appendN(t, s, 25)

	c := &counter{name: "counter.v1"}
	r, err := projections.NewRunner(s, codec, projections.RunnerOptions{SnapshotDir: dir, SnapshotEvery: 10}, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Open(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	appendN(t, s, 5)
	if err := r.WaitFor(ctx, 30); err != nil {
		t.Fatalf("WaitFor(30) = %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if c.Counts["s-0"] != 11 || c.applied != 30 {
		t.Fatalf("counts = %v after %d applies, want s-0 = 11 after 30", c.Counts, c.applied)
	}

	// A new runner starts from the snapshot written on the way out and
	// applies only the tail.
	appendN(t, s, 6)
	c2 := &counter{name: "counter.v1"}
	r2, _ := projections.NewRunner(s, codec, projections.RunnerOptions{SnapshotDir: dir}, c2)
	if err := r2.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r2.Position() != 30 {
		t.Fatalf("Position() after Open = %d, want 30 (from the snapshot)", r2.Position())
	}
	if err := r2.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c2.applied != 6 || c2.Counts["s-0"] != 13 {
		t.Fatalf("after catch-up applied %d, counts %v; want 6 applied and s-0 = 13", c2.applied, c2.Counts)
	}

	// Rebuilt from zero, the state hashes the same.
	c3 := &counter{name: "counter.v1"}
	r3, _ := projections.NewRunner(s, codec, projections.RunnerOptions{}, c3)
	if err := r3.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r3.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	h2, _ := projections.StateHash(c2)
	h3, _ := projections.StateHash(c3)
	if h2 != h3 {
		t.Fatalf("rebuilt state hash differs from resumed state hash")
	}
}

func TestRunnerIgnoresBadSnapshots(t *testing.T) {
	dir := t.TempDir()
	s := memory.New(memory.Options{})
	appendN(t, s, 5)
	c := &counter{name: "counter.v1"}
	r, _ := projections.NewRunner(s, codec, projections.RunnerOptions{SnapshotDir: dir}, c)
	_ = r.Open(context.Background())
	_ = r.CatchUp(context.Background())
	if err := r.Snapshot(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "counter.v1.snap")
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c2 := &counter{name: "counter.v1"}
	r2, _ := projections.NewRunner(s, codec, projections.RunnerOptions{SnapshotDir: dir}, c2)
	if err := r2.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r2.Position() != 0 {
		t.Fatalf("Position() with a corrupt snapshot = %d, want 0 (rebuild)", r2.Position())
	}
	// A snapshot of another log (a different hash at its position) is ignored.
	other := memory.New(memory.Options{})
	appendN(t, other, 5)
	r3, _ := projections.NewRunner(other, codec, projections.RunnerOptions{SnapshotDir: dir}, &counter{name: "counter.v1"})
	_ = r.Snapshot()
	if err := r3.Open(context.Background()); err != nil || r3.Position() != 0 {
		t.Fatalf("Open() with a foreign snapshot: position %d, %v; want 0", r3.Position(), err)
	}
}
