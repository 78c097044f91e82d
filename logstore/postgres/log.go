package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hodei-jobs/hodei/logstore"
	"github.com/jackc/pgx/v5"
)

// key names one attempt's log.
type key struct {
	job     string
	attempt uint32
}

func (k key) String() string { return fmt.Sprintf("job %s attempt %d", k.job, k.attempt) }

// state is a job_logs row.
type state struct {
	exists      bool
	attempt     uint32
	size        uint64
	received    uint64
	crc         uint32 // CRC-32C of the stored bytes [0, size)
	truncated   bool
	truncatedAt uint64
	finished    bool
	sealed      bool
	finishedAt  time.Time
	agentBytes  uint64
	agentCRC    uint32
	crcChecked  bool
	mismatch    bool
}

const stateColumns = `attempt, size, received, crc, truncated_at, finished_at, sealed, agent_bytes, agent_crc, crc_checked, mismatch`

func scanState(row pgx.Row) (state, error) {
	var (
		attempt, size, received, crc, agentBytes, agentCRC int64
		truncatedAt                                        *int64
		finishedAt                                         *time.Time
		st                                                 state
	)
	if err := row.Scan(&attempt, &size, &received, &crc, &truncatedAt, &finishedAt, &st.sealed,
		&agentBytes, &agentCRC, &st.crcChecked, &st.mismatch); err != nil {
		return state{}, err
	}
	st.exists = true
	st.attempt, st.size, st.received, st.crc = uint32(attempt), uint64(size), uint64(received), uint32(crc)
	if truncatedAt != nil {
		st.truncated, st.truncatedAt = true, uint64(*truncatedAt)
	}
	if finishedAt != nil {
		st.finished, st.finishedAt = true, finishedAt.UTC()
	}
	st.agentBytes, st.agentCRC = uint64(agentBytes), uint32(agentCRC)
	return st, nil
}

// entry is the in-memory side of one log: its row as this process last
// wrote or read it (a cache for writers, checked by every conditional
// update), and the channel that wakes its followers.
type entry struct {
	key  key
	refs int // guarded by Store.mu
	// worth is set while the entry caches the row of a live log, the only
	// state worth keeping once no call uses the entry.
	worth atomic.Bool

	mu     sync.Mutex // serialises writes of the log
	loaded bool
	st     state

	followers atomic.Int32 // open Followers of the log in this process

	notifyMu sync.Mutex
	notify   chan struct{} // closed on the next change; made by a waiting follower
	// tail holds the stored bytes [tailOff, tailOff+len(tail)) this process
	// last committed, at most maxTail, kept while the log has followers: a
	// follower woken by an Append here copies the new bytes from it instead
	// of querying. Stored bytes never change, so it is never stale; whether
	// a log has ended is always asked of the database.
	tail    []byte
	tailOff uint64
}

// maxTail bounds an entry's tail.
const maxTail = 64 << 10

// publish records bytes just committed at off for the followers, then wakes
// them.
func (e *entry) publish(off uint64, data []byte) {
	e.notifyMu.Lock()
	defer e.notifyMu.Unlock()
	switch {
	case e.followers.Load() == 0 || len(data) > maxTail:
		e.tail, e.tailOff = nil, 0
	case e.tail != nil && e.tailOff+uint64(len(e.tail)) == off && len(e.tail)+len(data) <= maxTail:
		e.tail = append(e.tail, data...)
	default:
		e.tail, e.tailOff = append(make([]byte, 0, min(maxTail, 2*len(data))), data...), off
	}
	if e.notify != nil {
		close(e.notify)
		e.notify = nil
	}
}

// readTail copies what the tail holds at off into p; when it holds nothing
// there it returns the channel that the log's next change closes, taken
// before the caller queries, so no change between the query and the wait
// is missed.
func (e *entry) readTail(off uint64, p []byte) (int, <-chan struct{}) {
	e.notifyMu.Lock()
	defer e.notifyMu.Unlock()
	if off >= e.tailOff && off < e.tailOff+uint64(len(e.tail)) {
		return copy(p, e.tail[off-e.tailOff:]), nil
	}
	if e.notify == nil {
		e.notify = make(chan struct{})
	}
	return 0, e.notify
}

// invalidate drops the cached row; the next call rereads it. e.mu is held.
func (e *entry) invalidate() {
	e.loaded = false
	e.worth.Store(false)
}

func (e *entry) wake() {
	e.notifyMu.Lock()
	if e.notify != nil {
		close(e.notify)
		e.notify = nil
	}
	e.notifyMu.Unlock()
}

