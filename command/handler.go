package command

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// Meta is who and what caused a command; it lands in each event's envelope.
type Meta struct {
	Actor         string // "user:NAME", "agent:ID", "system:PART"
	CorrelationID eventstore.ID
	CausationID   eventstore.ID
}

// Options configures a Handler.
type Options struct {
	// CacheSize is how many jobs (and, separately, workers) the LRU keeps
	// (default 4,096: commands mostly touch recent aggregates, and a miss
	// only folds one short stream). Jobs that have ended leave it.
	CacheSize int
	// MaxRetries bounds reload-and-retry on version conflicts (default 8).
	MaxRetries int
	// Clock stamps envelopes (default time.Now).
	Clock func() time.Time
}

// Handler executes job and worker commands. It is safe for concurrent use.
type Handler struct {
	store   eventstore.Store
	codec   *eventstore.Codec
	opts    Options
	jobs    *repo[domain.Job, domain.JobCommand]
	workers *repo[domain.Worker, domain.WorkerCommand]
	insts   *repo[domain.Instance, domain.InstanceCommand]
}

// New returns a handler over store; codec must know every domain event.
func New(store eventstore.Store, codec *eventstore.Codec, opts Options) *Handler {
	if opts.CacheSize <= 0 {
		opts.CacheSize = 4096
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 8
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	h := &Handler{store: store, codec: codec, opts: opts}
	h.jobs = newRepo[domain.Job, domain.JobCommand](h, domain.JobStream, opts.CacheSize)
	h.workers = newRepo[domain.Worker, domain.WorkerCommand](h, domain.WorkerStream, opts.CacheSize)
	h.insts = newRepo[domain.Instance, domain.InstanceCommand](h, domain.InstanceStream, 256)
	return h
}

// NewCodec returns a codec that knows every domain event.
func NewCodec() *eventstore.Codec {
	c := eventstore.NewCodec()
	for _, e := range domain.Events() {
		c.Register(e)
	}
	return c
}

// Result is the outcome of one command.
type Result[S any] struct {
	State  S              // the aggregate after the command
	Events []domain.Event // what the command appended (none for a no-op)
	Append eventstore.AppendResult
}

// Job runs cmd against job id.
func (h *Handler) Job(ctx context.Context, id string, cmd domain.JobCommand, meta Meta) (Result[domain.Job], error) {
	return h.jobs.run(ctx, id, cmd, meta)
}

// Worker runs cmd against worker id.
func (h *Handler) Worker(ctx context.Context, id string, cmd domain.WorkerCommand, meta Meta) (Result[domain.Worker], error) {
	return h.workers.run(ctx, id, cmd, meta)
}

// Instance runs cmd against provisioned instance id.
func (h *Handler) Instance(ctx context.Context, id string, cmd domain.InstanceCommand, meta Meta) (Result[domain.Instance], error) {
	return h.insts.run(ctx, id, cmd, meta)
}

// LoadJob returns job id's current state (zero state when it does not
// exist), confirmed against the stream.
func (h *Handler) LoadJob(ctx context.Context, id string) (domain.Job, error) {
	e, _, err := h.jobs.load(ctx, id)
	if err == nil {
		e, _, err = h.jobs.fresh(ctx, id, e)
	}
	return e.state, err
}

// LoadWorker returns worker id's current state, confirmed against the stream.
func (h *Handler) LoadWorker(ctx context.Context, id string) (domain.Worker, error) {
	e, _, err := h.workers.load(ctx, id)
	if err == nil {
		e, _, err = h.workers.fresh(ctx, id, e)
	}
	return e.state, err
}

// JobCommand is one member of a Jobs batch.
type JobCommand struct {
	JobID string
	Cmd   domain.JobCommand
	Meta  Meta
}

// Jobs runs a batch of job commands, appending all their events through one
// AppendMany. Outcomes are in input order. Commands for the same job run in
// input order. A member that conflicts with a concurrent writer is retried
// alone; the others are not affected.
func (h *Handler) Jobs(ctx context.Context, cmds []JobCommand) ([]Result[domain.Job], []error) {
	results := make([]Result[domain.Job], len(cmds))
	return results, h.jobs.runMany(ctx, cmds, results)
}

// RunJobs is Jobs for callers that need only each member's error: it does not
// build a Result (a copy of the job's whole state) per member.
func (h *Handler) RunJobs(ctx context.Context, cmds []JobCommand) []error {
	return h.jobs.runMany(ctx, cmds, nil)
}

type aggregate[S any, C any] interface {
	Apply(domain.Event) S
	Decide(C) ([]domain.Event, error)
}

type entry[S any] struct {
	state   S
	version uint64
}

type repo[S aggregate[S, C], C any] struct {
	h      *Handler
	stream func(string) string
	cache  *lru.Cache[string, entry[S]]
	mu     sync.Mutex // serialises put's check-and-set
}

func newRepo[S aggregate[S, C], C any](h *Handler, stream func(string) string, size int) *repo[S, C] {
	c, _ := lru.New[string, entry[S]](size) // only fails for size <= 0
	return &repo[S, C]{h: h, stream: stream, cache: c}
}

// load returns the cached state (cached true) or folds the stream.
func (r *repo[S, C]) load(ctx context.Context, id string) (entry[S], bool, error) {
	if e, ok := r.cache.Get(id); ok {
		return e, true, nil
	}
	e, err := r.reload(ctx, id, entry[S]{})
	return e, false, err
}

// settler is implemented by states that take no more commands in the
// normal course (a job that has ended).
type settler interface{ Settled() bool }

// put caches e unless the cache already holds a newer version of id: two
// commands on one aggregate can finish in either order, and the slower one
// must not put back an older state. A settled state leaves the cache
// instead, so the cache holds the aggregates still in play rather than the
// most recently finished ones. (Should a slower command then put back an
// older state, the store's expected version rejects what is decided on it,
// and fresh re-checks what appends nothing, as for any stale entry.)
func (r *repo[S, C]) put(id string, e entry[S]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.cache.Peek(id); ok && old.version >= e.version {
		return
	}
	if s, ok := any(e.state).(settler); ok && s.Settled() {
		r.cache.Remove(id)
		return
	}
	r.cache.Add(id, e)
}

// fresh re-reads the stream after e and reports whether the store had
// newer events. A decision that appends nothing (an error, a no-op) is not
// checked by the store's expected version, so one made against a cached
// state is confirmed against a fresh one before it is returned.
func (r *repo[S, C]) fresh(ctx context.Context, id string, e entry[S]) (entry[S], bool, error) {
	n, err := r.reload(ctx, id, e)
	if err != nil {
		return e, false, err
	}
	return n, n.version != e.version, nil
}

// reload folds the events after e.version onto e.
func (r *repo[S, C]) reload(ctx context.Context, id string, e entry[S]) (entry[S], error) {
	stream := r.stream(id)
	for {
		page, err := r.h.store.ReadStream(ctx, stream, e.version+1, 1000)
		if err != nil {
			return e, fmt.Errorf("load %s: %w", stream, err)
		}
		for i := range page {
			ev, err := r.h.codec.Decode(&page[i])
			if err != nil {
				return e, fmt.Errorf("load %s: %w", stream, err)
			}
			de, ok := ev.(domain.Event)
			if !ok {
				return e, fmt.Errorf("load %s: position %d: %s is not a domain event", stream, page[i].Position, page[i].Type)
			}
			e.state = e.state.Apply(de)
			e.version = page[i].StreamVersion
		}
		if len(page) < 1000 {
			break
		}
	}
	if e.version > 0 {
		r.put(id, e)
	}
	return e, nil
}

func (r *repo[S, C]) encode(evs []domain.Event, meta Meta) ([]eventstore.EventData, error) {
	out := make([]eventstore.EventData, len(evs))
	for i, ev := range evs {
		d, err := r.h.codec.EventData(ev, eventstore.EventData{
			ID: eventstore.NewID(), Actor: meta.Actor,
			CorrelationID: meta.CorrelationID, CausationID: meta.CausationID,
			Time: r.h.opts.Clock(),
		})
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", ev.EventType(), err)
		}
		out[i] = d
	}
	return out, nil
}

