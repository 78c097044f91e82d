package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Request states: the appender may cancel a pending request; once the
// committer has claimed it, only the transaction decides.
const (
	reqPending int32 = iota
	reqClaimed
	reqCancelled
)

// request is one AppendMany call on its way through the committer.
type request struct {
	ctx    context.Context
	reqs   []eventstore.AppendRequest
	out    []eventstore.AppendOutcome // validation errors are filled in by the caller
	err    error                      // whole-call error (commit failure, ErrClosed)
	events int                        // events and payload bytes of the valid requests
	bytes  int
	state  atomic.Int32
	done   chan struct{}
}

// item is one valid AppendRequest of a claimed request.
type item struct {
	r *request
	i int
}

func (it item) req() *eventstore.AppendRequest { return &it.r.reqs[it.i] }

// SQL of the append transaction. Positions and hashes are computed in Go
// between the two pipelines; see commit.
const (
	// streamHeadCache is how many streams' versions the committer keeps.
	streamHeadCache = 1 << 16

	sqlSyncCommit = "SET LOCAL synchronous_commit TO on"
	// A stream's version is its last event's, read backwards from the
	// UNIQUE (stream_id, stream_version) index; 0 for a stream with none.
	sqlStreamVersions = `SELECT u.stream_id, coalesce(e.v, 0) FROM unnest($1::text[]) AS u(stream_id)
		LEFT JOIN LATERAL (SELECT stream_version AS v FROM es_events
			WHERE stream_id = u.stream_id ORDER BY stream_version DESC LIMIT 1) AS e ON true`
	sqlEventsByID = "SELECT " + EventColumns + " FROM es_events WHERE event_id = ANY($1::uuid[])"
	sqlLockHead   = "SELECT last_position, last_hash FROM es_head WHERE id FOR UPDATE"
	sqlUpdateHead = "UPDATE es_head SET last_position = $1, last_hash = $2 WHERE id"
	sqlNotify     = "SELECT pg_notify($1, $2)"
)

// run is the committer: the only goroutine that writes. It takes the first
// waiting request, adds every other one already queued (up to the batch
// limits, see gather), and commits them in one transaction. The next batch
// queues up while this one's WAL flush runs, so batch size follows load.
func (s *Store) run() {
	defer close(s.committerDone)
	defer s.dropConn()
	for {
		if s.conn == nil && s.opts.Standby && !s.awaitLock() {
			s.drain()
			return
		}
		select {
		case r := <-s.reqs:
			s.process(s.gather(r))
		case r := <-s.imports:
			s.runImport(r) // one transaction between append batches (import.go)
		case <-s.quit:
			// No submitter is left: commit what was handed over, then stop.
			for {
				select {
				case r := <-s.reqs:
					s.process(s.gather(r))
				default:
					return
				}
			}
		}
	}
}

// awaitLock waits as a standby until this process holds the committer lock.
// It returns false when the store is closing.
func (s *Store) awaitLock() bool {
	for {
		ctx, cancel := context.WithTimeout(s.quitCtx, s.opts.CommitTimeout)
		err := s.connectCommitter(ctx)
		cancel()
		if err == nil {
			s.opts.Logger.Info("eventstore/postgres: took the committer lock", "backend_pid", s.leaderPID.Load())
			return true
		}
		if s.quitCtx.Err() != nil {
			return false
		}
		if !errors.Is(err, ErrLockHeld) {
			s.opts.Logger.Warn("eventstore/postgres: standby cannot reach the database", "err", err)
		}
		t := time.NewTimer(s.opts.LockPollInterval)
		select {
		case <-t.C:
		case <-s.quitCtx.Done():
			t.Stop()
			return false
		}
	}
}

// drain fails every request handed over while the store closes without the
// committer lock.
func (s *Store) drain() {
	fail := func(r *request) {
		if r.state.CompareAndSwap(reqPending, reqClaimed) {
			r.err = eventstore.ErrClosed
			close(r.done)
		}
	}
	for {
		select {
		case r := <-s.reqs:
			fail(r)
		case <-s.quit:
			for {
				select {
				case r := <-s.reqs:
					fail(r)
				default:
					return
				}
			}
		}
	}
}

