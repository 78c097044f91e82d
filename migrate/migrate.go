package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/hodei-jobs/hodei/eventstore"
)

// Source is the log a migration reads. Every eventstore.Store is one.
type Source interface {
	eventstore.Reader
	// Head returns the last position and its hash (zero when empty).
	Head(ctx context.Context) (eventstore.Head, error)
}

// Importer is the log a migration writes: a store that can take envelopes
// verbatim. *postgres.Store is one.
type Importer interface {
	// Import stores envs as given, in one transaction, or nothing. It must
	// refuse envs that do not follow its head exactly (envs[0].Position is
	// head+1 and envs[0].PrevHash the head's hash) or whose chain is broken.
	// Run passes contiguous, verified batches and keeps no reference to them
	// after Import returns.
	Import(ctx context.Context, envs []eventstore.Envelope) error
	// Head returns the last position and its hash (zero when empty).
	Head(ctx context.Context) (eventstore.Head, error)
	// ReadAll returns up to limit events with position >= from: Run reads
	// the target's events at its head (and, for a target that diverged, at
	// the positions it bisects) to compare them with the source's.
	ReadAll(ctx context.Context, from uint64, limit int) ([]eventstore.Envelope, error)
}

// Defaults for Options.
const (
	DefaultBatchSize     = 5000
	DefaultMaxBatchBytes = 8 << 20
)

// Options tunes Run. The zero value is usable.
type Options struct {
	// BatchSize is the most events one Import carries (default
	// DefaultBatchSize, at most eventstore.MaxEventsPerWrite).
	BatchSize int
	// MaxBatchBytes bounds the payload, type and actor bytes of one Import
	// (default DefaultMaxBatchBytes, at most eventstore.MaxBytesPerWrite). A
	// single larger event still goes alone.
	MaxBatchBytes int
	// Progress, when set, is called on Run's goroutine before copying and
	// after every imported batch.
	Progress func(Progress)
}

func (o *Options) defaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	o.BatchSize = min(o.BatchSize, eventstore.MaxEventsPerWrite)
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	o.MaxBatchBytes = min(o.MaxBatchBytes, eventstore.MaxBytesPerWrite)
}

// Progress is a snapshot of a running migration.
type Progress struct {
	// Start is the target's head position when Run began (the events a
	// resumed run found already copied), Target its head position now and
	// Source the source head position being copied to.
	Start, Target, Source uint64
	// Copied is the number of events this run has imported.
	Copied uint64
}

// Result says what a Run did.
type Result struct {
	// Head is where both logs end, verified equal (position and hash). After
	// an error it is the target's head as far as Run knows.
	Head eventstore.Head
	// Start is the target's head position when Run began: non-zero when it
	// resumed an earlier, interrupted migration.
	Start uint64
	// Copied is the number of events this run imported, in Batches Imports.
	Copied  uint64
	Batches int
}

// ErrDiverged is returned (inside a *DivergedError) when the target holds
// events the source does not: it is not a copy of part of the source.
var ErrDiverged = errors.New("target has a different history")

// DivergedError names the first position at which the target's log differs
// from the source's.
type DivergedError struct {
	Position uint64
	Reason   string
}

func (e *DivergedError) Error() string {
	return fmt.Sprintf("target has a different history at position %d: %s", e.Position, e.Reason)
}

// Is makes errors.Is(err, ErrDiverged) true.
func (e *DivergedError) Is(target error) bool { return target == ErrDiverged }

// Run copies src into dst from dst's head on until both end at the same head
// (position and hash), and returns what it did. See the package
// documentation for the steps.
//
// Errors: *DivergedError (ErrDiverged) when dst is not a prefix of src
// (nothing is written); *eventstore.CorruptError (ErrCorrupt) when the source
// breaks its chain; the context's error when ctx ends between batches (the
// batches imported so far stay: run again to resume); any error of src or
// dst. Result is meaningful with every error.
func Run(ctx context.Context, src Source, dst Importer, opts Options) (Result, error) {
	opts.defaults()
	var res Result
	for pass := 0; ; pass++ {
		th, err := dst.Head(ctx)
		if err != nil {
			return res, fmt.Errorf("read target head: %w", err)
		}
		if pass == 0 {
			res.Start = th.Position
		}
		res.Head = th
		sh, err := src.Head(ctx)
		if err != nil {
			return res, fmt.Errorf("read source head: %w", err)
		}
		if th == sh {
			if err := checkHeadEvent(ctx, dst, th); err != nil {
				return res, err
			}
			return res, nil
		}
		if err := checkPrefix(ctx, src, dst, sh, th); err != nil {
			return res, err
		}
		if err := copyRange(ctx, src, dst, th, sh.Position, &opts, &res); err != nil {
			return res, err
		}
		// Verify: the target's head must now be the last event imported.
		// Then read the source's head again: equal means done, a longer
		// source means it grew while we copied.
		got, err := dst.Head(ctx)
		if err != nil {
			return res, fmt.Errorf("read target head: %w", err)
		}
		if got != res.Head {
			return res, fmt.Errorf("verify target head: position %d hash %s after importing up to position %d hash %s",
				got.Position, got.Hash, res.Head.Position, res.Head.Hash)
		}
	}
}

