package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/logstore"
)

// logReadSize is the most bytes one log chunk carries.
const logReadSize = 32 << 10

// logRequest is a validated WatchLog request.
type logRequest struct {
	JobID string
	// Attempt is the attempt to read; 0 means the latest, following
	// re-queued attempts.
	Attempt uint32
	// From is, with Attempt 0, the first attempt to follow (a resumed
	// stream); 0 means the job's current attempt.
	From   uint32
	Offset uint64
	Follow bool
	// Idle, if set, is called every Options.Keepalive while the stream waits.
	Idle func() error
}

// logChunk is a piece of one attempt's log at a stored offset.
type logChunk struct {
	Attempt uint32
	Offset  uint64
	Data    []byte
}

// watchLog calls emit with the job's log in order, from the calling
// goroutine only. Without Follow it sends what is stored now and returns;
// with Follow it waits for live output and returns when the attempt's log
// ends (finished, or the attempt ended without finishing it) or, for
// Attempt 0, when the job has ended.
//
// How it ends: the log store ends a follower with io.EOF once the agent's
// finish is recorded, which happens after the job's terminal event. An
// attempt can also end without that (agent lost, re-queued, fenced); so a
// second cursor watches the job's events, and once they say the attempt is
// over, the rest of its stored log is read and the attempt is done: by then
// everything the agent delivered for it is stored.
func (s *Service) watchLog(ctx context.Context, req logRequest, emit func(logChunk) error) error {
	ctx, done := s.streamContext(ctx)
	defer done()
	return s.streamEnd(s.watchLogUntil(ctx, req, emit))
}

