package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/eventstore/bolt"
)

// BoltTarget measures the bbolt event store (eventstore/bolt). Its raw loop
// opens a plain bbolt file with exactly the options the store uses
// (bolt.Options.BoltOptions: synced, hashmap freelist, same memory map) and
// appends records under big-endian sequence keys to one bucket with
// FillPercent 1.0, as the store's events bucket does.
type BoltTarget struct {
	// Dir holds the files; each Open and RawLoop uses a new file in it and
	// removes it when done. Put it on the disk you want to measure.
	Dir string
	// Options are the store's options (the zero value: production defaults).
	Options bolt.Options

	mu sync.Mutex
	n  int
}

// Name implements Target.
func (t *BoltTarget) Name() string { return "bolt" }

func (t *BoltTarget) file(kind string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	return filepath.Join(t.Dir, fmt.Sprintf("%s-%d.db", kind, t.n))
}

// Open implements Target.
func (t *BoltTarget) Open(ctx context.Context) (Opened, error) {
	path := t.file("store")
	s, err := bolt.Open(path, t.Options)
	if err != nil {
		return Opened{}, err
	}
	var once sync.Once
	var rerr error
	return Opened{
		Store: s,
		CommitStats: func() (uint64, uint64) {
			st := s.Stats()
			return st.Commits, st.Events
		},
		Release: func() error {
			once.Do(func() {
				rerr = errors.Join(s.Close(), os.Remove(path))
			})
			return rerr
		},
	}, nil
}

// RawLoop implements Target. The records are spread over transactions as
// evenly as possible, so the average transaction holds batchSize records.
func (t *BoltTarget) RawLoop(ctx context.Context, records, batchSize, recordSize int) (float64, error) {
	if records <= 0 || batchSize <= 0 {
		return 0, fmt.Errorf("raw loop: %d records in transactions of %d", records, batchSize)
	}
	path := t.file("raw")
	db, err := bbolt.Open(path, 0o600, t.Options.BoltOptions())
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer db.Close()
	value := make([]byte, recordSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	name := []byte("records")
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket(name)
		return err
	}); err != nil {
		return 0, err
	}
	txs := (records + batchSize/2) / batchSize
	txs = max(txs, 1)
	keys := make([]byte, 0, 8*records)
	for k := 1; k <= records; k++ {
		keys = binary.BigEndian.AppendUint64(keys, uint64(k))
	}
	start := time.Now()
	written := 0
	for i := 0; i < txs; i++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		end := records * (i + 1) / txs
		err := db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(name)
			b.FillPercent = 1.0
			for ; written < end; written++ {
				if err := b.Put(keys[8*written:8*written+8], value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("raw loop: %w", err)
		}
	}
	return float64(records) / time.Since(start).Seconds(), nil
}
