package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/logstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NotifyChannel is the LISTEN/NOTIFY channel on which stores tell each other
// which logs changed (payload: the sender's id, then one "job/attempt" per
// line). It is a wake-up hint only; followers also poll.
const NotifyChannel = "hodei_job_logs"

// Defaults for Options' zero values.
const (
	DefaultPollInterval   = 500 * time.Millisecond
	DefaultNotifyInterval = 5 * time.Millisecond
	DefaultOpTimeout      = 30 * time.Second
	DefaultMaxConns       = 8
	DefaultMaxCachedLogs  = 4096
)

// Options configures a Store. The zero value gives the defaults.
type Options struct {
	// MaxBytesPerAttempt caps the bytes stored for one attempt's log, as in
	// logstore.Options: 0 means logstore.DefaultMaxBytesPerAttempt (64 MiB),
	// negative means no limit.
	MaxBytesPerAttempt int64

	// PollInterval is how often a waiting follower re-reads the database in
	// case a notification from another process was missed (default 500ms).
	PollInterval time.Duration

	// NotifyInterval is the least time between two NOTIFYs this store sends:
	// changes in between are coalesced into one (default 5ms). Followers in
	// this process are woken at once, without it.
	NotifyInterval time.Duration

	// OpTimeout bounds each database call of Append, Finish, Seal, Stat,
	// Read, Attempts and Sync (default 30s).
	OpTimeout time.Duration

	// MaxConns is the size of each of the two connection pools (appends, and
	// everything else; default 8). One more connection listens.
	MaxConns int32

	// MaxCachedLogs bounds the logs whose state is kept in memory between
	// calls (default 4096); beyond it an idle log's state is reloaded on use.
	MaxCachedLogs int

	// Clock gives the time recorded by Finish and Seal (default time.Now).
	Clock func() time.Time

	// Logger receives listener reconnects and notification errors (default:
	// discarded).
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.NotifyInterval <= 0 {
		o.NotifyInterval = DefaultNotifyInterval
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxCachedLogs <= 0 {
		o.MaxCachedLogs = DefaultMaxCachedLogs
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Store keeps job attempt logs in PostgreSQL. It is safe for concurrent use.
// See the package documentation.
type Store struct {
	opts  Options
	dsn   string
	limit uint64 // 0: none
	id    string // this store's id in NOTIFY payloads

	pool *pgxpool.Pool // synchronous commit: Finish, Seal, truncation, reads
	fast *pgxpool.Pool // synchronous_commit = off: appends and notifications

	// life is held shared by every call while it uses the pools and
	// exclusively by Close.
	life      sync.RWMutex
	closed    bool          // guarded by life
	closing   chan struct{} // closed first thing in Close: wakes followers
	closeOnce sync.Once
	stopBG    context.CancelFunc
	bg        sync.WaitGroup

	mu   sync.Mutex
	logs map[key]*entry

	writes chan *write // appends for the writers (batch.go)

	pendMu  sync.Mutex
	pending map[key]struct{} // logs changed since the last NOTIFY
	kick    chan struct{}    // capacity 1: the notifier has work
}

var _ logstore.Logs = (*Store)(nil)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Open connects to the database at dsn, creates or migrates the log tables
// (recorded in MigrationsTable) and starts the notifier and the listener.
// The DSN's role needs to create tables the first time. Close releases
// everything.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	opts.defaults()
	s := &Store{
		opts:    opts,
		dsn:     dsn,
		closing: make(chan struct{}),
		logs:    make(map[key]*entry),
		pending: make(map[key]struct{}),
		kick:    make(chan struct{}, 1),
		writes:  make(chan *write),
	}
	switch {
	case opts.MaxBytesPerAttempt == 0:
		s.limit = logstore.DefaultMaxBytesPerAttempt
	case opts.MaxBytesPerAttempt > 0:
		s.limit = uint64(opts.MaxBytesPerAttempt)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open log store: parse dsn: %w", err)
	}
	cfg.RuntimeParams["application_name"] = "hodei-logs-migrate"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open log store: connect: %w", err)
	}
	err = migrate(ctx, conn)
	conn.Close(context.Background())
	if err != nil {
		return nil, fmt.Errorf("open log store: migrate: %w", err)
	}
	if s.pool, err = newPool(ctx, dsn, "hodei-logs", opts.MaxConns, nil); err != nil {
		return nil, fmt.Errorf("open log store: %w", err)
	}
	if s.fast, err = newPool(ctx, dsn, "hodei-logs-append", opts.MaxConns,
		map[string]string{"synchronous_commit": "off"}); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open log store: %w", err)
	}
	var pid uint32
	if err := s.pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		s.pool.Close()
		s.fast.Close()
		return nil, fmt.Errorf("open log store: %w", err)
	}
	s.id = strconv.FormatInt(time.Now().UnixNano(), 36) + "." + strconv.FormatUint(uint64(pid), 36)
	bg, stop := context.WithCancel(context.Background())
	s.stopBG = stop
	s.bg.Add(2 + int(opts.MaxConns))
	go s.notifier(bg)
	go s.listen(bg)
	for range opts.MaxConns {
		go s.writer(bg)
	}
	return s, nil
}