// checkHeadEvent checks that the target's event at its head carries the head
// hash (the head row and the log agree) when the heads already match.
func checkHeadEvent(ctx context.Context, dst Importer, h eventstore.Head) error {
	if h.Position == 0 {
		return nil
	}
	e, err := at(ctx, dst, h.Position)
	if err != nil {
		return fmt.Errorf("read target: %w", err)
	}
	if e.Hash != h.Hash {
		return fmt.Errorf("read target: %w", &eventstore.CorruptError{Position: h.Position,
			Reason: fmt.Sprintf("event hash %s differs from the head hash %s", e.Hash, h.Hash)})
	}
	return nil
}

// checkPrefix returns nil when the target (head th) is a prefix of the
// source (head sh), and a *DivergedError naming the first position at which
// they differ otherwise. Equal hashes at a position mean equal logs up to
// it, so the first difference is found by bisection.
func checkPrefix(ctx context.Context, src Source, dst Importer, sh, th eventstore.Head) error {
	if th.Position == 0 {
		return nil
	}
	if err := checkHeadEvent(ctx, dst, th); err != nil {
		return err
	}
	common := min(sh.Position, th.Position)
	same := true // the empty logs before position 1 are equal
	if common > 0 {
		var err error
		if same, err = sameAt(ctx, src, dst, common); err != nil {
			return err
		}
	}
	if same {
		if th.Position <= sh.Position {
			return nil // the target is a prefix
		}
		return &DivergedError{Position: sh.Position + 1, Reason: fmt.Sprintf(
			"the source ends at position %d, the target goes on to position %d", sh.Position, th.Position)}
	}
	lo, hi := uint64(0), common // same at lo (the empty log), different at hi
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		same, err := sameAt(ctx, src, dst, mid)
		if err != nil {
			return err
		}
		if same {
			lo = mid
		} else {
			hi = mid
		}
	}
	s, err := at(ctx, src, hi)
	if err != nil {
		return fmt.Errorf("read source: %w", err)
	}
	t, err := at(ctx, dst, hi)
	if err != nil {
		return fmt.Errorf("read target: %w", err)
	}
	return &DivergedError{Position: hi, Reason: fmt.Sprintf(
		"the source has event %s of stream %s (hash %s), the target event %s of stream %s (hash %s); the target ends at position %d",
		s.EventID, s.StreamID, s.Hash, t.EventID, t.StreamID, t.Hash, th.Position)}
}

// sameAt reports whether both logs hold the same event (hash) at pos.
func sameAt(ctx context.Context, src Source, dst Importer, pos uint64) (bool, error) {
	s, err := at(ctx, src, pos)
	if err != nil {
		return false, fmt.Errorf("read source: %w", err)
	}
	t, err := at(ctx, dst, pos)
	if err != nil {
		return false, fmt.Errorf("read target: %w", err)
	}
	return s.Hash == t.Hash, nil
}

// at reads the event at pos.
func at(ctx context.Context, r eventstore.Reader, pos uint64) (eventstore.Envelope, error) {
	page, err := r.ReadAll(ctx, pos, 1)
	if err != nil {
		return eventstore.Envelope{}, err
	}
	if len(page) != 1 || page[0].Position != pos {
		return eventstore.Envelope{}, &eventstore.CorruptError{Position: pos, Reason: "missing below the head"}
	}
	return page[0], nil
}

// copyRange imports the source's events after from up to position to, in
// batches, checking every link from from on. res.Head follows the imports.
func copyRange(ctx context.Context, src Source, dst Importer, from eventstore.Head, to uint64, opts *Options, res *Result) error {
	report := func() {
		if opts.Progress != nil {
			opts.Progress(Progress{Start: res.Start, Target: res.Head.Position, Source: to, Copied: res.Copied})
		}
	}
	report()
	prev := from
	limit := opts.BatchSize
	for prev.Position < to {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("copy interrupted at position %d: %w", prev.Position, err)
		}
		next := prev.Position + 1
		page, err := src.ReadAll(ctx, next, int(min(uint64(limit), to-prev.Position)))
		if err != nil {
			return fmt.Errorf("read source from %d: %w", next, err)
		}
		if len(page) == 0 {
			return fmt.Errorf("read source from %d: %w", next, &eventstore.CorruptError{Position: next,
				Reason: fmt.Sprintf("missing below the head %d", to)})
		}
		size := 0
		for i := range page {
			if err := eventstore.VerifyLink(prev.Position, prev.Hash, &page[i]); err != nil {
				return fmt.Errorf("read source: %w", err)
			}
			prev = eventstore.Head{Position: page[i].Position, Hash: page[i].Hash}
			size += eventSize(&page[i])
		}
		// Keep the next page near MaxBatchBytes when events are large.
		limit = max(1, min(opts.BatchSize, opts.MaxBatchBytes/max(1, size/len(page))))
		for len(page) > 0 {
			n := batchLen(page, opts.MaxBatchBytes)
			if err := dst.Import(ctx, page[:n]); err != nil {
				return fmt.Errorf("copy to target: %w", err)
			}
			last := &page[n-1]
			res.Head = eventstore.Head{Position: last.Position, Hash: last.Hash}
			res.Copied += uint64(n)
			res.Batches++
			report()
			page = page[n:]
		}
	}
	return nil
}

// eventSize is what eventstore.MaxBytesPerWrite counts of an event.
func eventSize(e *eventstore.Envelope) int { return len(e.Payload) + len(e.Type) + len(e.Actor) }

// batchLen is how many events of page go in one Import: at least one, and no
// more than maxBytes.
func batchLen(page []eventstore.Envelope, maxBytes int) int {
	n, size := 0, 0
	for n < len(page) {
		size += eventSize(&page[n])
		if n > 0 && size > maxBytes {
			break
		}
		n++
	}
	return n
}
