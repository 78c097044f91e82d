package replay

import (
	"context"
	"errors"
	"fmt"

	"github.com/hodei-jobs/hodei/eventstore"
)

// StreamIndex is implemented by adapters that keep a stream index beside the
// log; Verify then checks that the index agrees with the log.
type StreamIndex interface {
	// ForEachStream calls fn with every stream's recorded head.
	ForEachStream(fn func(stream string, version, lastPosition uint64) error) error
	// ForEachStreamIndex calls fn with every (stream, version) -> position entry.
	ForEachStreamIndex(fn func(stream string, version, position uint64) error) error
}

// Header is implemented by stores that record their head separately from the
// events (every Store does, through Head).
type Header interface {
	Head(ctx context.Context) (eventstore.Head, error)
}

// Report is the result of Verify.
type Report struct {
	Events  uint64          // events checked
	Streams int             // distinct streams
	Head    eventstore.Head // last position and hash checked
	// Problem is the first violation found, nil when the log is intact.
	Problem *eventstore.CorruptError
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return r.Problem == nil }

// Progress is called now and then with the number of events checked.
type Progress func(checked uint64)

// Verify reads the whole log from r and checks it. A log that breaks an
// invariant gives a Report with Problem set (and a nil error); the error is
// for failures to read at all. When r is also a StreamIndex or Header, the
// index and the recorded head are checked against the log.
func Verify(ctx context.Context, r eventstore.Reader, progress Progress) (*Report, error) {
	rep := &Report{}
	versions := map[string]uint64{}
	lastPos := map[string]uint64{}
	// at[p-1] is the stream and version at position p, for the index check.
	type loc struct {
		stream  string
		version uint64
	}
	var at []loc
	var prev eventstore.Hash
	var pos uint64
	fail := func(p uint64, format string, args ...any) (*Report, error) {
		rep.Problem = &eventstore.CorruptError{Position: p, Reason: fmt.Sprintf(format, args...)}
		rep.Streams = len(versions)
		return rep, nil
	}
	for {
		page, err := r.ReadAll(ctx, pos+1, 4096)
		var ce *eventstore.CorruptError
		if errors.As(err, &ce) {
			rep.Problem = ce
			rep.Streams = len(versions)
			return rep, nil
		}
		if err != nil {
			return nil, fmt.Errorf("verify: read from %d: %w", pos+1, err)
		}
		if len(page) == 0 {
			break
		}
		for i := range page {
			e := &page[i]
			if err := eventstore.VerifyLink(pos, prev, e); err != nil {
				errors.As(err, &ce)
				rep.Problem = ce
				rep.Streams = len(versions)
				return rep, nil
			}
			want := versions[e.StreamID] + 1
			if e.StreamVersion != want {
				return fail(e.Position, "stream %s version %d, want %d (versions must be contiguous)", e.StreamID, e.StreamVersion, want)
			}
			versions[e.StreamID] = want
			lastPos[e.StreamID] = e.Position
			at = append(at, loc{e.StreamID, want})
			pos, prev = e.Position, e.Hash
			rep.Events++
			rep.Head = eventstore.Head{Position: pos, Hash: prev}
		}
		if progress != nil {
			progress(rep.Events)
		}
	}
	rep.Streams = len(versions)
	if h, ok := r.(Header); ok {
		head, err := h.Head(ctx)
		if err != nil {
			var ce *eventstore.CorruptError
			if errors.As(err, &ce) {
				rep.Problem = ce
				return rep, nil
			}
			return nil, fmt.Errorf("verify: head: %w", err)
		}
		if head != rep.Head {
			return fail(head.Position, "recorded head is position %d hash %s, the log ends at position %d hash %s",
				head.Position, head.Hash, rep.Head.Position, rep.Head.Hash)
		}
	}
	if idx, ok := r.(StreamIndex); ok {
		lookup := func(p uint64) (string, uint64, bool) {
			if p == 0 || p > uint64(len(at)) {
				return "", 0, false
			}
			return at[p-1].stream, at[p-1].version, true
		}
		p, err := checkIndex(idx, versions, lastPos, lookup)
		if err != nil {
			return nil, err
		}
		rep.Problem = p
	}
	return rep, nil
}

// checkIndex compares the adapter's stream index and stream heads with the
// versions found in the log.
func checkIndex(idx StreamIndex, versions, lastPos map[string]uint64, lookup func(uint64) (string, uint64, bool)) (*eventstore.CorruptError, error) {
	var problem *eventstore.CorruptError
	entries := map[string]uint64{}
	err := idx.ForEachStreamIndex(func(stream string, version, position uint64) error {
		s, v, ok := lookup(position)
		if !ok || s != stream || v != version {
			problem = &eventstore.CorruptError{Position: position,
				Reason: fmt.Sprintf("stream index says %s version %d is here, the log disagrees", stream, version)}
			return errStop
		}
		entries[stream]++
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, fmt.Errorf("verify: stream index: %w", err)
	}
	if problem != nil {
		return problem, nil
	}
	for stream, v := range versions {
		if entries[stream] != v {
			return &eventstore.CorruptError{Position: lastPos[stream],
				Reason: fmt.Sprintf("stream index holds %d entries for %s, the log %d", entries[stream], stream, v)}, nil
		}
	}
	heads := 0
	err = idx.ForEachStream(func(stream string, version, last uint64) error {
		heads++
		if versions[stream] != version || lastPos[stream] != last {
			problem = &eventstore.CorruptError{Position: last,
				Reason: fmt.Sprintf("stream head says %s is at version %d (position %d), the log has version %d (position %d)",
					stream, version, last, versions[stream], lastPos[stream])}
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, fmt.Errorf("verify: stream heads: %w", err)
	}
	if problem == nil && heads != len(versions) {
		problem = &eventstore.CorruptError{Reason: fmt.Sprintf("%d stream heads recorded, the log has %d streams", heads, len(versions))}
	}
	return problem, nil
}

var errStop = errors.New("stop")
