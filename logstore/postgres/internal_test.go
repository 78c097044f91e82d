package postgres

import (
	"context"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
)

// Appends go through connections that commit asynchronously; everything
// else (Finish, Seal, truncation, Sync) commits synchronously.
func TestCommitModes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, pgtest.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var fast, sync string
	if err := s.fast.QueryRow(ctx, "SHOW synchronous_commit").Scan(&fast); err != nil || fast != "off" {
		t.Errorf("append pool: synchronous_commit = %q, %v; want off", fast, err)
	}
	if err := s.pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&sync); err != nil || sync != "on" {
		t.Errorf("main pool: synchronous_commit = %q, %v; want on", sync, err)
	}
}

// Entries stay in memory only while they spare work: live logs' rows, up
// to MaxCachedLogs; followers' and finished logs' entries leave.
func TestCacheIsBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, pgtest.NewDatabase(t), Options{MaxCachedLogs: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 20 {
		job := fmt.Sprintf("j%d", i)
		if _, err := s.Append(job, 1, 0, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := s.Finish(job, 1, 1, crc32.Checksum([]byte("x"), castagnoli)); err != nil {
				t.Fatal(err)
			}
		}
		c, err := s.Follow(ctx, "nobody", uint32(i+1), 0)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	s.mu.Lock()
	n := len(s.logs)
	s.mu.Unlock()
	if n > 6 {
		t.Errorf("%d entries cached, want at most 6", n)
	}
	// Logs whose entries left are reloaded on use.
	for i := range 20 {
		if ack, err := s.Append(fmt.Sprintf("j%d", i), 1, 0, []byte("x")); err != nil || ack != 1 {
			t.Errorf("Append(j%d again) = %d, %v; want 1, nil", i, ack, err)
		}
	}
}

// One failing statement rolls its batch back; the writer then runs each on
// its own, so only that one fails.
func TestBatchFailureIsIsolated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, pgtest.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ins := `INSERT INTO job_logs (job_id, attempt) VALUES ($1, 1)`
	batch := []*write{
		{sql: ins, args: []any{"a"}, done: make(chan struct{})},
		{sql: "SELECT 1/0", done: make(chan struct{})},
		{sql: ins, args: []any{"b"}, done: make(chan struct{})},
	}
	s.run(batch)
	if batch[0].err != nil || batch[0].rows != 1 || batch[2].err != nil || batch[2].rows != 1 {
		t.Errorf("good writes: %d, %v and %d, %v; want 1 row each", batch[0].rows, batch[0].err, batch[2].rows, batch[2].err)
	}
	if batch[1].err == nil {
		t.Error("the failing write reported no error")
	}
	if as, err := s.Attempts("b"); err != nil || len(as) != 1 {
		t.Errorf("Attempts(b) = %v, %v; want [1]", as, err)
	}
}
