package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultRole is the role a Store switches to (SET ROLE) on every connection
// unless Options.Role names another. Migration 1 creates it.
const DefaultRole = "hodei_writer"

// NotifyChannel is the LISTEN/NOTIFY channel an append transaction notifies
// with the new head position as payload.
const NotifyChannel = "es_appended"

// committerLockKey is the session advisory lock the committer holds for as
// long as it writes ("hodeies" + 1).
const committerLockKey int64 = 0x686f646569657301

// ErrLockHeld is returned by Open (and by appends after a lost connection)
// when another process holds the committer lock of the database: only one
// process appends at a time. Set Options.Standby to wait for it instead.
var ErrLockHeld = errors.New("another process is the event log's committer")

// ErrCommitUnknown is returned when the connection failed while COMMIT was in
// flight: the append may or may not be stored. Retrying it with the same
// event ids is safe and returns the original result if it was.
var ErrCommitUnknown = errors.New("commit outcome unknown")

// ErrReadOnly is returned by appends to a Store opened with Options.ReadOnly.
var ErrReadOnly = errors.New("event store opened read-only")

// Options configures a Store. The zero value is usable.
type Options struct {
	// ReadOnly opens the log for reading and subscribing only, as audit and
	// rebuild tools do beside a running server: Open neither migrates (it
	// checks that the schema is current) nor takes the committer lock, and
	// appends fail with ErrReadOnly.
	ReadOnly bool

	// MigrateDSN, when set, is the connection Open applies schema migrations
	// through (a superuser, or the owner of the database with CREATEROLE).
	// Empty means the dsn given to Open, which then needs those rights only
	// while the schema is behind this binary.
	MigrateDSN string

	// Role is the role every connection switches to with SET ROLE after
	// connecting (default DefaultRole). The login role of the dsn must be a
	// member of it, or a superuser.
	Role string

	// Standby makes Open succeed while another process holds the committer
	// lock: reads and subscriptions work at once, and appends wait (up to
	// their context) until this process takes the lock over. When false, Open
	// fails with ErrLockHeld instead.
	Standby bool

	// LockPollInterval is how often a standby tries to take the committer lock
	// (default 1s).
	LockPollInterval time.Duration

	// Clock gives the time for events appended with a zero Time (default
	// time.Now).
	Clock func() time.Time

	// RingSize is the Bus ring size (default eventstore.DefaultRingSize).
	RingSize int

	// PollInterval is how often a waiting subscription re-reads the database,
	// in case a NOTIFY was missed (default 500ms).
	PollInterval time.Duration

	// BeforeCommit, when set, is called before each COMMIT, after the batch's
	// rows are written; an error rolls the transaction back and fails the
	// batch as a database error would. It is a fault-injection hook for tests.
	BeforeCommit func() error

	// MaxBatchEvents and MaxBatchBytes bound one group-commit transaction
	// (defaults 8192 events and 4 MiB of payload). The first request of a
	// batch is always taken whole.
	MaxBatchEvents int
	MaxBatchBytes  int

	// GroupCommitWait is the most a batch waits for the callers of the
	// previous batch to append again (default 1ms; negative: never wait).
	// See the committer in commit.go.
	GroupCommitWait time.Duration

	// CommitTimeout bounds one commit transaction, including reconnecting
	// (default 30s). Appenders wait at most this long once their request is
	// in a transaction.
	CommitTimeout time.Duration

	// MaxConns is the size of the read pool (default 8).
	MaxConns int32

	// Logger receives reconnects and lock changes (default: discarded).
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Role == "" {
		o.Role = DefaultRole
	}
	if o.LockPollInterval <= 0 {
		o.LockPollInterval = time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 500 * time.Millisecond
	}
	if o.MaxBatchEvents <= 0 {
		o.MaxBatchEvents = 8192
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 4 << 20
	}
	if o.GroupCommitWait == 0 {
		o.GroupCommitWait = time.Millisecond
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 30 * time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Store is an event log in PostgreSQL. See the package documentation.
type Store struct {
	opts Options
	dsn  string
	pool *pgxpool.Pool
	bus  *eventstore.Bus

	beforeCommit atomic.Pointer[func() error]

	// imports is unbuffered: Import hands its request to the committer
	// goroutine, which runs it between append batches (import.go).
	imports chan *importRequest

	reqs     chan *request
	mu       sync.RWMutex // guards closed against submitters.Add
	closed   bool
	closing  chan struct{} // closed first by Close: stop submitting
	quit     chan struct{} // closed once no submitter is left: committer drains and exits
	quitCtx  context.Context
	stopQuit context.CancelFunc
	inflight sync.WaitGroup // appenders between the closed check and the hand-over

	// Owned by the committer goroutine.
	conn *pgx.Conn // holds the committer lock; nil while not the committer
	buf  batchBuffers
	// heads caches streams' versions as committed. It is exact while conn
	// holds the committer lock (nobody else appends) and is emptied whenever
	// the committer connects and after any failed transaction.
	heads     *simplelru.LRU[string, uint64]
	prevBatch int // requests in the previous batch

	leaderPID       atomic.Uint32 // backend pid of conn, 0 when none
	prevPID         atomic.Uint32 // backend pid of the last committer session, for reclaimLock
	commits         atomic.Uint64 // committed transactions that held events
	committedEvents atomic.Uint64
	committerDone   chan struct{}

	listenCancel context.CancelFunc
	listenerDone chan struct{}
}

var _ eventstore.Store = (*Store)(nil)

// Open connects to the database at dsn, applies pending migrations (through
// opts.MigrateDSN when set), takes the committer lock (or, with
// opts.Standby, waits for it in the background) and starts the committer
// and the NOTIFY listener. Close releases everything.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	opts.defaults()
	if !validIdent(opts.Role) {
		return nil, fmt.Errorf("open: role %q: want a plain SQL identifier", opts.Role)
	}
	mdsn := opts.MigrateDSN
	if mdsn == "" {
		mdsn = dsn
	}
	if opts.ReadOnly {
		if err := checkSchema(ctx, dsn); err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
	} else if err := migrate(ctx, mdsn); err != nil {
		return nil, fmt.Errorf("open: migrate: %w", err)
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open: parse dsn: %w", err)
	}
	pcfg.MaxConns = opts.MaxConns
	pcfg.ConnConfig.RuntimeParams["application_name"] = "hodei-reader"
	role := opts.Role
	pcfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return setRole(ctx, c, role) }
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	s := &Store{
		opts:          opts,
		dsn:           dsn,
		pool:          pool,
		reqs:          make(chan *request, 1024),
		imports:       make(chan *importRequest),
		closing:       make(chan struct{}),
		quit:          make(chan struct{}),
		committerDone: make(chan struct{}),
		listenerDone:  make(chan struct{}),
	}
	if s.heads, err = simplelru.NewLRU[string, uint64](streamHeadCache, nil); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open: %w", err)
	}
	if opts.BeforeCommit != nil {
		fn := opts.BeforeCommit
		s.beforeCommit.Store(&fn)
	}
	head, err := s.readHead(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open: %w", err)
	}
	s.bus = eventstore.NewBus(opts.RingSize, head.Position)
	if opts.ReadOnly {
		close(s.committerDone)
	} else if err := s.connectCommitter(ctx); err != nil && !(opts.Standby && errors.Is(err, ErrLockHeld)) {
		pool.Close()
		if errors.Is(err, ErrLockHeld) {
			return nil, fmt.Errorf("open: %w; set Options.Standby to wait for it", err)
		}
		return nil, fmt.Errorf("open: %w", err)
	}
	s.quitCtx, s.stopQuit = context.WithCancel(context.Background())
	lctx, cancel := context.WithCancel(context.Background())
	s.listenCancel = cancel
	go s.listen(lctx)
	if !opts.ReadOnly {
		go s.run()
	}
	return s, nil
}

