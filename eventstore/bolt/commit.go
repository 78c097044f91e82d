package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/eventstore"
)

// The committer is the single writer, in two stages that overlap:
//
//	appenders ──reqs──> sequencer ──batch──> writer (db.Update: put, commit, fdatasync)
//	          <─reply──    (validate, hash,  <─result─
//	                        encode; publish)
//
// The sequencer takes the first queued append, drains whatever else is
// queued without waiting (up to MaxBatchEvents/MaxBatchBytes), and stages
// each request: it validates the request against an overlay of the batch so
// far and of the batch the writer is committing (so later requests see
// earlier ones; a conflict fails that request only), assigns positions and
// chain hashes and encodes the events. It hands the batch to the writer,
// which puts the encoded events and the meta head in one transaction and
// commits it, synced. While the writer waits on the disk, the sequencer
// stages the next batch from the appends that arrive meanwhile, so batch size
// follows load without a timer and staging costs no commit time. When the
// writer reports, the sequencer updates the in-memory index, publishes the
// batch to the Bus in position order and replies.
//
// At most one batch is with the writer. If its commit fails, every append in
// it fails, nothing is published, the head is reloaded from the file, and the
// appends staged on top of it are staged again from that head: they depended
// on a batch that does not exist, but have not failed themselves. Replies
// wait for the commit their outcome depends on, conflicts included.
//
// Staging reads the file only for stream heads and event ids that are not in
// memory and that the key filters say may be stored, in a read transaction
// begun on first need and ended with the staging round. It is never held
// while the sequencer waits for the writer: a writer that must grow the
// memory map waits for all readers to finish.
type committer struct {
	s *Store

	head     eventstore.Head // last committed head, as the file has it
	inflight *batch          // with the writer
	cur      *batch          // being staged, on top of inflight
	spare    []*batch

	rtx               *bbolt.Tx // the staging round's read transaction
	rEvents, rStreams *bbolt.Bucket
	rEventIDs         *bbolt.Bucket
	arena             arena // keys and values of staged events

	plan            *flushPlan      // the frozen generation being written, if any
	planning        chan *flushPlan // delivers plan while it is being sorted
	idleFlushFailed bool            // don't retry index-only commits until an append succeeds
	closeErr        error           // from the final index flush

	toWriter   chan *batch
	results    chan *batch
	writerDone chan struct{}
	warena     arena // the writer's, for index entries
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
	keys    [][]byte // keys[i], vals[i]: envs[i] as stored
	vals    [][]byte
	ids     map[eventstore.ID]int // event id -> index in envs
	streams map[string]uint64     // stream -> version after this batch

	plan   *flushPlan
	budget int

	// Set by the writer.
	err     error
	cursor  flushCursor
	flushed bool
}

func (c *committer) newBatch(base eventstore.Head) *batch {
	var b *batch
	if n := len(c.spare); n > 0 {
		b, c.spare = c.spare[n-1], c.spare[:n-1]
	} else {
		b = &batch{ids: map[eventstore.ID]int{}, streams: map[string]uint64{}}
	}
	b.base, b.head = base, base
	return b
}

func (c *committer) recycle(b *batch) {
	clear(b.pending)
	clear(b.envs)
	clear(b.keys)
	clear(b.vals)
	clear(b.ids)
	clear(b.streams)
	b.pending, b.envs, b.keys, b.vals = b.pending[:0], b.envs[:0], b.keys[:0], b.vals[:0]
	b.events, b.bytes, b.appends = 0, 0, 0
	b.plan, b.budget, b.err, b.cursor, b.flushed = nil, 0, nil, flushCursor{}, false
	c.spare = append(c.spare, b)
}

func (b *batch) full(opts *Options) bool {
	return b.events >= opts.MaxBatchEvents || b.bytes >= opts.MaxBatchBytes
}

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
	c.results = make(chan *batch, 1)
	c.writerDone = make(chan struct{})
	if s.tail.active.size() >= s.opts.IndexGeneration {
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
		if c.inflight == nil {
			if reqs != nil && !c.cur.full(&c.s.opts) && len(c.cur.pending) > 0 {
				reqs = c.stageRound(nil, reqs) // take what queued up since
			}
			if len(c.cur.pending) > 0 {
				if c.cur.events <= inlineCommitEvents {
					c.commitInline()
				} else {
					c.send(-1)
				}
				continue
			}
			if reqs == nil {
				break
			}
			// Idle. Write the index if appends stay away for a moment.
			var flush <-chan time.Time
			if c.plan != nil && !c.idleFlushFailed {
				idle.Reset(idleFlushDelay)
				flush = idle.C
			}
			select {
			case p, ok := <-reqs:
				if !ok {
					reqs = nil
					continue
				}
				reqs = c.stageRound(p, reqs)
			case c.plan = <-c.planning: // nil channel when no plan is being sorted
				c.planning = nil
			case <-flush:
				c.send(idleFlushBudget)
			}
			continue
		}
		var in chan *pending
		if reqs != nil && !c.cur.full(&c.s.opts) {
			in = reqs
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
		}
	}
	c.closeErr = c.flushAll()
	close(c.toWriter)
	<-c.writerDone
}

