package api

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// maxTimeline bounds the events ListJobEvents returns for one job.
const maxTimeline = 10000

// eventFilter is a validated WatchEvents request.
type eventFilter struct {
	From   uint64 // first position; 0: after the current head
	Stream string
	Types  []string
	// Idle, if set, is called every Options.Keepalive while no event comes.
	Idle func() error
}

func parseEventFilter(from uint64, stream string, types []string) (eventFilter, error) {
	f := eventFilter{From: from, Stream: stream, Types: types}
	if stream != "" {
		if _, _, ok := domain.ParseStream(stream); !ok || len(stream) > eventstore.MaxStreamIDLen {
			return f, badInput("stream", "%q is not a stream id (\"job-<id>\" or \"worker-<id>\")", stream)
		}
	}
	if len(types) > 64 {
		return f, badInput("types", "%d types, at most 64", len(types))
	}
	for i, t := range types {
		if t == "" || len(t) > eventstore.MaxTypeLen {
			return f, badInput(fmt.Sprintf("types[%d]", i), "%d bytes, want 1 to %d", len(t), eventstore.MaxTypeLen)
		}
	}
	return f, nil
}

func (f *eventFilter) match(e *eventstore.Envelope) bool {
	return (f.Stream == "" || e.StreamID == f.Stream) && (len(f.Types) == 0 || slices.Contains(f.Types, e.Type))
}

// watchEvents calls emit for every event from f.From on that matches f, in
// log order, until ctx ends or emit fails. The subscription is one cursor:
// a slow emit falls behind and reads on from the store.
func (s *Service) watchEvents(ctx context.Context, f eventFilter, emit func(*eventstore.Envelope) error) error {
	ctx, done := s.streamContext(ctx)
	defer done()
	return s.streamEnd(s.watchEventsUntil(ctx, f, emit))
}

func (s *Service) watchEventsUntil(ctx context.Context, f eventFilter, emit func(*eventstore.Envelope) error) error {
	after := uint64(0)
	if f.From == 0 {
		head, err := s.core.Store().Head(ctx)
		if err != nil {
			return fmt.Errorf("watch events: %w", err)
		}
		after = head.Position
	} else {
		after = f.From - 1
	}
	sub := s.core.Store().Subscribe(after)
	defer sub.Close()
	for {
		nctx, cancel := ctx, context.CancelFunc(func() {})
		if f.Idle != nil {
			nctx, cancel = context.WithTimeout(ctx, s.opts.Keepalive)
		}
		batch, err := sub.Next(nctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if f.Idle != nil && errors.Is(err, context.DeadlineExceeded) {
				// Next returned without moving the cursor: ping and go on.
				if err := f.Idle(); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("watch events after %d: %w", sub.Position(), err)
		}
		for i := range batch {
			if f.match(&batch[i]) {
				if err := emit(&batch[i]); err != nil {
					return err
				}
			}
		}
	}
}

// timeline returns every event of job id's stream.
func (s *Service) timeline(ctx context.Context, id string) ([]eventstore.Envelope, error) {
	if err := domain.ValidateID(id); err != nil {
		return nil, badInput("job_id", "%v", err)
	}
	var out []eventstore.Envelope
	for len(out) < maxTimeline {
		page, err := s.core.Store().ReadStream(ctx, domain.JobStream(id), uint64(len(out))+1, 1000)
		if err != nil {
			return nil, fmt.Errorf("job %s timeline: %w", id, err)
		}
		out = append(out, page...)
		if len(page) < 1000 {
			break
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("job %s: %w", id, domain.ErrNotFound)
	}
	return out, nil
}