func newPool(ctx context.Context, dsn, app string, maxConns int32, params map[string]string) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	pcfg.MaxConns = maxConns
	pcfg.ConnConfig.RuntimeParams["application_name"] = app
	for k, v := range params {
		pcfg.ConnConfig.RuntimeParams[k] = v
	}
	return pgxpool.NewWithConfig(ctx, pcfg)
}

// enter admits a call; exit must follow when it returns true.
func (s *Store) enter() bool {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return false
	}
	return true
}

func (s *Store) exit() { s.life.RUnlock() }

func (s *Store) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.opts.OpTimeout)
}

// Close makes every acknowledged byte durable, ends all followers (their
// Read returns logstore.ErrClosed), sends the last notifications and closes
// the connections. Later calls return ErrClosed; Close itself returns nil
// when called again.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return nil
	}
	s.closed = true
	s.life.Unlock()
	err := s.sync()
	s.stopBG()
	s.bg.Wait()
	s.fast.Close()
	s.pool.Close()
	if err != nil {
		return fmt.Errorf("close log store: %w", err)
	}
	return nil
}

// Sync makes every acknowledged byte durable now: it commits a transaction
// synchronously, which flushes the write-ahead log up to it, and with it the
// asynchronously committed appends before it. PostgreSQL's WAL writer does
// the same on its own within three wal_writer_delay (200ms by default).
func (s *Store) Sync() error {
	if !s.enter() {
		return fmt.Errorf("sync: store %w", logstore.ErrClosed)
	}
	defer s.exit()
	if err := s.sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

func (s *Store) sync() error {
	ctx, cancel := s.opCtx()
	defer cancel()
	// txid_current assigns a transaction id, so COMMIT writes a commit record
	// and (synchronous_commit on) waits for the WAL flush up to it.
	_, err := s.pool.Exec(ctx, "SELECT txid_current()")
	return err
}

// acquire returns k's entry with a reference the caller gives back with
// release.
func (s *Store) acquire(k key) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.logs[k]
	if e == nil {
		e = &entry{key: k}
		s.logs[k] = e
	}
	e.refs++
	return e
}

// release gives back a reference. An unreferenced entry is dropped unless
// it caches a live log's row (which spares the next Append a read) and the
// cache has room; a dropped entry is reloaded from the database on use.
func (s *Store) release(e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.refs--
	if e.refs > 0 || s.logs[e.key] != e {
		return
	}
	if !e.worth.Load() || len(s.logs) > s.opts.MaxCachedLogs {
		delete(s.logs, e.key)
	}
}

// wake wakes this process's followers of k (a change seen by the listener).
func (s *Store) wake(k key) {
	s.mu.Lock()
	e := s.logs[k]
	s.mu.Unlock()
	if e != nil {
		e.wake()
	}
}

