package bench

import (
	"context"
	"testing"
	"time"
)

// TestLifecycleTimesEveryJobWithinTheWindow runs the lifecycle bench small,
// with a window of two batches, and checks what it reports.
func TestLifecycleTimesEveryJobWithinTheWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Lifecycle(ctx, LifecycleConfig{Jobs: 1000, Agents: 2, Batch: 50, Window: 100, Submitters: 4, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Jobs != 1000 || res.Window != 100 || res.Events < 5000 {
		t.Errorf("result = %+v, want 1000 jobs, window 100, at least 5 events a job", res)
	}
	if res.Timed != 1000 {
		t.Errorf("timed %d jobs, want all 1000", res.Timed)
	}
	if res.MaxInFlight > 100 {
		t.Errorf("at most %d jobs were in flight, above the window of 100", res.MaxInFlight)
	}
	if res.P50MS <= 0 || res.P99MS < res.P50MS || res.JobsPerSec <= 0 || res.PeakRSSMB <= 0 {
		t.Errorf("result = %+v: want positive figures, p99 >= p50", res)
	}
}

func TestLifecycleRejectsAWindowSmallerThanABatch(t *testing.T) {
	_, err := Lifecycle(context.Background(), LifecycleConfig{Jobs: 10, Batch: 50, Window: 20, Dir: t.TempDir()})
	if err == nil {
		t.Fatal("Lifecycle with a window of 20 and batches of 50: no error")
	}
}
