package bolt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/eventstoretest"
)

// testOptions are the options tests open stores with. Small generations make
// every test cross index flushes.
func testOptions() Options { return Options{InitialMmapSize: 64 << 20, IndexGeneration: 512} }

// openTemp opens a store in a fresh temp dir. When the test ends, every store
// opened on that file is closed and the file is checked: bbolt's own
// consistency check, then the log and its indexes (checkFile).
func openTemp(t testing.TB, opts Options) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	tr := &tracker{path: path, opts: opts}
	s := tr.open(t)
	t.Cleanup(func() {
		tr.closeAll(t)
		checkFile(t, path)
	})
	return s
}

// tracker remembers the stores opened on one file so cleanup can close them.
type tracker struct {
	mu     sync.Mutex
	path   string
	opts   Options
	stores []*Store
}

var trackers sync.Map // *Store -> *tracker

func (tr *tracker) open(t testing.TB) *Store {
	t.Helper()
	s, err := Open(tr.path, tr.opts)
	if err != nil {
		t.Fatalf("Open(%s) = %v", tr.path, err)
	}
	tr.mu.Lock()
	tr.stores = append(tr.stores, s)
	tr.mu.Unlock()
	trackers.Store(s, tr)
	return s
}

func (tr *tracker) closeAll(t testing.TB) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, s := range tr.stores {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		trackers.Delete(s)
	}
}

// reopen closes s and opens its file again, as a restart would.
func reopen(t testing.TB, s *Store) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	v, ok := trackers.Load(s)
	if !ok {
		t.Fatalf("reopen: store %s was not opened by openTemp", s.Path())
	}
	return v.(*tracker).open(t)
}

func harness() eventstoretest.Harness {
	return eventstoretest.Harness{
		Open: func(t testing.TB) eventstore.Store {
			opts := testOptions()
			// Index generations small enough that the short suite crosses
			// many flushes; the default size for the million-event tests.
			opts.IndexGeneration = 4096
			if !testing.Short() {
				opts.IndexGeneration = 0
			}
			return openTemp(t, opts)
		},
		Reopen: func(t testing.TB, s eventstore.Store) eventstore.Store {
			return reopen(t, s.(*Store))
		},
		SetBeforeCommit: func(s eventstore.Store, fn func() error) { s.(*Store).SetBeforeCommit(fn) },
	}
}

// checkFile runs bbolt's consistency check on the file at path, then opens
// it read-only and checks the log (checkLog).
func checkFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("check %s: %v", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: DefaultTimeout})
	if err != nil {
		t.Fatalf("check %s: bbolt.Open = %v", path, err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("check %s: bbolt: %v", path, err)
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("check %s: %v", path, err)
	}
	s, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("check %s: Open(read-only) = %v", path, err)
	}
	defer s.Close()
	if err := checkLog(s); err != nil {
		t.Fatalf("check %s: %v", path, err)
	}
}

// checkLog reads the whole log of s and checks that it is dense and
// chained, that Head names its end, and that the stream index, the stream
// heads and the event id index agree with it exactly. It returns the first
// disagreement.
func checkLog(s *Store) error {
	all, err := readAllEvents(s)
	if err != nil {
		return err
	}
	var prev eventstore.Hash
	type head struct{ version, last uint64 }
	heads := map[string]head{}
	for i := range all {
		e := &all[i]
		if err := eventstore.VerifyLink(uint64(i), prev, e); err != nil {
			return fmt.Errorf("chain: %w", err)
		}
		prev = e.Hash
		h := heads[e.StreamID]
		if e.StreamVersion != h.version+1 {
			return fmt.Errorf("position %d: stream %s version %d, want %d", e.Position, e.StreamID, e.StreamVersion, h.version+1)
		}
		heads[e.StreamID] = head{e.StreamVersion, e.Position}
	}
	if h, err := s.Head(context.Background()); err != nil || h != (eventstore.Head{Position: uint64(len(all)), Hash: prev}) {
		return fmt.Errorf("Head() = %+v, %v; the log ends at %d", h, err, len(all))
	}
	at := func(pos uint64) (*eventstore.Envelope, error) {
		if pos < 1 || pos > uint64(len(all)) {
			return nil, fmt.Errorf("index points to position %d, the log ends at %d", pos, len(all))
		}
		return &all[pos-1], nil
	}

	n := 0
	err = s.ForEachStreamIndex(func(stream string, version, pos uint64) error {
		e, err := at(pos)
		if err != nil {
			return err
		}
		if e.StreamID != stream || e.StreamVersion != version {
			return fmt.Errorf("stream index (%s, %d) -> %d, the event there is (%s, %d)", stream, version, pos, e.StreamID, e.StreamVersion)
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if n != len(all) {
		return fmt.Errorf("stream index holds %d entries, the log %d events", n, len(all))
	}

	n = 0
	err = s.ForEachStream(func(stream string, version, last uint64) error {
		if h := heads[stream]; h != (head{version, last}) {
			return fmt.Errorf("streams %s = version %d at %d, the log says version %d at %d", stream, version, last, h.version, h.last)
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if n != len(heads) {
		return fmt.Errorf("streams bucket holds %d streams, the log %d", n, len(heads))
	}

	n = 0
	err = s.ForEachEventID(func(id eventstore.ID, pos uint64) error {
		e, err := at(pos)
		if err != nil {
			return err
		}
		if e.EventID != id {
			return fmt.Errorf("event id index %s -> %d, the event there is %s", id, pos, e.EventID)
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if n != len(all) {
		return fmt.Errorf("event id index holds %d entries, the log %d events", n, len(all))
	}
	return nil
}

func readAllEvents(s *Store) ([]eventstore.Envelope, error) {
	var all []eventstore.Envelope
	for {
		page, err := s.ReadAll(context.Background(), uint64(len(all))+1, 10000)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			return all, nil
		}
		all = append(all, page...)
	}
}
