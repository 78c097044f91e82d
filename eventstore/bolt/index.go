package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
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
//
// Event ids are kept in the order of the log, not in a map: inserting random
// keys into a map of a generation's size misses the cache on every event,
// and lookups by id are rare (the key filter answers most of them). Every
// idRun entries the newest run is sorted in place, so a lookup is a binary
// search per sorted run and a scan of the unsorted rest, and a flush plan
// starts from sorted runs.
type generation struct {
	lo, hi  uint64
	ids     []idPos // appended in log order; ids[:sorted]: full runs of idRun, each sorted
	sorted  int
	streams map[string]*memStream
	scratch []idPos // for sorting runs
}

// idRun is the length of the sorted runs of generation.ids.
const idRun = 4096

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
	return &generation{lo: lo, hi: lo, ids: make([]idPos, 0, size), streams: make(map[string]*memStream, size/8)}
}

func (g *generation) size() int { return int(g.hi - g.lo) }

// add indexes the next event of the log. The caller guarantees the event is
// at position g.hi+1 and is the next version of its stream.
func (g *generation) add(e *eventstore.Envelope) {
	g.ids = append(g.ids, newIDPos(e.EventID, e.Position))
	if len(g.ids)-g.sorted == idRun {
		g.scratch = sortIDs(g.ids[g.sorted:], g.scratch)
		g.sorted = len(g.ids)
	}
	ms := g.streams[e.StreamID]
	if ms == nil {
		ms = &memStream{first: e.StreamVersion, pos: make([]uint64, 0, 4)}
		g.streams[e.StreamID] = ms
	}
	ms.pos = append(ms.pos, e.Position)
	g.hi = e.Position
}

// eventID returns the position of an event id in g.
func (g *generation) eventID(id eventstore.ID) (uint64, bool) {
	k := newIDPos(id, 0)
	for lo := 0; lo < g.sorted; lo += idRun {
		run := g.ids[lo : lo+idRun]
		i := sort.Search(len(run), func(i int) bool { return !run[i].less(k) })
		if i < len(run) && run[i].hi == k.hi && run[i].lo == k.lo {
			return run[i].pos, true
		}
	}
	for _, e := range g.ids[g.sorted:] {
		if e.hi == k.hi && e.lo == k.lo {
			return e.pos, true
		}
	}
	return 0, false
}

// sortedIDs returns a copy of g's ids in id order.
func (g *generation) sortedIDs() []idPos {
	ids := slices.Clone(g.ids)
	sortIDs(ids, nil)
	return ids
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
	if p, ok := t.active.eventID(id); ok {
		return p, true
	}
	if t.frozen != nil {
		return t.frozen.eventID(id)
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
	m := &generation{lo: a.lo, hi: b.hi, ids: make([]idPos, 0, len(a.ids)+len(b.ids)),
		streams: make(map[string]*memStream, len(a.streams)+len(b.streams))}
	for _, g := range []*generation{a, b} {
		m.ids = append(m.ids, g.ids...)
		for s, ms := range g.streams {
			if prev := m.streams[s]; prev != nil {
				prev.pos = append(prev.pos, ms.pos...)
				continue
			}
			m.streams[s] = &memStream{first: ms.first, pos: slices.Clone(ms.pos)}
		}
	}
	for len(m.ids)-m.sorted >= idRun {
		m.scratch = sortIDs(m.ids[m.sorted:m.sorted+idRun], m.scratch)
		m.sorted += idRun
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

	// Advanced by the committer (under its mu) when a commit succeeds.
	done     flushCursor
	complete bool // everything is written and meta "indexed" moved
}

// idPos is an event id, as two big-endian halves (so ids sort as integers),
// and its position.
type idPos struct {
	hi, lo, pos uint64
}

func newIDPos(id eventstore.ID, pos uint64) idPos {
	return idPos{binary.BigEndian.Uint64(id[:8]), binary.BigEndian.Uint64(id[8:]), pos}
}

func (e idPos) id() (id eventstore.ID) {
	binary.BigEndian.PutUint64(id[:8], e.hi)
	binary.BigEndian.PutUint64(id[8:], e.lo)
	return id
}

func (e idPos) less(f idPos) bool { return e.hi < f.hi || (e.hi == f.hi && e.lo < f.lo) }

func cmpIDPos(e, f idPos) int {
	switch {
	case e.less(f):
		return -1
	case f.less(e):
		return 1
	}
	return 0
}

// sortIDs sorts ids by id, using scratch (which it may grow and returns)
// as temporary space. Random ids (the usual v4 UUIDs) are distributed into
// about len(ids)/4 buckets by their first bits and the small buckets sorted
// by insertion: several times faster than a comparison sort of the whole.
// Ids that share their first bits (time-ordered UUIDs) fall back to one.
func sortIDs(ids, scratch []idPos) []idPos {
	if len(ids) < 256 {
		slices.SortFunc(ids, cmpIDPos)
		return scratch
	}
	nbits := min(max(bits.Len(uint(len(ids)))-2, 4), 16)
	shift := 64 - nbits
	counts := make([]int32, 1<<nbits+1)
	for _, e := range ids {
		counts[e.hi>>shift+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	if cap(scratch) < len(ids) {
		scratch = make([]idPos, len(ids))
	}
	out := scratch[:len(ids)]
	next := slices.Clone(counts[:1<<nbits])
	for _, e := range ids {
		b := e.hi >> shift
		out[next[b]] = e
		next[b]++
	}
	for b := 0; b < 1<<nbits; b++ {
		run := out[counts[b]:counts[b+1]]
		if len(run) > 16 {
			slices.SortFunc(run, cmpIDPos)
			continue
		}
		for i := 1; i < len(run); i++ {
			for j := i; j > 0 && run[j].less(run[j-1]); j-- {
				run[j], run[j-1] = run[j-1], run[j]
			}
		}
	}
	copy(ids, out)
	return scratch
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
	p := &flushPlan{g: g, ids: g.sortedIDs(), idx: make([]idxRun, 0, len(g.streams)), heads: make([]string, 0, len(g.streams))}
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
		k := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(a.take(16), e.hi), e.lo)
		a.commit(len(k))
		if err := b.eventIDs.Put(k, a.pos(e.pos)); err != nil {
			return c, false, fmt.Errorf("index event id %s: %w", e.id(), err)
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

// arena hands out byte slices that stay valid after later allocations: index
// keys and values must outlive their transaction, and published envelopes
// hold their payloads. Memory is never reused, only dropped.
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

// copy returns a copy of b in arena memory (never nil).
func (a *arena) copy(b []byte) []byte {
	c := append(a.take(len(b)), b...)
	a.commit(len(c))
	if c == nil {
		c = []byte{}
	}
	return c
}

// pos returns BE64(p) in arena memory.
func (a *arena) pos(p uint64) []byte {
	b := binary.BigEndian.AppendUint64(a.take(8), p)
	a.commit(8)
	return b
}
