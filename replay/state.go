package replay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/projections"
)

// DefaultCacheEvery is how far apart StateAt's cache snapshots are.
const DefaultCacheEvery = 100_000

// StateOptions configures StateAt.
type StateOptions struct {
	// SnapshotDirs are directories of projection snapshots written by a
	// Runner (the server's <data>/snapshots). A snapshot there is used when
	// it is at or before the target position and belongs to this log.
	SnapshotDirs []string
	// CacheDir is replay's own snapshot cache: one directory per position
	// (20 digits), each holding a snapshot of every read model at that
	// position. StateAt starts from the nearest usable one at or before the
	// target and, as it replays, writes one at every multiple of CacheEvery
	// it passes, so the next question about that part of the log is quick.
	// Empty disables the cache.
	CacheDir string
	// CacheEvery is the distance between cache snapshots (default
	// DefaultCacheEvery).
	CacheEvery uint64
	// Progress, when set, is called now and then with the events replayed
	// and how many there are to replay.
	Progress func(done, total uint64)
}

// State is the read models as they were at one position of the log.
type State struct {
	Position uint64
	Hash     eventstore.Hash // of the event at Position
	Time     time.Time       // of the event at Position
	Jobs     *projections.Jobs
	Workers  *projections.Workers

	// From is the position of the snapshot the replay started from (0:
	// position 1) and FromDir its directory; Replayed is how many events were
	// applied on top of it.
	From     uint64
	FromDir  string
	Replayed uint64
	// Cached lists the cache snapshots written on the way. Stale lists cache
	// snapshots that did not match this log (it was replaced or rewritten
	// since they were written); they were replaced. CacheErr is the first
	// failure to write the cache: the state is still right, only the next
	// run will not be faster.
	Cached   []uint64
	Stale    []uint64
	CacheErr error
}

// StateAt rebuilds the jobs and workers read models as they were right after
// position at: from the nearest snapshot at or before it that belongs to this
// log (see StateOptions), else from position 1. Events are read and decoded
// on other goroutines while the snapshot loads and while they are applied;
// they are applied in position order, exactly as the server's runner does.
func StateAt(ctx context.Context, store eventstore.Store, codec *eventstore.Codec, at uint64, opts StateOptions) (*State, error) {
	if opts.CacheEvery == 0 {
		opts.CacheEvery = DefaultCacheEvery
	}
	head, err := store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("state at %d: head: %w", at, err)
	}
	if at == 0 || at > head.Position {
		return nil, fmt.Errorf("state at %d: the log holds positions 1 to %d", at, head.Position)
	}
	target, err := readOne(ctx, store, at)
	if err != nil {
		return nil, fmt.Errorf("state at %d: %w", at, err)
	}
	st := &State{Position: at, Hash: target.Hash, Time: target.Time}
	for _, c := range snapshotCandidates(opts, at) {
		ok, err := st.tryFrom(ctx, store, codec, c, opts)
		if err != nil {
			return nil, err
		}
		if ok {
			return st, nil
		}
	}
	st.Jobs, st.Workers = projections.NewJobs(), projections.NewWorkers()
	st.From, st.FromDir = 0, ""
	pipe := startDecode(ctx, store, codec, 1, at)
	defer pipe.stop()
	if err := st.apply(ctx, store, codec, pipe, opts); err != nil {
		return nil, err
	}
	return st, nil
}

// candidate is a directory that may hold usable snapshots at pos (from the
// cache entry's name, or the directory's workers snapshot); cache marks
// replay's own entries, which StateAt may replace.
type candidate struct {
	dir   string
	pos   uint64
	cache bool
}

// snapshotCandidates lists the snapshot directories whose snapshots are at
// or before at, nearest first.
func snapshotCandidates(opts StateOptions, at uint64) []candidate {
	var out []candidate
	if opts.CacheDir != "" {
		ents, _ := os.ReadDir(opts.CacheDir)
		for _, e := range ents {
			p, err := strconv.ParseUint(e.Name(), 10, 64)
			if err != nil || !e.IsDir() || len(e.Name()) != 20 || p == 0 || p > at {
				continue
			}
			out = append(out, candidate{dir: filepath.Join(opts.CacheDir, e.Name()), pos: p, cache: true})
		}
	}
	for _, d := range opts.SnapshotDirs {
		// The workers snapshot is small: it tells where the directory stands.
		pos, _, err := projections.LoadSnapshot(d, projections.NewWorkers())
		if err == nil && pos > 0 && pos <= at {
			out = append(out, candidate{dir: d, pos: pos})
		}
	}
	slices.SortStableFunc(out, func(a, b candidate) int {
		switch {
		case a.pos > b.pos:
			return -1
		case a.pos < b.pos:
			return 1
		}
		return 0
	})
	return out
}

