package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hodei-jobs/hodei/eventstore"
)

// Defaults for Options.
const (
	DefaultInitialMmapSize = 1 << 30
	DefaultTimeout         = time.Second
	DefaultMaxBatchEvents  = 4096
	DefaultMaxBatchBytes   = 4 << 20
	DefaultQueueSize       = 4096
	DefaultIndexGeneration = 1 << 16
	// DefaultReleaseMapInterval is Options.ReleaseMapInterval's default.
	DefaultReleaseMapInterval = time.Second
	DefaultIndexFlushFactor   = 2
	minFlushChunk             = 1024
)

// ErrReadOnly is returned by appends to a store opened with Options.ReadOnly.
var ErrReadOnly = errors.New("event store opened read-only")

// Options configures a Store. The zero value gives the defaults.
type Options struct {
	// NoSync skips fdatasync on commit. Acknowledged appends may then be lost
	// in a crash: for bulk loads and throwaway tests only.
	NoSync bool
	// InitialMmapSize is the size of the first memory map (default 1 GiB).
	// bbolt must remap when the file outgrows the map, and cannot while any
	// read transaction is open; a large map keeps long readers from stalling
	// the committer.
	InitialMmapSize int
	// Timeout bounds the wait for the file lock (default 1s). Another process
	// holding the file open for writing makes Open fail after it.
	Timeout time.Duration
	// ReadOnly opens the file with a shared lock for tools (audit, export):
	// appends fail with ErrReadOnly, reads and the ForEach methods work.
	ReadOnly bool
	// Clock gives the time for events appended with a zero Time (default time.Now).
	Clock func() time.Time
	// RingSize is the Bus ring size (default eventstore.DefaultRingSize).
	RingSize int
	// BeforeCommit, when set, runs inside each write transaction just before
	// it commits; an error fails the commit as a disk error would. It is a
	// fault-injection hook for tests (see also SetBeforeCommit).
	BeforeCommit func() error

	// MaxBatchEvents and MaxBatchBytes stop the committer from draining more
	// appends into one transaction (defaults 4096 events, 4 MiB). A single
	// append larger than both is still committed whole.
	MaxBatchEvents int
	MaxBatchBytes  int
	// QueueSize is the capacity of the committer's request queue (default
	// 4096). Appenders block, or give up with their context, when it is full.
	QueueSize int
	// IndexGeneration is how many events the in-memory index tail collects
	// before it is frozen and written to the index buckets (default 65536).
	// Larger values make index writes cheaper, and memory use and Open slower
	// (~100 bytes an event; 32768 costs ~8% of append throughput at 512
	// appenders, 131072 gains none measurable; see BENCHMARKS.md):
	// Open re-reads the events of the tail from the log: usually one or two
	// generations, about three at most under sustained load.
	IndexGeneration int
	// ReleaseMapInterval is how often a writable store hands the pages of
	// bbolt's memory map back to the kernel's page cache (default 1s;
	// negative: never), so that its resident set does not grow with the log.
	// See releaseMap.
	ReleaseMapInterval time.Duration
}