// gather claims first and whatever else is queued, up to the batch limits.
// Requests whose caller gave up are skipped.
//
// When fewer requests wait than the previous batch held, gather lingers up
// to Options.GroupCommitWait for the rest: the callers the previous commit
// just answered are usually about to append again, and one full transaction
// costs less than a small one followed by a large one. A lone appender never
// waits (its previous batch held one request).
func (s *Store) gather(first *request) []*request {
	batch := s.buf.batch[:0]
	events, bytes := 0, 0
	claim := func(r *request) {
		if r.ctx.Err() != nil {
			r.state.CompareAndSwap(reqPending, reqCancelled)
			return
		}
		if r.state.CompareAndSwap(reqPending, reqClaimed) {
			batch = append(batch, r)
			events += r.events
			bytes += r.bytes
		}
	}
	full := func() bool { return events >= s.opts.MaxBatchEvents || bytes >= s.opts.MaxBatchBytes }
	claim(first)
drain:
	for !full() {
		select {
		case r := <-s.reqs:
			claim(r)
		default:
			break drain
		}
	}
	if want := len(batch) + s.prevBatch*9/10; len(batch) < want && !full() && s.opts.GroupCommitWait > 0 {
		t := time.NewTimer(s.opts.GroupCommitWait)
	wait:
		for len(batch) < want && !full() {
			select {
			case r := <-s.reqs:
				claim(r)
			case <-t.C:
				break wait
			}
		}
		t.Stop()
	}
	s.prevBatch = len(batch)
	s.buf.batch = batch
	return batch
}

// txError says which step of the append transaction failed.
type txError struct {
	step    string
	err     error
	unknown bool // COMMIT was sent and the connection failed: it may have committed
}

func (e *txError) Error() string {
	if e.unknown {
		return fmt.Sprintf("%s: %v: %v", e.step, ErrCommitUnknown, e.err)
	}
	return e.step + ": " + e.err.Error()
}

func (e *txError) Unwrap() []error {
	if e.unknown {
		return []error{e.err, ErrCommitUnknown}
	}
	return []error{e.err}
}

// process commits one batch and answers its requests. A version conflict or
// an idempotency outcome is per request. A failed transaction fails the
// whole batch, publishes nothing and re-reads the head; except that a
// statement rejecting the data (SQL classes 22 and 23, which validation
// should have prevented) makes the committer retry the requests one by one,
// so a bad request cannot fail its neighbours.
func (s *Store) process(batch []*request) {
	if len(batch) == 0 {
		return
	}
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
		clear(batch)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommitTimeout)
	defer cancel()
	if s.conn == nil {
		if err := s.connectCommitter(ctx); err != nil {
			failAll(batch, fmt.Errorf("append: %w", err))
			return
		}
	}
	items := s.buf.items[:0]
	for _, r := range batch {
		for i := range r.reqs {
			if r.out[i].Err == nil {
				items = append(items, item{r, i})
			}
		}
	}
	s.buf.items = items
	results := growOutcomes(&s.buf.results, len(items))

	err := s.commitItems(ctx, items, results)
	if err == nil {
		setOutcomes(items, results)
		return
	}
	if len(items) > 1 && dataError(err) && s.conn != nil && !s.conn.IsClosed() {
		s.opts.Logger.Warn("eventstore/postgres: batch rejected by the database; retrying its appends one by one", "err", err)
		for k := range items {
			if err := s.commitItems(ctx, items[k:k+1], results[k:k+1]); err != nil {
				results[k] = eventstore.AppendOutcome{Err: fmt.Errorf("append %s: %w", items[k].req().Stream, err)}
				if s.conn == nil || s.conn.IsClosed() {
					// The connection is gone: the rest fail the same way.
					for j := k + 1; j < len(items); j++ {
						results[j] = eventstore.AppendOutcome{Err: fmt.Errorf("append %s: %w", items[j].req().Stream, err)}
					}
					s.recover(ctx)
					break
				}
			}
		}
		setOutcomes(items, results)
		return
	}
	failAll(batch, fmt.Errorf("append: %w", err))
	s.recover(ctx)
}

func failAll(batch []*request, err error) {
	for _, r := range batch {
		r.err = err
	}
}

