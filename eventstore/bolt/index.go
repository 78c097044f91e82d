package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"

	"github.com/hodei-jobs/hodei/eventstore"
)

// The index buckets (streams, stream_idx, event_ids) are written behind the
// log. Each commit writes only its events (sequential keys at the right edge
// of the events bucket) and the meta head; the index entries of recent events
// live in memory, in a generation, until a whole generation is written to the
// index buckets in key order, a chunk per commit. Random event ids and many
// streams then cost one page write per touched page per generation instead
// of one per commit. meta "indexed" records the position up to which the
// index buckets are complete; Open rebuilds the generations of the events
// above it from the log itself, which is durable, so nothing is lost in a
// crash: the index is the log's derived data and the log is its journal.

// generation indexes the events at positions (lo, hi] in memory.
type generation struct {
	lo, hi  uint64
	ids     map[eventstore.ID]uint64
	streams map[string]*memStream
}

// memStream holds a stream's positions within one generation: pos[i] is the
// position of version first+i.
type memStream struct {
	first uint64
	pos   []uint64
}

func (m *memStream) last() (version, pos uint64) {
	return m.first + uint64(len(m.pos)) - 1, m.pos[len(m.pos)-1]
}

// newGeneration returns an empty generation that starts after position lo,
// with room for about size events.
func newGeneration(lo uint64, size int) *generation {
	return &generation{lo: lo, hi: lo, ids: make(map[eventstore.ID]uint64, size), streams: make(map[string]*memStream, size/8)}
}

func (g *generation) size() int { return int(g.hi - g.lo) }

// add indexes the next event of the log. The caller guarantees the event is
// at position g.hi+1 and is the next version of its stream.
func (g *generation) add(e *eventstore.Envelope) {
	g.ids[e.EventID] = e.Position
	ms := g.streams[e.StreamID]
	if ms == nil {
		ms = &memStream{first: e.StreamVersion, pos: make([]uint64, 0, 4)}
		g.streams[e.StreamID] = ms
	}
	ms.pos = append(ms.pos, e.Position)
	g.hi = e.Position
}

// tail is the in-memory part of the index: frozen is being written to the
// index buckets (nil when none is), active takes new events. frozen covers
// (indexed, active.lo]; active covers (active.lo, head].
type tail struct {
	frozen, active *generation
}

// stream returns the newest in-memory head of stream.
func (t *tail) stream(stream string) (version, pos uint64, ok bool) {
	if ms := t.active.streams[stream]; ms != nil {
		version, pos = ms.last()
		return version, pos, true
	}
	if t.frozen != nil {
		if ms := t.frozen.streams[stream]; ms != nil {
			version, pos = ms.last()
			return version, pos, true
		}
	}
	return 0, 0, false
}

// eventID returns the position of an event id indexed in memory.
func (t *tail) eventID(id eventstore.ID) (uint64, bool) {
	if p, ok := t.active.ids[id]; ok {
		return p, true
	}
	if t.frozen != nil {
		if p, ok := t.frozen.ids[id]; ok {
			return p, true
		}
	}
	return 0, false
}

// streamPositions returns the first in-memory version of stream and the
// positions of versions from there on (nil, 0 when the stream has no events
// in memory). The slice is a copy.
func (t *tail) streamPositions(stream string, from uint64, limit int) (first uint64, pos []uint64) {
	for _, g := range []*generation{t.frozen, t.active} {
		if g == nil {
			continue
		}
		ms := g.streams[stream]
		if ms == nil {
			continue
		}
		if first == 0 {
			first = ms.first
		}
		for i, p := range ms.pos {
			if v := ms.first + uint64(i); v >= from && len(pos) < limit {
				pos = append(pos, p)
			}
		}
	}
	return first, pos
}

// mergeGenerations returns one generation holding a's events then b's (b
// follows a in the log). Both are left unchanged.
func mergeGenerations(a, b *generation) *generation {
	m := &generation{lo: a.lo, hi: b.hi, ids: make(map[eventstore.ID]uint64, len(a.ids)+len(b.ids)),
		streams: make(map[string]*memStream, len(a.streams)+len(b.streams))}
	for _, g := range []*generation{a, b} {
		for id, p := range g.ids {
			m.ids[id] = p
		}
		for s, ms := range g.streams {
			if prev := m.streams[s]; prev != nil {
				prev.pos = append(prev.pos, ms.pos...)
				continue
			}
			m.streams[s] = &memStream{first: ms.first, pos: slices.Clone(ms.pos)}
		}
	}
	return m
}

// indexFillPercent is how full the writer packs index pages: entries come
// in sorted runs, so pages split late and stay dense.
const indexFillPercent = 0.9

