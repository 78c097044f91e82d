package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hodei-jobs/hodei/eventstore"
)

// readPage is the most events one read transaction decodes: reads are short
// View transactions, so a long ReadAll never pins old pages for long.
const readPage = 1000

// view runs fn in a read transaction. A bbolt panic or a fault on the memory
// map (corrupt or truncated file) becomes an ErrCorrupt error; a closed store
// gives eventstore.ErrClosed.
func (s *Store) view(fn func(*bbolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt: %v: %w", r, eventstore.ErrCorrupt)
		}
	}()
	err = s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		err = eventstore.ErrClosed
	}
	return err
}

// viewTail is view with a consistent picture of the in-memory index: pre
// runs under the tail lock right after the transaction begins, so every
// event pre sees in memory is in the transaction's snapshot, and the
// snapshot's index buckets hold at least what pre finds missing from memory.
func (s *Store) viewTail(pre func(), fn func(*bbolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt: %v: %w", r, eventstore.ErrCorrupt)
		}
	}()
	s.tailMu.RLock()
	tx, err := s.db.Begin(false)
	if err == nil {
		pre()
	}
	s.tailMu.RUnlock()
	if err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			err = eventstore.ErrClosed
		}
		return err
	}
	defer func() { _ = tx.Rollback() }()
	return fn(tx)
}

func (s *Store) readCheck(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.isClosed() {
		return eventstore.ErrClosed
	}
	return nil
}

