package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
)

// benchPayload makes a stored event of about 200 bytes.
var benchPayload = make([]byte, 40)

func benchOpen(b *testing.B) *Store {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := s.Close(); err != nil {
			b.Error(err)
		}
	})
	return s
}

// BenchmarkAppend measures durable single-event appends (one op = one event)
// from 1 to 512 concurrent appenders, each on its own streams of 10 events
// with exact expected versions. It reports events/s, the group-commit batch
// size achieved and the process CPU time per event (all goroutines: the
// appenders, the committer and the runtime).
func BenchmarkAppend(b *testing.B) {
	for _, appenders := range []int{1, 8, 64, 512} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			s := benchOpen(b)
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for a := 0; a < appenders; a++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					stream, version := 0, uint64(0)
					name := fmt.Sprintf("bench-%d-%d", a, stream)
					for next.Add(1) <= int64(b.N) {
						ev := eventstore.EventData{ID: eventstore.NewID(), Type: "bench.appended", SchemaVersion: 1, Actor: "system:bench", Payload: benchPayload}
						res, err := s.Append(ctx, name, eventstore.Exact(version), []eventstore.EventData{ev})
						if err != nil {
							b.Error(err)
							return
						}
						if version = res.Version; version == 10 {
							stream, version = stream+1, 0
							name = fmt.Sprintf("bench-%d-%d", a, stream)
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/event")
			st := s.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			if st.Commits > 0 {
				b.ReportMetric(float64(st.Events)/float64(st.Commits), "events/commit")
			}
		})
	}
}

// cpuTime is the process's user and system CPU time so far: benchmarks
// report it per event, a figure that other load on the machine disturbs far
// less than wall-clock throughput.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReadAll measures a scan with ReadAll pages of 1000 (one op = one
// event read and decoded).
func BenchmarkReadAll(b *testing.B) {
	s := benchOpen(b)
	ctx := context.Background()
	const n = 100_000
	for done := 0; done < n; done += 1000 {
		reqs := make([]eventstore.AppendRequest, 100)
		for i := range reqs {
			evs := make([]eventstore.EventData, 10)
			for j := range evs {
				evs[j] = eventstore.EventData{ID: eventstore.NewID(), Type: "bench.appended", SchemaVersion: 1, Actor: "system:bench", Payload: benchPayload}
			}
			reqs[i] = eventstore.AppendRequest{Stream: fmt.Sprintf("read-%d-%d", done, i), Expected: eventstore.NoStream, Events: evs}
		}
		if _, err := s.AppendMany(ctx, reqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	from := uint64(1)
	for read := 0; read < b.N; {
		page, err := s.ReadAll(ctx, from, min(1000, b.N-read))
		if err != nil {
			b.Fatal(err)
		}
		if len(page) == 0 {
			from = 1
			continue
		}
		read += len(page)
		from = page[len(page)-1].Position + 1
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
