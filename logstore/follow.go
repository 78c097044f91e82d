package logstore

import (
	"context"
	"fmt"
	"io"
)

// Follower reads one attempt's log from an offset to its end, waiting for
// new bytes while the log is live: the backlog and the live tail come through
// the same cursor (a read of the file at the follower's offset), so there is
// no seam where bytes could be missed or repeated.
//
// Slow-consumer policy: a follower holds no queue. Append only wakes waiting
// followers (closing a channel); each reads from the file at its own pace,
// so a stalled follower costs the writer nothing and loses nothing.
//
// A Follower is not safe for concurrent use. Cancel its context to stop a
// blocked Read from another goroutine.
type Follower struct {
	s       *Store
	l       *log
	ctx     context.Context
	off     uint64
	err     error // sticky: io.EOF, a context error, or a failure
	holding bool  // l's reference not yet released
}

// Follow returns a Follower (as a Cursor, see Logs) of the attempt's log
// from stored offset from (see Stat for stored and agent offsets). Attempt 0
// means the job's latest attempt that has a log, resolved now (ErrNotFound
// when none has); a viewer that wants every attempt follows each in turn
// (Attempts lists them). A given attempt that has no log yet is waited for:
// the follower sees its bytes once they arrive, and io.EOF if it is sealed.
//
// The follower ends with io.EOF at the end of a finished log, with the
// context's error, or with ErrClosed when the store closes. Close it when
// done; it is released automatically once it has ended.
func (s *Store) Follow(ctx context.Context, jobID string, attempt uint32, from uint64) (Cursor, error) {
	k, err := newKey(jobID, attempt, true)
	if err != nil {
		return nil, fmt.Errorf("follow: %w", err)
	}
	if !s.enter() {
		return nil, fmt.Errorf("follow %s: store %w", k, ErrClosed)
	}
	defer s.exit()
	if k, err = s.resolve(k); err != nil {
		return nil, fmt.Errorf("follow %s: %w", k, err)
	}
	return &Follower{s: s, l: s.acquire(k), ctx: ctx, off: from, holding: true}, nil
}

// Attempt returns the attempt being followed (useful after Follow with 0).
func (f *Follower) Attempt() uint32 { return f.l.key.attempt }

// Offset returns the stored offset of the next byte Read returns.
func (f *Follower) Offset() uint64 { return f.off }

// Read reads the next bytes of the log into p, waiting until at least one is
// available. It returns io.EOF once a finished log has been read to its end,
// the context's error when it ends, ErrClosed when the store or follower is
// closed, and ErrOffset if the follower started beyond the end of a
// finished log.
func (f *Follower) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if err := f.ctx.Err(); err != nil {
			return 0, f.fail(err)
		}
		if !f.s.enter() {
			return 0, f.fail(fmt.Errorf("follow %s: store %w", f.l.key, ErrClosed))
		}
		n, wait, err := f.l.readAt(p, f.off, true)
		f.s.exit()
		f.off += uint64(n)
		if err == io.EOF {
			return n, f.fail(io.EOF)
		}
		if err != nil {
			return n, f.fail(fmt.Errorf("follow %s: %w", f.l.key, err))
		}
		if n > 0 {
			return n, nil
		}
		if f.s.onWait != nil {
			f.s.onWait(f)
		}
		select {
		case <-wait:
		case <-f.ctx.Done():
			return 0, f.fail(f.ctx.Err())
		case <-f.s.closing:
			return 0, f.fail(fmt.Errorf("follow %s: store %w", f.l.key, ErrClosed))
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
		f.s.release(f.l)
	}
}

// Close releases the follower; later Reads return ErrClosed. It always
// returns nil.
func (f *Follower) Close() error {
	if f.err == nil {
		f.err = fmt.Errorf("follow %s: follower %w", f.l.key, ErrClosed)
	}
	f.release()
	return nil
}
