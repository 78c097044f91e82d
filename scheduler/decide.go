package scheduler

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"time"
)

// One decision: filter (selector cache + label index, dense sets), sample a
// bounded number of feasible candidates from a random permutation, score
// them, reserve the best (ties at random). Everything runs under the
// cluster's read lock, so the worker table cannot change shape meanwhile;
// reserved totals can (a concurrent Reserve or Release), which is why the
// reserve step re-checks with the same fit function under the worker's lock.

type outcome uint8

const (
	placed  outcome = iota
	blocked         // fits some worker's declared capacity, no room right now
	parked          // no worker could run it even if idle
	dropped         // the attempt is already reserved (by Reserve): nothing to place
)

type verdict struct {
	outcome outcome
	reason  string
}

// cand is a scored feasible worker.
type cand struct {
	slot  int
	score float64
}

// selEntry caches one selector's matching workers for one generation of
// the worker table.
type selEntry struct {
	key       string   // canonical key (interned)
	sel       Selector // canonical form
	gen       uint64
	built     bool
	*matchSet // the workers it matches, shared with every selector that matches the same

	// Filled in lazily, only when a job of this selector fails.
	summarized  bool
	maxCap      Resources          // largest capacity per resource among matches
	structural  map[Resources]bool // request -> some ready match could hold it when idle
	structDrain map[Resources]bool // request -> some match (any state) could hold it
}

// matchSet is a set of workers some selectors match, with the sampler's
// snapshot of it. Sets are interned by content for one generation of the
// worker table: with ten kinds of worker, hundreds of distinct selectors
// come down to a few dozen sets, and sharing their snapshots (N/64 words
// each) keeps them in cache at 10,000 workers, where per-selector copies
// would not be.
type matchSet struct {
	bits  []uint64 // registered workers whose labels match (any state)
	count int

	// The sampler's snapshot (see snapshotLocked).
	snapOK            bool
	snapGen, snapOpen uint64
	masked            []uint64 // bits AND ready AND open
	prefix            []int32  // prefix[i]: workers in masked[:i]
}

// entryLocked returns the selector's matching workers, rebuilding them from
// the label index if the table changed. Caller holds s.mu and c.mu (shared).
func (s *Scheduler) entryLocked(it *item) *selEntry {
	c := s.c
	e := it.entry
	if e.built && e.gen == c.gen {
		return e
	}
	e.gen, e.built, e.summarized = c.gen, true, false
	e.structural, e.structDrain = nil, nil
	bits := append(s.setScratch[:0], c.present...)
	for _, r := range e.sel {
		s.applyLocked(r, bits)
	}
	s.setScratch = bits
	e.matchSet = s.internSet(bits)
	return e
}

// internSet returns the set of this generation equal to bits, creating it
// if needed. Caller holds s.mu and c.mu (shared).
func (s *Scheduler) internSet(bits []uint64) *matchSet {
	if s.setsGen != s.c.gen || !s.setsOK {
		clear(s.sets)
		s.setsGen, s.setsOK = s.c.gen, true
	}
	h := uint64(len(bits))
	for _, w := range bits {
		h = (h ^ w) * 0x100000001B3 // FNV-style mixing; equality is checked below
		h ^= h >> 29
	}
	for _, ms := range s.sets[h] {
		if slices.Equal(ms.bits, bits) {
			return ms
		}
	}
	ms := &matchSet{bits: slices.Clone(bits), count: popcount(bits)}
	s.sets[h] = append(s.sets[h], ms)
	return ms
}

// applyLocked sets dst &= {workers matching r}.
func (s *Scheduler) applyLocked(r Requirement, dst []uint64) {
	ki := s.c.index[r.Key]
	value := func(v string) *span {
		if ki == nil {
			return nil
		}
		return ki.vals[v]
	}
	switch r.Op {
	case OpEq:
		if sp := value(r.Values[0]); sp != nil {
			sp.andInto(dst)
		} else {
			clear(dst)
		}
	case OpNotEq:
		if sp := value(r.Values[0]); sp != nil {
			sp.andNotInto(dst)
		}
	case OpExists:
		if ki != nil {
			ki.all.andInto(dst)
		} else {
			clear(dst)
		}
	case OpNotExists:
		if ki != nil {
			ki.all.andNotInto(dst)
		}
	case OpIn:
		s.scratch = append(s.scratch[:0], make([]uint64, len(dst))...)
		for _, v := range r.Values {
			if sp := value(v); sp != nil {
				sp.orInto(s.scratch)
			}
		}
		for i := range dst {
			dst[i] &= s.scratch[i]
		}
	case OpNotIn:
		for _, v := range r.Values {
			if sp := value(v); sp != nil {
				sp.andNotInto(dst)
			}
		}
	}
}

