package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrHeadMismatch is returned (inside a *HeadMismatchError) by Import when
// the log's head is not the position and hash that the imported envelopes
// follow: the log holds other events, fewer, or more. Nothing was written.
var ErrHeadMismatch = errors.New("log head does not match the import")

// HeadMismatchError says where the log's head is and where an import expected
// it.
type HeadMismatchError struct {
	// Head is the log's head when the import was refused.
	Head eventstore.Head
	// Position is the first imported position and PrevHash the hash it links
	// to: the import wanted the head at Position-1 with hash PrevHash.
	Position uint64
	PrevHash eventstore.Hash
}

func (e *HeadMismatchError) Error() string {
	return fmt.Sprintf("log head is position %d (hash %s), the import follows position %d (hash %s): %v",
		e.Head.Position, e.Head.Hash, e.Position-1, e.PrevHash, ErrHeadMismatch)
}

// Is makes errors.Is(err, ErrHeadMismatch) true.
func (e *HeadMismatchError) Is(target error) bool { return target == ErrHeadMismatch }

// importRequest is one Import call on its way through the committer.
type importRequest struct {
	envs []eventstore.Envelope
	err  error
	done chan struct{}
}

// Import writes envelopes taken from another log verbatim: their positions,
// stream versions, event ids, times, actors, correlation and causation ids,
// payloads and hashes are stored as given, not assigned. It is the write side
// of copying a log between adapters (hodei migrate); appends use Append.
//
// envs must be contiguous, each linked to the one before it
// (eventstore.VerifyLink), with correct hashes, and the first must follow the
// log's head: envs[0].Position is head+1 and envs[0].PrevHash is the head's
// hash. Each stream version must be the stream's next one. Import checks all
// of it and writes the batch in one transaction (rows, stream rows, head), or
// nothing; the events are then published to subscribers like appended ones.
// At most eventstore.MaxEventsPerWrite envelopes and
// eventstore.MaxBytesPerWrite bytes go in one call.
//
// Concurrency: an import is a request to the committer goroutine, like an
// append batch. It runs on the committer connection, under the committer
// advisory lock and the head row lock, between two append transactions and
// never inside one, so imports and appends of this or any other process do
// not interleave. An append that lands between two imports moves the head,
// and the next import is refused with ErrHeadMismatch: import into a log
// nothing else writes to. A standby waits for the committer lock (up to ctx)
// as its appends do. Once the committer has taken the request, Import waits
// for the transaction's end whatever ctx says, so a context error always
// means nothing was written.
//
// Errors: *HeadMismatchError (ErrHeadMismatch); *eventstore.CorruptError
// (ErrCorrupt) naming the position of a gap, a broken link, a wrong hash or
// a stream version that does not follow the log's; ErrInvalidEvent for a
// field the log cannot store; ErrIdempotencyConflict when an event id is
// already stored; ErrReadOnly; eventstore.ErrClosed; ErrCommitUnknown
// (retry: the head then says whether it was written); a context or
// database error.
func (s *Store) Import(ctx context.Context, envs []eventstore.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	if err := checkImport(envs); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return eventstore.ErrClosed
	}
	if s.opts.ReadOnly {
		s.mu.RUnlock()
		return fmt.Errorf("import: %w", ErrReadOnly)
	}
	s.inflight.Add(1)
	s.mu.RUnlock()
	defer s.inflight.Done()

	r := &importRequest{envs: envs, done: make(chan struct{})}
	select {
	case s.imports <- r: // unbuffered: the committer has it now
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return eventstore.ErrClosed
	}
	<-r.done
	return r.err
}

// checkImport checks what can be checked without the database: limits, the
// fields PostgreSQL must store, hashes and the links inside the batch.
func checkImport(envs []eventstore.Envelope) error {
	if len(envs) > eventstore.MaxEventsPerWrite {
		return fmt.Errorf("import: %d events, at most %d per call: %w", len(envs), eventstore.MaxEventsPerWrite, eventstore.ErrInvalidEvent)
	}
	total := 0
	seen := make(map[eventstore.ID]uint64, len(envs))
	for i := range envs {
		e := &envs[i]
		if err := checkEnvelope(e); err != nil {
			return err
		}
		if i == 0 {
			if eventstore.ChainHash(e) != e.Hash {
				return fmt.Errorf("import: %w", &eventstore.CorruptError{Position: e.Position, Reason: "hash does not match content"})
			}
		} else if err := eventstore.VerifyLink(envs[i-1].Position, envs[i-1].Hash, e); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if p, dup := seen[e.EventID]; dup {
			return fmt.Errorf("import position %d: event id %s is also at position %d: %w", e.Position, e.EventID, p, eventstore.ErrIdempotencyConflict)
		}
		seen[e.EventID] = e.Position
		total += len(e.Payload) + len(e.Type) + len(e.Actor)
	}
	if total > eventstore.MaxBytesPerWrite {
		return fmt.Errorf("import: %d bytes, at most %d per call: %w", total, eventstore.MaxBytesPerWrite, eventstore.ErrInvalidEvent)
	}
	return nil
}