// tryFrom starts from the snapshots in c if they are both at c.pos and
// belong to this log; it reports false (and leaves st alone) if they are not.
// A cache entry that cannot be used is removed, so it is written again when
// a replay passes its position.
func (st *State) tryFrom(ctx context.Context, store eventstore.Store, codec *eventstore.Codec, c candidate, opts StateOptions) (bool, error) {
	drop := func() {
		if c.cache {
			_ = os.RemoveAll(c.dir)
		}
	}
	workers := projections.NewWorkers()
	pos, hash, err := projections.LoadSnapshot(c.dir, workers)
	if err != nil || pos != c.pos {
		drop()
		return false, nil
	}
	env, err := readOne(ctx, store, pos)
	if err != nil {
		return false, fmt.Errorf("state at %d: %w", st.Position, err)
	}
	if env.Hash != hash {
		if c.cache {
			st.Stale = append(st.Stale, pos)
		}
		drop()
		return false, nil
	}
	// Read and decode the events after the snapshot while the (larger) job
	// view loads.
	pipe := startDecode(ctx, store, codec, pos+1, st.Position)
	defer pipe.stop()
	jobs := projections.NewJobs()
	jpos, jhash, err := projections.LoadSnapshot(c.dir, jobs)
	if err != nil || jpos != pos || jhash != hash {
		drop()
		return false, nil
	}
	st.Jobs, st.Workers, st.From, st.FromDir = jobs, workers, pos, c.dir
	return true, st.apply(ctx, store, codec, pipe, opts)
}

