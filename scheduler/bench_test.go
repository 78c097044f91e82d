package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// TestBenchSmall runs the benchmark driver on a small workload so that
// `hodei bench scheduler` cannot rot.
func TestBenchSmall(t *testing.T) {
	res, err := Bench(context.Background(), BenchConfig{Workers: []int{50, 200}, Jobs: 3000, Batch: 250, LatencyJobs: 200})
	if err != nil {
		t.Fatalf("Bench() = %v", err)
	}
	if len(res.Runs) != 2 {
		t.Fatalf("Bench() runs = %d, want 2", len(res.Runs))
	}
	for _, r := range res.Runs {
		if r.Jobs != 3000 || r.PlacementsPerSec <= 0 || r.P99Micros < r.P50Micros || r.WorkersUsed != r.Workers {
			t.Errorf("run = %+v", r)
		}
	}
	if _, err := Bench(context.Background(), BenchConfig{Workers: []int{-1}}); err == nil {
		t.Errorf("Bench(workers -1) = nil error")
	}
}

// BenchmarkPlace measures the whole submit -> placement path per placed
// job on the `hodei bench scheduler` workload; setup is not timed.
func BenchmarkPlace(b *testing.B) {
	for _, nw := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("workers=%d", nw), func(b *testing.B) {
			e, err := newBenchEnv(BenchConfig{Seed: 1, Batch: 1000}, nw)
			if err != nil {
				b.Fatal(err)
			}
			jobs := benchJobs(e.r, e.classes, "j", b.N)
			e.placedOn = make([]string, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			if err := e.run(context.Background(), jobs); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "placements/s")
		})
	}
}

// BenchmarkReserveRelease measures the concurrent hot path of the worker
// table: Reserve then Release from many goroutines on 1,000 workers.
func BenchmarkReserveRelease(b *testing.B) {
	s, _ := New(Config{})
	for i := range 1000 {
		_ = s.UpsertWorker(t0, Worker{ID: fmt.Sprintf("w%d", i), Capacity: res(1<<20, 1<<40, 1<<40)})
	}
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := n.Add(1)
		r := rand.New(rand.NewPCG(uint64(g), 0))
		i := 0
		for pb.Next() {
			i++
			id := fmt.Sprintf("g%d-%d", g, i)
			if err := s.Reserve(t0, Reservation{JobID: id, Attempt: 1, WorkerID: fmt.Sprintf("w%d", r.IntN(1000)), Resources: res(1, 1000, gib)}); err != nil {
				b.Fatal(err)
			}
			s.Release(id, 1)
		}
	})
}

// BenchmarkHeartbeat measures one telemetry update.
func BenchmarkHeartbeat(b *testing.B) {
	s, _ := New(Config{})
	for i := range 1000 {
		_ = s.UpsertWorker(t0, Worker{ID: fmt.Sprintf("w%d", i), Capacity: res(64, 64000, 256*gib)})
	}
	b.ResetTimer()
	for i := range b.N {
		_ = s.Heartbeat(fmt.Sprintf("w%d", i%1000), Telemetry{At: t0.Add(time.Duration(i)), CPUFraction: 0.5})
	}
}
