package logstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppend measures one log's append throughput with chunks of the
// given size (the agent flushes by size or after a few milliseconds, so
// real chunks range from a line to tens of KiB).
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{64, 1024, 32 << 10} {
		b.Run(fmt.Sprintf("chunk=%d", size), func(b *testing.B) {
			s := openStore(b, "", Options{MaxBytesPerAttempt: -1, SyncInterval: time.Second})
			chunk := randomBytes(1, size)
			b.SetBytes(int64(size))
			var off uint64
			attempt := uint32(1)
			for b.Loop() {
				if off >= 256<<20 { // keep the temp dir small
					attempt, off = attempt+1, 0
				}
				ack, err := s.Append("bench", attempt, off, chunk)
				if err != nil {
					b.Fatal(err)
				}
				off = ack
			}
		})
	}
}

// BenchmarkAppendParallel appends 256-byte chunks to many logs at once
// (one log per goroutine, several goroutines per CPU).
func BenchmarkAppendParallel(b *testing.B) {
	s := openStore(b, "", Options{MaxBytesPerAttempt: -1, SyncInterval: time.Second})
	chunk := randomBytes(1, 256)
	var next atomic.Uint32
	b.SetBytes(int64(len(chunk)))
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		job := fmt.Sprintf("job-%d", next.Add(1))
		attempt, off := uint32(1), uint64(0)
		for pb.Next() {
			if off >= 64<<20 {
				attempt, off = attempt+1, 0
			}
			ack, err := s.Append(job, attempt, off, chunk)
			if err != nil {
				b.Error(err)
				return
			}
			off = ack
		}
	})
}

// BenchmarkAppendToFollower measures the time from the start of an Append
// to a waiting follower having the bytes (ping-pong, one chunk in flight),
// with 0 or 4 other logs flooding at the same time. It reports p50 and p99.
func BenchmarkAppendToFollower(b *testing.B) {
	for _, flooders := range []int{0, 4} {
		b.Run(fmt.Sprintf("flood=%d", flooders), func(b *testing.B) {
			s := openStore(b, "", Options{MaxBytesPerAttempt: -1, SyncInterval: time.Second})
			ctx, cancel := context.WithCancel(context.Background())
			floodDone := make(chan struct{}, flooders)
			for i := range flooders {
				go func() {
					defer func() { floodDone <- struct{}{} }()
					chunk := randomBytes(uint64(i), 4096)
					job := fmt.Sprintf("flood-%d", i)
					attempt, off := uint32(1), uint64(0)
					for ctx.Err() == nil {
						if off >= 64<<20 {
							attempt, off = attempt+1, 0
						}
						ack, err := s.Append(job, attempt, off, chunk)
						if err != nil {
							return
						}
						off = ack
					}
				}()
			}

			f, err := s.Follow(ctx, "latency", 1, 0)
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
			chunk := randomBytes(9, 100)
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
			if err := s.Finish("latency", 1, off, 0); err != nil && !errors.Is(err, ErrMismatch) {
				b.Fatal(err)
			}
			if err := <-readDone; err != io.EOF {
				b.Fatal(err)
			}
			cancel()
			for range flooders {
				<-floodDone
			}
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