func setOutcomes(items []item, results []eventstore.AppendOutcome) {
	for k, it := range items {
		it.r.out[it.i] = results[k]
	}
}

func growOutcomes(buf *[]eventstore.AppendOutcome, n int) []eventstore.AppendOutcome {
	if cap(*buf) < n {
		*buf = make([]eventstore.AppendOutcome, n)
	}
	out := (*buf)[:n]
	clear(out)
	return out
}

// dataError reports whether err is the database rejecting a statement's data
// rather than a failure of the connection or the commit.
func dataError(err error) bool {
	var te *txError
	var pe *pgconn.PgError
	if !errors.As(err, &te) || te.unknown || te.step == "before commit" || te.step == "commit" || !errors.As(err, &pe) {
		return false
	}
	return pe.Code[:2] == "22" || pe.Code[:2] == "23"
}

// recover runs after a failed transaction: it drops a broken connection (the
// next batch reconnects and re-reads the head) or re-reads the head on a
// healthy one, telling subscribers if the log grew behind the bus (a commit
// whose outcome was unknown).
func (s *Store) recover(ctx context.Context) {
	s.heads.Purge() // cheap to refill; nothing suspect survives a failure
	if s.conn == nil {
		return
	}
	if s.conn.IsClosed() {
		s.opts.Logger.Warn("eventstore/postgres: committer connection lost; reconnecting on the next append")
		s.dropConn()
		return
	}
	head, err := s.readHead(ctx, s.conn)
	if err != nil {
		s.dropConn()
		return
	}
	s.bus.Advance(head.Position)
}

// commitItems commits items, first optimistically: event ids are checked by
// the UNIQUE index as the rows go in, not read beforehand. A unique violation
// (an id already stored: a retry, or a reused id) rolls that attempt back and
// the batch runs again reading every id first, which gives each request its
// exact outcome (the original result, or ErrIdempotencyConflict).
func (s *Store) commitItems(ctx context.Context, items []item, results []eventstore.AppendOutcome) error {
	err := s.commit(ctx, items, results, false)
	if err != nil && uniqueViolation(err) && s.conn != nil && !s.conn.IsClosed() {
		clear(results)
		err = s.commit(ctx, items, results, true)
	}
	return err
}

func uniqueViolation(err error) bool {
	var te *txError
	var pe *pgconn.PgError
	return errors.As(err, &te) && te.step == "write" && errors.As(err, &pe) && pe.Code == "23505"
}