// errConflict says the row changed under the cached state (another process
// wrote the log): reload and decide again.
var errConflict = errors.New("log changed concurrently")

// maxTries bounds reload-and-retry rounds on conflicts.
const maxTries = 4

// loadLocked reads the log's row unless the cached state is current; e.mu
// is held.
func (s *Store) loadLocked(ctx context.Context, e *entry) error {
	if e.loaded {
		return nil
	}
	st, err := scanState(s.pool.QueryRow(ctx, `SELECT `+stateColumns+` FROM job_logs WHERE job_id = $1 AND attempt = $2`,
		e.key.job, int64(e.key.attempt)))
	if errors.Is(err, pgx.ErrNoRows) {
		st, err = state{attempt: e.key.attempt}, nil
	}
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	e.st, e.loaded = st, true
	e.worth.Store(st.exists && !st.finished)
	return nil
}

// retry runs op under e's lock, reloading the state and trying again when
// op reports errConflict. fresh tells op that the state was just read from
// the database: an op that would fail on a cached state (a gap) asks for a
// reload first, as another process may have written the log.
func (s *Store) retry(e *entry, op func(ctx context.Context, fresh bool) error) error {
	ctx, cancel := s.opCtx()
	defer cancel()
	e.mu.Lock()
	defer e.mu.Unlock()
	for range maxTries {
		fresh := !e.loaded
		if err := s.loadLocked(ctx, e); err != nil {
			return err
		}
		err := op(ctx, fresh)
		if !errors.Is(err, errConflict) {
			return err
		}
		e.invalidate()
	}
	return fmt.Errorf("%w %d times in a row: is another process writing it?", errConflict, maxTries)
}

func (s *Store) append(e *entry, offset uint64, data []byte) (ack uint64, err error) {
	err = s.retry(e, func(ctx context.Context, fresh bool) error {
		ack, err = s.appendLocked(ctx, e, offset, data, fresh)
		return err
	})
	return ack, err
}

func (s *Store) appendLocked(ctx context.Context, e *entry, offset uint64, data []byte, fresh bool) (uint64, error) {
	st := &e.st
	end := offset + uint64(len(data))
	switch {
	case st.finished:
		if end <= st.received {
			return st.received, nil
		}
		return st.received, logstore.ErrFinished
	case st.truncated:
		// Nothing more is stored, so nothing can be missing: count and ack.
		if end <= st.received {
			return st.received, nil
		}
		var received int64
		err := s.fast.QueryRow(ctx, `UPDATE job_logs SET received = greatest(received, $3)
			WHERE job_id = $1 AND attempt = $2 AND finished_at IS NULL RETURNING received`,
			e.key.job, int64(e.key.attempt), int64(end)).Scan(&received)
		if errors.Is(err, pgx.ErrNoRows) {
			return st.received, errConflict
		}
		if err != nil {
			return st.received, err
		}
		st.received = uint64(received)
		return st.received, nil
	case offset > st.size && !fresh:
		return st.size, errConflict // maybe stale: check before claiming a gap
	case offset > st.size:
		return st.size, &logstore.GapError{Want: st.size, Got: offset}
	}
	skip := st.size - offset
	if skip >= uint64(len(data)) {
		return st.size, nil
	}
	data = data[skip:]
	if s.limit > 0 && st.size+uint64(len(data)) > s.limit {
		return s.truncateLocked(ctx, e, data, end)
	}
	size := st.size + uint64(len(data))
	crc := crc32.Update(st.crc, castagnoli, data)
	var rows int64
	var err error
	if !st.exists {
		rows, err = s.exec(`WITH l AS (
				INSERT INTO job_logs (job_id, attempt, size, received, crc) VALUES ($1, $2, $3, $3, $4)
				ON CONFLICT DO NOTHING RETURNING 1)
			INSERT INTO job_log_chunks (job_id, attempt, off, data) SELECT $1, $2, 0, $5 FROM l`,
			e.key.job, int64(e.key.attempt), int64(size), int64(crc), data)
	} else {
		rows, err = s.exec(`WITH l AS (
				UPDATE job_logs SET size = $4, received = $4, crc = $5
				WHERE job_id = $1 AND attempt = $2 AND size = $3 AND finished_at IS NULL AND truncated_at IS NULL
				RETURNING 1)
			INSERT INTO job_log_chunks (job_id, attempt, off, data) SELECT $1, $2, $3, $6 FROM l`,
			e.key.job, int64(e.key.attempt), int64(st.size), int64(size), int64(crc), data)
	}
	if err != nil {
		e.invalidate() // the outcome is unknown: ask the database next time
		return st.size, err
	}
	if rows != 1 {
		return st.size, errConflict
	}
	e.publish(st.size, data)
	st.exists, st.size, st.received, st.crc = true, size, size, crc
	e.worth.Store(true)
	s.changed(e)
	return size, nil
}