func (o Options) withDefaults() Options {
	if o.InitialMmapSize <= 0 {
		o.InitialMmapSize = DefaultInitialMmapSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.MaxBatchEvents <= 0 {
		o.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.IndexGeneration <= 0 {
		o.IndexGeneration = DefaultIndexGeneration
	}
	if o.ReleaseMapInterval == 0 {
		o.ReleaseMapInterval = DefaultReleaseMapInterval
	}
	return o
}

// BoltOptions returns the bbolt options Open uses for o. Tools that must
// compare against the store on equal terms (the raw bbolt benchmark loop)
// open their files with them.
func (o Options) BoltOptions() *bbolt.Options {
	o = o.withDefaults()
	return &bbolt.Options{
		Timeout:         o.Timeout,
		NoSync:          o.NoSync,
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: o.InitialMmapSize,
		ReadOnly:        o.ReadOnly,
		NoStatistics:    true,
	}
}

// Stats counts the committer's work since Open.
type Stats struct {
	// Commits is the number of transactions that committed appended events;
	// Events and Appends are the events and append requests they held.
	// Events/Commits is the group-commit batch size achieved.
	Commits, Events, Appends uint64
	// FailedCommits counts transactions that failed to commit.
	FailedCommits uint64
	// IndexCommits counts commits that only wrote index entries (the
	// committer was idle); IndexGenerations the generations completed.
	IndexCommits, IndexGenerations uint64
}

// Store is an eventstore.Store in a bbolt file. See the package
// documentation for the layout and the write path.
type Store struct {
	db       *bbolt.DB
	path     string
	opts     Options
	bus      *eventstore.Bus
	storeID  eventstore.ID
	readOnly bool

	// closeMu guards closed and the send side of reqs: appenders hold it for
	// reading while they enqueue, Close takes it for writing to stop them.
	closeMu   sync.RWMutex
	closed    bool
	closeOnce sync.Once
	closeErr  error
	reqs      chan *pending
	done      chan struct{} // closed when the committer has exited

	// headMu guards the committed head reported by Head.
	headMu sync.RWMutex
	head   eventstore.Head

	// tailMu guards the tail's maps against readers; only the committer
	// changes them, after its commits.
	tailMu sync.RWMutex
	tail   tail

	// idFilter and streamFilter hold every committed event id and stream
	// name; only the committer uses them (nil when read-only).
	idFilter, streamFilter *keyFilter

	beforeCommit atomic.Pointer[func() error]

	stats struct {
		commits, events, appends, failed, indexCommits, indexGens atomic.Uint64
	}

	c committer // owned by the committer goroutine

	// releaseErr is why releaseMap stopped, if it did (the store works on
	// without it, holding its map's pages as bbolt alone would).
	releaseErr atomic.Value // string
}

var _ eventstore.Store = (*Store)(nil)

// Open opens the event log in the bbolt file at path, creating it when it
// does not exist (unless opts.ReadOnly). It checks the format version and
// that the last stored event is the head recorded in meta with the same
// hash, and rebuilds the in-memory index of the events that the index
// buckets do not hold yet, verifying their chain. A corrupt or truncated file
// gives an error that names the position or field (errors.Is
// eventstore.ErrCorrupt for bad data), never a panic.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	s := &Store{path: path, opts: opts, readOnly: opts.ReadOnly}
	if opts.BeforeCommit != nil {
		fn := opts.BeforeCommit
		s.beforeCommit.Store(&fn)
	}
	if err := s.open(); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.bus = eventstore.NewBus(opts.RingSize, s.head.Position)
	s.done = make(chan struct{})
	if s.readOnly {
		close(s.done)
		return s, nil
	}
	s.reqs = make(chan *pending, opts.QueueSize)
	s.c.init(s)
	go s.c.run()
	if opts.ReleaseMapInterval > 0 {
		go s.releaseMap(opts.ReleaseMapInterval)
	}
	return s, nil
}

// open opens the bbolt file and loads the log's state. bbolt may panic, or
// fault on its memory map, when a file is corrupt or truncated: both become
// errors here, and the file is released.
func (s *Store) open() (err error) {
	var file *os.File
	bopts := s.opts.BoltOptions()
	bopts.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt: %v (corrupt file?): %w", r, eventstore.ErrCorrupt)
			if s.db != nil {
				_ = closeDB(s.db)
				s.db = nil
			} else if file != nil {
				_ = file.Close()
			}
		}
	}()
	s.db, err = bbolt.Open(s.path, 0o600, bopts)
	if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) {
		return fmt.Errorf("bbolt: %w: %w", err, eventstore.ErrCorrupt)
	}
	if err != nil {
		return err
	}
	if err := s.load(); err != nil {
		_ = closeDB(s.db)
		s.db = nil
		return err
	}
	return nil
}

// closeDB closes db, turning a panic into an error.
func closeDB(db *bbolt.DB) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("close bbolt: %v", r)
		}
	}()
	return db.Close()
}

// load initialises an empty file, checks meta against the events bucket and
// rebuilds the index tail from the log.
func (s *Store) load() error {
	if !s.readOnly {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			if tx.Bucket(bucketMeta) != nil {
				return errExists
			}
			return initLog(tx)
		})
		if err != nil && !errors.Is(err, errExists) {
			return err
		}
	}
	return s.db.View(func(tx *bbolt.Tx) error {
		b, err := openBuckets(tx)
		if err != nil {
			return err
		}
		st, err := readMeta(b.meta)
		if err != nil {
			return err
		}
		if err := checkHead(b, st); err != nil {
			return err
		}
		t, err := rebuildTail(b, st)
		if err != nil {
			return err
		}
		s.head, s.storeID, s.tail = st.head, st.storeID, t
		if !s.readOnly {
			return s.buildFilters(b, st)
		}
		return nil
	})
}