// SetBeforeCommit replaces the fault-injection hook (see
// Options.BeforeCommit); nil removes it.
func (s *Store) SetBeforeCommit(fn func() error) {
	if fn == nil {
		s.beforeCommit.Store(nil)
		return
	}
	s.beforeCommit.Store(&fn)
}

// Stats counts what this Store has committed since Open.
type Stats struct {
	// Commits is the number of committed transactions that held events, and
	// Events the number of events they held: their ratio is the batch size
	// group commit achieved.
	Commits, Events uint64
}

// Stats returns the store's commit counters.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Events: s.committedEvents.Load()}
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	out, err := s.AppendMany(ctx, []eventstore.AppendRequest{{Stream: stream, Expected: expected, Events: events}})
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return out[0].Result, out[0].Err
}

// AppendMany implements eventstore.Store. The requests travel to the
// committer together and land in one transaction (possibly with other
// callers' requests). Once the committer has taken them, the call waits for
// the transaction's end whatever ctx says, so a returned context error always
// means nothing was written.
func (s *Store) AppendMany(ctx context.Context, reqs []eventstore.AppendRequest) ([]eventstore.AppendOutcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, eventstore.ErrClosed
	}
	if s.opts.ReadOnly {
		s.mu.RUnlock()
		return nil, fmt.Errorf("append: %w", ErrReadOnly)
	}
	s.inflight.Add(1)
	s.mu.RUnlock()
	defer s.inflight.Done()

	r := &request{ctx: ctx, reqs: reqs, out: make([]eventstore.AppendOutcome, len(reqs)), done: make(chan struct{})}
	valid := 0
	for i := range reqs {
		if err := validate(&reqs[i]); err != nil {
			r.out[i].Err = err
			continue
		}
		valid++
		for j := range reqs[i].Events {
			r.events++
			r.bytes += len(reqs[i].Events[j].Payload)
		}
	}
	if valid == 0 {
		return r.out, nil
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closing:
		return nil, eventstore.ErrClosed
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqPending, reqCancelled) || r.state.Load() == reqCancelled {
			return nil, ctx.Err()
		}
		<-r.done // taken by a transaction: its outcome is the answer
	}
	if r.err != nil {
		return nil, r.err
	}
	return r.out, nil
}