// commit runs one append transaction for items, writing each item's outcome
// to results. checkIDs reads the stored copies of the batch's event ids
// before deciding; without it a stored id surfaces as a unique violation. On
// error nothing was committed (unless the error says the outcome is unknown)
// and nothing is published.
func (s *Store) commit(ctx context.Context, items []item, results []eventstore.AppendOutcome, checkIDs bool) (err error) {
	b := &s.buf
	b.reset()
	for _, it := range items {
		r := it.req()
		if _, ok := b.locked[r.Stream]; !ok {
			if v, ok := s.heads.Get(r.Stream); ok {
				b.locked[r.Stream] = v
			} else {
				b.locked[r.Stream] = 0 // until step 1 reads the stream's version
				b.streams = append(b.streams, r.Stream)
			}
		}
		for j := range r.Events {
			b.ids = append(b.ids, r.Events[j].ID)
		}
	}

	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return &txError{step: "begin", err: err}
	}
	committed := false
	defer func() {
		if !committed {
			if rerr := tx.Rollback(context.Background()); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) {
				_ = s.conn.Close(context.Background())
			}
		}
	}()

	// 1. Read the versions of the streams not in the cache and the stored
	// copies of the ids, and lock the head: one pipeline, one round trip.
	// Stream versions need no lock: only the holder of the committer lock
	// appends, and the UNIQUE (stream_id, stream_version) index would
	// reject a version taken twice all the same.
	head, err := b.prepare(ctx, tx, checkIDs)
	if err != nil {
		return &txError{step: "lock", err: err}
	}

	// 2. Decide every item and build the envelopes. A version conflict may
	// hide a retry of stored events (a retry returns the original result
	// whatever its expected version): without the ids read in step 1, read
	// the conflicting requests' ids and decide again if any is stored.
	now := s.opts.Clock()
	conflicts := b.decide(items, results, head, now)
	if conflicts > 0 && !checkIDs {
		found, err := b.readConflictIDs(ctx, tx, items, results)
		if err != nil {
			return &txError{step: "read ids", err: err}
		}
		if found {
			clear(results)
			b.decide(items, results, head, now)
		}
	}
	staged := b.staged
	pos, prev := b.last, b.lastHash
	if len(staged) == 0 {
		return nil // conflicts and retries only: the deferred rollback releases the locks
	}

	// 3. Insert the events (COPY), advance the head, notify.
	if err := b.write(ctx, tx, staged, pos, prev); err != nil {
		return &txError{step: "write", err: err}
	}
	if fn := s.beforeCommit.Load(); fn != nil {
		if err := (*fn)(); err != nil {
			return &txError{step: "before commit", err: err}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		committed = true // nothing left to roll back
		var pe *pgconn.PgError
		unknown := s.conn.IsClosed() || !errors.As(err, &pe)
		return &txError{step: "commit", err: err, unknown: unknown}
	}
	committed = true
	s.commits.Add(1)
	s.committedEvents.Add(uint64(len(staged)))
	for id := range b.touched {
		s.heads.Add(id, b.versions[id])
	}

	// 4. Durable: publish (payloads copied out of the callers' buffers, which
	// they may reuse once answered).
	arena := make([]byte, 0, b.payloadBytes)
	for i := range staged {
		p := staged[i].Payload
		if len(p) == 0 {
			staged[i].Payload = nil
			continue
		}
		arena = append(arena, p...)
		staged[i].Payload = arena[len(arena)-len(p) : len(arena) : len(arena)]
	}
	s.bus.Publish(staged)
	clear(staged) // drop references to payloads the ring now owns
	return nil
}

// decide settles every item against the locked stream versions, the stored
// events read so far and the earlier items of the batch, staging the
// envelopes of those that append. It returns the number of version
// conflicts.
func (b *batchBuffers) decide(items []item, results []eventstore.AppendOutcome, head eventstore.Head, now time.Time) int {
	clear(b.versions)
	for id, v := range b.locked {
		b.versions[id] = v
	}
	clear(b.touched)
	clear(b.stagedAt)
	conflicts := 0
	pos, prev := head.Position, head.Hash
	staged := b.staged[:0]
	for k, it := range items {
		r := it.req()
		if res, dup, err := idempotent(r, b.stored, b.stagedAt, staged); dup || err != nil {
			results[k] = eventstore.AppendOutcome{Result: res, Err: err}
			continue
		}
		cur := b.versions[r.Stream]
		if !r.Expected.Check(cur) {
			results[k].Err = &eventstore.VersionConflictError{Stream: r.Stream, Expected: r.Expected, Actual: cur}
			conflicts++
			continue
		}
		res := eventstore.AppendResult{FirstPosition: pos + 1}
		for j := range r.Events {
			pos++
			cur++
			e := eventstore.NewEnvelope(&r.Events[j], pos, r.Stream, cur, now, prev)
			prev = e.Hash
			b.stagedAt[e.EventID] = len(staged)
			staged = append(staged, e)
		}
		b.versions[r.Stream] = cur
		b.touched[r.Stream] = pos
		res.LastPosition, res.Version = pos, cur
		results[k].Result = res
	}
	b.staged = staged
	b.last, b.lastHash = pos, prev
	return conflicts
}

// readConflictIDs reads the stored copies of the event ids of the items that
// had a version conflict into b.stored, and reports whether any is stored.
func (b *batchBuffers) readConflictIDs(ctx context.Context, tx pgx.Tx, items []item, results []eventstore.AppendOutcome) (bool, error) {
	ids := b.cID[:0]
	for k, it := range items {
		var vc *eventstore.VersionConflictError
		if errors.As(results[k].Err, &vc) {
			for _, e := range it.req().Events {
				ids = append(ids, e.ID)
			}
		}
	}
	b.cID = ids
	rows, err := tx.Query(ctx, sqlEventsByID, ids)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		e, err := scanEnvelope(rows)
		if err != nil {
			return false, err
		}
		b.stored[e.EventID] = &e
		found = true
	}
	return found, rows.Err()
}

