package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/logstore/logstoretest"
	"github.com/hodei-jobs/hodei/logstore/postgres"
)

// BenchmarkAppend measures one log's append throughput with chunks of the
// given size: one statement and one asynchronous commit per chunk.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{64, 1024, 32 << 10} {
		b.Run(fmt.Sprintf("chunk=%d", size), func(b *testing.B) {
			s := open(b, pgtest.NewDatabase(b), postgres.Options{MaxBytesPerAttempt: -1})
			defer s.Close()
			chunk := logstoretest.RandomBytes(1, size)
			b.SetBytes(int64(size))
			var off uint64
			for b.Loop() {
				ack, err := s.Append("bench", 1, off, chunk)
				if err != nil {
					b.Fatal(err)
				}
				off = ack
			}
		})
	}
}

// BenchmarkAppendParallel appends 256-byte chunks to many logs at once
// (one log per goroutine, 64 goroutines).
func BenchmarkAppendParallel(b *testing.B) {
	s := open(b, pgtest.NewDatabase(b), postgres.Options{MaxBytesPerAttempt: -1})
	defer s.Close()
	chunk := logstoretest.RandomBytes(1, 256)
	var next atomic.Uint32
	b.SetBytes(int64(len(chunk)))
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		job := fmt.Sprintf("job-%d", next.Add(1))
		var off uint64
		for pb.Next() {
			ack, err := s.Append(job, 1, off, chunk)
			if err != nil {
				b.Error(err)
				return
			}
			off = ack
		}
	})
}

// BenchmarkAppendToFollower measures the time from the start of an Append
// to a waiting follower having the bytes (ping-pong, one chunk in flight):
// in the same process (woken by a channel) and in another one (woken by
// NOTIFY). It reports p50 and p99.
func BenchmarkAppendToFollower(b *testing.B) {
	for _, where := range []string{"same-process", "other-process"} {
		b.Run(where, func(b *testing.B) {
			dsn := pgtest.NewDatabase(b)
			s := open(b, dsn, postgres.Options{MaxBytesPerAttempt: -1})
			defer s.Close()
			var reader logstore.Logs = s
			if where == "other-process" {
				r := open(b, dsn, postgres.Options{PollInterval: time.Hour})
				defer r.Close()
				reader = r
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f, err := reader.Follow(ctx, "latency", 1, 0)
			if err != nil {
				b.Fatal(err)
			}
			got := make(chan time.Time, 1)
			readDone := make(chan error, 1)
			go func() {
				defer f.Close()
				buf := make([]byte, 4096)
				for {
					_, err := f.Read(buf)
					if err != nil {
						readDone <- err
						return
					}
					got <- time.Now()
				}
			}()
			chunk := logstoretest.RandomBytes(9, 100)
			var lat []time.Duration
			var off uint64
			for b.Loop() {
				start := time.Now()
				ack, err := s.Append("latency", 1, off, chunk)
				if err != nil {
					b.Fatal(err)
				}
				off = ack
				lat = append(lat, (<-got).Sub(start))
			}
			b.StopTimer()
			if err := s.Finish("latency", 1, off, 0); err != nil && !errors.Is(err, logstore.ErrMismatch) {
				b.Fatal(err)
			}
			if err := <-readDone; err != io.EOF {
				b.Fatal(err)
			}
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