// buildFilters fills the key filters from the index buckets and the tail.
// It reads every key of event_ids and streams once.
func (s *Store) buildFilters(b buckets, st logState) error {
	s.idFilter = newKeyFilter(int(st.head.Position), minIDFilterKeys)
	s.streamFilter = newKeyFilter(int(st.head.Position/8), minFilterKeys)
	c := b.eventIDs.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		s.idFilter.add(s.idFilter.hashBytes(k))
	}
	c = b.streams.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		s.streamFilter.add(s.streamFilter.hashBytes(k))
	}
	for _, e := range s.tail.active.ids {
		id := e.id()
		s.idFilter.add(s.idFilter.hashBytes(id[:]))
	}
	for stream := range s.tail.active.streams {
		s.streamFilter.add(s.streamFilter.hashString(stream))
	}
	return nil
}

var errExists = errors.New("exists")

// rebuildTail indexes in memory the events above meta "indexed", checking on
// the way that their positions are dense and their chain links.
func rebuildTail(b buckets, st logState) (tail, error) {
	t := tail{active: newGeneration(st.indexed, 0)}
	if st.indexed == st.head.Position {
		return t, nil
	}
	var prev eventstore.Hash
	if st.indexed > 0 {
		e, err := readEvent(b.events, st.indexed)
		if err != nil {
			return t, err
		}
		prev = e.Hash
	}
	c := b.events.Cursor()
	want := st.indexed + 1
	for k, v := c.Seek(posKey(nil, want)); k != nil && want <= st.head.Position; k, v = c.Next() {
		if got := keyPos(k); got != want {
			return t, &eventstore.CorruptError{Position: want, Reason: fmt.Sprintf("missing: next stored event is position %d", got)}
		}
		e, err := decodeAt(want, v)
		if err != nil {
			return t, err
		}
		if err := eventstore.VerifyLink(want-1, prev, &e); err != nil {
			return t, err
		}
		// A stream's in-memory versions must continue what is indexed before.
		if v, _, ok := t.stream(e.StreamID); ok && e.StreamVersion != v+1 {
			return t, &eventstore.CorruptError{Position: want, Reason: fmt.Sprintf("stream %q version %d does not follow version %d", e.StreamID, e.StreamVersion, v)}
		}
		t.active.add(&e)
		prev = e.Hash
		want++
	}
	if want <= st.head.Position {
		return t, &eventstore.CorruptError{Position: want, Reason: "missing: the events bucket ends before the meta head"}
	}
	return t, nil
}

// Path returns the file the store was opened from.
func (s *Store) Path() string { return s.path }

// StoreID returns the random id the log was given when it was created.
func (s *Store) StoreID() eventstore.ID { return s.storeID }

// SetBeforeCommit replaces the fault-injection hook (see
// Options.BeforeCommit); nil removes it. It takes effect from the next
// commit.
func (s *Store) SetBeforeCommit(fn func() error) {
	if fn == nil {
		s.beforeCommit.Store(nil)
		return
	}
	s.beforeCommit.Store(&fn)
}

// Stats returns the committer's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Commits:          s.stats.commits.Load(),
		Events:           s.stats.events.Load(),
		Appends:          s.stats.appends.Load(),
		FailedCommits:    s.stats.failed.Load(),
		IndexCommits:     s.stats.indexCommits.Load(),
		IndexGenerations: s.stats.indexGens.Load(),
	}
}

// pending is one Append or AppendMany call on its way through the committer.
type pending struct {
	ctx    context.Context
	reqs   []eventstore.AppendRequest
	out    []eventstore.AppendOutcome
	skip   []bool // requests that failed validation before they were queued (nil: none)
	events int    // events in the requests to commit
	bytes  int    // their approximate size
	err    error  // the whole call's error (context, commit)
	done   chan struct{}
	one    [1]eventstore.AppendOutcome // out of a single Append
}

var pendingPool = sync.Pool{New: func() any { return &pending{done: make(chan struct{}, 1)} }}

