package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/bolt"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
)

// eventsFile is the bbolt event log inside a data dir.
const eventsFile = "events.db"

// openStore opens the event log: PostgreSQL when dsn is set, else the bbolt
// file in dataDir (created when missing unless readOnly).
func openStore(ctx context.Context, dataDir, dsn string, readOnly bool) (eventstore.Store, error) {
	if dsn != "" {
		s, err := postgres.Open(ctx, dsn, postgres.Options{ReadOnly: readOnly})
		if err != nil {
			return nil, fmt.Errorf("open postgres %s: %w", redactDSN(dsn), err)
		}
		return s, nil
	}
	path := filepath.Join(dataDir, eventsFile)
	if readOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no event log at %s (is --data right?): %w", path, err)
		}
	} else if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	s, err := bolt.Open(path, bolt.Options{ReadOnly: readOnly})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// storeStats returns the adapter's commit counters for /metrics.
func storeStats(s eventstore.Store) func() (commits, events uint64) {
	switch st := s.(type) {
	case *bolt.Store:
		return func() (uint64, uint64) { x := st.Stats(); return x.Commits, x.Events }
	case *postgres.Store:
		return func() (uint64, uint64) { x := st.Stats(); return x.Commits, x.Events }
	}
	return nil
}