// validate checks one request: the port's limits plus what PostgreSQL text
// cannot hold (a NUL byte; the port already refuses control characters in
// stream ids and types).
func validate(r *eventstore.AppendRequest) error {
	if err := eventstore.ValidateAppend(r.Stream, r.Expected, r.Events); err != nil {
		return err
	}
	for i := range r.Events {
		if strings.IndexByte(r.Events[i].Actor, 0) >= 0 {
			return &eventstore.InvalidEventError{Stream: r.Stream, Index: i, Field: "actor",
				Reason: "contains a NUL byte, which PostgreSQL text cannot store"}
		}
	}
	return nil
}

// EventColumns are the es_events columns in Envelope order, as scanEnvelope
// reads them and AppendCopy encodes them.
const EventColumns = `global_position, stream_id, stream_version, event_type, schema_version, event_id,
	recorded_at, actor, correlation_id, causation_id, payload, prev_hash, hash`

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.Envelope, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	if from < 1 {
		from = 1
	}
	if limit <= 0 || from > math.MaxInt64 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, "SELECT "+EventColumns+
		" FROM es_events WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3",
		stream, int64(from), limit)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	out, err := scanEnvelopes(rows, limit)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	return out, nil
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, from uint64, limit int) ([]eventstore.Envelope, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	if from < 1 {
		from = 1
	}
	if limit <= 0 || from > math.MaxInt64 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, "SELECT "+EventColumns+
		" FROM es_events WHERE global_position >= $1 ORDER BY global_position LIMIT $2", int64(from), limit)
	if err != nil {
		return nil, fmt.Errorf("read all from %d: %w", from, err)
	}
	out, err := scanEnvelopes(rows, limit)
	if err != nil {
		return nil, fmt.Errorf("read all from %d: %w", from, err)
	}
	return out, nil
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (eventstore.Head, error) {
	if err := s.readable(); err != nil {
		return eventstore.Head{}, err
	}
	return s.readHead(ctx, s.pool)
}

