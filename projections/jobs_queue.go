package projections

import "encoding/binary"

// queueStore holds the compact records of queued jobs. Unlike a terminal
// job's, a queued job's record soon stops being current: the job is
// scheduled (and becomes a live *JobView), or parked, unparked or
// cancel-requested (and its record is written again). So the store counts
// the current records of each chunk and drops a chunk, for the GC to free,
// once none is left. Jobs leave the queue roughly in the order they joined
// it, so chunks empty from the oldest on and the store holds about the
// bytes of the queued jobs' records plus a partly dead chunk at each end.
//
// The chunk being appended to (the tail) is never dropped: when it empties
// it is rewound and written over, so a queue that fills and drains one job
// at a time allocates nothing. A tail larger than a chunk (one oversized
// record) is dropped instead.
//
// A job that stays queued (parked, or matching no worker) while the jobs
// around it are scheduled would keep its whole chunk alive. So a chunk other
// than the tail whose current records fall below 1/queueSparse of its bytes
// is emptied: Jobs.relocate copies those records to the tail and the chunk
// is dropped. Every chunk held, but the tail and the few waiting for that,
// is thus at least 1/queueSparse current records: the store holds at most
// about queueSparse times the bytes of the queued jobs' records (some 60
// bytes for a bench job) plus one chunk. Relocating copies under a
// 1/queueSparse of each dropped chunk, a fraction of what was appended.
//
// Chunks are 16 KiB rather than the terminal store's 64 KiB: the size makes
// no difference to a full queue's bytes per job, and the smaller the chunk
// the less a nearly empty queue holds.
//
// Each record is preceded by its length (a uvarint), so a chunk can be
// walked. Chunk numbers of dropped chunks are reused, so the chunk table
// grows with the most chunks held at once, not with the jobs ever queued.
// An address is the chunk number shifted left by 24 bits plus the offset of
// the record's length in the chunk.
type queueStore struct {
	chunks  []queueChunk // by number; a dropped chunk is the zero queueChunk
	free    []uint32     // numbers of dropped chunks
	tail    uint32       // the chunk appended to, when hasTail
	hasTail bool
	bytes   int      // total capacity of the chunks held
	held    int      // chunks held
	sparse  []uint32 // chunks for Jobs.relocate to empty
	moved   int      // records relocated, ever
}

type queueChunk struct {
	b         []byte
	live      int  // current records in b
	liveBytes int  // their bytes, lengths included
	pending   bool // in queueStore.sparse
}

const (
	queueChunkSize = 16 << 10
	queueSparse    = 4
)

// add appends rec, a current record, and returns its address.
func (s *queueStore) add(rec []byte) uint64 {
	n := uvarintLen(uint64(len(rec))) + len(rec)
	if !s.hasTail || len(s.chunks[s.tail].b)+n > cap(s.chunks[s.tail].b) {
		s.newTail(max(queueChunkSize, n))
	}
	c := &s.chunks[s.tail]
	off := len(c.b)
	c.b = binary.AppendUvarint(c.b, uint64(len(rec)))
	c.b = append(c.b, rec...)
	c.live++
	c.liveBytes += n
	return uint64(s.tail)<<24 | uint64(off)
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// newTail starts a chunk of size bytes to append to.
func (s *queueStore) newTail(size int) {
	if s.hasTail {
		if old := &s.chunks[s.tail]; old.live == 0 {
			s.drop(s.tail) // an empty tail too small for the record
		} else {
			s.hasTail = false
			s.check(s.tail)
		}
	}
	var n uint32
	if k := len(s.free); k > 0 {
		n = s.free[k-1]
		s.free = s.free[:k-1]
	} else {
		n = uint32(len(s.chunks))
		s.chunks = append(s.chunks, queueChunk{})
	}
	s.chunks[n] = queueChunk{b: make([]byte, 0, size)}
	s.tail, s.hasTail = n, true
	s.bytes += size
	s.held++
}

// kill marks the record at addr as no longer current; it must be current.
func (s *queueStore) kill(addr uint64) {
	n := uint32(addr >> 24)
	c := &s.chunks[n]
	l, k := binary.Uvarint(c.b[addr&(1<<24-1):])
	c.live--
	c.liveBytes -= k + int(l)
	if c.live > 0 {
		s.check(n)
		return
	}
	if s.hasTail && n == s.tail {
		if cap(c.b) <= queueChunkSize {
			c.b = c.b[:0] // rewind: nothing refers to it any more
			c.liveBytes = 0
			return
		}
		s.hasTail = false
	}
	s.drop(n)
}

// check queues chunk n for relocation when it is not the tail and mostly
// dead.
func (s *queueStore) check(n uint32) {
	c := &s.chunks[n]
	if !c.pending && !(s.hasTail && n == s.tail) && c.live > 0 && c.liveBytes*queueSparse < len(c.b) {
		c.pending = true
		s.sparse = append(s.sparse, n)
	}
}

func (s *queueStore) drop(n uint32) {
	s.bytes -= cap(s.chunks[n].b)
	s.held--
	s.chunks[n] = queueChunk{}
	s.free = append(s.free, n)
}

// record returns the record at addr (and what follows it in the chunk).
func (s *queueStore) record(addr uint64) []byte {
	b := s.chunks[addr>>24].b[addr&(1<<24-1):]
	_, k := binary.Uvarint(b)
	return b[k:]
}

// relocate empties the chunks queued for it: it copies their current
// records to the tail, pointing the jobs' refs at the copies, which drops
// the chunks. It runs under the write lock, after save.
func (j *Jobs) relocate() {
	s := &j.queue
	for len(s.sparse) > 0 {
		n := s.sparse[len(s.sparse)-1]
		s.sparse = s.sparse[:len(s.sparse)-1]
		c := &s.chunks[n]
		c.pending = false
		if c.b == nil || (s.hasTail && n == s.tail) {
			continue
		}
		b, left := c.b, c.live
		for p := 0; p < len(b) && left > 0; {
			l, k := binary.Uvarint(b[p:])
			addr := uint64(n)<<24 | uint64(p)
			rec := b[p+k : p+k+int(l)]
			p += k + int(l)
			i, ok := j.recordIndex(rec)
			if !ok || !j.order[i].queued() || j.order[i].addr() != addr {
				continue // a dead record
			}
			// add may start a tail, never in chunk n: n is held. kill
			// drops n with its last current record; b stays readable.
			j.order[i] = queuedRef(j.order[i].code(), s.add(rec))
			s.kill(addr)
			s.moved++
			left--
		}
	}
}

// recordIndex returns the index in Jobs.order of the job whose record is
// rec, reading only the record's head.
func (j *Jobs) recordIndex(rec []byte) (uint32, bool) {
	d := jobDecoder{b: rec[3:], intern: j.intern.strs} // flags, time kinds, status
	d.skipStr()                                        // queue
	d.skipStr()                                        // worker
	if n := d.uvarint(); n > 1 {
		for k := uint64(1); k < n; k++ {
			d.skipStr()
			d.skipStr()
		}
	}
	if form := rec[0] & flagIDForm; form != 0 {
		return j.ids.lookup(form, d.b[:16])
	}
	n := d.uvarint()
	return j.ids.lookup(0, d.b[:n])
}