func (r *repo[S, C]) run(ctx context.Context, id string, cmd C, meta Meta) (Result[S], error) {
	e, cached, err := r.load(ctx, id)
	if err != nil {
		return Result[S]{}, err
	}
	for attempt := 0; ; attempt++ {
		evs, err := e.state.Decide(cmd)
		if err != nil || len(evs) == 0 {
			if cached {
				cached = false
				n, newer, ferr := r.fresh(ctx, id, e)
				if ferr != nil {
					return Result[S]{}, ferr
				}
				if newer {
					e = n
					continue
				}
			}
			return Result[S]{State: e.state}, err
		}
		data, err := r.encode(evs, meta)
		if err != nil {
			return Result[S]{}, err
		}
		res, err := r.h.store.Append(ctx, r.stream(id), eventstore.Exact(e.version), data)
		if errors.Is(err, eventstore.ErrVersionConflict) && attempt < r.h.opts.MaxRetries {
			if e, err = r.reload(ctx, id, e); err != nil {
				return Result[S]{}, err
			}
			continue
		}
		if err != nil {
			r.cache.Remove(id)
			return Result[S]{State: e.state}, err
		}
		return Result[S]{State: r.commit(id, e, evs, res), Events: evs, Append: res}, nil
	}
}

// commit folds appended events into the cached entry.
func (r *repo[S, C]) commit(id string, e entry[S], evs []domain.Event, res eventstore.AppendResult) S {
	for _, ev := range evs {
		e.state = e.state.Apply(ev)
	}
	e.version = res.Version
	r.put(id, e)
	return e.state
}

