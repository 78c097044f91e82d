// Package memory is an in-memory eventstore.Store for tests and tools. It
// keeps the same contract as the durable adapters (it passes the conformance
// suite) except durability: everything is lost when the process exits.
package memory

import (
	"context"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/eventstore"
)

// Options configures a Store. The zero value is usable.
type Options struct {
	// Clock gives the time for events appended with a zero Time (default time.Now).
	Clock func() time.Time
	// BeforeCommit, when set, is called before each commit; an error fails the
	// commit as a disk error would. It is a fault-injection hook for tests.
	BeforeCommit func() error
	// RingSize is the Bus ring size (default eventstore.DefaultRingSize).
	RingSize int
}

// Store is an in-memory event log.
type Store struct {
	opts Options
	bus  *eventstore.Bus

	mu      sync.RWMutex
	closed  bool
	events  []eventstore.Envelope // events[i] has position i+1
	streams map[string][]uint64   // stream -> positions, index = version-1
	ids     map[eventstore.ID]uint64
}

var _ eventstore.Store = (*Store)(nil)

// New returns an empty store.
func New(opts Options) *Store {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Store{
		opts:    opts,
		bus:     eventstore.NewBus(opts.RingSize, 0),
		streams: map[string][]uint64{},
		ids:     map[eventstore.ID]uint64{},
	}
}

// SetBeforeCommit replaces the fault-injection hook (see Options.BeforeCommit).
func (s *Store) SetBeforeCommit(fn func() error) {
	s.mu.Lock()
	s.opts.BeforeCommit = fn
	s.mu.Unlock()
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	out, err := s.AppendMany(ctx, []eventstore.AppendRequest{{Stream: stream, Expected: expected, Events: events}})
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return out[0].Result, out[0].Err
}

// AppendMany implements eventstore.Store.
func (s *Store) AppendMany(ctx context.Context, reqs []eventstore.AppendRequest) ([]eventstore.AppendOutcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]eventstore.AppendOutcome, len(reqs))
	for i, r := range reqs {
		out[i].Err = eventstore.ValidateAppend(r.Stream, r.Expected, r.Events)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, eventstore.ErrClosed
	}
	// Stage every request against an overlay so later requests see earlier
	// ones, then commit all or nothing.
	staged := make([]eventstore.Envelope, 0)
	streamLen := map[string]int{}
	stagedIDs := map[eventstore.ID]uint64{}
	head := uint64(len(s.events))
	var prev eventstore.Hash
	if head > 0 {
		prev = s.events[head-1].Hash
	}
	now := s.opts.Clock()
	for i, r := range reqs {
		if out[i].Err != nil {
			continue
		}
		if res, dup, err := s.idempotent(r, stagedIDs, staged); dup || err != nil {
			out[i] = eventstore.AppendOutcome{Result: res, Err: err}
			continue
		}
		cur, ok := streamLen[r.Stream]
		if !ok {
			cur = len(s.streams[r.Stream])
		}
		if !r.Expected.Check(uint64(cur)) {
			out[i].Err = &eventstore.VersionConflictError{Stream: r.Stream, Expected: r.Expected, Actual: uint64(cur)}
			continue
		}
		res := eventstore.AppendResult{FirstPosition: head + uint64(len(staged)) + 1}
		for j := range r.Events {
			pos := head + uint64(len(staged)) + 1
			cur++
			e := eventstore.NewEnvelope(&r.Events[j], pos, r.Stream, uint64(cur), now, prev)
			prev = e.Hash
			staged = append(staged, e)
			stagedIDs[e.EventID] = pos
		}
		streamLen[r.Stream] = cur
		res.LastPosition = head + uint64(len(staged))
		res.Version = uint64(cur)
		out[i].Result = res
	}
	if len(staged) == 0 {
		return out, nil
	}
	if s.opts.BeforeCommit != nil {
		if err := s.opts.BeforeCommit(); err != nil {
			return nil, err
		}
	}
	for i := range staged {
		e := &staged[i]
		e.Payload = append([]byte(nil), e.Payload...)
		s.events = append(s.events, *e)
		s.streams[e.StreamID] = append(s.streams[e.StreamID], e.Position)
		s.ids[e.EventID] = e.Position
	}
	s.bus.Publish(staged)
	return out, nil
}

// idempotent reports whether r's events are all stored already (a retry),
// and fails when only some are or their content differs.
func (s *Store) idempotent(r eventstore.AppendRequest, staged map[eventstore.ID]uint64, batch []eventstore.Envelope) (eventstore.AppendResult, bool, error) {
	found := 0
	var res eventstore.AppendResult
	for j := range r.Events {
		d := &r.Events[j]
		var e *eventstore.Envelope
		if pos, ok := s.ids[d.ID]; ok {
			e = &s.events[pos-1]
		} else if pos, ok := staged[d.ID]; ok {
			e = &batch[pos-uint64(len(s.events))-1]
		} else {
			continue
		}
		if !eventstore.SameContent(e, r.Stream, d) || (found > 0 && e.Position != res.LastPosition+1) || found != j {
			return res, false, eventstore.ErrIdempotencyConflict
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
	return res, false, eventstore.ErrIdempotencyConflict
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, eventstore.ErrClosed
	}
	ps := s.streams[stream]
	if from < 1 {
		from = 1
	}
	var out []eventstore.Envelope
	for v := from; v <= uint64(len(ps)) && len(out) < limit; v++ {
		out = append(out, copyEnv(s.events[ps[v-1]-1]))
	}
	return out, nil
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, from uint64, limit int) ([]eventstore.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, eventstore.ErrClosed
	}
	if from < 1 {
		from = 1
	}
	var out []eventstore.Envelope
	for p := from; p <= uint64(len(s.events)) && len(out) < limit; p++ {
		out = append(out, copyEnv(s.events[p-1]))
	}
	return out, nil
}

func copyEnv(e eventstore.Envelope) eventstore.Envelope {
	e.Payload = append([]byte(nil), e.Payload...)
	return e
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (eventstore.Head, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return eventstore.Head{}, eventstore.ErrClosed
	}
	if len(s.events) == 0 {
		return eventstore.Head{}, nil
	}
	last := s.events[len(s.events)-1]
	return eventstore.Head{Position: last.Position, Hash: last.Hash}, nil
}

// Subscribe implements eventstore.Store.
func (s *Store) Subscribe(after uint64) *eventstore.Subscription {
	return eventstore.NewSubscription(s, s.bus, after, eventstore.SubscriptionOptions{})
}

// Close implements eventstore.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}
