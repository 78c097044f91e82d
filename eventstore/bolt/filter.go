package bolt

import (
	"hash/maphash"
	"math/bits"
)

// keyFilter is an in-memory Bloom filter over the keys of an index (event
// ids, stream names) so the committer reads the index buckets only for keys
// that may be there: a new event id or a new stream, the common case, costs
// no B-tree lookup. It never forgets a key (no false negatives); about 1% of
// absent keys read the bucket anyway. It grows by adding parts of twice the
// capacity, so it never needs the keys again. Open builds it from the index
// buckets and the rebuilt tail; only the committer uses it afterwards.
type keyFilter struct {
	seed  maphash.Seed
	parts []*bloomPart
}

// bloomPart is a split-block Bloom filter: each key sets one bit in each of
// the eight 32-bit words of one 256-bit block (one cache line holds two).
type bloomPart struct {
	blocks [][8]uint32
	n, cap int
}

const (
	filterBitsPerKey = 12 // about 1% false positives
	// minFilterKeys is the least capacity of a filter. An absent key probes
	// every part, each a likely cache miss, so the event id filter starts
	// large enough (512 KiB) for a few hundred thousand events in one part.
	minFilterKeys   = 1 << 16
	minIDFilterKeys = 1 << 18
)

var bloomSalts = [8]uint32{0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d, 0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31}

// newKeyFilter returns a filter for about expected keys, at least least.
func newKeyFilter(expected, least int) *keyFilter {
	f := &keyFilter{seed: maphash.MakeSeed()}
	f.grow(max(expected, least))
	return f
}

func (f *keyFilter) grow(capacity int) {
	nblocks := 1 << bits.Len(uint(capacity*filterBitsPerKey/256-1))
	f.parts = append(f.parts, &bloomPart{blocks: make([][8]uint32, nblocks), cap: capacity})
}

func (f *keyFilter) hashBytes(b []byte) uint64  { return maphash.Bytes(f.seed, b) }
func (f *keyFilter) hashString(s string) uint64 { return maphash.String(f.seed, s) }

func (f *keyFilter) add(h uint64) {
	p := f.parts[len(f.parts)-1]
	if p.n >= p.cap {
		f.grow(2 * p.cap)
		p = f.parts[len(f.parts)-1]
	}
	p.add(h)
}

// mayContain probes every part without stopping at the first hit: an absent
// key, the common case, must probe them all, and probes without branches
// between them let the processor overlap their cache misses.
func (f *keyFilter) mayContain(h uint64) bool {
	hit := uint32(0)
	for _, p := range f.parts {
		hit |= p.probe(h)
	}
	return hit != 0
}

func (p *bloomPart) block(h uint64) *[8]uint32 {
	return &p.blocks[(h>>32)&uint64(len(p.blocks)-1)]
}

func (p *bloomPart) add(h uint64) {
	b := p.block(h)
	for i, salt := range bloomSalts {
		b[i] |= 1 << ((uint32(h) * salt) >> 27)
	}
	p.n++
}

// probe returns non-zero when h may be in p.
func (p *bloomPart) probe(h uint64) uint32 {
	b := p.block(h)
	miss := uint32(0)
	for i, salt := range bloomSalts {
		bit := uint32(1) << ((uint32(h) * salt) >> 27)
		miss |= bit &^ b[i]
	}
	if miss != 0 {
		return 0
	}
	return 1
}