// idempotent reports whether r's events are all stored already (a retry),
// and fails when only some are, or their content or order differs. stored
// holds the database's copies, staged the earlier items of the batch.
func idempotent(r *eventstore.AppendRequest, stored map[eventstore.ID]*eventstore.Envelope, stagedAt map[eventstore.ID]int, staged []eventstore.Envelope) (eventstore.AppendResult, bool, error) {
	found := 0
	var res eventstore.AppendResult
	for j := range r.Events {
		d := &r.Events[j]
		e, ok := stored[d.ID]
		if !ok {
			k, ok := stagedAt[d.ID]
			if !ok {
				continue
			}
			e = &staged[k]
		}
		if !eventstore.SameContent(e, r.Stream, d) || (found > 0 && e.Position != res.LastPosition+1) || found != j {
			return eventstore.AppendResult{}, false, fmt.Errorf("append %s: event %s: %w", r.Stream, d.ID, eventstore.ErrIdempotencyConflict)
		}
		if found == 0 {
			res.FirstPosition = e.Position
		}
		res.LastPosition, res.Version = e.Position, e.StreamVersion
		found++
	}
	switch found {
	case 0:
		return res, false, nil
	case len(r.Events):
		res.Duplicate = true
		return res, true, nil
	}
	return eventstore.AppendResult{}, false, fmt.Errorf("append %s: %d of %d event ids already stored: %w",
		r.Stream, found, len(r.Events), eventstore.ErrIdempotencyConflict)
}

// batchBuffers are the committer's scratch space, reused across batches.
type batchBuffers struct {
	batch   []*request
	items   []item
	results []eventstore.AppendOutcome

	streams  []string // streams whose versions step 1 reads (not in heads)
	ids      []eventstore.ID
	locked   map[string]uint64 // stream -> committed version, from heads or es_events (0: none)
	versions map[string]uint64 // stream -> version after the staged events
	touched  map[string]uint64 // stream -> last staged position
	stored   map[eventstore.ID]*eventstore.Envelope
	stagedAt map[eventstore.ID]int
	staged   []eventstore.Envelope
	last     uint64 // position and hash after the staged events
	lastHash eventstore.Hash

	payloadBytes int

	copyBuf []byte     // the binary COPY stream of the events
	cID     [][16]byte // event ids to look up
}

func (b *batchBuffers) reset() {
	if b.versions == nil {
		b.locked = map[string]uint64{}
		b.versions = map[string]uint64{}
		b.touched = map[string]uint64{}
		b.stored = map[eventstore.ID]*eventstore.Envelope{}
		b.stagedAt = map[eventstore.ID]int{}
	}
	clear(b.locked)
	clear(b.versions)
	clear(b.touched)
	clear(b.stored)
	clear(b.stagedAt)
	b.streams = b.streams[:0]
	b.ids = b.ids[:0]
	b.payloadBytes = 0
}

// prepare runs the locking pipeline and fills versions and stored. It
// returns the locked head.
func (b *batchBuffers) prepare(ctx context.Context, tx pgx.Tx, checkIDs bool) (eventstore.Head, error) {
	var q pgx.Batch
	q.Queue(sqlSyncCommit)
	if len(b.streams) > 0 {
		q.Queue(sqlStreamVersions, b.streams)
	}
	if checkIDs {
		ids := b.cID[:0]
		for _, id := range b.ids {
			ids = append(ids, id)
		}
		b.cID = ids
		q.Queue(sqlEventsByID, ids)
	}
	q.Queue(sqlLockHead)
	br := tx.SendBatch(ctx, &q)
	head, err := b.readPrepared(br, len(b.streams) > 0, checkIDs)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return head, err
}

