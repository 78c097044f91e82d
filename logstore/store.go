package logstore

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// Defaults for Options' zero values.
const (
	DefaultMaxBytesPerAttempt = 64 << 20
	DefaultSyncInterval       = time.Second
	DefaultMaxOpenFiles       = 256
)

// Clock is the store's time source: the periodic sync timer and the time
// recorded when a log is finished go through it, so tests can drive them.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configures a Store. The zero value gives the defaults.
type Options struct {
	// MaxBytesPerAttempt caps the bytes stored for one attempt's log. Beyond
	// it the store keeps acknowledging but stores nothing more, after one
	// truncation marker line. 0 means DefaultMaxBytesPerAttempt (64 MiB);
	// negative means no limit. A job's logs together hold at most its number
	// of attempts times this.
	MaxBytesPerAttempt int64

	// SyncInterval is how often logs written since their last sync are
	// fsynced. 0 means DefaultSyncInterval (1 s); negative disables periodic
	// syncs (Finish, Seal, truncation, Sync and Close still sync).
	SyncInterval time.Duration

	// MaxOpenFiles bounds the log files kept open between calls (least
	// recently used are closed first and reopened on demand). It is a soft
	// bound: a file a reader is using is closed when the read ends. 0 means
	// DefaultMaxOpenFiles.
	MaxOpenFiles int

	// Clock defaults to the system clock.
	Clock Clock

	// Logger receives errors of the background sync, which has no caller to
	// return them to. Defaults to discarding.
	Logger *slog.Logger
}

// Store is a directory of job attempt logs. It is safe for concurrent use.
type Store struct {
	dir     string
	limit   uint64 // 0: none
	maxOpen int
	clock   Clock
	logger  *slog.Logger

	// life is held shared by every call while it touches files and
	// exclusively by Close, so Close never closes a file under a call.
	life      sync.RWMutex
	closed    bool          // guarded by life
	closing   chan struct{} // closed first thing in Close: wakes followers and the syncer
	closeOnce sync.Once
	wg        sync.WaitGroup

	// Lock order: mu, then a log's mu, then fdMu or dirtyMu.
	mu   sync.RWMutex
	logs map[key]*log

	fdMu sync.Mutex
	open list.List // *log with an open handle, most recently opened first

	dirtyMu sync.Mutex
	dirty   map[*log]struct{} // logs written since their last sync

	afterSync func()          // test hook: called after each periodic sync
	onWait    func(*Follower) // test hook: called when a follower starts waiting
}

// Open opens (creating if needed) the log store in dir and starts its
// periodic sync. Close stops it.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("open log store: %w", &FieldError{Field: "dir", Reason: "empty"})
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open log store: %w", err)
	}
	s := &Store{
		dir:     dir,
		maxOpen: opts.MaxOpenFiles,
		clock:   opts.Clock,
		logger:  opts.Logger,
		closing: make(chan struct{}),
		logs:    make(map[key]*log),
		dirty:   make(map[*log]struct{}),
	}
	switch {
	case opts.MaxBytesPerAttempt == 0:
		s.limit = DefaultMaxBytesPerAttempt
	case opts.MaxBytesPerAttempt > 0:
		s.limit = uint64(opts.MaxBytesPerAttempt)
	}
	if s.maxOpen <= 0 {
		s.maxOpen = DefaultMaxOpenFiles
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	interval := opts.SyncInterval
	if interval == 0 {
		interval = DefaultSyncInterval
	}
	if interval > 0 {
		s.wg.Add(1)
		go s.syncLoop(interval)
	}
	return s, nil
}

// syncLoop syncs dirty logs every interval until Close.
func (s *Store) syncLoop(interval time.Duration) {
	defer s.wg.Done()
	for {
		select {
		case <-s.closing:
			return
		case <-s.clock.After(interval):
		}
		if err := s.Sync(); err != nil && !errors.Is(err, ErrClosed) {
			s.logger.Error("log store periodic sync", "err", err)
		}
		if s.afterSync != nil {
			s.afterSync()
		}
	}
}