// sampleSize is k = max(2, ceil(log2 N)), or the configured cap; wider for
// jobs with affinity, which need a look at more workers to find preferred
// ones.
func (s *Scheduler) sampleSize(it *item) int {
	k := s.cfg.SampleSize
	if k == 0 {
		n := len(s.c.ids)
		k = max(2, bits.Len(uint(max(n-1, 0)))) // ceil(log2 n)
	}
	if len(it.affinity) > 0 {
		k = max(k, s.cfg.AffinitySampleSize)
	}
	return k
}

// decide runs filter, score and reserve for it. Caller holds s.mu.
func (s *Scheduler) decide(it *item, now int64) (verdict, *worker) {
	if len(s.memo) > 0 {
		if v, ok := s.memo[it.shape()]; ok {
			return v, nil
		}
	}
	s.attempts++
	c := s.c
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := s.entryLocked(it)
	k := s.sampleSize(it)
	n, expired := s.sample(e, it, now, k)
	for n > 0 {
		i := s.best(n)
		w := c.slots[s.cand[i].slot]
		err := c.reserveLocked(w, Key{it.id, it.attempt}, it.t.name, it.req, now)
		if err == nil {
			return verdict{outcome: placed}, w
		}
		if errors.Is(err, ErrDuplicate) {
			return verdict{outcome: dropped}, nil
		}
		// ErrNoRoom: a concurrent Reserve took the room between our
		// lock-free read and the locked check. Try the next best.
		s.cand[i] = s.cand[n-1]
		n--
	}
	v := s.classifyLocked(e, it, now, expired)
	s.memo[it.shape()] = v
	return v, nil
}

// snapshotLocked refreshes e's view of the feasible set: match AND ready AND
// open (has a free slot), with per-word prefix counts so the sampler can pick
// the r-th feasible worker in O(log N/64). It is rebuilt (O(N/64)) only when
// the table's shape changed or some worker filled up or stopped being full;
// otherwise a decision costs O(k) whatever N is. A worker that filled up
// concurrently is caught by fits() before scoring, one that freed up is
// missed until the next rebuild: both are harmless.
func (s *Scheduler) snapshotLocked(e *matchSet) {
	c := s.c
	og := c.openGen.Load() // before reading the words: a flip during the read forces a rebuild next time
	if e.snapOK && e.snapGen == c.gen && e.snapOpen == og {
		return
	}
	words := min(len(e.bits), len(c.ready))
	e.masked = resize(e.masked, words)
	e.prefix = resize(e.prefix, words+1)
	n := int32(0)
	for i := range words {
		m := e.bits[i] & c.ready[i] & c.open[i].Load()
		e.masked[i] = m
		e.prefix[i] = n
		n += int32(bits.OnesCount64(m))
	}
	e.prefix[words] = n
	e.snapOK, e.snapGen, e.snapOpen = true, c.gen, og
}