// ReadAll implements eventstore.Store. It reads in pages of short read
// transactions; values are decoded into fresh memory. A gap in positions or
// a value that does not decode is a *eventstore.CorruptError naming the
// position.
func (s *Store) ReadAll(ctx context.Context, from uint64, limit int) ([]eventstore.Envelope, error) {
	if err := s.readCheck(ctx); err != nil {
		return nil, fmt.Errorf("read all from %d: %w", from, err)
	}
	if from < 1 {
		from = 1
	}
	if limit <= 0 {
		return nil, nil
	}
	s.headMu.RLock()
	head := s.head.Position
	s.headMu.RUnlock()
	var out []eventstore.Envelope
	if from <= head {
		out = make([]eventstore.Envelope, 0, min(uint64(limit), head-from+1))
	}
	for len(out) < limit {
		n := min(limit-len(out), readPage)
		got := 0
		err := s.view(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketEvents).Cursor()
			want := from
			for k, v := c.Seek(posKey(nil, from)); k != nil && got < n; k, v = c.Next() {
				if p := keyPos(k); p != want {
					return &eventstore.CorruptError{Position: want, Reason: fmt.Sprintf("missing: next stored event is position %d", p)}
				}
				e, err := decodeAt(want, v)
				if err != nil {
					return err
				}
				out = append(out, e)
				got++
				want++
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read all from %d: %w", from, err)
		}
		if got < n {
			break
		}
		from += uint64(got)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReadStream implements eventstore.Store. Versions below the stream's first
// in-memory version come from the stream index bucket, the rest from the
// in-memory index; every event is checked to be the stream's version it is
// indexed as.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.Envelope, error) {
	if err := s.readCheck(ctx); err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	if from < 1 {
		from = 1
	}
	if limit <= 0 {
		return nil, nil
	}
	var memFirst uint64
	var memPos []uint64
	var out []eventstore.Envelope
	err := s.viewTail(func() {
		memFirst, memPos = s.tail.streamPositions(stream, from, limit)
	}, func(tx *bbolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		want := from
		if memFirst == 0 || from < memFirst {
			prefix := streamPrefix(nil, stream)
			c := tx.Bucket(bucketStreamIdx).Cursor()
			for k, v := c.Seek(streamIdxKey(nil, stream, from)); k != nil && hasStreamPrefix(k, prefix) && len(out) < limit; k, v = c.Next() {
				_, version, err := parseStreamIdxKey(k)
				if err != nil {
					return fmt.Errorf("%v: %w", err, eventstore.ErrCorrupt)
				}
				if memFirst != 0 && version >= memFirst {
					break
				}
				if version != want {
					return fmt.Errorf("stream index: version %d missing (next indexed is %d): %w", want, version, eventstore.ErrCorrupt)
				}
				pos, err := parsePos(fmt.Sprintf("stream index %s version %d", stream, version), v)
				if err != nil {
					return fmt.Errorf("%v: %w", err, eventstore.ErrCorrupt)
				}
				e, err := readStreamEvent(events, stream, version, pos)
				if err != nil {
					return err
				}
				out = append(out, e)
				want++
			}
			if memFirst != 0 && len(out) < limit && want < memFirst {
				return fmt.Errorf("stream index: version %d missing (next indexed is %d): %w", want, memFirst, eventstore.ErrCorrupt)
			}
		}
		if memFirst > want {
			want = memFirst
		}
		for _, pos := range memPos {
			if len(out) >= limit {
				break
			}
			e, err := readStreamEvent(events, stream, want, pos)
			if err != nil {
				return err
			}
			out = append(out, e)
			want++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	return out, nil
}

// readStreamEvent reads the event an index says is version of stream.
func readStreamEvent(events *bbolt.Bucket, stream string, version, pos uint64) (eventstore.Envelope, error) {
	e, err := readEvent(events, pos)
	if err != nil {
		return e, err
	}
	if e.StreamID != stream || e.StreamVersion != version {
		return e, &eventstore.CorruptError{Position: pos,
			Reason: fmt.Sprintf("indexed as %s version %d, the event is %s version %d", stream, version, e.StreamID, e.StreamVersion)}
	}
	return e, nil
}

// The index views below are for tools that audit a log (hodei replay
// verify): they let a verifier check that the indexes agree with the log.
// Each runs in one read transaction, so fn sees one consistent snapshot; fn
// must not wait for appends to the same store, which may need that
// transaction to end. The index buckets are written behind the log (see the
// package documentation): entries of events above IndexedThrough come from
// the log itself, as Open rebuilds them, and take the place of whatever the
// buckets hold for those events. Iteration stops at the first error fn
// returns, and that error is returned.

// IndexedThrough returns the position up to which the index buckets are
// complete in the file. On a cleanly closed store it is the head.
func (s *Store) IndexedThrough() (uint64, error) {
	var st logState
	err := s.view(func(tx *bbolt.Tx) error {
		b, err := openBuckets(tx)
		if err == nil {
			st, err = readMeta(b.meta)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("indexed through: %w", err)
	}
	return st.indexed, nil
}

// snapshot opens the buckets of tx and rebuilds, from the log, the index
// entries of the events above meta "indexed".
func snapshot(tx *bbolt.Tx) (buckets, logState, *generation, error) {
	b, err := openBuckets(tx)
	if err != nil {
		return b, logState{}, nil, err
	}
	st, err := readMeta(b.meta)
	if err != nil {
		return b, st, nil, err
	}
	t, err := rebuildTail(b, st)
	if err != nil {
		return b, st, nil, err
	}
	return b, st, t.active, nil
}

// ForEachStreamIndex calls fn for every stream index entry (stream, stream
// version, position) in key order: by stream (length, then bytes), then by
// version.
func (s *Store) ForEachStreamIndex(fn func(stream string, version, position uint64) error) error {
	err := s.view(func(tx *bbolt.Tx) error {
		b, st, g, err := snapshot(tx)
		if err != nil {
			return err
		}
		type entry struct {
			key             []byte
			stream          string
			version, ofsPos uint64
		}
		mem := make([]entry, 0, g.size())
		for stream, ms := range g.streams {
			for i, p := range ms.pos {
				v := ms.first + uint64(i)
				mem = append(mem, entry{streamIdxKey(nil, stream, v), stream, v, p})
			}
		}
		slices.SortFunc(mem, func(a, b entry) int { return bytes.Compare(a.key, b.key) })
		c := b.streamIdx.Cursor()
		k, v := c.First()
		for i := 0; k != nil || i < len(mem); {
			if k == nil || (i < len(mem) && bytes.Compare(mem[i].key, k) < 0) {
				if err := fn(mem[i].stream, mem[i].version, mem[i].ofsPos); err != nil {
					return err
				}
				i++
				continue
			}
			stream, version, err := parseStreamIdxKey(k)
			if err != nil {
				return fmt.Errorf("%v: %w", err, eventstore.ErrCorrupt)
			}
			pos, err := parsePos(fmt.Sprintf("stream index %s version %d", stream, version), v)
			if err != nil {
				return fmt.Errorf("%v: %w", err, eventstore.ErrCorrupt)
			}
			if pos <= st.indexed {
				if err := fn(string(stream), version, pos); err != nil {
					return err
				}
			}
			k, v = c.Next()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("for each stream index entry: %w", err)
	}
	return nil
}

// ForEachStream calls fn for every stream's head (its version and the
// position of its last event), in stream id order.
func (s *Store) ForEachStream(fn func(stream string, version, lastPos uint64) error) error {
	err := s.view(func(tx *bbolt.Tx) error {
		b, _, g, err := snapshot(tx)
		if err != nil {
			return err
		}
		mem := make([]string, 0, len(g.streams))
		for stream := range g.streams {
			mem = append(mem, stream)
		}
		slices.Sort(mem)
		c := b.streams.Cursor()
		k, v := c.First()
		for i := 0; k != nil || i < len(mem); {
			if k == nil || (i < len(mem) && mem[i] <= string(k)) {
				version, last := g.streams[mem[i]].last()
				if err := fn(mem[i], version, last); err != nil {
					return err
				}
				if k != nil && mem[i] == string(k) {
					k, v = c.Next() // the log's newer head replaces the bucket's
				}
				i++
				continue
			}
			version, last, err := parseStreamValue(shortString(k), v)
			if err != nil {
				return fmt.Errorf("%v: %w", err, eventstore.ErrCorrupt)
			}
			if err := fn(string(k), version, last); err != nil {
				return err
			}
			k, v = c.Next()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("for each stream: %w", err)
	}
	return nil
}

// ForEachEventID calls fn for every entry of the event id index, in id order.
func (s *Store) ForEachEventID(fn func(id eventstore.ID, position uint64) error) error {
	err := s.view(func(tx *bbolt.Tx) error {
		b, st, g, err := snapshot(tx)
		if err != nil {
			return err
		}
		mem := g.sortedIDs()
		c := b.eventIDs.Cursor()
		k, v := c.First()
		for i := 0; k != nil || i < len(mem); {
			if k == nil || (i < len(mem) && len(k) == 16 && mem[i].less(newIDPos(eventstore.ID(k), 0))) {
				if err := fn(mem[i].id(), mem[i].pos); err != nil {
					return err
				}
				i++
				continue
			}
			var id eventstore.ID
			if len(k) != len(id) {
				return fmt.Errorf("event_ids key %s: %d bytes, want %d: %w", shortHex(k), len(k), len(id), eventstore.ErrCorrupt)
			}
			copy(id[:], k)
			pos, err := parsePos("event_ids "+id.String(), v)
			if err != nil {
				return fmt.Errorf("%v: %w", err, eventstore.ErrCorrupt)
			}
			if pos <= st.indexed {
				if err := fn(id, pos); err != nil {
					return err
				}
			}
			k, v = c.Next()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("for each event id: %w", err)
	}
	return nil
}