// apply folds the pipeline's events into st's projections, writing cache
// snapshots at the multiples of opts.CacheEvery it passes.
func (st *State) apply(ctx context.Context, store eventstore.Store, codec *eventstore.Codec, pipe *decodePipe, opts StateOptions) error {
	total := st.Position - st.From
	projs := []projections.Projection{st.Jobs, st.Workers}
	for p := range pipe.pages() {
		if p.err != nil {
			return fmt.Errorf("state at %d: %w", st.Position, p.err)
		}
		for i := range p.envs {
			env := &p.envs[i]
			for _, pr := range projs {
				if err := pr.Apply(env, p.evs[i]); err != nil {
					return fmt.Errorf("state at %d: projection %s: position %d (%s): %w", st.Position, pr.Name(), env.Position, env.Type, err)
				}
			}
			st.Replayed++
			if opts.CacheDir != "" && env.Position%opts.CacheEvery == 0 {
				st.writeCache(store, codec, opts.CacheDir, env.Position)
			}
		}
		if opts.Progress != nil {
			opts.Progress(st.Replayed, total)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if st.Replayed != total {
		return fmt.Errorf("state at %d: replayed %d events from position %d, want %d", st.Position, st.Replayed, st.From+1, total)
	}
	return nil
}

// writeCache writes the projections as the cache entry for pos, unless one
// is there. The entry is built in a temporary directory and renamed into
// place, so a crash leaves no half-written entry.
func (st *State) writeCache(store eventstore.Store, codec *eventstore.Codec, dir string, pos uint64) {
	final := filepath.Join(dir, fmt.Sprintf("%020d", pos))
	if _, err := os.Stat(final); err == nil {
		return
	}
	err := func() error {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		tmp, err := os.MkdirTemp(dir, ".tmp-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		r, err := projections.NewRunner(store, codec, projections.RunnerOptions{SnapshotDir: tmp}, st.Jobs, st.Workers)
		if err != nil {
			return err
		}
		if err := r.Adopt(pos); err != nil {
			return err
		}
		if err := r.Snapshot(); err != nil {
			return err
		}
		return os.Rename(tmp, final)
	}()
	if err != nil {
		if st.CacheErr == nil {
			st.CacheErr = fmt.Errorf("replay cache %s: %w", final, err)
		}
		return
	}
	st.Cached = append(st.Cached, pos)
}

// readOne reads the event at pos.
func readOne(ctx context.Context, r eventstore.Reader, pos uint64) (*eventstore.Envelope, error) {
	page, err := r.ReadAll(ctx, pos, 1)
	if err != nil {
		return nil, fmt.Errorf("read position %d: %w", pos, err)
	}
	if len(page) != 1 || page[0].Position != pos {
		return nil, fmt.Errorf("read position %d: %w", pos, &eventstore.CorruptError{Position: pos, Reason: "missing"})
	}
	return &page[0], nil
}

// decodePipe reads positions from..to in pages on one goroutine and decodes
// them on GOMAXPROCS others; pages() yields them in order.
type decodePipe struct {
	ordered chan *decodedPage
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type decodedPage struct {
	envs  []eventstore.Envelope
	evs   []eventstore.Event
	err   error
	ready chan struct{} // closed when evs (or err) is set
}

const (
	pipePage  = 1024
	pipeDepth = 96 // pages in flight: bounds memory while a snapshot loads
)

func startDecode(ctx context.Context, r eventstore.Reader, codec *eventstore.Codec, from, to uint64) *decodePipe {
	ctx, cancel := context.WithCancel(ctx)
	p := &decodePipe{ordered: make(chan *decodedPage, pipeDepth), cancel: cancel}
	work := make(chan *decodedPage, pipeDepth)
	n := runtime.GOMAXPROCS(0)
	p.wg.Add(n + 1)
	for range n {
		go func() {
			defer p.wg.Done()
			for pg := range work {
				pg.evs = make([]eventstore.Event, len(pg.envs))
				for i := range pg.envs {
					ev, err := codec.Decode(&pg.envs[i])
					if err != nil {
						pg.err = fmt.Errorf("replay: %w", err)
						break
					}
					pg.evs[i] = ev
				}
				close(pg.ready)
			}
		}()
	}
	go func() {
		defer p.wg.Done()
		defer close(work)
		defer close(p.ordered)
		send := func(pg *decodedPage, decode bool) bool {
			select {
			case p.ordered <- pg:
			case <-ctx.Done():
				return false
			}
			if !decode {
				return true
			}
			select {
			case work <- pg:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for pos := from; pos <= to; {
			envs, err := r.ReadAll(ctx, pos, int(min(to-pos+1, pipePage)))
			if err == nil && len(envs) == 0 {
				err = fmt.Errorf("the log ends at %d, before %d", pos-1, to)
			}
			if err == nil && envs[0].Position != pos {
				err = &eventstore.CorruptError{Position: pos, Reason: "missing"}
			}
			if err != nil {
				pg := &decodedPage{err: fmt.Errorf("read from %d: %w", pos, err), ready: make(chan struct{})}
				close(pg.ready)
				send(pg, false)
				return
			}
			if !send(&decodedPage{envs: envs, ready: make(chan struct{})}, true) {
				return
			}
			pos = envs[len(envs)-1].Position + 1
		}
	}()
	return p
}

// pages yields the decoded pages in position order, each once decoded.
func (p *decodePipe) pages() func(yield func(*decodedPage) bool) {
	return func(yield func(*decodedPage) bool) {
		for pg := range p.ordered {
			<-pg.ready
			if !yield(pg) {
				return
			}
		}
	}
}

// stop ends the pipeline and waits for its goroutines.
func (p *decodePipe) stop() {
	p.cancel()
	for pg := range p.ordered { // unblock the reader
		_ = pg
	}
	p.wg.Wait()
}

// PositionAt returns the position of the last event whose time is at or
// before t. It searches by bisection, so it assumes event times do not go
// backwards along the log (the server stamps events with its clock as it
// decides them); if a clock step made them, the answer is a position where
// the times cross t.
func PositionAt(ctx context.Context, log Log, t time.Time) (uint64, error) {
	head, err := log.Head(ctx)
	if err != nil {
		return 0, fmt.Errorf("position at %s: head: %w", t.Format(TimeFormat), err)
	}
	if head.Position == 0 {
		return 0, fmt.Errorf("position at %s: the log is empty", t.Format(TimeFormat))
	}
	timeOf := func(p uint64) (time.Time, error) {
		e, err := readOne(ctx, log, p)
		if err != nil {
			return time.Time{}, fmt.Errorf("position at %s: %w", t.Format(TimeFormat), err)
		}
		return e.Time, nil
	}
	first, err := timeOf(1)
	if err != nil {
		return 0, err
	}
	if first.After(t) {
		return 0, fmt.Errorf("position at %s: the log starts later, at %s", t.UTC().Format(TimeFormat), first.UTC().Format(TimeFormat))
	}
	lo, hi := uint64(1), head.Position // time(lo) <= t; answer in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		tm, err := timeOf(mid)
		if err != nil {
			return 0, err
		}
		if tm.After(t) {
			hi = mid - 1
		} else {
			lo = mid
		}
	}
	return lo, nil
}

// JobAt folds job id's stream up to and including position at: the job's
// full aggregate state as it was then. ok is false when the job had not been
// submitted by then.
func JobAt(ctx context.Context, r StreamReader, codec *eventstore.Codec, id string, at uint64) (job domain.Job, ok bool, err error) {
	stream := domain.JobStream(id)
	for from := uint64(1); ; {
		page, err := r.ReadStream(ctx, stream, from, 1000)
		if err != nil {
			return job, false, fmt.Errorf("job %s at %d: %w", id, at, err)
		}
		for i := range page {
			if page[i].Position > at {
				return job, job.Exists(), nil
			}
			ev, err := codec.Decode(&page[i])
			if err != nil {
				return job, false, fmt.Errorf("job %s at %d: %w", id, at, err)
			}
			de, isDomain := ev.(domain.Event)
			if !isDomain {
				return job, false, fmt.Errorf("job %s at %d: position %d: %s is not a domain event", id, at, page[i].Position, page[i].Type)
			}
			job = job.Apply(de)
		}
		if len(page) < 1000 {
			return job, job.Exists(), nil
		}
		from = page[len(page)-1].StreamVersion + 1
	}
}