// Close syncs every log written since its last sync, closes all files and
// ends all followers (their Read returns ErrClosed). Later calls return
// ErrClosed; Close itself may be called again and returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.wg.Wait()
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.syncDirty()
	s.fdMu.Lock()
	var open []*log
	for e := s.open.Front(); e != nil; e = e.Next() {
		open = append(open, e.Value.(*log))
	}
	s.fdMu.Unlock()
	for _, l := range open {
		// No call is running (life is held), so no reader holds a handle.
		if cerr := l.closeHandle(); cerr != nil && err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("close log store: %w", err)
	}
	return nil
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

// Sync fsyncs every log written since its last sync (and the directory
// entries of new files). The periodic sync calls it; callers need it only to
// make a point durable early (Finish and Seal sync their own log).
func (s *Store) Sync() error {
	if !s.enter() {
		return fmt.Errorf("sync: store %w", ErrClosed)
	}
	defer s.exit()
	if err := s.syncDirty(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

func (s *Store) syncDirty() error {
	s.dirtyMu.Lock()
	set := s.dirty
	s.dirty = make(map[*log]struct{})
	s.dirtyMu.Unlock()
	var errs []error
	for l := range set {
		if err := l.sync(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.key, err))
		}
	}
	s.evictExcess()
	return errors.Join(errs...)
}

// acquire returns the log for k, creating its in-memory entry, with a
// reference the caller gives back with release.
func (s *Store) acquire(k key) *log {
	s.mu.RLock()
	l := s.logs[k]
	if l != nil {
		l.refs.Add(1)
	}
	s.mu.RUnlock()
	if l != nil {
		return l
	}
	s.mu.Lock()
	l = s.logs[k]
	if l == nil {
		l = &log{s: s, key: k}
		s.logs[k] = l
	}
	l.refs.Add(1)
	s.mu.Unlock()
	return l
}

// release gives back a reference. The last one drops an idle entry (no open
// file, nothing unsynced) from memory: everything it knew is on disk.
func (s *Store) release(l *log) {
	if l.refs.Add(-1) == 0 {
		s.dropIfIdle(l)
	}
}

// dropIfIdle removes an unreferenced entry that holds nothing beyond what
// is on disk.
func (s *Store) dropIfIdle(l *log) {
	if l.refs.Load() != 0 {
		return
	}
	l.mu.Lock()
	idle := l.idleLocked()
	l.mu.Unlock()
	if !idle {
		return
	}
	s.mu.Lock()
	// New references are taken only under mu, so zero here stays zero.
	if l.refs.Load() == 0 && s.logs[l.key] == l {
		l.mu.Lock()
		if l.idleLocked() {
			delete(s.logs, l.key)
		}
		l.mu.Unlock()
	}
	s.mu.Unlock()
}

// markOpen registers a log whose handle was just opened.
func (s *Store) markOpen(l *log) {
	s.fdMu.Lock()
	if l.elem == nil {
		l.elem = s.open.PushFront(l)
	}
	s.fdMu.Unlock()
}

// evictExcess closes handles while more than maxOpen are open, choosing by
// the clock (second chance) algorithm: a log used since the last sweep is
// moved to the front instead. Append only sets a flag, so there is no global
// lock per chunk.
func (s *Store) evictExcess() {
	for {
		s.fdMu.Lock()
		if s.open.Len() <= s.maxOpen {
			s.fdMu.Unlock()
			return
		}
		var victim *log
		for range 2 * s.open.Len() {
			e := s.open.Back()
			l := e.Value.(*log)
			if l.used.Swap(false) {
				s.open.MoveToFront(e)
				continue
			}
			victim = l
			break
		}
		if victim == nil {
			victim = s.open.Back().Value.(*log)
		}
		s.open.Remove(victim.elem)
		victim.elem = nil
		s.fdMu.Unlock()
		if err := victim.evict(); err != nil {
			s.logger.Error("log store close idle file", "log", victim.key.String(), "err", err)
		}
		s.dropIfIdle(victim)
	}
}

