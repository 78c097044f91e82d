package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/eventstore"
)

// The committer is the single writer, in two goroutines that overlap:
//
//	appenders ──reqs──> sequencer ──stage──> cur ──take──> writer (db.Update: put, commit, fdatasync)
//	          <─reply──  (validate, hash,    (mu)  <─result─
//	                      encode; index,
//	                      publish)
//
// The sequencer takes the first queued append, drains whatever else is
// queued without waiting (up to MaxBatchEvents/MaxBatchBytes), and stages
// each request into the current batch: it validates the request against an
// overlay of the batch so far and of the batches taken for writing and not
// finished yet (so later requests see earlier ones; a conflict fails that
// request only), assigns positions and chain hashes and encodes the events.
//
// The writer takes the current batch the moment its previous commit
// returns, without waiting for the sequencer, puts the encoded events and
// the meta head in one transaction and commits it, synced; the sequencer
// keeps staging into a fresh batch meanwhile. So the disk does not wait for
// the sequencer, the batch size follows the load without a timer, and
// staging costs no commit time. A batch of at most inlineCommitEvents is
// left to the sequencer instead: at the end of its staging round it hands
// what it staged to the idle writer, or commits a small batch itself.
// (Handing a batch to an idle writer in the middle of a round, or taking
// small batches at once, gave smaller batches and more commits for no gain
// when commits are fast and the processor is the limit.)
//
// When the writer reports a commit, the sequencer updates the in-memory
// index, publishes the batch to the Bus in position order and replies, while
// the writer commits the next batch. (Reporting only once the next batch's
// events were put, to keep the appenders the replies wake from competing
// with the puts, measured no better on disk and worse when commits are
// fast: the appenders came back later, the batches were smaller.)
//
// mu guards the hand-over: the current batch, the batches taken and not
// finished, and the index flush plan. The sequencer holds it while it stages
// one append; the writer while it takes a batch. Neither holds it while it
// waits for anything else.
//
// One transaction runs at a time. If a commit fails, every append in it
// fails, nothing is published, the head is reloaded from the file, and the
// appends staged on top of it are staged again from that head: they depended
// on a batch that does not exist, but have not failed themselves. The writer
// takes nothing until then. Replies wait for the commit their outcome
// depends on, conflicts included.
//
// Staging reads the file only for stream heads and event ids that are not in
// memory and that the key filters say may be stored, in a read transaction
// begun on first need and ended with the staging round (or before a commit
// is finished in the middle of one). It is never held while the sequencer
// waits for the writer: a writer that must grow the memory map waits for all
// readers to finish.
type committer struct {
	s *Store

	// Owned by the sequencer.
	head              eventstore.Head // last committed head, as the file has it
	rtx               *bbolt.Tx       // the staging round's read transaction
	rEvents, rStreams *bbolt.Bucket
	rEventIDs         *bbolt.Bucket
	payloads          arena           // payloads of staged events, as published
	now               time.Time       // the clock for staged events with no time
	clockUses         int             // stagings left before now is read again
	planning          chan *flushPlan // delivers the plan while it is being sorted
	idleFlushFailed   bool            // don't retry index-only commits until an append succeeds
	closeErr          error           // from the final index flush

	toWriter   chan *batch // sequencer -> idle writer
	results    chan *batch // writer -> sequencer, in commit order
	writerDone chan struct{}

	mu sync.Mutex
	// Guarded by mu.
	cur        *batch     // being staged, on top of open
	open       []*batch   // taken for writing and not finished, oldest first
	plan       *flushPlan // the frozen generation being written, if any
	activeSize int        // events in the active generation, for flushBudget
	writing    bool       // a transaction is running (the writer's or inline)
	hold       bool       // a commit failed: take nothing until it is dealt with
	spare      []*batch

	warena arena // index keys and values, used by whoever is writing
}

// batch is one write transaction: staged appends and an index chunk.
type batch struct {
	pending []*pending
	base    eventstore.Head // the head it is staged on
	head    eventstore.Head // the head after it
	events  int             // events of pending, for the batch limits
	bytes   int
	appends int // requests that write events

	envs    []eventstore.Envelope
	keys    [][]byte // keys[i], vals[i]: envs[i] as stored, in buf
	vals    [][]byte
	buf     []byte
	streams map[string]uint64 // stream -> version after this batch

	force  int // index entries to write even without appends (0: the usual share)
	plan   *flushPlan
	budget int

	// Set by the writer.
	err     error
	cursor  flushCursor
	flushed bool
}