// runMany runs a batch through one AppendMany (see Handler.Jobs). The
// commands of one job are decided in order against the state the earlier ones
// leave, and their events go in one append at the job's expected version.
//
// results, when not nil, has a slot per command and receives each outcome;
// the errors are returned.
func (r *repo[S, C]) runMany(ctx context.Context, cmds []JobCommand, results []Result[S]) []error {
	errs := make([]error, len(cmds))
	type group struct {
		id      string
		version uint64 // of the state as loaded: the append's expected version
		cached  bool   // the state came from the cache
		failed  bool   // a member failed against the cached state: the rest retry
		state   S      // as loaded, then after the members decided so far
		evs     []domain.Event
		data    []eventstore.EventData
		idx     []int // members that appended events
		nevs    []int // how many events each of idx appended
	}
	groups := map[string]*group{}
	var order []*group
	var retry []int
	for i, c := range cmds {
		cmd, ok := any(c.Cmd).(C)
		if !ok {
			errs[i] = fmt.Errorf("run %T: not a command of this aggregate", c.Cmd)
			continue
		}
		g := groups[c.JobID]
		if g == nil {
			e, cached, err := r.load(ctx, c.JobID)
			if err != nil {
				errs[i] = err
				continue
			}
			g = &group{id: c.JobID, version: e.version, cached: cached, state: e.state}
			groups[c.JobID] = g
			order = append(order, g)
		}
		if g.failed {
			retry = append(retry, i)
			continue
		}
		evs, err := g.state.Decide(cmd)
		if err != nil || len(evs) == 0 {
			if g.cached {
				// Judged against a cached state that may be stale: run it
				// (and the job's later members) again alone, which
				// confirms against the stream.
				g.failed = true
				retry = append(retry, i)
				continue
			}
			if results != nil {
				results[i].State = g.state
			}
			errs[i] = err
			continue
		}
		data, err := r.encode(evs, c.Meta)
		if err != nil {
			errs[i] = err
			continue
		}
		for _, ev := range evs {
			g.state = g.state.Apply(ev)
		}
		g.evs, g.data = append(g.evs, evs...), append(g.data, data...)
		g.idx, g.nevs = append(g.idx, i), append(g.nevs, len(evs))
	}
	var reqs []eventstore.AppendRequest
	var sent []*group
	for _, g := range order {
		if len(g.data) > 0 {
			reqs = append(reqs, eventstore.AppendRequest{Stream: r.stream(g.id), Expected: eventstore.Exact(g.version), Events: g.data})
			sent = append(sent, g)
		}
	}
	var out []eventstore.AppendOutcome
	var err error
	if len(reqs) > 0 {
		out, err = r.h.store.AppendMany(ctx, reqs)
	}
	for k, g := range sent {
		switch {
		case err != nil:
			r.cache.Remove(g.id)
			for _, i := range g.idx {
				errs[i] = err
			}
		case out[k].Err == nil:
			// g.state is the loaded state with g.evs applied in order: what
			// commit would fold.
			r.put(g.id, entry[S]{state: g.state, version: out[k].Result.Version})
			if results == nil {
				continue
			}
			at := 0
			for n, i := range g.idx {
				results[i] = Result[S]{State: g.state, Events: g.evs[at : at+g.nevs[n]], Append: out[k].Result}
				at += g.nevs[n]
			}
		case errors.Is(out[k].Err, eventstore.ErrVersionConflict):
			r.cache.Remove(g.id)
			retry = append(retry, g.idx...)
		default:
			r.cache.Remove(g.id)
			for _, i := range g.idx {
				errs[i] = out[k].Err
			}
		}
	}
	// Members of a conflicting group run again alone, in input order,
	// against the reloaded state.
	slices.Sort(retry)
	for _, i := range retry {
		res, err := r.run(ctx, cmds[i].JobID, any(cmds[i].Cmd).(C), cmds[i].Meta)
		if results != nil {
			results[i] = res
		}
		errs[i] = err
	}
	return errs
}