// rowQueryer is a connection or a pool.
type rowQueryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) readHead(ctx context.Context, q rowQueryer) (eventstore.Head, error) {
	var pos int64
	var hash []byte
	if err := q.QueryRow(ctx, "SELECT last_position, last_hash FROM es_head").Scan(&pos, &hash); err != nil {
		return eventstore.Head{}, fmt.Errorf("read head: %w", err)
	}
	if pos < 0 || len(hash) != len(eventstore.Hash{}) {
		return eventstore.Head{}, &eventstore.CorruptError{Position: uint64(max(pos, 0)), Reason: "es_head row is malformed"}
	}
	h := eventstore.Head{Position: uint64(pos)}
	copy(h.Hash[:], hash)
	return h, nil
}

// Subscribe implements eventstore.Store. Subscriptions are woken by this
// process's commits, by NOTIFY from another process's, and poll every
// Options.PollInterval in case a notification was missed.
func (s *Store) Subscribe(after uint64) *eventstore.Subscription {
	return eventstore.NewSubscription(s, s.bus, after, eventstore.SubscriptionOptions{PollInterval: s.opts.PollInterval})
}

func (s *Store) readable() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return eventstore.ErrClosed
	}
	return nil
}

// Close implements eventstore.Store: it lets appends already handed to the
// committer finish, fails those still waiting for the committer lock with
// ErrClosed, releases the committer lock and closes every connection.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	s.stopQuit() // a standby stops waiting for the lock
	s.inflight.Wait()
	close(s.quit)
	<-s.committerDone
	s.listenCancel()
	<-s.listenerDone
	s.pool.Close()
	return nil
}

// scanEnvelopes reads rows of EventColumns. Rows that break the table's own
// invariants are reported as *eventstore.CorruptError naming the position.
func scanEnvelopes(rows pgx.Rows, limit int) ([]eventstore.Envelope, error) {
	defer rows.Close()
	out := make([]eventstore.Envelope, 0, min(limit, 1024))
	for rows.Next() {
		e, err := scanEnvelope(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func scanEnvelope(row pgx.Row) (eventstore.Envelope, error) {
	var (
		pos, ver, at     int64
		schema           int32
		id, corr, caus   [16]byte
		prev, hash       []byte
		stream, typ, who string
		e                eventstore.Envelope
	)
	if err := row.Scan(&pos, &stream, &ver, &typ, &schema, &id, &at, &who, &corr, &caus, &e.Payload, &prev, &hash); err != nil {
		return e, err
	}
	bad := func(reason string) (eventstore.Envelope, error) {
		return eventstore.Envelope{}, &eventstore.CorruptError{Position: uint64(max(pos, 0)), Reason: reason}
	}
	switch {
	case pos <= 0:
		return bad("non-positive global_position")
	case ver <= 0:
		return bad("non-positive stream_version")
	case schema < 1 || schema > math.MaxUint16:
		return bad(fmt.Sprintf("schema_version %d out of range", schema))
	case at < 0:
		return bad("recorded_at before 1970")
	case len(prev) != len(e.PrevHash) || len(hash) != len(e.Hash):
		return bad("hash of the wrong length")
	}
	e.Position = uint64(pos)
	e.StreamID = stream
	e.StreamVersion = uint64(ver)
	e.Type = typ
	e.SchemaVersion = uint16(schema)
	e.EventID = id
	e.Time = time.Unix(0, at).UTC()
	e.Actor = who
	e.CorrelationID = corr
	e.CausationID = caus
	if len(e.Payload) == 0 {
		e.Payload = nil // as the other adapters decode an empty payload
	}
	copy(e.PrevHash[:], prev)
	copy(e.Hash[:], hash)
	return e, nil
}

// setRole switches c to role (a validated identifier).
func setRole(ctx context.Context, c *pgx.Conn, role string) error {
	if _, err := c.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
		return fmt.Errorf("set role %s: %w (the login role must be a member: GRANT %s TO <login role>)", role, err, role)
	}
	return nil
}

// validIdent reports whether s is a plain lower-case SQL identifier.
func validIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || r >= 'a' && r <= 'z':
		case i > 0 && r >= '0' && r <= '9':
		default:
			return false
		}
	}
	return true
}