// changed wakes this process's followers of e and queues a NOTIFY for the
// followers of other processes.
func (s *Store) changed(e *entry) {
	e.wake()
	s.pendMu.Lock()
	s.pending[e.key] = struct{}{}
	s.pendMu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// newKey validates a job id and an attempt (0 allowed when latestOK).
func newKey(jobID string, attempt uint32, latestOK bool) (key, error) {
	if err := logstore.CheckJobID(jobID); err != nil {
		return key{}, err
	}
	if err := logstore.CheckAttempt(attempt, latestOK); err != nil {
		return key{}, err
	}
	return key{job: jobID, attempt: attempt}, nil
}

// checkOffset rejects offsets PostgreSQL's bigint cannot hold.
func checkOffset(off uint64, n int) error {
	end := off + uint64(n)
	if end < off {
		return &logstore.FieldError{Field: "offset", Value: strconv.FormatUint(off, 10),
			Reason: fmt.Sprintf("offset plus %d bytes overflows", n)}
	}
	if end > math.MaxInt64 {
		return &logstore.FieldError{Field: "offset", Value: strconv.FormatUint(off, 10),
			Reason: fmt.Sprintf("offset plus %d bytes is beyond %d", n, int64(math.MaxInt64))}
	}
	return nil
}

// Append implements logstore.Logs.Append. The chunk and the log's new size,
// received count and CRC are written by one statement, committed
// asynchronously (synchronous_commit = off): when Append returns the bytes
// are committed and visible to every reader and survive a crash of the
// server process or of PostgreSQL's backends; a crash of the database host
// may lose the last fraction of a second, which the agent resends after its
// next chunk's *GapError. Appends to one log are serialised; different logs
// proceed in parallel, each on its own connection.
func (s *Store) Append(jobID string, attempt uint32, offset uint64, data []byte) (uint64, error) {
	k, err := newKey(jobID, attempt, false)
	if err != nil {
		return 0, fmt.Errorf("append: %w", err)
	}
	if err := checkOffset(offset, len(data)); err != nil {
		return 0, fmt.Errorf("append %s: %w", k, err)
	}
	if !s.enter() {
		return 0, fmt.Errorf("append %s: store %w", k, logstore.ErrClosed)
	}
	defer s.exit()
	e := s.acquire(k)
	defer s.release(e)
	ack, err := s.append(e, offset, data)
	if err != nil {
		return ack, fmt.Errorf("append %s: %w", k, err)
	}
	return ack, nil
}

// Finish implements logstore.Logs.Finish. The record is committed
// synchronously before Finish returns.
func (s *Store) Finish(jobID string, attempt uint32, totalBytes uint64, crc32c uint32) error {
	k, err := newKey(jobID, attempt, false)
	if err != nil {
		return fmt.Errorf("finish: %w", err)
	}
	if totalBytes > math.MaxInt64 {
		return fmt.Errorf("finish %s: %w", k, &logstore.FieldError{Field: "total_bytes",
			Value: strconv.FormatUint(totalBytes, 10), Reason: "too large"})
	}
	if !s.enter() {
		return fmt.Errorf("finish %s: store %w", k, logstore.ErrClosed)
	}
	defer s.exit()
	e := s.acquire(k)
	defer s.release(e)
	if err := s.finish(e, totalBytes, crc32c); err != nil {
		return fmt.Errorf("finish %s: %w", k, err)
	}
	return nil
}

// Seal implements logstore.Logs.Seal. The record is committed synchronously
// before Seal returns.
func (s *Store) Seal(jobID string, attempt uint32) error {
	k, err := newKey(jobID, attempt, false)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if !s.enter() {
		return fmt.Errorf("seal %s: store %w", k, logstore.ErrClosed)
	}
	defer s.exit()
	e := s.acquire(k)
	defer s.release(e)
	if err := s.seal(e); err != nil {
		return fmt.Errorf("seal %s: %w", k, err)
	}
	return nil
}

// Stat implements logstore.Logs.Stat, from the database.
func (s *Store) Stat(jobID string, attempt uint32) (logstore.Stat, error) {
	k, err := newKey(jobID, attempt, true)
	if err != nil {
		return logstore.Stat{}, fmt.Errorf("stat: %w", err)
	}
	if !s.enter() {
		return logstore.Stat{}, fmt.Errorf("stat %s: store %w", k, logstore.ErrClosed)
	}
	defer s.exit()
	ctx, cancel := s.opCtx()
	defer cancel()
	q := `SELECT ` + stateColumns + ` FROM job_logs WHERE job_id = $1 AND attempt = $2`
	args := []any{k.job, int64(k.attempt)}
	if k.attempt == 0 {
		q = `SELECT ` + stateColumns + ` FROM job_logs WHERE job_id = $1 ORDER BY attempt DESC LIMIT 1`
		args = args[:1]
	}
	st, err := scanState(s.pool.QueryRow(ctx, q, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return logstore.Stat{}, fmt.Errorf("stat %s: %w", k, logstore.ErrNotFound)
	}
	if err != nil {
		return logstore.Stat{}, fmt.Errorf("stat %s: %w", k, err)
	}
	out := logstore.Stat{
		JobID:       k.job,
		Attempt:     st.attempt,
		Size:        st.size,
		Received:    st.received,
		Truncated:   st.truncated,
		TruncatedAt: st.truncatedAt,
		Finished:    st.finished,
		Sealed:      st.sealed,
		FinishedAt:  st.finishedAt,
		AgentBytes:  st.agentBytes,
		AgentCRC:    st.agentCRC,
		CRCChecked:  st.crcChecked,
		Mismatch:    st.mismatch,
	}
	if st.truncated {
		out.Dropped = st.received - st.truncatedAt
	}
	return out, nil
}

// Read implements logstore.Logs.Read with one range query on the chunks'
// primary key.
func (s *Store) Read(jobID string, attempt uint32, offset uint64, p []byte) (int, error) {
	k, err := newKey(jobID, attempt, true)
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	if err := checkOffset(offset, len(p)); err != nil {
		return 0, fmt.Errorf("read %s: %w", k, err)
	}
	if !s.enter() {
		return 0, fmt.Errorf("read %s: store %w", k, logstore.ErrClosed)
	}
	defer s.exit()
	ctx, cancel := s.opCtx()
	defer cancel()
	if k, err = s.resolve(ctx, k); err != nil {
		return 0, fmt.Errorf("read %s: %w", k, err)
	}
	r, err := s.readAt(ctx, k, offset, p)
	switch {
	case err != nil:
		return 0, fmt.Errorf("read %s: %w", k, err)
	case !r.found:
		return 0, fmt.Errorf("read %s: %w", k, logstore.ErrNotFound)
	}
	return r.n, r.endErr(offset, false)
}

// Attempts implements logstore.Logs.Attempts.
func (s *Store) Attempts(jobID string) ([]uint32, error) {
	if err := logstore.CheckJobID(jobID); err != nil {
		return nil, fmt.Errorf("attempts: %w", err)
	}
	if !s.enter() {
		return nil, fmt.Errorf("attempts of job %s: store %w", jobID, logstore.ErrClosed)
	}
	defer s.exit()
	ctx, cancel := s.opCtx()
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT attempt FROM job_logs WHERE job_id = $1 ORDER BY attempt", jobID)
	if err != nil {
		return nil, fmt.Errorf("attempts of job %s: %w", jobID, err)
	}
	as, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("attempts of job %s: %w", jobID, err)
	}
	out := make([]uint32, len(as))
	for i, a := range as {
		out[i] = uint32(a)
	}
	return slices.Clip(out), nil
}

// resolve turns attempt 0 into the job's latest attempt with a log.
func (s *Store) resolve(ctx context.Context, k key) (key, error) {
	if k.attempt != 0 {
		return k, nil
	}
	var a *int64
	if err := s.pool.QueryRow(ctx, "SELECT max(attempt) FROM job_logs WHERE job_id = $1", k.job).Scan(&a); err != nil {
		return k, err
	}
	if a == nil {
		return k, logstore.ErrNotFound
	}
	k.attempt = uint32(*a)
	return k, nil
}