func (s *Store) markDirty(l *log) {
	s.dirtyMu.Lock()
	s.dirty[l] = struct{}{}
	s.dirtyMu.Unlock()
}

// Append stores data as the attempt's log bytes [offset, offset+len(data))
// and returns the acknowledged offset: the end of what the agent has
// delivered, which it need never send again.
//
// It is idempotent by offset: bytes below the stored end are dropped (a
// resend after a reconnect). A chunk starting beyond the end returns a
// *GapError naming the expected offset, and writes nothing. Once the log
// holds MaxBytesPerAttempt bytes, one truncation marker line is stored and
// later bytes are counted but not stored; the ack keeps advancing. After
// Finish or Seal, resent bytes are acknowledged and new ones return
// ErrFinished.
//
// When Append returns, the bytes are written to the operating system (they
// survive a crash of the server process) and visible to Read and followers;
// they are fsynced within SyncInterval. Append on one log is serialised; on
// different logs it runs in parallel and never waits for a follower.
func (s *Store) Append(jobID string, attempt uint32, offset uint64, data []byte) (uint64, error) {
	k, err := newKey(jobID, attempt, false)
	if err != nil {
		return 0, fmt.Errorf("append: %w", err)
	}
	if !s.enter() {
		return 0, fmt.Errorf("append %s: store %w", k, ErrClosed)
	}
	defer s.exit()
	l := s.acquire(k)
	defer s.release(l)
	ack, opened, err := l.append(offset, data)
	if opened {
		s.evictExcess()
	}
	if err != nil {
		return ack, fmt.Errorf("append %s: %w", k, err)
	}
	return ack, nil
}

// Finish marks the attempt's log complete with the agent's totals from
// JobFinished: the log's length and its CRC-32C (Castagnoli). Live followers
// then reach io.EOF. The log is synced, and the record made durable, before
// Finish returns.
//
// Errors: a *GapError when fewer bytes are stored than totalBytes (nothing is
// recorded; resend and finish again); a *MismatchError when the stored bytes
// differ in length or CRC (recorded, the log is finished anyway; the CRC is
// not checked on a truncated log); ErrFinished when the log was sealed or
// finished with other totals. Repeating a Finish is harmless and returns what
// the first one returned.
func (s *Store) Finish(jobID string, attempt uint32, totalBytes uint64, crc32c uint32) error {
	k, err := newKey(jobID, attempt, false)
	if err != nil {
		return fmt.Errorf("finish: %w", err)
	}
	if !s.enter() {
		return fmt.Errorf("finish %s: store %w", k, ErrClosed)
	}
	defer s.exit()
	l := s.acquire(k)
	defer s.release(l)
	if err := l.finish(totalBytes, crc32c); err != nil {
		return fmt.Errorf("finish %s: %w", k, err)
	}
	return nil
}

// Seal marks the attempt's log complete as it stands, without totals: for an
// attempt that ended without a JobFinished (its agent was lost, it was fenced
// or never started). An attempt with no log gets an empty one. Live followers
// then reach io.EOF. Sealing a finished log does nothing.
func (s *Store) Seal(jobID string, attempt uint32) error {
	k, err := newKey(jobID, attempt, false)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if !s.enter() {
		return fmt.Errorf("seal %s: store %w", k, ErrClosed)
	}
	defer s.exit()
	l := s.acquire(k)
	defer s.release(l)
	opened, err := l.seal()
	if opened {
		s.evictExcess()
	}
	if err != nil {
		return fmt.Errorf("seal %s: %w", k, err)
	}
	return nil
}

