package logstore_test

import (
	"testing"

	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/logstore/logstoretest"
)

// The file Store passes the conformance suite every adapter runs.
func TestConformance(t *testing.T) {
	dirs := map[logstore.Logs]string{}
	open := func(t testing.TB, dir string, limit int64) logstore.Logs {
		s, err := logstore.Open(dir, logstore.Options{MaxBytesPerAttempt: limit, SyncInterval: -1})
		if err != nil {
			t.Fatalf("Open(%s) = %v", dir, err)
		}
		dirs[s] = dir
		return s
	}
	logstoretest.Run(t, logstoretest.Harness{
		Open: func(t testing.TB, limit int64) logstore.Logs { return open(t, t.TempDir(), limit) },
		Reopen: func(t testing.TB, s logstore.Logs, limit int64) logstore.Logs {
			if err := s.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			return open(t, dirs[s], limit)
		},
	})
}