func (b *batchBuffers) readPrepared(br pgx.BatchResults, streams, checkIDs bool) (eventstore.Head, error) {
	var head eventstore.Head
	if _, err := br.Exec(); err != nil {
		return head, err
	}
	if streams {
		rows, err := br.Query()
		if err != nil {
			return head, err
		}
		for rows.Next() {
			var id string
			var v int64
			if err := rows.Scan(&id, &v); err != nil {
				rows.Close()
				return head, err
			}
			if v < 0 {
				rows.Close()
				return head, &eventstore.CorruptError{Reason: fmt.Sprintf("stream %s: negative version %d in es_events", id, v)}
			}
			b.locked[id] = uint64(v)
		}
		if err := rows.Err(); err != nil {
			return head, err
		}
	}
	if checkIDs {
		rows, err := br.Query()
		if err != nil {
			return head, err
		}
		for rows.Next() {
			e, err := scanEnvelope(rows)
			if err != nil {
				rows.Close()
				return head, err
			}
			b.stored[e.EventID] = &e
		}
		if err := rows.Err(); err != nil {
			return head, err
		}
	}
	var pos int64
	var hash []byte
	if err := br.QueryRow().Scan(&pos, &hash); err != nil {
		return head, err
	}
	if pos < 0 || len(hash) != len(head.Hash) {
		return head, &eventstore.CorruptError{Position: uint64(max(pos, 0)), Reason: "es_head row is malformed"}
	}
	head.Position = uint64(pos)
	copy(head.Hash[:], hash)
	return head, nil
}

// write runs the write pipeline for staged: insert the events, advance the
// touched streams and the head to (last, lastHash), and notify listeners.
func (b *batchBuffers) write(ctx context.Context, tx pgx.Tx, staged []eventstore.Envelope, last uint64, lastHash eventstore.Hash) error {
	// The events go in with COPY in binary format, encoded here: no
	// per-value boxing, and the server parses fixed-width fields.
	buf := AppendCopy(b.copyBuf[:0], staged)
	for i := range staged {
		b.payloadBytes += len(staged[i].Payload)
	}
	b.copyBuf = buf
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(buf), sqlCopy); err != nil {
		// pgx may still be reading buf on its own goroutine when a broken
		// connection fails the copy: never reuse it.
		b.copyBuf = nil
		return fmt.Errorf("copy events: %w", err)
	}
	if cap(b.copyBuf) > 64<<20 {
		b.copyBuf = nil // do not keep a huge buffer after a huge batch
	}

	var q pgx.Batch
	q.Queue(sqlUpdateHead, int64(last), lastHash[:])
	q.Queue(sqlNotify, NotifyChannel, strconv.FormatUint(last, 10))
	br := tx.SendBatch(ctx, &q)
	var err error
	for i := 0; i < q.Len() && err == nil; i++ {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// sqlCopy loads es_events rows in EventColumns order.
const sqlCopy = "COPY es_events (" + EventColumns + ") FROM STDIN (FORMAT binary)"

// AppendCopy appends evs to buf as one complete binary COPY stream (header,
// a tuple per envelope in EventColumns order, trailer), as the committer
// sends it to "COPY es_events (EventColumns) FROM STDIN (FORMAT binary)".
// The envelopes are taken as they are: positions, versions and hashes are
// the caller's. Benchmarks use it to load a table shaped like es_events
// with exactly the committer's bytes.
func AppendCopy(buf []byte, evs []eventstore.Envelope) []byte {
	buf = append(buf, copyHeader...)
	for i := range evs {
		buf = appendCopyRow(buf, &evs[i])
	}
	return append(buf, 0xff, 0xff) // trailer: field count -1
}

// copyHeader starts a binary COPY stream: signature, flags, extension length.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// appendCopyRow appends e as one binary COPY tuple of EventColumns: a field
// count, then each field as a length and its binary form (bigint and integer
// big-endian, text as UTF-8, uuid as 16 bytes, bytea as is).
func appendCopyRow(buf []byte, e *eventstore.Envelope) []byte {
	buf = binary.BigEndian.AppendUint16(buf, 13)
	i64 := func(v int64) {
		buf = binary.BigEndian.AppendUint32(buf, 8)
		buf = binary.BigEndian.AppendUint64(buf, uint64(v))
	}
	raw := func(p []byte) {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(p)))
		buf = append(buf, p...)
	}
	str := func(s string) {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
		buf = append(buf, s...)
	}
	i64(int64(e.Position))
	str(e.StreamID)
	i64(int64(e.StreamVersion))
	str(e.Type)
	buf = binary.BigEndian.AppendUint32(buf, 4)
	buf = binary.BigEndian.AppendUint32(buf, uint32(e.SchemaVersion))
	raw(e.EventID[:])
	i64(e.Time.UnixNano())
	str(e.Actor)
	raw(e.CorrelationID[:])
	raw(e.CausationID[:])
	raw(e.Payload)
	raw(e.PrevHash[:])
	raw(e.Hash[:])
	return buf
}