func (s *Service) watchLogUntil(ctx context.Context, req logRequest, emit func(logChunk) error) error {
	if err := domain.ValidateID(req.JobID); err != nil {
		return badInput("job_id", "%v", err)
	}
	if !req.Follow {
		job, err := s.core.Job(ctx, req.JobID)
		if err != nil {
			return err
		}
		n := req.Attempt
		if n == 0 {
			n = job.Attempt
		}
		if n == 0 {
			return nil // never scheduled: no log
		}
		if n > job.Attempt {
			return badInput("attempt", "job %s has %d attempts so far", req.JobID, job.Attempt)
		}
		_, err = s.readStored(ctx, req.JobID, n, req.Offset, emit)
		return err
	}

	head, err := s.core.Store().Head(ctx)
	if err != nil {
		return fmt.Errorf("watch log: %w", err)
	}
	job, err := s.core.Job(ctx, req.JobID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	feed := &jobFeed{job: job, states: make(chan domain.Job, 1), errc: make(chan error, 1)}
	var wg sync.WaitGroup
	wg.Add(1)
	sub := s.core.Store().Subscribe(head.Position)
	go func() {
		defer wg.Done()
		feed.errc <- s.feedJob(ctx, sub, job, feed.states)
	}()
	defer func() {
		cancel()
		_ = sub.Close()
		wg.Wait()
	}()
	var tick <-chan time.Time
	if req.Idle != nil {
		t := time.NewTicker(s.opts.Keepalive)
		defer t.Stop()
		tick = t.C
	}
	w := &logWatch{s: s, ctx: ctx, feed: feed, emit: emit, idle: req.Idle, tick: tick, jobID: req.JobID}

	attempt, latest, off := req.Attempt, req.Attempt == 0, req.Offset
	if latest {
		attempt = max(job.Attempt, req.From, 1)
	}
	for {
		// Wait until the attempt exists, or the job ends without it.
		for feed.job.Attempt < attempt {
			if feed.job.Status.Terminal() {
				return nil
			}
			if err := w.wait(); err != nil {
				return err
			}
		}
		if err := w.follow(attempt, off); err != nil {
			return err
		}
		if !latest {
			return nil
		}
		// The next attempt, if the job was re-queued (the wait above ends
		// the stream when the job has ended instead).
		attempt, off = attempt+1, 0
	}
}

// jobFeed is the job's state as its events arrive.
type jobFeed struct {
	job    domain.Job
	states chan domain.Job // the latest state, coalesced
	errc   chan error      // the feeder's end; nil once received
}

// feedJob folds the job's new events into job and publishes each new state
// on states (replacing one not yet taken). It returns when the job has
// ended, or with the subscription's error.
func (s *Service) feedJob(ctx context.Context, sub *eventstore.Subscription, job domain.Job, states chan domain.Job) error {
	stream := domain.JobStream(job.ID)
	for !job.Status.Terminal() {
		batch, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		changed := false
		for i := range batch {
			e := &batch[i]
			if e.StreamID != stream || e.StreamVersion <= job.Version {
				continue
			}
			ev, err := s.core.Codec().Decode(e)
			if err != nil {
				return fmt.Errorf("watch log: decode %s at %d: %w", e.Type, e.Position, err)
			}
			de, ok := ev.(domain.Event)
			if !ok {
				return fmt.Errorf("watch log: %s at %d is not a domain event", e.Type, e.Position)
			}
			job, changed = job.Apply(de), true
		}
		if changed {
			select {
			case <-states:
			default:
			}
			states <- job
		}
	}
	return nil
}

// logWatch follows one job's attempts for watchLog.
type logWatch struct {
	s     *Service
	ctx   context.Context
	feed  *jobFeed
	emit  func(logChunk) error
	idle  func() error
	tick  <-chan time.Time
	jobID string
}

// wait blocks until the job's state changes.
func (w *logWatch) wait() error {
	for {
		select {
		case j := <-w.feed.states:
			w.feed.job = j
			return nil
		case err := <-w.feed.errc:
			w.feed.errc = nil
			if err != nil {
				return w.feedErr(err)
			}
			// The job has ended: its last state is in states (or was taken).
		case <-w.tick:
			if err := w.idle(); err != nil {
				return err
			}
		case <-w.ctx.Done():
			return w.ctx.Err()
		}
	}
}

func (w *logWatch) feedErr(err error) error {
	if w.ctx.Err() != nil {
		return w.ctx.Err()
	}
	return fmt.Errorf("watch log of job %s: %w", w.jobID, err)
}

// over reports whether attempt n has ended according to the job's events.
func over(j domain.Job, n uint32) bool {
	return j.Attempt > n || !j.Status.Active()
}

// follow streams attempt n from offset until its log ends or the attempt is
// over.
func (w *logWatch) follow(n uint32, off uint64) error {
	if over(w.feed.job, n) {
		_, err := w.s.readStored(w.ctx, w.jobID, n, off, w.emit)
		return err
	}
	fctx, stop := context.WithCancel(w.ctx)
	f, err := w.s.logs.Follow(fctx, w.jobID, n, off)
	if err != nil {
		stop()
		return err
	}
	chunks := make(chan logChunk)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer f.Close()
		pos := off
		for {
			buf := make([]byte, logReadSize)
			k, err := f.Read(buf)
			if k > 0 {
				select {
				case chunks <- logChunk{Attempt: n, Offset: pos, Data: buf[:k]}:
					pos += uint64(k)
				case <-fctx.Done():
					readErr <- fctx.Err()
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	defer func() {
		stop()
		wg.Wait()
	}()
	next := off // the offset of the next byte to emit
	for {
		select {
		case c := <-chunks:
			if err := w.emit(c); err != nil {
				return err
			}
			next = c.Offset + uint64(len(c.Data))
		case err := <-readErr:
			switch {
			case errors.Is(err, io.EOF):
				return nil
			case w.ctx.Err() != nil:
				return w.ctx.Err()
			case errors.Is(err, logstore.ErrOffset):
				return badInput("offset", "%d is beyond the end of attempt %d's log", off, n)
			}
			return fmt.Errorf("watch log of job %s attempt %d: %w", w.jobID, n, err)
		case j := <-w.feed.states:
			w.feed.job = j
			if over(j, n) {
				stop()
				wg.Wait()
				_, err := w.s.readStored(w.ctx, w.jobID, n, next, w.emit)
				return err
			}
		case err := <-w.feed.errc:
			w.feed.errc = nil
			if err != nil {
				return w.feedErr(err)
			}
		case <-w.tick:
			if err := w.idle(); err != nil {
				return err
			}
		case <-w.ctx.Done():
			return w.ctx.Err()
		}
	}
}

// readStored emits attempt n's stored bytes from off to the current end and
// returns the offset after them. A missing log is empty.
func (s *Service) readStored(ctx context.Context, jobID string, n uint32, off uint64, emit func(logChunk) error) (uint64, error) {
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		buf := make([]byte, logReadSize)
		k, err := s.logs.Read(jobID, n, off, buf)
		if k > 0 {
			if eerr := emit(logChunk{Attempt: n, Offset: off, Data: buf[:k]}); eerr != nil {
				return off, eerr
			}
			off += uint64(k)
		}
		switch {
		case errors.Is(err, io.EOF):
			return off, nil
		case errors.Is(err, logstore.ErrNotFound):
			return off, nil
		case errors.Is(err, logstore.ErrOffset):
			return off, badInput("offset", "%d is beyond the end of attempt %d's log", off, n)
		case err != nil:
			return off, err
		case k == 0:
			return off, nil // the end of a live log
		}
	}
}