// Stat describes one attempt's log. Offsets of Read and Follow are stored
// offsets (Size); the agent's offsets and acks are Received. They are equal
// until the log is truncated.
type Stat struct {
	JobID   string
	Attempt uint32

	Size     uint64 // bytes stored, truncation marker included
	Received uint64 // agent bytes acknowledged: stored data plus dropped bytes

	Truncated   bool
	TruncatedAt uint64 // data bytes stored before the marker
	// Dropped counts agent bytes not stored. Before Finish it counts what
	// has arrived so far; after Finish it is exact (from the agent's total).
	Dropped uint64

	Finished   bool
	Sealed     bool // finished by Seal: no agent totals
	FinishedAt time.Time
	AgentBytes uint64 // the agent's total, from Finish
	AgentCRC   uint32 // the agent's CRC-32C, from Finish
	CRCChecked bool   // the stored bytes were checked against AgentCRC
	Mismatch   bool   // the check failed (Finish returned a *MismatchError)
}

// Stat returns the state of an attempt's log; attempt 0 means the latest
// attempt that has a log. It returns ErrNotFound when there is no log.
func (s *Store) Stat(jobID string, attempt uint32) (Stat, error) {
	k, err := newKey(jobID, attempt, true)
	if err != nil {
		return Stat{}, fmt.Errorf("stat: %w", err)
	}
	if !s.enter() {
		return Stat{}, fmt.Errorf("stat %s: store %w", k, ErrClosed)
	}
	defer s.exit()
	if k, err = s.resolve(k); err != nil {
		return Stat{}, fmt.Errorf("stat %s: %w", k, err)
	}
	l := s.acquire(k)
	defer s.release(l)
	st, err := l.stat()
	if err != nil {
		return Stat{}, fmt.Errorf("stat %s: %w", k, err)
	}
	return st, nil
}

// Read copies stored bytes from offset into p and returns how many. It
// returns io.EOF (with n possibly > 0) when the read reaches the end of a
// finished log, and 0, nil at the end of a live one. Attempt 0 means the
// latest attempt. Errors: ErrNotFound; ErrOffset beyond the end of a
// finished log.
func (s *Store) Read(jobID string, attempt uint32, offset uint64, p []byte) (int, error) {
	k, err := newKey(jobID, attempt, true)
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	if !s.enter() {
		return 0, fmt.Errorf("read %s: store %w", k, ErrClosed)
	}
	defer s.exit()
	if k, err = s.resolve(k); err != nil {
		return 0, fmt.Errorf("read %s: %w", k, err)
	}
	l := s.acquire(k)
	defer s.release(l)
	n, _, err := l.readAt(p, offset, false)
	if err == io.EOF {
		return n, io.EOF
	}
	if err != nil {
		return n, fmt.Errorf("read %s: %w", k, err)
	}
	return n, nil
}

// Attempts lists the attempts of a job that have a log, in order. A job
// with none gives an empty list and no error.
func (s *Store) Attempts(jobID string) ([]uint32, error) {
	if err := checkJobID(jobID); err != nil {
		return nil, fmt.Errorf("attempts: %w", err)
	}
	if !s.enter() {
		return nil, fmt.Errorf("attempts of job %s: store %w", jobID, ErrClosed)
	}
	defer s.exit()
	out, err := s.attempts(jobID)
	if err != nil {
		return nil, fmt.Errorf("attempts of job %s: %w", jobID, err)
	}
	return out, nil
}

func (s *Store) attempts(jobID string) ([]uint32, error) {
	entries, err := os.ReadDir(s.jobDir(jobID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, e := range entries {
		if a, ok := parseLogName(e.Name()); ok && e.Type().IsRegular() {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out, nil
}

// resolve turns attempt 0 into the job's latest attempt with a log.
func (s *Store) resolve(k key) (key, error) {
	if k.attempt != 0 {
		return k, nil
	}
	as, err := s.attempts(k.job)
	if err != nil {
		return k, err
	}
	if len(as) == 0 {
		return k, ErrNotFound
	}
	k.attempt = as[len(as)-1]
	return k, nil
}