// checkEnvelope applies the append rules to a stored envelope, so anything a
// log accepted imports, plus what only envelopes have.
func checkEnvelope(e *eventstore.Envelope) error {
	bad := func(reason string) error {
		return fmt.Errorf("import position %d: %s: %w", e.Position, reason, eventstore.ErrInvalidEvent)
	}
	switch {
	case e.Position == 0 || e.Position > math.MaxInt64:
		return bad(fmt.Sprintf("position %d out of range", e.Position))
	case e.StreamVersion == 0 || e.StreamVersion > math.MaxInt64:
		return bad(fmt.Sprintf("stream version %d out of range", e.StreamVersion))
	case e.Time.IsZero() || e.Time.Year() < 1970 || e.Time.Year() > 2262:
		return bad(fmt.Sprintf("time %s is outside 1970-2262", e.Time))
	}
	d := eventstore.EventData{ID: e.EventID, Type: e.Type, SchemaVersion: e.SchemaVersion, Time: e.Time,
		Actor: e.Actor, CorrelationID: e.CorrelationID, CausationID: e.CausationID, Payload: e.Payload}
	err := validate(&eventstore.AppendRequest{Stream: e.StreamID, Expected: eventstore.Any, Events: []eventstore.EventData{d}})
	var ie *eventstore.InvalidEventError
	if errors.As(err, &ie) {
		return bad(fmt.Sprintf("stream %q: %s: %s", e.StreamID, ie.Field, ie.Reason))
	}
	return err
}

// runImport commits one import on the committer goroutine.
func (s *Store) runImport(r *importRequest) {
	defer close(r.done)
	first, last := r.envs[0].Position, r.envs[len(r.envs)-1].Position
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommitTimeout)
	defer cancel()
	if s.conn == nil {
		if err := s.connectCommitter(ctx); err != nil {
			r.err = fmt.Errorf("import positions %d-%d: %w", first, last, err)
			return
		}
	}
	err := s.importTx(ctx, r.envs)
	if err == nil {
		return
	}
	var te *txError
	if errors.As(err, &te) {
		s.recover(ctx)
		var pe *pgconn.PgError
		if te.step == "write" && errors.As(err, &pe) && pe.Code == "23505" {
			err = fmt.Errorf("already stored (%s %s): %w", pe.ConstraintName, pe.Detail, eventstore.ErrIdempotencyConflict)
		}
	}
	r.err = fmt.Errorf("import positions %d-%d: %w", first, last, err)
}

// importTx writes envs in one transaction with the append path's statements:
// read the streams' versions and lock the head, check that envs follow the
// head and the streams' versions, COPY the rows, advance the head, notify,
// commit, publish. A refusal rolls back: nothing is written.
func (s *Store) importTx(ctx context.Context, envs []eventstore.Envelope) error {
	b := &s.buf
	b.reset()
	for i := range envs {
		id := envs[i].StreamID
		if _, ok := b.locked[id]; !ok {
			b.locked[id] = 0 // until prepare reads the stream's version
			b.streams = append(b.streams, id)
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
	head, err := b.prepare(ctx, tx, false)
	if err != nil {
		return &txError{step: "lock", err: err}
	}
	if first := &envs[0]; head.Position != first.Position-1 || head.Hash != first.PrevHash {
		return &HeadMismatchError{Head: head, Position: first.Position, PrevHash: first.PrevHash}
	}
	clear(b.versions)
	for id, v := range b.locked {
		b.versions[id] = v
	}
	clear(b.touched)
	for i := range envs {
		e := &envs[i]
		if want := b.versions[e.StreamID] + 1; e.StreamVersion != want {
			return &eventstore.CorruptError{Position: e.Position, Reason: fmt.Sprintf(
				"stream %s version %d does not follow the log's version %d of it", e.StreamID, e.StreamVersion, want-1)}
		}
		b.versions[e.StreamID] = e.StreamVersion
		b.touched[e.StreamID] = e.Position
	}
	last := &envs[len(envs)-1]
	if err := b.write(ctx, tx, envs, last.Position, last.Hash); err != nil {
		return &txError{step: "write", err: err}
	}
	if fn := s.beforeCommit.Load(); fn != nil {
		if err := (*fn)(); err != nil {
			return &txError{step: "before commit", err: err}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		committed = true
		var pe *pgconn.PgError
		unknown := s.conn.IsClosed() || !errors.As(err, &pe)
		return &txError{step: "commit", err: err, unknown: unknown}
	}
	committed = true
	for id := range b.touched {
		s.heads.Add(id, b.versions[id])
	}

	// Publish copies: envs and their payloads stay the caller's.
	pub := make([]eventstore.Envelope, len(envs))
	copy(pub, envs)
	arena := make([]byte, 0, b.payloadBytes)
	for i := range pub {
		p := pub[i].Payload
		if len(p) == 0 {
			pub[i].Payload = nil
			continue
		}
		arena = append(arena, p...)
		pub[i].Payload = arena[len(arena)-len(p) : len(arena) : len(arena)]
	}
	s.bus.Publish(pub)
	return nil
}