// truncateLocked stores what fits below the limit and the marker line, and
// records the truncation, in one synchronously committed transaction: the
// row never claims a marker the chunks lack.
func (s *Store) truncateLocked(ctx context.Context, e *entry, data []byte, received uint64) (uint64, error) {
	st := &e.st
	room := uint64(0)
	if st.size < s.limit {
		room = s.limit - st.size
	}
	keep := data[:room]
	marker := logstore.TruncationMarker(s.limit)
	truncatedAt := st.size + uint64(len(keep))
	size := truncatedAt + uint64(len(marker))
	crc := crc32.Update(crc32.Update(st.crc, castagnoli, keep), castagnoli, marker)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if !st.exists {
			tag, err := tx.Exec(ctx, `INSERT INTO job_logs (job_id, attempt) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
				e.key.job, int64(e.key.attempt))
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 1 {
				return errConflict
			}
		}
		tag, err := tx.Exec(ctx, `UPDATE job_logs SET size = $4, received = $5, crc = $6, truncated_at = $7
			WHERE job_id = $1 AND attempt = $2 AND size = $3 AND finished_at IS NULL AND truncated_at IS NULL`,
			e.key.job, int64(e.key.attempt), int64(st.size), int64(size), int64(received), int64(crc), int64(truncatedAt))
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errConflict
		}
		if len(keep) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO job_log_chunks (job_id, attempt, off, data) VALUES ($1, $2, $3, $4)`,
				e.key.job, int64(e.key.attempt), int64(st.size), keep); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO job_log_chunks (job_id, attempt, off, data) VALUES ($1, $2, $3, $4)`,
			e.key.job, int64(e.key.attempt), int64(truncatedAt), marker)
		return err
	})
	if errors.Is(err, errConflict) {
		return st.received, err
	}
	if err != nil {
		e.invalidate()
		return st.received, fmt.Errorf("record truncation: %w", err)
	}
	e.publish(st.size, append(append(make([]byte, 0, len(keep)+len(marker)), keep...), marker...))
	st.exists, st.size, st.received, st.crc = true, size, received, crc
	st.truncated, st.truncatedAt = true, truncatedAt
	e.worth.Store(true)
	s.changed(e)
	return received, nil
}

func (s *Store) finish(e *entry, total uint64, crc uint32) error {
	return s.retry(e, func(ctx context.Context, fresh bool) error { return s.finishLocked(ctx, e, total, crc, fresh) })
}

func (s *Store) finishLocked(ctx context.Context, e *entry, total uint64, crc uint32, fresh bool) error {
	st := e.st
	if st.finished {
		if st.sealed || st.agentBytes != total || st.agentCRC != crc {
			return fmt.Errorf("%w (sealed=%t, %d bytes, crc32c %08x)", logstore.ErrFinished, st.sealed, st.agentBytes, st.agentCRC)
		}
		return mismatch(st)
	}
	st.finished, st.finishedAt = true, s.opts.Clock().UTC().Truncate(time.Microsecond)
	st.agentBytes, st.agentCRC = total, crc
	if !st.truncated {
		if total > st.size && !fresh {
			return errConflict // maybe stale: check before claiming a gap
		}
		if total > st.size {
			return &logstore.GapError{Want: st.size, Got: total}
		}
		st.crcChecked = true
		st.mismatch = total != st.size || crc != st.crc
	} else {
		st.mismatch = total < st.received
		st.received = max(st.received, total) // Dropped becomes exact
	}
	if err := s.record(ctx, e, st); err != nil {
		return err
	}
	return mismatch(st)
}

func mismatch(st state) error {
	if !st.mismatch {
		return nil
	}
	stored, storedCRC := st.size, st.crc
	if st.truncated {
		stored, storedCRC = st.received, 0
	}
	return &logstore.MismatchError{StoredBytes: stored, StoredCRC: storedCRC, AgentBytes: st.agentBytes, AgentCRC: st.agentCRC}
}

func (s *Store) seal(e *entry) error {
	return s.retry(e, func(ctx context.Context, _ bool) error {
		st := e.st
		if st.finished {
			return nil
		}
		st.finished, st.sealed, st.finishedAt = true, true, s.opts.Clock().UTC().Truncate(time.Microsecond)
		return s.record(ctx, e, st)
	})
}

// record writes the finish record st (creating the row of a log that has no
// bytes) if the row still matches the cached state, commits synchronously
// and ends the followers.
func (s *Store) record(ctx context.Context, e *entry, st state) error {
	var truncatedAt *int64
	if st.truncated {
		t := int64(st.truncatedAt)
		truncatedAt = &t
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO job_logs AS l (job_id, attempt, size, received, crc, truncated_at,
			finished_at, sealed, agent_bytes, agent_crc, crc_checked, mismatch)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (job_id, attempt) DO UPDATE SET received = EXCLUDED.received, finished_at = EXCLUDED.finished_at,
			sealed = EXCLUDED.sealed, agent_bytes = EXCLUDED.agent_bytes, agent_crc = EXCLUDED.agent_crc,
			crc_checked = EXCLUDED.crc_checked, mismatch = EXCLUDED.mismatch
		WHERE l.size = EXCLUDED.size AND l.finished_at IS NULL`,
		e.key.job, int64(e.key.attempt), int64(st.size), int64(st.received), int64(st.crc), truncatedAt,
		st.finishedAt, st.sealed, int64(st.agentBytes), int64(st.agentCRC), st.crcChecked, st.mismatch)
	if err != nil {
		e.invalidate()
		return err
	}
	if tag.RowsAffected() != 1 {
		return errConflict
	}
	st.exists = true
	e.st = st
	e.worth.Store(false)
	s.changed(e)
	return nil
}