// send hands the staged batch to the writer, with an index chunk of budget
// entries (-1: the usual share).
func (c *committer) send(budget int) {
	b := c.cur
	if c.plan != nil {
		b.plan = c.plan
		if b.budget = budget; budget < 0 {
			b.budget = c.flushBudget(b.events)
		}
	}
	c.inflight, c.cur = b, c.newBatch(b.head)
	c.toWriter <- b
}

// inlineCommitEvents is the largest batch the sequencer commits itself when
// the writer is idle. A small batch gains nothing from overlapping its
// staging with a commit, and committing it here saves two goroutine
// hand-offs, which on a busy machine can cost more than the commit.
const inlineCommitEvents = 16

// commitInline commits the staged batch on the sequencer's goroutine. The
// writer is idle (nothing is in flight), so the two never run a write
// transaction or use the writer's arena at the same time.
func (c *committer) commitInline() {
	b := c.cur
	if c.plan != nil {
		b.plan, b.budget = c.plan, c.flushBudget(b.events)
	}
	c.inflight, c.cur = b, c.newBatch(b.head)
	b.err = c.commit(b)
	c.finish(b)
}

// flushBudget is how many index entries a commit of n appended events
// writes. While the active generation has room, none: the frozen one is
// written by index-only commits when appends pause (idleFlushDelay), which
// keeps index work off busy commits. Once the active generation is full
// too, each commit writes twice its share, so the frozen one is done within
// half a generation and at most about three generations are ever in memory;
// four behind (commits keep failing), everything at once.
func (c *committer) flushBudget(n int) int {
	g := c.s.opts.IndexGeneration
	switch a := c.s.tail.active.size(); {
	case a >= 4*g:
		return c.plan.entries()
	case a < g:
		return 0
	}
	return max(DefaultIndexFlushFactor*n*c.plan.entries()/g, minFlushChunk)
}

