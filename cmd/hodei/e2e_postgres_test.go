package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore/postgres/pgtest"
)

// TestE2EPostgresJobLogs runs `hodei server --postgres` with an agent: a
// job's output is stored in the database's log tables (not under the data
// dir) and reads back through WatchLog and `hodei job logs`.
func TestE2EPostgresJobLogs(t *testing.T) {
	hodei, agentBin := e2eBinaries(t)
	dsn := pgtest.NewDatabase(t)
	data := t.TempDir()
	srv := startE2EServer(t, hodei, "--data", data, "--postgres", dsn)
	events := watchE2EEvents(t, srv)
	startE2EAgent(t, agentBin, srv, "e2e-pg")
	events.registered(t, "e2e-pg")

	id := submitE2EJob(t, hodei, srv, "e2e-pg-logs", `echo "hello from postgres"; seq 1 5000`)
	var want strings.Builder
	want.WriteString("hello from postgres\r\n")
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&want, "%d\r\n", i)
	}
	if got := events.waitLog(t, id, 1, "\r\n5000\r\n"); got != want.String() {
		t.Errorf("WatchLog: %d bytes, want %d (%q...)", len(got), want.Len(), got[:min(len(got), 40)])
	}
	events.ofJob(t, domain.TypeJobSucceeded, id, 1)
	if got := hodeiCLI(t, hodei, srv, "job", "logs", id); got != want.String() {
		t.Errorf("hodei job logs: %d bytes, want %d", len(got), want.Len())
	}

	conn := pgtest.Conn(t, dsn)
	var size, chunks int64
	var finished bool
	err := conn.QueryRow(context.Background(), `SELECT l.size, l.finished_at IS NOT NULL,
		(SELECT count(*) FROM job_log_chunks c WHERE c.job_id = l.job_id AND c.attempt = l.attempt)
		FROM job_logs l WHERE l.job_id = $1 AND l.attempt = 1`, id).Scan(&size, &finished, &chunks)
	if err != nil || size != int64(want.Len()) || !finished || chunks == 0 {
		t.Errorf("job_logs row: size %d, finished %t, %d chunks, %v; want size %d, finished", size, finished, chunks, err, want.Len())
	}
	if _, err := os.Stat(filepath.Join(data, "logs")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the data dir has a logs directory (stat: %v); with --postgres logs live in the database", err)
	}
}