// readResult is what one read of a log found.
type readResult struct {
	found    bool // the log has a row
	n        int
	size     uint64
	finished bool
}

// endErr turns a read at off into the contract's ending: io.EOF when a plain
// read reaches the end of a finished log (a follower gets its bytes first
// and io.EOF on the next read), ErrOffset beyond it.
func (r readResult) endErr(off uint64, follow bool) error {
	if !r.finished {
		return nil
	}
	switch end := off + uint64(r.n); {
	case off > r.size:
		return fmt.Errorf("%w: offset %d, log ends at %d", logstore.ErrOffset, off, r.size)
	case end == r.size && (r.n == 0 || !follow):
		return io.EOF
	}
	return nil
}

// readQuery reads the log's row and, in the same snapshot, the stored bytes
// [$3, $3+$4) from the chunks overlapping them, cut to size on the server:
// the chunk holding $3 is found by a backward probe of the primary key, the
// rest by a range scan.
const readQuery = `SELECT l.size, l.finished_at IS NOT NULL, c.off, c.part
FROM job_logs l
LEFT JOIN LATERAL (
	SELECT ch.off, substring(ch.data FROM (greatest($3::bigint, ch.off) - ch.off + 1)::int
		FOR (least($3::bigint + $4::bigint, ch.off + length(ch.data)) - greatest($3::bigint, ch.off))::int) AS part
	FROM job_log_chunks ch
	WHERE ch.job_id = $1 AND ch.attempt = $2
		AND ch.off >= coalesce((SELECT max(p.off) FROM job_log_chunks p
			WHERE p.job_id = $1 AND p.attempt = $2 AND p.off <= $3::bigint), 0)
		AND ch.off < $3::bigint + $4::bigint AND ch.off + length(ch.data) > $3::bigint
	ORDER BY ch.off
) c ON true
WHERE l.job_id = $1 AND l.attempt = $2
ORDER BY c.off`

// readAt copies stored bytes of k from off into p.
func (s *Store) readAt(ctx context.Context, k key, off uint64, p []byte) (readResult, error) {
	var r readResult
	rows, err := s.pool.Query(ctx, readQuery, k.job, int64(k.attempt), int64(off), int64(len(p)))
	if err != nil {
		return r, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			size     int64
			finished bool
			coff     *int64
			part     []byte
		)
		if err := rows.Scan(&size, &finished, &coff, &part); err != nil {
			return r, err
		}
		r.found, r.size, r.finished = true, uint64(size), finished
		if coff == nil {
			continue
		}
		if start := max(uint64(*coff), off); start != off+uint64(r.n) || r.n+len(part) > len(p) {
			return r, fmt.Errorf("chunks of the log do not tile it: a chunk gives bytes from %d, want %d", start, off+uint64(r.n))
		}
		r.n += copy(p[r.n:], part)
	}
	if err := rows.Err(); err != nil {
		return readResult{}, err
	}
	return r, nil
}