// newBatch returns an empty batch staged on base. The caller holds mu.
func (c *committer) newBatch(base eventstore.Head) *batch {
	var b *batch
	if n := len(c.spare); n > 0 {
		b, c.spare = c.spare[n-1], c.spare[:n-1]
	} else {
		b = &batch{streams: map[string]uint64{}}
	}
	b.base, b.head = base, base
	return b
}

// recycle keeps b for reuse. The caller holds mu.
func (c *committer) recycle(b *batch) {
	clear(b.pending)
	clear(b.envs)
	clear(b.keys)
	clear(b.vals)
	clear(b.streams)
	b.pending, b.envs, b.keys, b.vals, b.buf = b.pending[:0], b.envs[:0], b.keys[:0], b.vals[:0], b.buf[:0]
	b.events, b.bytes, b.appends = 0, 0, 0
	b.force, b.plan, b.budget, b.err, b.cursor, b.flushed = 0, nil, 0, nil, flushCursor{}, false
	c.spare = append(c.spare, b)
}

func (b *batch) full(opts *Options) bool {
	return b.events >= opts.MaxBatchEvents || b.bytes >= opts.MaxBatchBytes
}

// minBatchBuf is the least size of a batch's buffer of keys and values.
const minBatchBuf = 64 << 10

// errNothing rolls back a transaction that has nothing to write.
var errNothing = errors.New("nothing to commit")

// idleFlushBudget is the number of index entries an index-only commit
// writes; idleFlushDelay is how long appends must pause before one is made.
// The delay is not part of group commit (which never waits): it only keeps
// index-only commits from delaying a steady trickle of appends.
const (
	idleFlushBudget = 16384
	idleFlushDelay  = 10 * time.Millisecond
)

func (c *committer) init(s *Store) {
	c.s = s
	c.head = s.head
	c.cur = c.newBatch(c.head)
	c.toWriter = make(chan *batch, 1)
	c.results = make(chan *batch, 4)
	c.writerDone = make(chan struct{})
	c.activeSize = s.tail.active.size()
	if c.activeSize >= s.opts.IndexGeneration {
		c.freeze()
	}
}

// run is the sequencer. It returns when the request queue is closed and
// everything queued is committed or failed.
func (c *committer) run() {
	defer close(c.s.done)
	debug.SetPanicOnFault(true)
	go c.write()
	reqs := c.s.reqs
	idle := time.NewTimer(idleFlushDelay)
	defer idle.Stop()
	for {
		c.adoptPlan(false)
		select {
		case b := <-c.results:
			c.finish(b)
			continue
		default:
		}
		c.mu.Lock()
		staged, full := len(c.cur.pending) > 0, c.cur.full(&c.s.opts)
		writerIdle := !c.writing && len(c.open) == 0
		plan := c.plan
		c.mu.Unlock()
		if writerIdle && staged {
			if reqs != nil && !full {
				reqs = c.stageRound(nil, reqs) // take what queued up since
			}
			c.startCommit()
			continue
		}
		if writerIdle && reqs == nil {
			break
		}
		// Wait for an append, a commit, or, when idle, a moment without
		// appends to write the index in.
		var in chan *pending
		if reqs != nil && !full {
			in = reqs
		}
		var flush <-chan time.Time
		if writerIdle && plan != nil && !c.idleFlushFailed {
			idle.Reset(idleFlushDelay)
			flush = idle.C
		}
		select {
		case p, ok := <-in:
			if !ok {
				reqs = nil
				continue
			}
			reqs = c.stageRound(p, reqs)
		case b := <-c.results:
			c.finish(b)
		case p := <-c.planning: // nil channel when no plan is being sorted
			c.setPlan(p)
		case <-flush:
			c.mu.Lock()
			c.cur.force = idleFlushBudget
			c.mu.Unlock()
			c.startCommit()
		}
		if flush != nil {
			idle.Stop()
		}
	}
	c.closeErr = c.flushAll()
	close(c.toWriter)
	<-c.writerDone
}

