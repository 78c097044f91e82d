package projections

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/internal/atomicfile"
)

// Projection is one read model.
type Projection interface {
	// Name is the persistent identifier of the projection and of its state
	// layout, e.g. "jobs.v1".
	Name() string
	// Apply folds one event. ev is the decoded, upcast event. An error stops
	// the runner: a projection must accept every event type of the codec.
	Apply(env *eventstore.Envelope, ev eventstore.Event) error
	// MarshalState encodes the whole state deterministically (equal states
	// give equal bytes).
	MarshalState() ([]byte, error)
	// UnmarshalState replaces the state with a decoded snapshot.
	UnmarshalState([]byte) error
}

// StateHash is the SHA-256 of a projection's encoded state.
func StateHash(p Projection) ([32]byte, error) {
	b, err := p.MarshalState()
	if err != nil {
		return [32]byte{}, fmt.Errorf("state hash %s: %w", p.Name(), err)
	}
	return sha256.Sum256(b), nil
}

// RunnerOptions configures a Runner.
type RunnerOptions struct {
	// SnapshotDir holds one snapshot file per projection. Empty disables
	// snapshots (every start replays from position 1).
	SnapshotDir string
	// SnapshotEvery writes snapshots after this many events (default 50,000)
	// and at shutdown.
	SnapshotEvery uint64
	// Progress, when set, is called after each applied batch with the position
	// reached.
	Progress func(position uint64)
	// Observe, when set, is called with every event after all projections
	// have applied it, on the runner's goroutine, in order. It lets live
	// components (the scheduler's queue, agent sessions) follow the log
	// without a second subscription. It must not block.
	Observe func(env *eventstore.Envelope, ev eventstore.Event)
}

// Runner feeds projections from the log in global order. Open, then Run.
type Runner struct {
	store eventstore.Store
	codec *eventstore.Codec
	projs []Projection
	opts  RunnerOptions

	mu       sync.Mutex
	cond     *sync.Cond
	position uint64   // every projection has applied through here
	starts   []uint64 // per projection: position its snapshot reflects
	lastSnap uint64
	runErr   error
}

// NewRunner returns a runner for projs, which must have distinct names.
func NewRunner(store eventstore.Store, codec *eventstore.Codec, opts RunnerOptions, projs ...Projection) (*Runner, error) {
	seen := map[string]bool{}
	for _, p := range projs {
		if seen[p.Name()] {
			return nil, fmt.Errorf("new runner: projection %q registered twice", p.Name())
		}
		seen[p.Name()] = true
	}
	if opts.SnapshotEvery == 0 {
		opts.SnapshotEvery = 50_000
	}
	r := &Runner{store: store, codec: codec, projs: projs, opts: opts, starts: make([]uint64, len(projs))}
	r.cond = sync.NewCond(&r.mu)
	return r, nil
}

// Open loads every projection's snapshot, if any, that is not ahead of the
// log. A missing, unreadable or foreign snapshot is ignored (that projection
// is rebuilt from position 1), never trusted.
func (r *Runner) Open(ctx context.Context) error {
	head, err := r.store.Head(ctx)
	if err != nil {
		return fmt.Errorf("open projections: %w", err)
	}
	minPos := head.Position
	for i, p := range r.projs {
		r.starts[i] = 0
		if r.opts.SnapshotDir != "" {
			pos, state, err := readSnapshot(r.snapshotPath(p))
			if err == nil && pos <= head.Position {
				// The snapshot must belong to this log: its position's hash matches.
				if ok, err := r.snapshotMatches(ctx, pos, state.hash); err != nil {
					return err
				} else if ok {
					if err := p.UnmarshalState(state.body); err == nil {
						r.starts[i] = pos
					}
				}
			}
		}
		if r.starts[i] == 0 {
			if err := p.UnmarshalState(nil); err != nil {
				return fmt.Errorf("open projection %s: reset: %w", p.Name(), err)
			}
		}
		if r.starts[i] < minPos {
			minPos = r.starts[i]
		}
	}
	r.mu.Lock()
	r.position = minPos
	r.lastSnap = minPos
	r.mu.Unlock()
	return nil
}

