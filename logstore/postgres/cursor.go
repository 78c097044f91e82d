package postgres

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/hodei-jobs/hodei/logstore"
)

// Follower reads one attempt's log from an offset to its end, waiting for
// new bytes while the log is live. Every Read is one range query at the
// follower's offset, for the backlog and the live tail alike, so there is
// no switch from one to the other where bytes could be missed or repeated.
//
// Waking: before each query the follower takes the log's notification
// channel, which this process's Append closes after its commit, and which
// the listener closes when another process NOTIFYs a change of the log.
// Anything committed before the channel was taken is in the query's
// snapshot; anything after closes the channel. Without any wake-up the
// follower re-queries every Options.PollInterval, so correctness never
// depends on NOTIFY. A follower woken by an Append of this process copies
// the new bytes from the log's in-memory tail (the last bytes committed
// here, up to 64 KiB, kept while the log has followers) without a query;
// stored bytes never change, so the tail is never stale, and whether the
// log has ended is always read from the database.
//
// Slow-consumer policy: a follower holds no queue and no connection between
// Reads. A stalled one costs the writer nothing and misses nothing: it reads
// on from the table when it resumes.
//
// A Follower is not safe for concurrent use. Cancel its context to stop a
// blocked Read from another goroutine.
type Follower struct {
	s       *Store
	e       *entry
	ctx     context.Context
	off     uint64
	err     error // sticky: io.EOF, a context error, or a failure
	holding bool  // e's reference not yet released
}

var _ logstore.Cursor = (*Follower)(nil)

// Follow implements logstore.Logs.Follow; the cursor is a *Follower.
func (s *Store) Follow(ctx context.Context, jobID string, attempt uint32, from uint64) (logstore.Cursor, error) {
	k, err := newKey(jobID, attempt, true)
	if err != nil {
		return nil, fmt.Errorf("follow: %w", err)
	}
	if err := checkOffset(from, 0); err != nil {
		return nil, fmt.Errorf("follow %s: %w", k, err)
	}
	if !s.enter() {
		return nil, fmt.Errorf("follow %s: store %w", k, logstore.ErrClosed)
	}
	defer s.exit()
	if k.attempt == 0 {
		octx, cancel := s.opCtx()
		k, err = s.resolve(octx, k)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("follow %s: %w", k, err)
		}
	}
	e := s.acquire(k)
	e.followers.Add(1)
	return &Follower{s: s, e: e, ctx: ctx, off: from, holding: true}, nil
}

// Attempt returns the attempt being followed.
func (f *Follower) Attempt() uint32 { return f.e.key.attempt }

// Offset returns the stored offset of the next byte Read returns.
func (f *Follower) Offset() uint64 { return f.off }

// maxReadBytes bounds one query of a follower, whatever the buffer.
const maxReadBytes = 1 << 20

// Read reads the next bytes of the log into p, waiting until at least one
// is available. It returns io.EOF once a finished log has been read to its
// end, the context's error when it ends, logstore.ErrClosed when the store
// or the follower is closed, and logstore.ErrOffset if the follower started
// beyond the end of a finished log.
func (f *Follower) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	p = p[:min(len(p), maxReadBytes)]
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := f.ctx.Err(); err != nil {
			return 0, f.fail(err)
		}
		if !f.s.enter() {
			return 0, f.fail(fmt.Errorf("follow %s: store %w", f.e.key, logstore.ErrClosed))
		}
		n, wait := f.e.readTail(f.off, p)
		if n > 0 {
			f.s.exit()
			f.off += uint64(n)
			return n, nil
		}
		r, err := f.s.readAt(f.ctx, f.e.key, f.off, p)
		f.s.exit()
		if err != nil {
			if cerr := f.ctx.Err(); cerr != nil {
				return 0, f.fail(cerr)
			}
			return 0, f.fail(fmt.Errorf("follow %s: %w", f.e.key, err))
		}
		f.off += uint64(r.n)
		if err := r.endErr(f.off-uint64(r.n), true); err != nil {
			if err == io.EOF {
				return r.n, f.fail(io.EOF)
			}
			return r.n, f.fail(fmt.Errorf("follow %s: %w", f.e.key, err))
		}
		if r.n > 0 {
			return r.n, nil
		}
		if timer == nil {
			timer = time.NewTimer(f.s.opts.PollInterval)
		} else {
			timer.Reset(f.s.opts.PollInterval)
		}
		select {
		case <-wait:
		case <-timer.C:
		case <-f.ctx.Done():
			return 0, f.fail(f.ctx.Err())
		case <-f.s.closing:
			return 0, f.fail(fmt.Errorf("follow %s: store %w", f.e.key, logstore.ErrClosed))
		}
	}
}

// fail ends the follower with err and releases its log.
func (f *Follower) fail(err error) error {
	f.err = err
	f.release()
	return err
}

func (f *Follower) release() {
	if f.holding {
		f.holding = false
		f.e.followers.Add(-1)
		f.s.release(f.e)
	}
}

// Close releases the follower; later Reads return logstore.ErrClosed. It
// always returns nil.
func (f *Follower) Close() error {
	if f.err == nil {
		f.err = fmt.Errorf("follow %s: follower %w", f.e.key, logstore.ErrClosed)
	}
	f.release()
	return nil
}