// startCommit starts a transaction for the staged batch while the writer is
// idle: on the sequencer's goroutine when the batch is small, else on the
// writer's.
func (c *committer) startCommit() {
	c.mu.Lock()
	inline := len(c.open) == 0 // finish must see batches in order
	b := c.take()
	c.mu.Unlock()
	if b == nil {
		return
	}
	if inline && len(b.pending) > 0 && b.events <= inlineCommitEvents {
		b.err = c.commit(b)
		c.mu.Lock()
		c.committed(b)
		c.mu.Unlock()
		c.finish(b)
		return
	}
	c.toWriter <- b
}

// take hands the staged batch to a transaction, with its index chunk. It
// returns nil when there is nothing to write, a transaction is running, or a
// failed commit is not dealt with yet. The caller holds mu.
func (c *committer) take() *batch {
	b := c.cur
	if c.writing || c.hold || (len(b.pending) == 0 && b.force == 0) {
		return nil
	}
	if p := c.plan; p != nil && !p.complete {
		b.plan = p
		if b.budget = b.force; b.budget == 0 {
			b.budget = c.flushBudget(b.events)
		}
	}
	c.writing = true
	c.open = append(c.open, b)
	c.cur = c.newBatch(b.head)
	return b
}

// committed records the end of b's transaction: the flush plan advances when
// it succeeded; when it failed, nothing is taken until the sequencer has
// dealt with it. The caller holds mu.
func (c *committer) committed(b *batch) {
	c.writing = false
	if b.err != nil && !errors.Is(b.err, errNothing) {
		c.hold = true
		return
	}
	if b.plan != nil && b.budget > 0 {
		b.plan.done, b.plan.complete = b.cursor, b.flushed
	}
}

// clockEvery is how many appends of one staging round share a clock reading.
const clockEvery = 64

// inlineCommitEvents is the largest batch the sequencer commits itself when
// the writer is idle. A small batch gains nothing from overlapping its
// staging with a commit, and committing it there saves two goroutine
// hand-offs, which on a busy machine can cost more than the commit.
const inlineCommitEvents = 16

// flushBudget is how many index entries a commit of n appended events
// writes. While the active generation has room, none: the frozen one is
// written by index-only commits when appends pause (idleFlushDelay), which
// keeps index work off busy commits. Once the active generation is full
// too, each commit writes twice its share, so the frozen one is done within
// half a generation and at most about three generations are ever in memory;
// four behind (commits keep failing), everything at once.
//
// The caller holds mu.
func (c *committer) flushBudget(n int) int {
	g := c.s.opts.IndexGeneration
	switch a := c.activeSize; {
	case a >= 4*g:
		return c.plan.entries()
	case a < g:
		return 0
	}
	return max(DefaultIndexFlushFactor*n*c.plan.entries()/g, minFlushChunk)
}

// stageRound stages first (when not nil) and every request already queued.
// Lookups that must read the file share one read transaction, begun on
// first need and ended with the round. Commits reported meanwhile are
// finished at once, so their appenders get their replies without waiting
// for the round. It returns reqs, or nil once reqs is closed.
func (c *committer) stageRound(first *pending, reqs chan *pending) chan *pending {
	defer c.endRead()
	c.clockUses = 0
	full := false
	if first != nil {
		full = c.stagePending(first)
	}
	for !full {
		if len(c.results) > 0 {
			// The read transaction may predate the commit: finish may drop
			// the frozen generation, which only the new index buckets hold.
			c.endRead()
			c.finish(<-c.results)
		}
		select {
		case p, ok := <-reqs:
			if !ok {
				return nil
			}
			full = c.stagePending(p)
		default:
			return reqs
		}
	}
	return reqs
}

// read begins the round's read transaction if it has not begun.
func (c *committer) read() (err error) {
	if c.rtx != nil {
		return nil
	}
	if c.rtx, err = c.s.db.Begin(false); err != nil {
		c.rtx = nil
		return err
	}
	b, err := openBuckets(c.rtx)
	if err != nil {
		c.endRead()
		return err
	}
	c.rEvents, c.rStreams, c.rEventIDs = b.events, b.streams, b.eventIDs
	return nil
}

