package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestStore runs a tiny measurement end to end and checks the result's shape.
// It asserts nothing about speed.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	var progress bytes.Buffer
	res, err := Store(context.Background(), StoreConfig{
		Target:      &BoltTarget{Dir: dir},
		Appenders:   []int{1, 4},
		Events:      200,
		MaxDuration: 200 * time.Millisecond,
		ReadEvents:  500,
		Repeat:      2,
		Progress:    &progress,
	})
	if err != nil {
		t.Fatalf("Store() = %v", err)
	}
	for _, k := range []string{"1", "4"} {
		if res.EventsPerSec[k] <= 0 || res.RawEventsPerSec[k] <= 0 || res.Ratio[k] <= 0 || res.AvgBatch[k] < 1 || res.Events[k] <= 0 {
			t.Errorf("appenders %s: result %+v has an empty measurement", k, res)
		}
	}
	if res.ReadEventsPerSec <= 0 || res.ReadEvents != 500 || res.EventBytes != DefaultEventBytes || res.Target != "bolt" {
		t.Errorf("Store() = %+v", res)
	}
	if !strings.Contains(progress.String(), "read scan") {
		t.Errorf("progress = %q, want a line per step", progress.String())
	}
	// The JSON field names are an interface: scripts read them.
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"events_per_sec", "raw_events_per_sec", "ratio", "read_events_per_sec", "avg_batch"} {
		if _, ok := m[f]; !ok {
			t.Errorf("JSON %s lacks field %q", b, f)
		}
	}
	// Every file the target created is gone.
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("target dir holds %d entries after the run (%v), want none", len(entries), err)
	}
}

func TestStoreNeedsTarget(t *testing.T) {
	if _, err := Store(context.Background(), StoreConfig{}); err == nil {
		t.Fatal("Store() without a target succeeded")
	}
}

// TestPayloadSize: stored events are exactly the configured size.
func TestPayloadSize(t *testing.T) {
	p := newPayloads(200)
	for _, stream := range []string{"bench-0-0", "bench-511-123456"} {
		if n := storedSize(stream, p.forStream(stream)); n != 200 {
			t.Errorf("stored size of an event on %s = %d, want 200", stream, n)
		}
	}
}