// flushPlan writes a frozen generation to the index buckets in key order,
// a chunk per commit.
type flushPlan struct {
	g     *generation
	ids   []idPos  // sorted by id
	idx   []idxRun // sorted by stream index key
	heads []string // sorted by stream id
	done  flushCursor
}

type idPos struct {
	id  eventstore.ID
	pos uint64
}

type idxRun struct {
	prefix []byte // streamPrefix(stream)
	ms     *memStream
}

// flushCursor is how far a plan has been written; it only moves when the
// commit that wrote the chunk succeeds.
type flushCursor struct {
	ids, idx, idxVer, heads int
}

func newFlushPlan(g *generation) *flushPlan {
	p := &flushPlan{g: g, ids: make([]idPos, 0, len(g.ids)), idx: make([]idxRun, 0, len(g.streams)), heads: make([]string, 0, len(g.streams))}
	for id, pos := range g.ids {
		p.ids = append(p.ids, idPos{id, pos})
	}
	slices.SortFunc(p.ids, func(a, b idPos) int { return bytes.Compare(a.id[:], b.id[:]) })
	for s, ms := range g.streams {
		p.idx = append(p.idx, idxRun{prefix: streamPrefix(nil, s), ms: ms})
		p.heads = append(p.heads, s)
	}
	slices.SortFunc(p.idx, func(a, b idxRun) int { return bytes.Compare(a.prefix, b.prefix) })
	sort.Strings(p.heads)
	return p
}

// entries is the number of index entries the plan writes in all.
func (p *flushPlan) entries() int { return len(p.ids) + p.g.size() + len(p.heads) }

// step writes up to budget entries after p.done and returns the new cursor.
// When the plan is complete it also moves meta "indexed" to the generation's
// end. Keys and values are carved from a, which outlives the transaction.
func (p *flushPlan) step(b buckets, budget int, a *arena) (flushCursor, bool, error) {
	c := p.done
	for ; budget > 0 && c.ids < len(p.ids); c.ids, budget = c.ids+1, budget-1 {
		e := &p.ids[c.ids]
		if err := b.eventIDs.Put(e.id[:], a.pos(e.pos)); err != nil {
			return c, false, fmt.Errorf("index event id %s: %w", e.id, err)
		}
	}
	for budget > 0 && c.idx < len(p.idx) {
		r := &p.idx[c.idx]
		for ; budget > 0 && c.idxVer < len(r.ms.pos); c.idxVer, budget = c.idxVer+1, budget-1 {
			k := a.take(len(r.prefix) + 8)
			k = binary.BigEndian.AppendUint64(append(k, r.prefix...), r.ms.first+uint64(c.idxVer))
			a.commit(len(k))
			if err := b.streamIdx.Put(k, a.pos(r.ms.pos[c.idxVer])); err != nil {
				return c, false, fmt.Errorf("index stream key %x: %w", k, err)
			}
		}
		if c.idxVer == len(r.ms.pos) {
			c.idx, c.idxVer = c.idx+1, 0
		}
	}
	for ; budget > 0 && c.heads < len(p.heads); c.heads, budget = c.heads+1, budget-1 {
		s := p.heads[c.heads]
		version, last := p.g.streams[s].last()
		k := a.take(len(s))
		k = append(k, s...)
		a.commit(len(k))
		v := a.take(streamValueLen)
		v = streamValue(v, version, last)
		a.commit(len(v))
		if err := b.streams.Put(k, v); err != nil {
			return c, false, fmt.Errorf("index stream head %q: %w", s, err)
		}
	}
	if c.ids < len(p.ids) || c.idx < len(p.idx) || c.heads < len(p.heads) {
		return c, false, nil
	}
	if err := b.meta.Put(keyIndexed, a.pos(p.g.hi)); err != nil {
		return c, false, fmt.Errorf("put meta %s: %w", keyIndexed, err)
	}
	return c, true, nil
}

// arena hands out byte slices that stay valid after later allocations: a
// transaction's keys and values must outlive it, and published envelopes
// alias their payload bytes. Memory is never reused, only dropped.
type arena struct{ buf []byte }

const arenaChunk = 256 << 10

// take returns an empty slice with capacity n at the arena's end; commit
// then claims what was appended to it.
func (a *arena) take(n int) []byte {
	if cap(a.buf)-len(a.buf) < n {
		size := arenaChunk
		if n > size {
			size = n
		}
		a.buf = make([]byte, 0, size)
	}
	return a.buf[len(a.buf) : len(a.buf) : len(a.buf)+n]
}

func (a *arena) commit(n int) { a.buf = a.buf[:len(a.buf)+n] }

// pos returns BE64(p) in arena memory.
func (a *arena) pos(p uint64) []byte {
	b := binary.BigEndian.AppendUint64(a.take(8), p)
	a.commit(8)
	return b
}