func resize[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// sample picks up to k feasible workers and scores them into s.cand. It
// starts at a uniformly random feasible worker of the snapshot (a random
// rank, located through the prefix counts) and walks on in slot order,
// wrapping around, taking each worker that passes fits() and is alive.
// Every feasible worker is equally likely to be in a sample; the walk reads
// hot records and snapshot words in order (one memory miss, then lines the
// hardware prefetches, where k independent draws cost k misses at 10,000
// workers); and if fewer than k fit, the walk simply goes on, so an empty
// result really means none fits. Ties among equal scores are broken at
// random by best. It returns the number of candidates and how many
// otherwise fitting workers it skipped for expired telemetry.
func (s *Scheduler) sample(e *selEntry, it *item, now int64, k int) (n, expired int) {
	s.snapshotLocked(e.matchSet)
	total := int(e.prefix[len(e.prefix)-1])
	if total == 0 || k <= 0 {
		return 0, 0
	}
	return s.walk(e, it, now, e.nth(s.rng.IntN(total)), k)
}

// scanAll is sample without a limit: every feasible worker that fits. The
// filter's brute-force test uses it.
func (s *Scheduler) scanAll(e *selEntry, it *item, now int64) (n, expired int) {
	s.snapshotLocked(e.matchSet)
	total := int(e.prefix[len(e.prefix)-1])
	if total == 0 {
		return 0, 0
	}
	return s.walk(e, it, now, e.nth(s.rng.IntN(total)), total)
}

// walk visits the snapshot's workers from slot start on, in slot order,
// wrapping around once, and collects up to limit candidates. It works in
// batches: gather the next slots from the bitset, touch their hot records
// in a loop of independent loads, then check and score them. At 10,000
// workers those records are mostly not in cache, and touching them together
// lets the CPU overlap the misses instead of paying them one after another
// (Go has no prefetch instruction to ask for it directly).
func (s *Scheduler) walk(e *selEntry, it *item, now int64, start, limit int) (n, expired int) {
	if cap(s.cand) < limit {
		s.cand = make([]cand, limit)
	}
	s.cand = s.cand[:limit]
	c := s.c
	words := len(e.masked)
	first := start >> 6
	j := 0
	m := e.masked[first] & (^uint64(0) << (start & 63)) // from start on
	var buf [16]int
	sc := s.newScorer(it, now)
	for n < limit {
		// Gather.
		got := 0
		for got < min(len(buf), limit-n) {
			for m == 0 && j < words {
				j++
				i := (first + j) % words
				m = e.masked[i]
				if j == words {
					m &= 1<<(start&63) - 1 // back in the first word: the part before start
				}
			}
			if m == 0 {
				break
			}
			buf[got] = ((first+j)%words)<<6 | bits.TrailingZeros64(m)
			m &= m - 1
			got++
		}
		if got == 0 {
			break
		}
		// Touch.
		var sum int64
		for _, slot := range buf[:got] {
			sum += c.hotAt(slot).capCPU
		}
		s.sink = sum
		// Check and score.
		for _, slot := range buf[:got] {
			h := c.hotAt(slot)
			if !s.fitsLocked(slot, h, it.req) {
				continue
			}
			if now-h.seenAt.Load() > c.expireNanos {
				expired++
				continue
			}
			s.cand[n] = cand{slot, sc.score(slot)}
			n++
		}
	}
	return n, expired
}

// fitsLocked is the sampler's use of fits(). For a one-slot job on a worker
// in the snapshot (which holds only workers with a free slot), the slot
// dimension is already known to fit, so only the worker's hot line is read;
// anything else reads the full capacity. The reserve step re-checks all of
// it with fits() under the worker's lock.
func (s *Scheduler) fitsLocked(slot int, h *hot, req Resources) bool {
	if req.Slots == 1 {
		return fits(Resources{1, h.capCPU, h.capMem}, Resources{0, h.resCPU.Load(), h.resMem.Load()}, req)
	}
	w := s.c.slots[slot]
	return fits(w.capacity, w.reserved(), req)
}

// nth returns the slot of the r-th (from 0) worker in the snapshot.
func (e *matchSet) nth(r int) int {
	// Find the last word whose prefix is <= r. Labels are usually spread
	// evenly over slots, so first guess by proportion and walk a few words;
	// fall back to binary search when the guess is far off.
	words := len(e.masked)
	total := int(e.prefix[words])
	i := r * words / total
	for step := 0; step < 4; step++ {
		switch {
		case int(e.prefix[i]) > r:
			i--
		case int(e.prefix[i+1]) <= r:
			i++
		default:
			return i<<6 | selectBit(e.masked[i], r-int(e.prefix[i]))
		}
	}
	lo, hi := 0, words-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if int(e.prefix[mid]) <= r {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo<<6 | selectBit(e.masked[lo], r-int(e.prefix[lo]))
}

// selectBit returns the position of the j-th (from 0) set bit of x, which
// has more than j set bits.
func selectBit(x uint64, j int) int {
	pos := 0
	for _, w := range [...]int{32, 16, 8, 4, 2, 1} {
		if low := bits.OnesCount64(x & (1<<w - 1)); j >= low {
			j -= low
			x >>= w
			pos += w
		}
	}
	return pos
}

// best returns the index of the best candidate, ties broken uniformly at
// random (reservoir sampling), so identical workers do not herd.
func (s *Scheduler) best(n int) int {
	bi, ties := 0, 1
	for i := 1; i < n; i++ {
		switch d := s.cand[i].score - s.cand[bi].score; {
		case d > 0:
			bi, ties = i, 1
		case d == 0:
			ties++
			if s.rng.IntN(ties) == 0 {
				bi = i
			}
		}
	}
	return bi
}

// score ranks a feasible worker for it, in [0, 1], higher is better: a
// weighted mean of
//
//   - alloc: the mean over declared resources of u = (reserved+request) /
//     capacity; Spread scores 1-u, BinPack u;
//   - load (Koordinator): per CPU and memory, (T - P)/T with P = A + B + C:
//     A the last reported usage, B the estimate for this job, C the
//     estimates of jobs placed since that report. Telemetry older than
//     StaleAfter is neutral: A is dropped and C covers every reservation,
//     so the worker is judged by the scheduler's own bookkeeping, neither
//     favoured for a stale "idle" nor punished for a stale "busy";
//   - affinity: the matching preferences' weights over the sum of |weights|,
//     mapped from [-1, 1] to [0, 1]; 0.5 without preferences.
//
// Reads are lock-free and may be a little stale; the score is advisory, the
// reserve step is what must be exact.
func (s *Scheduler) score(slot int, it *item, now int64) float64 {
	sc := s.newScorer(it, now)
	return sc.score(slot)
}

// scorer holds what score needs that depends only on the job and the time,
// computed once per decision rather than once per candidate.
type scorer struct {
	c          *cluster
	req        Resources
	reqC, reqM float64 // the request, as floats
	bC, bM     float64 // Koordinator's B: the request times the estimate factors
	cpuF, memF float64
	freshFrom  int64 // telemetry at or after this is fresh
	spread     bool
	wA, wL, wF float64
	prefs      []Preference
}

func (s *Scheduler) newScorer(it *item, now int64) scorer {
	req := it.req
	return scorer{
		c:         s.c,
		req:       req,
		reqC:      float64(req.CPUMillis),
		reqM:      float64(req.MemoryBytes),
		bC:        float64(req.CPUMillis) * s.cfg.CPUEstimateFactor,
		bM:        float64(req.MemoryBytes) * s.cfg.MemoryEstimateFactor,
		cpuF:      s.cfg.CPUEstimateFactor,
		memF:      s.cfg.MemoryEstimateFactor,
		freshFrom: now - int64(s.cfg.StaleAfter),
		spread:    s.cfg.Strategy == Spread,
		wA:        s.wA,
		wL:        s.wL,
		wF:        s.wF,
		prefs:     it.affinity,
	}
}

func (sc *scorer) score(slot int) float64 {
	h := sc.c.hotAt(slot)
	rc, rm := float64(h.resCPU.Load()), float64(h.resMem.Load())
	var invC, invM float64 // one division per resource, shared by alloc and load
	if h.capCPU > 0 {
		invC = 1 / float64(h.capCPU)
	}
	if h.capMem > 0 {
		invM = 1 / float64(h.capMem)
	}
	alloc := 0.5
	switch {
	case invC > 0 && invM > 0:
		alloc = ((rc+sc.reqC)*invC + (rm+sc.reqM)*invM) / 2
	case invC > 0:
		alloc = (rc + sc.reqC) * invC
	case invM > 0:
		alloc = (rm + sc.reqM) * invM
	default: // a worker that declares only slots
		if w := sc.c.slots[slot]; w.capacity.Slots > 0 {
			alloc = float64(w.resSlots.Load()+sc.req.Slots) / float64(w.capacity.Slots)
		}
	}
	if sc.spread {
		alloc = 1 - alloc
	}

	load := 0.5
	if sc.wL > 0 && (invC > 0 || invM > 0) {
		var pc, pm float64 // A + C
		if at := h.usageAt.Load(); at != 0 && at >= sc.freshFrom {
			pc, pm = float64(h.loadCPU.Load()), float64(h.loadMem.Load())
		} else {
			pc, pm = rc*sc.cpuF, rm*sc.memF
		}
		switch {
		case invC > 0 && invM > 0:
			load = (clamp01(1-(pc+sc.bC)*invC) + clamp01(1-(pm+sc.bM)*invM)) / 2
		case invC > 0:
			load = clamp01(1 - (pc+sc.bC)*invC)
		default:
			load = clamp01(1 - (pm+sc.bM)*invM)
		}
	}

	aff := 0.5
	if len(sc.prefs) > 0 {
		labels := sc.c.slots[slot].labels
		var x, tot float64
		for _, p := range sc.prefs {
			wt := float64(p.Weight)
			if p.Matches(labels) {
				x += wt
			}
			if wt < 0 {
				wt = -wt
			}
			tot += wt
		}
		aff = (x/tot + 1) / 2
	}
	return sc.wA*alloc + sc.wL*load + sc.wF*aff
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// clamp01 clamps x to [0, 1]; plain comparisons, cheaper than the float
// min and max builtins, which must also order NaNs and signed zeros.
func clamp01(x float64) float64 {
	if x < 0 {
		return 0
	}
	if x > 1 {
		return 1
	}
	return x
}

// classifyLocked explains why no candidate was found: parked (no worker
// could ever run the job as things stand, with a reason) or blocked (some
// could, but has no room now). Only failures pay for this, and each shape
// at most once per round (the memo).
func (s *Scheduler) classifyLocked(e *selEntry, it *item, now int64, expired int) verdict {
	if e.count == 0 {
		return verdict{parked, s.selectorReasonLocked(e.sel)}
	}
	c := s.c
	if !e.summarized {
		e.maxCap = Resources{}
		forEach(e.bits, func(slot int) { e.maxCap = maxResources(e.maxCap, c.slots[slot].capacity) })
		e.structural, e.structDrain = map[Resources]bool{}, map[Resources]bool{}
		e.summarized = true
	}
	req := it.req
	matching := "matching worker"
	if len(e.sel) == 0 {
		matching = "worker"
	}
	switch {
	case req.Slots > e.maxCap.Slots:
		return verdict{parked, fmt.Sprintf("needs %s, largest %s offers %d", plural(req.Slots, "slot"), matching, e.maxCap.Slots)}
	case req.CPUMillis > e.maxCap.CPUMillis:
		return verdict{parked, fmt.Sprintf("needs %s CPU, largest %s offers %s CPU",
			formatCPU(req.CPUMillis), matching, formatCPU(e.maxCap.CPUMillis))}
	case req.MemoryBytes > e.maxCap.MemoryBytes:
		return verdict{parked, fmt.Sprintf("needs %s memory, largest %s offers %s",
			formatBytes(req.MemoryBytes), matching, formatBytes(e.maxCap.MemoryBytes))}
	}
	anyFit, ok := e.structDrain[req]
	readyFit := e.structural[req]
	if !ok {
		forEach(e.bits, func(slot int) {
			if w := c.slots[slot]; fits(w.capacity, Resources{}, req) {
				anyFit = true
				readyFit = readyFit || hasBit(c.ready, slot)
			}
		})
		e.structDrain[req], e.structural[req] = anyFit, readyFit
	}
	switch {
	case !anyFit:
		return verdict{parked, fmt.Sprintf("needs %s; no single %s has all of it", req, matching)}
	case !readyFit:
		return verdict{parked, fmt.Sprintf("every %s that could hold %s is draining or lost", matching, req)}
	}
	if expired > 0 {
		// Some fitting workers were skipped as silent. Are all of them?
		alive := 0
		forEach(e.bits, func(slot int) {
			if w := c.slots[slot]; hasBit(c.ready, slot) && fits(w.capacity, Resources{}, req) &&
				now-w.seenAt.Load() <= c.expireNanos {
				alive++
			}
		})
		if alive == 0 {
			return verdict{parked, fmt.Sprintf("every %s that could hold it has sent no heartbeat for over %s",
				matching, time.Duration(c.expireNanos))}
		}
	}
	return verdict{blocked, "waiting for free capacity"}
}

// selectorReasonLocked names the requirement no worker meets, or says that
// no worker meets all of them together.
func (s *Scheduler) selectorReasonLocked(sel Selector) string {
	one := make([]uint64, len(s.c.present))
	for _, r := range sel {
		copy(one, s.c.present)
		s.applyLocked(r, one)
		if popcount(one) > 0 {
			continue
		}
		switch r.Op {
		case OpEq, OpExists:
			return "no worker has label " + r.String()
		case OpIn:
			return fmt.Sprintf("no worker has label %s with a value in (%s)", r.Key, strings.Join(r.Values, ", "))
		}
		return "no worker matches " + r.String()
	}
	if len(s.c.ids) == 0 {
		return "no workers are registered"
	}
	return "no worker matches all of " + sel.String()
}