// connectCommitter opens the committer connection and takes the committer
// lock on it, so that losing the connection also releases the lock: no two
// processes ever append at once. It re-reads the head and advances the bus to
// it (a previous committer, or a commit whose outcome was unknown, may have
// moved it).
func (s *Store) connectCommitter(ctx context.Context) error {
	cfg, err := pgx.ParseConfig(s.dsn)
	if err != nil {
		return fmt.Errorf("connect committer: parse dsn: %w", err)
	}
	cfg.RuntimeParams["application_name"] = "hodei-committer"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect committer: %w", err)
	}
	fail := func(err error) error {
		_ = conn.Close(context.Background())
		return err
	}
	if err := setRole(ctx, conn, s.opts.Role); err != nil {
		return fail(fmt.Errorf("connect committer: %w", err))
	}
	// The committer's statements touch a few hundred rows by key: index
	// lookups in nested loops are right whatever the planner's (often stale)
	// estimates say, and one generic plan saves planning every batch.
	if _, err := conn.Exec(ctx, committerSettings); err != nil {
		return fail(fmt.Errorf("connect committer: settings: %w", err))
	}
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", committerLockKey).Scan(&locked); err != nil {
		return fail(fmt.Errorf("connect committer: take lock: %w", err))
	}
	if !locked && !s.reclaimLock(ctx, conn) {
		return fail(fmt.Errorf("%w (%s)", ErrLockHeld, describeHolder(ctx, conn)))
	}
	head, err := s.readHead(ctx, conn)
	if err != nil {
		return fail(fmt.Errorf("connect committer: %w", err))
	}
	s.conn = conn
	s.heads.Purge() // another committer may have appended since
	s.leaderPID.Store(conn.PgConn().PID())
	s.bus.Advance(head.Position)
	return nil
}

// committerSettings are the committer session's planner settings.
const committerSettings = `SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off;
	SET plan_cache_mode = force_generic_plan`

// describeHolder names the session holding the committer lock, best effort.
func describeHolder(ctx context.Context, conn *pgx.Conn) string {
	var pid int32
	var app, addr string
	err := conn.QueryRow(ctx, `SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local socket')
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid`,
		committerLockKey>>32, committerLockKey&0xffffffff).Scan(&pid, &app, &addr)
	if err != nil {
		return "holder unknown"
	}
	return fmt.Sprintf("held by backend pid %d, application %q, client %s", pid, app, addr)
}

// dropConn closes the committer connection, which releases the lock.
func (s *Store) dropConn() {
	if s.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.conn.Close(ctx)
	s.conn = nil
	s.prevPID.Store(s.leaderPID.Load())
	s.leaderPID.Store(0)
}

// reclaimLock takes the committer lock from this store's own previous
// session: after a lost connection the server may not have noticed yet that
// the old backend's client is gone, and that backend still holds the lock.
// Only that backend is ended, never another process's committer.
func (s *Store) reclaimLock(ctx context.Context, conn *pgx.Conn) bool {
	prev := s.prevPID.Load()
	if prev == 0 {
		return false
	}
	terminated := false
	for i := 0; i < 100; i++ {
		var holder uint32
		err := conn.QueryRow(ctx, `SELECT l.pid FROM pg_locks l
			WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
			  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid`,
			committerLockKey>>32, committerLockKey&0xffffffff).Scan(&holder)
		switch {
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return false
		case err == nil && holder != prev:
			return false // another process's committer: never touched
		case err == nil && !terminated:
			if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(prev)); err != nil {
				return false
			}
			terminated = true
		}
		// No holder (the old session is gone), or ours on its way out.
		var locked bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", committerLockKey).Scan(&locked); err != nil {
			return false
		}
		if locked {
			s.opts.Logger.Info("eventstore/postgres: took the committer lock back from the lost session", "old_backend_pid", prev)
			return true
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
	return false
}