func (c *committer) endRead() {
	if c.rtx != nil {
		_ = c.rtx.Rollback()
		c.rtx, c.rEvents, c.rStreams, c.rEventIDs = nil, nil, nil, nil
	}
}

// stagePending stages p's requests into the current batch and reports
// whether the batch is full. A pending whose context is done is answered at
// once: nothing of it is staged.
func (c *committer) stagePending(p *pending) (full bool) {
	if err := p.ctx.Err(); err != nil {
		p.err = err
		p.done <- struct{}{}
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.cur
	b.pending = append(b.pending, p)
	b.events += p.events
	b.bytes += p.bytes
	// Reading the clock costs about as much as staging an event: appends
	// staged together share a reading, at most clockEvery of them.
	if c.clockUses == 0 {
		c.now = c.s.opts.Clock()
		c.clockUses = clockEvery
	}
	c.clockUses--
	now := c.now
	for i := range p.reqs {
		if p.skip != nil && p.skip[i] {
			continue // failed validation before it was queued
		}
		res, err := c.stage(&p.reqs[i], now)
		p.out[i] = eventstore.AppendOutcome{Result: res, Err: err}
		if err == nil && !res.Duplicate {
			b.appends++
		}
	}
	return b.full(&c.s.opts)
}

// stage validates r against the overlays and the file and, when it may be
// written, assigns positions and hashes and encodes its events into the
// current batch. Reads come first and nothing is staged before they all
// succeed, so a bbolt panic on a corrupt page fails only this request. The
// caller holds mu.
func (c *committer) stage(r *eventstore.AppendRequest, now time.Time) (res eventstore.AppendResult, err error) {
	defer func() {
		if rec := recover(); rec != nil {
			res, err = eventstore.AppendResult{}, fmt.Errorf("append %s: bbolt: %v: %w", r.Stream, rec, eventstore.ErrCorrupt)
		}
	}()
	res, dup, err := c.idempotent(r)
	if err != nil || dup {
		return res, err
	}
	version, err := c.streamVersion(r.Stream)
	if err != nil {
		return res, fmt.Errorf("append %s: %w", r.Stream, err)
	}
	if !r.Expected.Check(version) {
		return res, &eventstore.VersionConflictError{Stream: r.Stream, Expected: r.Expected, Actual: version}
	}
	b := c.cur
	pos, hash := b.head.Position, b.head.Hash
	res.FirstPosition = pos + 1
	for j := range r.Events {
		d := &r.Events[j]
		pos++
		version++
		e := eventstore.NewEnvelope(d, pos, r.Stream, version, now, hash)
		hash = e.Hash
		// The key and the stored value go to the batch's buffer, reused once
		// the batch is committed (bbolt copies them into its pages). The
		// published envelope's payload is a copy that is never written
		// again, so the caller may reuse its buffer.
		if need := 8 + marshalBound(r.Stream, d); cap(b.buf)-len(b.buf) < need {
			// Staged keys and values keep the old array alive.
			b.buf = make([]byte, 0, max(2*cap(b.buf), need, minBatchBuf))
		}
		n := len(b.buf)
		b.buf = binary.BigEndian.AppendUint64(b.buf, pos)
		k := b.buf[n:len(b.buf):len(b.buf)]
		n = len(b.buf)
		b.buf = eventstore.MarshalEnvelope(b.buf, &e)
		v := b.buf[n:len(b.buf):len(b.buf)]
		e.Payload = c.payloads.copy(d.Payload)
		// The filter holds staged ids too, so new ids need no look at the
		// batches; an id of a commit that fails stays in it, harmlessly.
		c.s.idFilter.add(c.s.idFilter.hashBytes(d.ID[:]))
		b.envs = append(b.envs, e)
		b.keys = append(b.keys, k)
		b.vals = append(b.vals, v)
	}
	b.streams[r.Stream] = version
	b.head = eventstore.Head{Position: pos, Hash: hash}
	res.LastPosition, res.Version = pos, version
	return res, nil
}

// idempotent reports whether r's events are all stored already (a retry:
// the original result is returned with Duplicate set), and fails with
// ErrIdempotencyConflict when only some are, or their content or order
// differs. The semantics are the memory adapter's.
func (c *committer) idempotent(r *eventstore.AppendRequest) (eventstore.AppendResult, bool, error) {
	var res eventstore.AppendResult
	found := 0
	for j := range r.Events {
		d := &r.Events[j]
		e, ok, err := c.lookupEvent(d.ID)
		if err != nil {
			return res, false, fmt.Errorf("append %s: event id %s: %w", r.Stream, d.ID, err)
		}
		if !ok {
			continue
		}
		if !eventstore.SameContent(e, r.Stream, d) || found != j || (found > 0 && e.Position != res.LastPosition+1) {
			return res, false, fmt.Errorf("append %s: event %d: id %s is stored at position %d with other content or order: %w",
				r.Stream, j, d.ID, e.Position, eventstore.ErrIdempotencyConflict)
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
	return eventstore.AppendResult{}, false, fmt.Errorf("append %s: %d of %d event ids are stored already: %w",
		r.Stream, found, len(r.Events), eventstore.ErrIdempotencyConflict)
}

// lookupEvent finds an event by id. The id filter holds every committed and
// staged id: a new id, the common case, costs one filter probe. Otherwise it
// looks in the batch being staged and the batches taken and not finished,
// then in the in-memory index and the event_ids bucket. The caller holds mu.
func (c *committer) lookupEvent(id eventstore.ID) (*eventstore.Envelope, bool, error) {
	if !c.s.idFilter.mayContain(c.s.idFilter.hashBytes(id[:])) {
		return nil, false, nil
	}
	if e := findID(c.cur.envs, id); e != nil {
		return e, true, nil
	}
	for _, b := range c.open {
		if e := findID(b.envs, id); e != nil {
			return e, true, nil
		}
	}
	pos, ok := c.s.tail.eventID(id)
	if err := c.read(); err != nil {
		return nil, false, err
	}
	if !ok {
		v := c.rEventIDs.Get(id[:])
		if v == nil {
			return nil, false, nil
		}
		p, err := parsePos("event_ids "+id.String(), v)
		if err != nil {
			return nil, false, fmt.Errorf("%v: %w", err, eventstore.ErrCorrupt)
		}
		pos = p
	}
	e, err := readEvent(c.rEvents, pos)
	if err != nil {
		return nil, false, err
	}
	if e.EventID != id {
		return nil, false, &eventstore.CorruptError{Position: pos, Reason: fmt.Sprintf("event id index says %s is here, the event is %s", id, e.EventID)}
	}
	return &e, true, nil
}

// findID returns the envelope of envs with event id id, or nil.
func findID(envs []eventstore.Envelope, id eventstore.ID) *eventstore.Envelope {
	for i := range envs {
		if envs[i].EventID == id {
			return &envs[i]
		}
	}
	return nil
}

// streamVersion returns the current version of stream: from the overlays
// (newest first), the in-memory index, or, if the stream filter says it may
// exist, the streams bucket. The caller holds mu.
func (c *committer) streamVersion(stream string) (uint64, error) {
	if v, ok := c.cur.streams[stream]; ok {
		return v, nil
	}
	for i := len(c.open) - 1; i >= 0; i-- {
		if v, ok := c.open[i].streams[stream]; ok {
			return v, nil
		}
	}
	if v, _, ok := c.s.tail.stream(stream); ok {
		return v, nil
	}
	if !c.s.streamFilter.mayContain(c.s.streamFilter.hashString(stream)) {
		return 0, nil
	}
	if err := c.read(); err != nil {
		return 0, err
	}
	raw := c.rStreams.Get([]byte(stream))
	if raw == nil {
		return 0, nil
	}
	v, _, err := parseStreamValue(stream, raw)
	if err != nil {
		return 0, fmt.Errorf("%v: %w", err, eventstore.ErrCorrupt)
	}
	return v, nil
}

// finish takes the report of the oldest open batch: it indexes, publishes
// and replies. The writer is committing the next batch meanwhile.
func (c *committer) finish(b *batch) {
	if b.err != nil && !errors.Is(b.err, errNothing) {
		c.failed(b)
		return
	}
	s := c.s
	committed := b.head.Position - c.head.Position
	c.head = b.head
	c.idleFlushFailed = false
	if b.flushed {
		// The frozen generation is in the index buckets now; the next
		// staging round's read transaction sees them.
		s.tailMu.Lock()
		s.tail.frozen = nil
		s.tailMu.Unlock()
		c.setPlan(nil)
		s.stats.indexGens.Add(1)
	}
	c.adoptPlan(false)
	s.tailMu.Lock()
	for i := range b.envs {
		s.tail.active.add(&b.envs[i])
	}
	s.tailMu.Unlock()
	for i := range b.envs {
		if e := &b.envs[i]; e.StreamVersion == 1 {
			s.streamFilter.add(s.streamFilter.hashString(e.StreamID))
		}
	}
	c.mu.Lock()
	c.popOpen(b)
	c.activeSize = s.tail.active.size()
	plan := c.plan
	c.mu.Unlock()
	if plan == nil && c.planning == nil && s.tail.active.size() >= s.opts.IndexGeneration {
		c.freeze()
	}
	s.headMu.Lock()
	s.head = c.head
	s.headMu.Unlock()
	switch {
	case committed > 0:
		s.stats.commits.Add(1)
		s.stats.events.Add(committed)
		s.stats.appends.Add(uint64(b.appends))
	case b.plan != nil && b.err == nil:
		s.stats.indexCommits.Add(1)
	}
	s.bus.Publish(b.envs)
	for _, p := range b.pending {
		p.done <- struct{}{}
	}
	c.mu.Lock()
	c.recycle(b)
	c.mu.Unlock()
}

// popOpen removes b, the oldest, from the open batches. The caller holds mu.
func (c *committer) popOpen(b *batch) {
	if len(c.open) == 0 || c.open[0] != b {
		panic("bolt: committer finished a batch out of order")
	}
	n := copy(c.open, c.open[1:])
	c.open[n] = nil
	c.open = c.open[:n]
}

// failed fails every append of a batch whose commit failed, reloads the head
// from the file so the next append takes the next dense position, and stages
// again the appends staged on top of the failed batch. Nothing is published;
// the in-memory index only ever holds committed events and the flush cursor
// did not move, so they need no undo. The writer holds off until the
// restaged batch is complete.
func (c *committer) failed(b *batch) {
	c.s.stats.failed.Add(1)
	if len(b.pending) == 0 {
		c.idleFlushFailed = true
	}
	if st, err := c.readMeta(); err == nil {
		c.head = st.head
	} else {
		c.head = b.base
	}
	for _, p := range b.pending {
		p.err = fmt.Errorf("commit: %w", b.err)
		p.done <- struct{}{}
	}
	c.mu.Lock()
	c.popOpen(b)
	restage := c.cur
	c.cur = c.newBatch(c.head)
	c.mu.Unlock()
	c.clockUses = 0
	for _, p := range restage.pending {
		for i := range p.out {
			if p.skip == nil || !p.skip[i] {
				p.out[i] = eventstore.AppendOutcome{}
			}
		}
		c.stagePending(p)
	}
	c.endRead()
	c.mu.Lock()
	c.hold = false
	c.recycle(restage)
	c.recycle(b)
	c.mu.Unlock()
}

func (c *committer) readMeta() (st logState, err error) {
	err = c.s.view(func(tx *bbolt.Tx) error {
		b, err := openBuckets(tx)
		if err == nil {
			st, err = readMeta(b.meta)
		}
		return err
	})
	return st, err
}

// freeze turns the active generation into the frozen one and plans its
// flush. Sorting a generation takes a while, so it happens on another
// goroutine; adoptPlan picks the plan up.
func (c *committer) freeze() {
	s := c.s
	s.tailMu.Lock()
	g := s.tail.active
	s.tail.frozen, s.tail.active = g, newGeneration(g.hi, c.s.opts.IndexGeneration)
	s.tailMu.Unlock()
	c.mu.Lock()
	c.activeSize = 0
	c.mu.Unlock()
	ch := make(chan *flushPlan, 1)
	c.planning = ch
	go func() { ch <- newFlushPlan(g) }() // g is immutable from here on
}

// adoptPlan takes the plan being sorted if it is ready, or waits for it.
func (c *committer) adoptPlan(wait bool) {
	if c.planning == nil {
		return
	}
	if wait {
		c.setPlan(<-c.planning)
		return
	}
	select {
	case p := <-c.planning:
		c.setPlan(p)
	default:
	}
}

// setPlan makes p the plan the next transactions write (nil: none) and ends
// the sorting, if any.
func (c *committer) setPlan(p *flushPlan) {
	c.planning = nil
	c.mu.Lock()
	c.plan = p
	c.mu.Unlock()
}

// flushAll writes the whole in-memory index to the index buckets, at Close,
// when every append is finished and the writer idle. When nothing of the
// frozen generation is written yet, it and the active one are written in one
// pass: each index page is written once.
func (c *committer) flushAll() error {
	c.adoptPlan(true)
	s := c.s
	c.mu.Lock()
	untouched := c.plan != nil && c.plan.done == (flushCursor{})
	c.mu.Unlock()
	if untouched && s.tail.active.size() > 0 {
		s.tailMu.Lock()
		g := mergeGenerations(s.tail.frozen, s.tail.active)
		s.tail.frozen, s.tail.active = g, newGeneration(g.hi, 0)
		s.tailMu.Unlock()
		c.setPlan(newFlushPlan(g))
	}
	for {
		c.adoptPlan(true)
		c.mu.Lock()
		plan := c.plan
		c.mu.Unlock()
		if plan == nil {
			if s.tail.active.size() == 0 {
				return nil
			}
			c.freeze()
			c.adoptPlan(true)
			c.mu.Lock()
			plan = c.plan
			c.mu.Unlock()
		}
		c.mu.Lock()
		c.cur.force = plan.entries()
		b := c.take()
		c.mu.Unlock()
		c.toWriter <- b
		b = <-c.results
		err := b.err
		c.finish(b)
		if err != nil && !errors.Is(err, errNothing) {
			return fmt.Errorf("write index: %w (the index is rebuilt from the log at the next open)", err)
		}
	}
}

// write is the writer goroutine. It commits what the sequencer hands it
// while it is idle; once busy, it takes the next staged batch itself the
// moment a transaction returns, if it holds more than inlineCommitEvents,
// then reports the finished one.
func (c *committer) write() {
	defer close(c.writerDone)
	debug.SetPanicOnFault(true)
	var next *batch
	for {
		b := next
		if b == nil {
			var ok bool
			if b, ok = <-c.toWriter; !ok {
				return
			}
		}
		b.err = c.commit(b)
		c.mu.Lock()
		c.committed(b)
		// A small batch is left to the sequencer, which commits it at
		// the end of its staging round with whatever arrives meanwhile.
		next = nil
		if c.cur.events > inlineCommitEvents {
			next = c.take()
		}
		c.mu.Unlock()
		c.results <- b
	}
}

// commit writes b in one transaction and commits it (synced unless NoSync).
func (c *committer) commit(b *batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt: %v", r)
		}
	}()
	return c.s.db.Update(func(tx *bbolt.Tx) error {
		bk, err := openBuckets(tx)
		if err != nil {
			return err
		}
		// Positions stay dense: the batch must follow the file's head.
		if h := bk.meta.Get(keyHead); len(h) != headValueLen || binary.BigEndian.Uint64(h) != b.base.Position {
			return fmt.Errorf("batch staged on position %d does not follow the file's head", b.base.Position)
		}
		bk.events.FillPercent = 1.0 // appends always land on the right edge
		// Index entries arrive sorted, a generation at a time: pack pages.
		bk.eventIDs.FillPercent, bk.streamIdx.FillPercent, bk.streams.FillPercent = indexFillPercent, indexFillPercent, indexFillPercent
		for i := range b.keys {
			if err := bk.events.Put(b.keys[i], b.vals[i]); err != nil {
				return fmt.Errorf("put event %d: %w", b.envs[i].Position, err)
			}
		}
		wrote := len(b.keys) > 0
		if wrote {
			if err := bk.meta.Put(keyHead, headValue(b.head.Position, b.head.Hash)); err != nil {
				return fmt.Errorf("put meta %s: %w", keyHead, err)
			}
		}
		if b.plan != nil && b.budget > 0 {
			if b.cursor, b.flushed, err = b.plan.step(bk, b.budget, &c.warena); err != nil {
				return err
			}
			wrote = true
		}
		if !wrote {
			return errNothing
		}
		if hook := c.s.beforeCommit.Load(); hook != nil {
			if err := (*hook)(); err != nil {
				return err
			}
		}
		return nil
	})
}