func (r *Runner) snapshotMatches(ctx context.Context, pos uint64, h eventstore.Hash) (bool, error) {
	if pos == 0 {
		return h.IsZero(), nil
	}
	page, err := r.store.ReadAll(ctx, pos, 1)
	if err != nil {
		return false, fmt.Errorf("open projections: read position %d: %w", pos, err)
	}
	return len(page) == 1 && page[0].Hash == h, nil
}

// Position returns the position every projection has applied through.
func (r *Runner) Position() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.position
}

// WaitFor blocks until every projection has applied position pos (read your
// own writes), the runner stops, or ctx ends.
func (r *Runner) WaitFor(ctx context.Context, pos uint64) error {
	stop := context.AfterFunc(ctx, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.position < pos {
		if r.runErr != nil {
			return r.runErr
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		r.cond.Wait()
	}
	return nil
}

// CatchUp applies events until the head of the log as it was when called,
// without subscribing; used by tools and at start-up.
func (r *Runner) CatchUp(ctx context.Context) error {
	head, err := r.store.Head(ctx)
	if err != nil {
		return fmt.Errorf("catch up: %w", err)
	}
	return r.CatchUpTo(ctx, head.Position)
}

// CatchUpTo applies events until position to (used by replay of past state).
func (r *Runner) CatchUpTo(ctx context.Context, to uint64) error {
	for r.Position() < to {
		n := to - r.Position()
		if n > 4096 {
			n = 4096
		}
		page, err := r.store.ReadAll(ctx, r.Position()+1, int(n))
		if err != nil {
			return fmt.Errorf("catch up from %d: %w", r.Position()+1, err)
		}
		if len(page) == 0 {
			return fmt.Errorf("catch up: log ends at %d, before %d", r.Position(), to)
		}
		if err := r.apply(page); err != nil {
			return err
		}
	}
	return nil
}

// Run follows the log until ctx ends, applying every committed event, and
// writes snapshots as configured and once more on the way out.
func (r *Runner) Run(ctx context.Context) error {
	sub := r.store.Subscribe(r.Position())
	defer sub.Close()
	err := r.follow(ctx, sub)
	if serr := r.Snapshot(); serr != nil && err == nil {
		err = serr
	}
	r.mu.Lock()
	if r.runErr == nil {
		r.runErr = errors.New("projections runner stopped")
		if err != nil {
			r.runErr = err
		}
	}
	r.cond.Broadcast()
	r.mu.Unlock()
	if errors.Is(err, context.Canceled) || errors.Is(err, eventstore.ErrClosed) {
		return nil
	}
	return err
}

func (r *Runner) follow(ctx context.Context, sub *eventstore.Subscription) error {
	for {
		batch, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		if err := r.apply(batch); err != nil {
			return err
		}
		if r.Position()-r.lastSnap >= r.opts.SnapshotEvery {
			if err := r.Snapshot(); err != nil {
				return err
			}
		}
	}
}

func (r *Runner) apply(batch []eventstore.Envelope) error {
	for i := range batch {
		e := &batch[i]
		ev, err := r.codec.Decode(e)
		if err != nil {
			return fmt.Errorf("projections: %w", err)
		}
		for j, p := range r.projs {
			if e.Position <= r.starts[j] {
				continue // already in this projection's snapshot
			}
			if err := p.Apply(e, ev); err != nil {
				return fmt.Errorf("projection %s: position %d (%s): %w", p.Name(), e.Position, e.Type, err)
			}
		}
		if r.opts.Observe != nil {
			r.opts.Observe(e, ev)
		}
	}
	if len(batch) > 0 {
		last := batch[len(batch)-1].Position
		r.mu.Lock()
		r.position = last
		r.cond.Broadcast()
		r.mu.Unlock()
		if r.opts.Progress != nil {
			r.opts.Progress(last)
		}
	}
	return nil
}

// Snapshot writes every projection's state at the current position. The
// caller must not run it concurrently with Apply (Run calls it between
// batches).
func (r *Runner) Snapshot() error {
	if r.opts.SnapshotDir == "" {
		return nil
	}
	pos := r.Position()
	var h eventstore.Hash
	if pos > 0 {
		page, err := r.store.ReadAll(context.Background(), pos, 1)
		if err != nil || len(page) != 1 {
			return fmt.Errorf("snapshot: read position %d: %v", pos, err)
		}
		h = page[0].Hash
	}
	if err := os.MkdirAll(r.opts.SnapshotDir, 0o700); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	for _, p := range r.projs {
		body, err := p.MarshalState()
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", p.Name(), err)
		}
		if err := writeSnapshot(r.snapshotPath(p), pos, h, body); err != nil {
			return fmt.Errorf("snapshot %s: %w", p.Name(), err)
		}
	}
	r.mu.Lock()
	r.lastSnap = pos
	r.mu.Unlock()
	return nil
}

func (r *Runner) snapshotPath(p Projection) string {
	return filepath.Join(r.opts.SnapshotDir, p.Name()+".snap")
}

// Snapshot file layout: magic "HODEISNP", version 1, position (8), hash of
// that position (32), body length (8), body, CRC-32C of everything before.
const snapMagic = "HODEISNP"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type snapState struct {
	hash eventstore.Hash
	body []byte
}

func writeSnapshot(path string, pos uint64, h eventstore.Hash, body []byte) error {
	buf := make([]byte, 0, len(body)+64)
	buf = append(buf, snapMagic...)
	buf = append(buf, 1)
	buf = binary.BigEndian.AppendUint64(buf, pos)
	buf = append(buf, h[:]...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(len(body)))
	buf = append(buf, body...)
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
	return atomicfile.Write(path, buf, 0o600)
}

func readSnapshot(path string) (uint64, snapState, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, snapState{}, err
	}
	const hdr = len(snapMagic) + 1 + 8 + 32 + 8
	if len(b) < hdr+4 || string(b[:len(snapMagic)]) != snapMagic || b[len(snapMagic)] != 1 {
		return 0, snapState{}, fmt.Errorf("read snapshot %s: not a version 1 snapshot", path)
	}
	sum := binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(b[:len(b)-4], castagnoli) != sum {
		return 0, snapState{}, fmt.Errorf("read snapshot %s: checksum mismatch", path)
	}
	p := b[len(snapMagic)+1:]
	pos := binary.BigEndian.Uint64(p)
	var st snapState
	copy(st.hash[:], p[8:40])
	n := binary.BigEndian.Uint64(p[40:48])
	if n != uint64(len(b)-hdr-4) {
		return 0, snapState{}, fmt.Errorf("read snapshot %s: body length %d, file holds %d: %w", path, n, len(b)-hdr-4, io.ErrUnexpectedEOF)
	}
	st.body = p[48 : 48+n]
	return pos, st, nil
}

// LoadSnapshot restores p from its snapshot in dir and returns the position
// the snapshot reflects and the hash of the event at that position. It is
// for tools that compare a rebuild with the live state.
func LoadSnapshot(dir string, p Projection) (uint64, eventstore.Hash, error) {
	pos, st, err := readSnapshot(filepath.Join(dir, p.Name()+".snap"))
	if err != nil {
		return 0, eventstore.Hash{}, err
	}
	if err := p.UnmarshalState(st.body); err != nil {
		return 0, eventstore.Hash{}, fmt.Errorf("load snapshot %s: %w", p.Name(), err)
	}
	return pos, st.hash, nil
}

// Adopt declares that the projections already reflect position pos (they
// were built by another runner), so Snapshot writes them at pos.
func (r *Runner) Adopt(pos uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.position = pos
	for i := range r.starts {
		r.starts[i] = pos
	}
	return nil
}
