package scheduler

import "math/bits"

// Worker sets are bitsets over worker slot numbers (dense small integers the
// cluster hands out and reuses), 64 slots per word.
//
// Two shapes:
//   - dense ([]uint64 from slot 0): the present/ready sets and the selector
//     cache entries;
//   - span (sparse): one label value's workers as a window of words starting
//     at word off. A label held by one worker (hostname=...) costs one word,
//     not N/64, so unique labels do not cost O(N) memory each.

// span is a window of a bitset: word i of the full set is words[i-off].
type span struct {
	off   int
	words []uint64
	n     int // population
}

func (s *span) set(slot int) {
	w := slot >> 6
	switch {
	case len(s.words) == 0:
		s.off = w
		s.words = append(s.words[:0], 0)
	case w < s.off:
		grown := make([]uint64, s.off-w+len(s.words))
		copy(grown[s.off-w:], s.words)
		s.words, s.off = grown, w
	case w >= s.off+len(s.words):
		s.words = append(s.words, make([]uint64, w-s.off-len(s.words)+1)...)
	}
	m := uint64(1) << (slot & 63)
	if s.words[w-s.off]&m == 0 {
		s.words[w-s.off] |= m
		s.n++
	}
}

func (s *span) clear(slot int) {
	w := slot>>6 - s.off
	if w < 0 || w >= len(s.words) {
		return
	}
	m := uint64(1) << (slot & 63)
	if s.words[w]&m != 0 {
		s.words[w] &^= m
		s.n--
	}
	// Trim empty words at both ends so the window stays tight.
	for len(s.words) > 0 && s.words[len(s.words)-1] == 0 {
		s.words = s.words[:len(s.words)-1]
	}
	i := 0
	for i < len(s.words) && s.words[i] == 0 {
		i++
	}
	if i > 0 {
		s.words = s.words[i:]
		s.off += i
	}
	if len(s.words) == 0 {
		s.off = 0
	}
}

func (s *span) has(slot int) bool {
	w := slot>>6 - s.off
	return w >= 0 && w < len(s.words) && s.words[w]&(1<<(slot&63)) != 0
}

// andInto sets dst &= s.
func (s *span) andInto(dst []uint64) {
	for i := range dst {
		j := i - s.off
		if j < 0 || j >= len(s.words) {
			dst[i] = 0
		} else {
			dst[i] &= s.words[j]
		}
	}
}

// andNotInto sets dst &^= s.
func (s *span) andNotInto(dst []uint64) {
	for j, w := range s.words {
		if i := j + s.off; i < len(dst) {
			dst[i] &^= w
		}
	}
}

// orInto sets dst |= s.
func (s *span) orInto(dst []uint64) {
	for j, w := range s.words {
		if i := j + s.off; i < len(dst) {
			dst[i] |= w
		}
	}
}

func setBit(b []uint64, slot int)      { b[slot>>6] |= 1 << (slot & 63) }
func clearBit(b []uint64, slot int)    { b[slot>>6] &^= 1 << (slot & 63) }
func hasBit(b []uint64, slot int) bool { return slot>>6 < len(b) && b[slot>>6]&(1<<(slot&63)) != 0 }

func popcount(b []uint64) int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// forEach calls f for every slot in b, in increasing order.
func forEach(b []uint64, f func(slot int)) {
	for i, w := range b {
		for w != 0 {
			f(i<<6 + bits.TrailingZeros64(w))
			w &= w - 1
		}
	}
}