// Append implements eventstore.Store. Once the append is queued it is
// committed or failed as a whole; a context cancelled after that is ignored,
// so an error always means nothing was written.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	if err := eventstore.ValidateAppend(stream, expected, events); err != nil {
		return eventstore.AppendResult{}, err
	}
	p := pendingPool.Get().(*pending)
	p.reqs = append(p.reqs[:0], eventstore.AppendRequest{Stream: stream, Expected: expected, Events: events})
	p.out, p.skip = p.one[:], nil
	p.events, p.bytes = len(events), requestBytes(stream, events)
	if err := s.submit(ctx, p); err != nil {
		p.release()
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	res, err := p.one[0].Result, p.one[0].Err
	if p.err != nil {
		res, err = eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, p.err)
	}
	p.release()
	return res, err
}

// AppendMany implements eventstore.Store: the requests are queued together
// and committed in one transaction (with whatever other appends the
// committer gathers), each succeeding or failing on its own.
func (s *Store) AppendMany(ctx context.Context, reqs []eventstore.AppendRequest) ([]eventstore.AppendOutcome, error) {
	out := make([]eventstore.AppendOutcome, len(reqs))
	p := pendingPool.Get().(*pending)
	p.reqs, p.out, p.skip, p.events, p.bytes = append(p.reqs[:0], reqs...), out, nil, 0, 0
	for i := range p.reqs {
		r := &p.reqs[i]
		if err := eventstore.ValidateAppend(r.Stream, r.Expected, r.Events); err != nil {
			out[i].Err = err
			if p.skip == nil {
				p.skip = make([]bool, len(reqs))
			}
			p.skip[i] = true
			continue
		}
		p.events += len(r.Events)
		p.bytes += requestBytes(r.Stream, r.Events)
	}
	if p.events == 0 {
		p.release()
		return out, nil
	}
	if err := s.submit(ctx, p); err != nil {
		p.release()
		return nil, fmt.Errorf("append %d requests: %w", len(reqs), err)
	}
	err := p.err
	p.release()
	if err != nil {
		return nil, fmt.Errorf("append %d requests: %w", len(reqs), err)
	}
	return out, nil
}

// submit queues p and waits for the committer's reply. It fails only before
// p is queued (closed store, cancelled context).
func (s *Store) submit(ctx context.Context, p *pending) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.ctx, p.err = ctx, nil
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return eventstore.ErrClosed
	}
	select {
	case s.reqs <- p:
	default: // the queue is full: wait for room or the context
		select {
		case s.reqs <- p:
		case <-ctx.Done():
			s.closeMu.RUnlock()
			return ctx.Err()
		}
	}
	s.closeMu.RUnlock()
	<-p.done
	return nil
}

func (p *pending) release() {
	clear(p.reqs)
	p.reqs, p.out, p.skip, p.ctx, p.err, p.one = p.reqs[:0], nil, nil, nil, nil, [1]eventstore.AppendOutcome{}
	if cap(p.reqs) > 64 {
		p.reqs = nil
	}
	pendingPool.Put(p)
}

func requestBytes(stream string, events []eventstore.EventData) int {
	n := 0
	for i := range events {
		n += marshalBound(stream, &events[i])
	}
	return n
}

// marshalBound is an upper bound of the MarshalEnvelope size of d.
func marshalBound(stream string, d *eventstore.EventData) int {
	const fixed = 1 + 8 + 8 + 2 + 16 + 8 + 16 + 16 + 32 + 32 + 4*10
	return fixed + len(stream) + len(d.Type) + len(d.Actor) + len(d.Payload)
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (eventstore.Head, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Head{}, err
	}
	if s.isClosed() {
		return eventstore.Head{}, eventstore.ErrClosed
	}
	s.headMu.RLock()
	defer s.headMu.RUnlock()
	return s.head, nil
}

// Subscribe implements eventstore.Store.
func (s *Store) Subscribe(after uint64) *eventstore.Subscription {
	return eventstore.NewSubscription(s, s.bus, after, eventstore.SubscriptionOptions{})
}

func (s *Store) isClosed() bool {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	return s.closed
}

// Close implements eventstore.Store. It stops new appends (they get
// eventstore.ErrClosed), waits until every queued append is committed or
// failed, writes the in-memory index tail to the index buckets so a cleanly
// closed file is fully indexed, and closes the file. Later calls return the
// first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeMu.Lock()
		s.closed = true
		if s.reqs != nil {
			close(s.reqs)
		}
		s.closeMu.Unlock()
		<-s.done
		err := s.c.closeErr
		if cerr := closeDB(s.db); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			s.closeErr = fmt.Errorf("close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}