// stageRound stages first (when not nil) and every request already queued.
// Lookups that must read the file share one read transaction, begun on
// first need and ended with the round. It returns reqs, or nil once reqs is
// closed.
func (c *committer) stageRound(first *pending, reqs chan *pending) chan *pending {
	defer c.endRead()
	if first != nil {
		c.stagePending(first)
	}
	for !c.cur.full(&c.s.opts) {
		select {
		case p, ok := <-reqs:
			if !ok {
				return nil
			}
			c.stagePending(p)
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

// stagePending stages p's requests into the current batch. A pending whose
// context is done is answered at once: nothing of it is staged.
func (c *committer) stagePending(p *pending) {
	if err := p.ctx.Err(); err != nil {
		p.err = err
		p.done <- struct{}{}
		return
	}
	b := c.cur
	b.pending = append(b.pending, p)
	b.events += p.events
	b.bytes += p.bytes
	now := c.s.opts.Clock()
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
}

// stage validates r against the overlays and the file and, when it may be
// written, assigns positions and hashes and encodes its events into the
// current batch. Reads come first and nothing is staged before they all
// succeed, so a bbolt panic on a corrupt page fails only this request.
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
		k := c.arena.pos(pos)
		buf := c.arena.take(marshalBound(r.Stream, d))
		v := eventstore.MarshalEnvelope(buf, &e)
		if len(v) <= cap(buf) {
			c.arena.commit(len(v))
		}
		// The published envelope's payload aliases the stored bytes, which
		// nothing writes again, so the caller may reuse its buffer.
		end := len(v) - 2*len(eventstore.Hash{})
		e.Payload = v[end-len(e.Payload) : end : end]
		b.ids[d.ID] = len(b.envs)
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

// lookupEvent finds an event by id: in the batch being staged, the batch
// being committed, then, if the id filter says it may be committed, in the
// in-memory index and the event_ids bucket. A new id, the common case, costs
// one filter probe.
func (c *committer) lookupEvent(id eventstore.ID) (*eventstore.Envelope, bool, error) {
	for _, b := range [2]*batch{c.cur, c.inflight} {
		if b == nil {
			continue
		}
		if i, ok := b.ids[id]; ok {
			return &b.envs[i], true, nil
		}
	}
	if !c.s.idFilter.mayContain(c.s.idFilter.hashBytes(id[:])) {
		return nil, false, nil
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

// streamVersion returns the current version of stream: from the overlays,
// or, if the stream filter says it may exist, the in-memory index or the
// streams bucket.
func (c *committer) streamVersion(stream string) (uint64, error) {
	for _, b := range [2]*batch{c.cur, c.inflight} {
		if b == nil {
			continue
		}
		if v, ok := b.streams[stream]; ok {
			return v, nil
		}
	}
	if !c.s.streamFilter.mayContain(c.s.streamFilter.hashString(stream)) {
		return 0, nil
	}
	if v, _, ok := c.s.tail.stream(stream); ok {
		return v, nil
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

// finish takes the writer's result for the in-flight batch. On success it
// hands the writer the next batch first, then does the bookkeeping (index,
// publish, replies) while that batch commits.
func (c *committer) finish(b *batch) {
	c.inflight = nil
	if b.err != nil && !errors.Is(b.err, errNothing) {
		c.failed(b)
		c.recycle(b)
		return
	}
	s := c.s
	committed := b.head.Position - c.head.Position
	c.head = b.head
	c.idleFlushFailed = false
	if b.plan != nil && b.budget > 0 {
		c.plan.done = b.cursor
	}
	if b.flushed {
		// The frozen generation is in the index buckets now; the next
		// staging round's read transaction sees them.
		s.tailMu.Lock()
		s.tail.frozen = nil
		s.tailMu.Unlock()
		c.plan = nil
		s.stats.indexGens.Add(1)
	}
	c.adoptPlan(false)
	if len(c.cur.pending) > 0 {
		// Nothing is staged until this function returns, and b's events
		// reach the in-memory index before then.
		c.send(-1)
	}
	s.tailMu.Lock()
	for i := range b.envs {
		s.tail.active.add(&b.envs[i])
	}
	s.tailMu.Unlock()
	for i := range b.envs {
		e := &b.envs[i]
		s.idFilter.add(s.idFilter.hashBytes(e.EventID[:]))
		if e.StreamVersion == 1 {
			s.streamFilter.add(s.streamFilter.hashString(e.StreamID))
		}
	}
	if c.plan == nil && c.planning == nil && s.tail.active.size() >= s.opts.IndexGeneration {
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
	c.recycle(b)
}

// failed fails every append of a batch whose commit failed, reloads the head
// from the file so the next append takes the next dense position, and stages
// again the appends staged on top of the failed batch. Nothing is published;
// the in-memory index only ever holds committed events and the flush cursor
// did not move, so they need no undo.
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
	restage := c.cur
	c.cur = c.newBatch(c.head)
	if len(restage.pending) == 0 {
		c.recycle(restage)
		return
	}
	for _, p := range restage.pending {
		for i := range p.out {
			if p.skip == nil || !p.skip[i] {
				p.out[i] = eventstore.AppendOutcome{}
			}
		}
		c.stagePending(p)
	}
	c.endRead()
	c.recycle(restage)
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
		c.plan, c.planning = <-c.planning, nil
		return
	}
	select {
	case c.plan = <-c.planning:
		c.planning = nil
	default:
	}
}

// flushAll writes the whole in-memory index to the index buckets, at Close.
// When nothing of the frozen generation is written yet, it and the active
// one are written in one pass: each index page is written once.
func (c *committer) flushAll() error {
	c.adoptPlan(true)
	s := c.s
	if c.plan != nil && c.plan.done == (flushCursor{}) && s.tail.active.size() > 0 {
		s.tailMu.Lock()
		g := mergeGenerations(s.tail.frozen, s.tail.active)
		s.tail.frozen, s.tail.active = g, newGeneration(g.hi, 0)
		s.tailMu.Unlock()
		c.plan = newFlushPlan(g)
	}
	for {
		c.adoptPlan(true)
		if c.plan == nil {
			if c.s.tail.active.size() == 0 {
				return nil
			}
			c.freeze()
			c.adoptPlan(true)
		}
		c.send(c.plan.entries())
		b := <-c.results
		err := b.err
		c.finish(b)
		if err != nil && !errors.Is(err, errNothing) {
			return fmt.Errorf("write index: %w (the index is rebuilt from the log at the next open)", err)
		}
	}
}

// write is the writer goroutine: one transaction per batch.
func (c *committer) write() {
	defer close(c.writerDone)
	debug.SetPanicOnFault(true)
	for b := range c.toWriter {
		b.err = c.commit(b)
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
