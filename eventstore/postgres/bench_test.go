package postgres_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
)

// BenchmarkAppend measures single-event appends of 200-byte payloads from
// concurrent appenders, each writing streams of 10 events with exact
// expected versions (the workload of `hodei bench store`), with
// synchronous_commit on. Besides events/s it reports the CPU time per event
// of this process, of all PostgreSQL processes and of the committer's
// backend alone (when the server runs on this machine), and the batch size
// group commit achieved. CPU per event hardly changes when other work shares
// the machine; events/s does.
func BenchmarkAppend(b *testing.B) {
	for _, appenders := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			s := open(b, pgtest.NewDatabase(b), postgres.Options{})
			ctx := context.Background()
			payload := make([]byte, 200)
			var next atomic.Int64
			b.SetBytes(200)
			b.ResetTimer()
			pg0, self0 := cpuSnapshot()
			pid := int(s.CommitterPID())
			be0 := processCPU(pid)
			var wg sync.WaitGroup
			for a := 0; a < appenders; a++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					stream, version := 0, uint64(0)
					for next.Add(1) <= int64(b.N) {
						ev := eventstore.EventData{ID: eventstore.NewID(), Type: "bench.appended", SchemaVersion: 1,
							Actor: "system:bench", Payload: payload}
						r, err := s.Append(ctx, fmt.Sprintf("bench-%d-%d", a, stream), eventstore.Exact(version), []eventstore.EventData{ev})
						if err != nil {
							b.Error(err)
							return
						}
						if version = r.Version; version >= 10 {
							stream, version = stream+1, 0
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			pg1, self1 := cpuSnapshot()
			be1 := processCPU(pid)
			st := s.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64((pg1-pg0).Microseconds())/float64(b.N), "pg-cpu-us/event")
			b.ReportMetric(float64((self1-self0).Microseconds())/float64(b.N), "go-cpu-us/event")
			if pid == int(s.CommitterPID()) && be1 > 0 {
				b.ReportMetric(float64((be1-be0).Microseconds())/float64(b.N), "committer-backend-cpu-us/event")
			}
			if st.Commits > 0 {
				b.ReportMetric(float64(st.Events)/float64(st.Commits), "events/commit")
			}
		})
	}
}

// BenchmarkRawCopy is the ceiling BenchmarkAppend is compared with: binary
// COPY of 200-byte values into a plain table, in transactions of batch rows
// with synchronous_commit on. "keyed" gives the table a bigint primary key
// (what `hodei bench store` uses as its raw loop, the analogue of bbolt's
// keyed bucket); "heap" has no index at all.
func BenchmarkRawCopy(b *testing.B) {
	for _, table := range []string{"keyed", "heap"} {
		for _, batch := range []int{256, 512} {
			b.Run(fmt.Sprintf("%s/batch=%d", table, batch), func(b *testing.B) {
				conn := pgtest.Conn(b, pgtest.NewDatabase(b))
				ctx := context.Background()
				ddl := "CREATE TABLE raw (key bigint PRIMARY KEY, value bytea NOT NULL)"
				if table == "heap" {
					ddl = "CREATE TABLE raw (key bigint NOT NULL, value bytea NOT NULL)"
				}
				if _, err := conn.Exec(ctx, ddl); err != nil {
					b.Fatal(err)
				}
				value := make([]byte, 200)
				var buf []byte
				b.SetBytes(200)
				b.ResetTimer()
				pg0, self0 := cpuSnapshot()
				for done := 0; done < b.N; {
					buf = append(buf[:0], "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"...)
					for i := 0; i < batch && done < b.N; i++ {
						done++
						buf = binary.BigEndian.AppendUint16(buf, 2)
						buf = binary.BigEndian.AppendUint32(buf, 8)
						buf = binary.BigEndian.AppendUint64(buf, uint64(done))
						buf = binary.BigEndian.AppendUint32(buf, uint32(len(value)))
						buf = append(buf, value...)
					}
					buf = append(buf, 0xff, 0xff)
					tx, err := conn.Begin(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit TO on"); err != nil {
						b.Fatal(err)
					}
					if _, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(buf), "COPY raw FROM STDIN (FORMAT binary)"); err != nil {
						b.Fatal(err)
					}
					if err := tx.Commit(ctx); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				pg1, self1 := cpuSnapshot()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
				b.ReportMetric(float64((pg1-pg0).Microseconds())/float64(b.N), "pg-cpu-us/row")
				b.ReportMetric(float64((self1-self0).Microseconds())/float64(b.N), "go-cpu-us/row")
			})
		}
	}
}
