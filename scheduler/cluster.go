package scheduler

import (
	"hash/maphash"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// cluster is the worker table: declared capacity, reservations, live
// telemetry and the label index. It is safe for concurrent use.
//
// Locking, outermost first (always acquired in this order, never upwards):
//
//  1. mu (RWMutex) guards the table's shape: which slots hold which workers,
//     their labels, capacity and state, the label index and the dense
//     present/ready sets. Structural changes (add, remove, label, capacity or
//     state change) take it exclusively; they are rare. Everything else,
//     including every scheduling decision and every Reserve, Release and
//     Heartbeat, holds it shared, so a worker cannot disappear or change shape
//     under a decision.
//  2. shards[i].mu guards one shard of the reservation map (Key ->
//     reservation), so "at most one reservation per job attempt" is checked and
//     recorded atomically without one global lock on the hot path.
//  3. worker.mu guards one worker's reservation list and serializes writes of
//     its reserved totals and telemetry. The totals are atomics so the sampler
//     reads them without locking: such a read may be stale by the time the
//     decision commits, which is harmless because reserve re-checks the same
//     fit function under worker.mu (optimistic concurrency, as Nomad's plan
//     applier re-checks a plan against the latest state).
//
// Never call a method that takes mu while holding mu: a pending writer would
// deadlock a recursive read lock.
type cluster struct {
	cpuEstimate, memEstimate float64 // Koordinator's request-to-usage factors
	expireNanos              int64   // telemetry TTL: workers older are excluded

	mu      sync.RWMutex
	gen     uint64 // bumped on every structural change; guards cached selector results
	ids     map[string]*worker
	slots   []*worker // nil where free
	free    []int
	present []uint64        // registered workers
	ready   []uint64        // workers in StateReady
	open    []atomic.Uint64 // workers with at least one free job slot; updated under worker.mu
	openGen atomic.Uint64   // bumped whenever a bit of open flips: guards sampler snapshots
	index   map[string]*keyIndex
	// labelSets interns label maps (see labelSet).
	labelSets map[string]*labelSet
	total     Resources // declared capacity of ready workers: the DRF denominator
	hotPtr    []*hot    // slot -> its worker's hot record

	seed   maphash.Seed
	shards [resShards]resShard
}

const resShards = 64

type resShard struct {
	mu   sync.Mutex
	m    map[Key]*reservation
	free []*reservation // released records for reuse: less GC at high placement rates
	_    [24]byte       // keep shards on separate cache lines
}

func (sh *resShard) alloc() *reservation {
	if n := len(sh.free); n > 0 {
		r := sh.free[n-1]
		sh.free = sh.free[:n-1]
		return r
	}
	return &reservation{}
}

// recycle takes back a reservation no map or worker refers to any more.
func (sh *resShard) recycle(r *reservation) {
	if len(sh.free) < 256 {
		*r = reservation{}
		sh.free = append(sh.free, r)
	}
}

type keyIndex struct {
	all  span             // workers that have the key
	vals map[string]*span // value -> workers with key=value
}

type worker struct {
	// What every decision reads lives in a hot record (see hot).
	*hot
	slot int

	// What reserve and release touch, together: they run for one worker
	// each, but at 10,000 workers that worker is rarely in cache.
	mu                 sync.Mutex
	resSlots           atomic.Int64   // reserved slots; written under mu
	res                []*reservation // guarded by mu
	usedCPU, usedMem   int64          // last reported usage, CPU millis and bytes (Koordinator A); under mu
	sinceCPU, sinceMem int64          // estimates of jobs placed after usageAt (Koordinator C); under mu
	capacity           Resources      // set under cluster.mu held exclusively

	// Set under cluster.mu held exclusively; read under it held shared.
	id      string
	labels  map[string]string // never mutated: replaced wholesale (ls.labels)
	ls      *labelSet
	state   State
	cpuFrac atomic.Uint64 // float64 bits of the last reported fraction; written under mu
}

// hot is the part of a worker that filter and score read, in exactly one
// 64-byte cache line. At 10,000 workers a decision is bound by cache misses
// on these records (pprof and cachegrind agree), so: one line per worker;
// records are handed out by the worker's label set in line-aligned chunks of
// eight, so workers with the same labels (which the same selectors match)
// sit side by side and a walk over them reads consecutive lines; and slots
// are not here, because the sampler's snapshot only holds workers with a
// free slot (cluster.open), which settles the slot dimension for the usual
// one-slot job.
type hot struct {
	capCPU, capMem   int64        // declared; set under cluster.mu held exclusively
	resCPU, resMem   atomic.Int64 // reserved; written only under worker.mu, read anywhere
	seenAt           atomic.Int64 // unix nanos of the last heartbeat or registration
	usageAt          atomic.Int64 // unix nanos of the last telemetry; 0 if none yet
	loadCPU, loadMem atomic.Int64 // Koordinator's A + C, kept summed for the score
}

const hotChunk = 8 // records per allocation: 512 bytes, so 64-byte aligned

// hotAt returns slot's record. Caller holds mu.
func (c *cluster) hotAt(slot int) *hot { return c.hotPtr[slot] }

// newHot returns a zeroed record from ls's pool. Caller holds mu
// exclusively.
func (c *cluster) newHot(ls *labelSet) *hot {
	var h *hot
	if n := len(ls.pool); n > 0 {
		h, ls.pool = ls.pool[n-1], ls.pool[:n-1]
	} else {
		chunk := new([hotChunk]hot)
		for i := hotChunk - 1; i > 0; i-- { // popped in order 1, 2, ...
			ls.pool = append(ls.pool, &chunk[i])
		}
		h = &chunk[0]
	}
	h.capCPU, h.capMem = 0, 0
	for _, a := range []*atomic.Int64{&h.resCPU, &h.resMem, &h.seenAt, &h.usageAt, &h.loadCPU, &h.loadMem} {
		a.Store(0)
	}
	return h
}

type reservation struct {
	key      Key
	queue    string
	res      Resources
	w        *worker
	placedAt int64 // unix nanos
	idx      int   // position in w.res
	estCPU   int64 // usage estimates (request x factor), for Koordinator's C
	estMem   int64
}

func (r *reservation) public() Reservation {
	return Reservation{JobID: r.key.JobID, Attempt: r.key.Attempt, Queue: r.queue, WorkerID: r.w.id,
		Resources: r.res, PlacedAt: unixTime(r.placedAt)}
}

// wakeEvent says capacity with these labels may have appeared: parked jobs
// whose shape matches are worth another try.
type wakeEvent struct {
	labels   map[string]string // shared, immutable
	capacity Resources
}

func newCluster(cfg *Config) *cluster {
	c := &cluster{
		cpuEstimate: cfg.CPUEstimateFactor,
		memEstimate: cfg.MemoryEstimateFactor,
		expireNanos: int64(cfg.ExpireAfter),
		ids:         make(map[string]*worker),
		index:       make(map[string]*keyIndex),
		labelSets:   make(map[string]*labelSet),
		seed:        maphash.MakeSeed(),
	}
	for i := range c.shards {
		c.shards[i].m = make(map[Key]*reservation)
	}
	return c
}

func (c *cluster) shard(k Key) *resShard {
	h := maphash.String(c.seed, k.JobID) ^ uint64(k.Attempt)*0x9E3779B97F4A7C15
	return &c.shards[h>>58] // top 6 bits: resShards == 64
}

func (w *worker) setCapacity(r Resources) {
	w.capacity = r
	w.capCPU, w.capMem = r.CPUMillis, r.MemoryBytes
}

// reserved reads the totals; exact under w.mu, approximate without it.
func (w *worker) reserved() Resources {
	return Resources{w.resSlots.Load(), w.resCPU.Load(), w.resMem.Load()}
}

func (w *worker) storeReserved(r Resources) {
	w.resSlots.Store(r.Slots)
	w.resCPU.Store(r.CPUMillis)
	w.resMem.Store(r.MemoryBytes)
}

// addSince adds (or with a negative sign removes) a job's usage estimate to
// Koordinator's C. Caller holds w.mu.
func (w *worker) addSince(cpu, mem int64) {
	w.sinceCPU += cpu
	w.sinceMem += mem
	w.loadCPU.Store(w.usedCPU + w.sinceCPU)
	w.loadMem.Store(w.usedMem + w.sinceMem)
}

// setOpen records whether w has a free job slot. Caller holds w.mu or mu
// exclusively; the atomic word op keeps neighbours in the same word safe.
func (c *cluster) setOpen(w *worker) {
	m := uint64(1) << (w.slot & 63)
	word := &c.open[w.slot>>6]
	var old uint64
	isOpen := w.resSlots.Load() < w.capacity.Slots
	if isOpen {
		old = word.Or(m)
	} else {
		old = word.And(^m)
	}
	if (old&m != 0) != isOpen {
		c.openGen.Add(1)
	}
}

// growTo makes the dense sets hold n slots. Caller holds mu exclusively.
func (c *cluster) growTo(n int) {
	words := (n + 63) >> 6
	if words <= len(c.present) {
		return
	}
	words = max(words, 2*len(c.present))
	grow := func(b []uint64) []uint64 { return append(b, make([]uint64, words-len(b))...) }
	c.present, c.ready = grow(c.present), grow(c.ready)
	open := make([]atomic.Uint64, words)
	for i := range c.open {
		open[i].Store(c.open[i].Load())
	}
	c.open = open
}

func (c *cluster) indexLabels(w *worker) {
	for k, v := range w.labels {
		ki := c.index[k]
		if ki == nil {
			ki = &keyIndex{vals: make(map[string]*span)}
			c.index[k] = ki
		}
		ki.all.set(w.slot)
		s := ki.vals[v]
		if s == nil {
			s = &span{}
			ki.vals[v] = s
		}
		s.set(w.slot)
	}
}

func (c *cluster) unindexLabels(w *worker) {
	for k, v := range w.labels {
		ki := c.index[k]
		if ki == nil {
			continue
		}
		ki.all.clear(w.slot)
		if s := ki.vals[v]; s != nil {
			s.clear(w.slot)
			if s.n == 0 {
				delete(ki.vals, v)
			}
		}
		if ki.all.n == 0 {
			delete(c.index, k)
		}
	}
}

// labelSet is one distinct label map, shared by every worker that has
// exactly those labels. Pools of identical agents are common, and one map
// instead of thousands is less memory and less for the GC to scan. It also
// hands out its workers' hot records, so they sit together in memory.
type labelSet struct {
	key    string
	labels map[string]string // immutable
	refs   int
	pool   []*hot // free hot records of this set's chunks
}

// labelKey is a canonical string for a label map; the label charset
// excludes the separator bytes.
func labelKey(labels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(labels[k])
		b.WriteByte(1)
	}
	return b.String()
}

// internLabels returns the shared set for labels and takes a reference.
// Caller holds mu exclusively.
func (c *cluster) internLabels(labels map[string]string) *labelSet {
	k := labelKey(labels)
	ls := c.labelSets[k]
	if ls == nil {
		l := maps.Clone(labels)
		if l == nil {
			l = map[string]string{}
		}
		ls = &labelSet{key: k, labels: l}
		c.labelSets[k] = ls
	}
	ls.refs++
	return ls
}

// dropLabels lets go of a reference to ls. Caller holds mu exclusively.
func (c *cluster) dropLabels(ls *labelSet) {
	if ls.refs--; ls.refs == 0 {
		delete(c.labelSets, ls.key)
	}
}

// upsert adds w or changes its labels, capacity and state. now counts as a
// sign of life. It returns a wake event when the change may let parked jobs
// run: a new ready worker, new labels, more capacity, a return to ready, or a
// worker whose telemetry had expired. Reservations are kept whatever the new
// capacity: if it shrank below them, the worker just takes nothing new until
// jobs end (Reserve never exceeds the declared capacity).
func (c *cluster) upsert(now int64, in Worker) *wakeEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.ids[in.ID]
	if !ok {
		slot := len(c.slots)
		if n := len(c.free); n > 0 {
			slot, c.free = c.free[n-1], c.free[:n-1]
		} else {
			c.slots = append(c.slots, nil)
			c.hotPtr = append(c.hotPtr, nil)
			c.growTo(len(c.slots))
		}
		ls := c.internLabels(in.Labels)
		w = &worker{hot: c.newHot(ls), ls: ls, id: in.ID, slot: slot, labels: ls.labels, state: in.State}
		c.hotPtr[slot] = w.hot
		w.setCapacity(in.Capacity)
		w.seenAt.Store(now)
		c.slots[slot], c.ids[in.ID] = w, w
		c.indexLabels(w)
		setBit(c.present, slot)
		if w.state == StateReady {
			setBit(c.ready, slot)
			c.total = c.total.Add(w.capacity)
		}
		c.setOpen(w)
		c.gen++
		if w.state != StateReady {
			return nil
		}
		return &wakeEvent{w.labels, w.capacity}
	}

	wake, changed := false, false
	if !maps.Equal(w.labels, in.Labels) {
		c.unindexLabels(w)
		c.dropLabels(w.ls)
		w.ls = c.internLabels(in.Labels)
		w.labels = w.ls.labels // the hot record stays where it is
		c.indexLabels(w)
		wake, changed = true, true
	}
	if w.capacity != in.Capacity {
		if w.state == StateReady {
			c.total = c.total.Sub(w.capacity).Add(in.Capacity)
		}
		wake = wake || !in.Capacity.LessOrEqual(w.capacity)
		w.mu.Lock()
		w.setCapacity(in.Capacity)
		c.setOpen(w)
		w.mu.Unlock()
		changed = true
	}
	if w.state != in.State {
		wake = wake || in.State == StateReady
		c.setState(w, in.State)
		changed = true
	}
	w.mu.Lock()
	if seen := w.seenAt.Load(); now > seen {
		wake = wake || now-seen > c.expireNanos
		w.seenAt.Store(now)
	}
	w.mu.Unlock()
	if changed {
		c.gen++
	}
	if !wake || w.state != StateReady {
		return nil
	}
	return &wakeEvent{w.labels, w.capacity}
}

// setState changes w's state. Caller holds mu exclusively and bumps gen.
func (c *cluster) setState(w *worker, st State) {
	if w.state == StateReady {
		clearBit(c.ready, w.slot)
		c.total = c.total.Sub(w.capacity)
	}
	w.state = st
	if st == StateReady {
		setBit(c.ready, w.slot)
		c.total = c.total.Add(w.capacity)
	}
}

func (c *cluster) setWorkerState(id string, st State) (*wakeEvent, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.ids[id]
	if !ok {
		return nil, ErrUnknownWorker
	}
	if w.state == st {
		return nil, nil
	}
	c.setState(w, st)
	c.gen++
	if st != StateReady {
		return nil, nil
	}
	return &wakeEvent{w.labels, w.capacity}, nil
}

// remove deletes a worker and every reservation on it, and returns them so
// the caller can re-queue their jobs.
func (c *cluster) remove(id string) ([]Reservation, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.ids[id]
	if !ok {
		return nil, false
	}
	w.mu.Lock()
	res := w.res
	w.res = nil
	w.storeReserved(Resources{})
	w.mu.Unlock()
	out := make([]Reservation, 0, len(res))
	for _, r := range res {
		out = append(out, r.public())
		sh := c.shard(r.key)
		sh.mu.Lock()
		delete(sh.m, r.key)
		sh.recycle(r)
		sh.mu.Unlock()
	}
	c.unindexLabels(w)
	w.ls.pool = append(w.ls.pool, w.hot)
	c.hotPtr[w.slot] = nil
	c.dropLabels(w.ls)
	if w.state == StateReady {
		c.total = c.total.Sub(w.capacity)
	}
	clearBit(c.present, w.slot)
	clearBit(c.ready, w.slot)
	c.open[w.slot>>6].And(^(uint64(1) << (w.slot & 63)))
	c.openGen.Add(1)
	c.slots[w.slot] = nil
	c.free = append(c.free, w.slot)
	delete(c.ids, id)
	c.gen++
	return out, true
}

// heartbeat records telemetry. It returns a wake event when the worker's
// telemetry had expired (it was excluded from placement) and is live again.
// A report older than the last one is ignored.
func (c *cluster) heartbeat(id string, t Telemetry) (*wakeEvent, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	w, ok := c.ids[id]
	if !ok {
		return nil, ErrUnknownWorker
	}
	at := t.At.UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	if at < w.usageAt.Load() {
		return nil, nil
	}
	seen := w.seenAt.Load()
	revived := at-seen > c.expireNanos
	if at > seen {
		w.seenAt.Store(at)
	}
	frac := min(t.CPUFraction, 1)
	w.cpuFrac.Store(math.Float64bits(t.CPUFraction))
	w.usedCPU = int64(frac * float64(w.capacity.CPUMillis))
	w.usedMem = t.MemoryUsedBytes
	w.usageAt.Store(at)
	// Jobs placed up to the sample are in the reported usage (A); only those
	// placed after it still need an estimate (C).
	w.sinceCPU, w.sinceMem = 0, 0
	var cpu, mem int64
	for _, r := range w.res {
		if r.placedAt > at {
			cpu += r.estCPU
			mem += r.estMem
		}
	}
	w.addSince(cpu, mem)
	if !revived || w.state != StateReady {
		return nil, nil
	}
	return &wakeEvent{w.labels, w.capacity}, nil
}

// reserveLocked reserves req on w for key if it fits. Caller holds mu
// (shared or exclusive). It is the only place reservations are created, and
// it decides with fits(), the same function the sampler filters with.
func (c *cluster) reserveLocked(w *worker, key Key, queue string, req Resources, now int64) error {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, dup := sh.m[key]; dup {
		return ErrDuplicate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.reserved()
	if !fits(w.capacity, cur, req) {
		return ErrNoRoom
	}
	w.storeReserved(cur.Add(req))
	c.setOpen(w)
	r := sh.alloc()
	*r = reservation{key: key, queue: queue, res: req, w: w, placedAt: now, idx: len(w.res),
		estCPU: int64(float64(req.CPUMillis) * c.cpuEstimate), estMem: int64(float64(req.MemoryBytes) * c.memEstimate)}
	w.res = append(w.res, r)
	if now > w.usageAt.Load() {
		w.addSince(r.estCPU, r.estMem)
	}
	sh.m[key] = r
	return nil
}

func (c *cluster) reserve(workerID string, key Key, queue string, req Resources, now int64) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	w, ok := c.ids[workerID]
	if !ok {
		return ErrUnknownWorker
	}
	return c.reserveLocked(w, key, queue, req, now)
}

// release frees key's reservation; false if it holds none (already released,
// never reserved, or dropped with its worker). Idempotent by construction.
func (c *cluster) release(key Key) (Reservation, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := sh.m[key]
	if !ok {
		return Reservation{}, false
	}
	delete(sh.m, key)
	w := r.w
	w.mu.Lock()
	w.storeReserved(w.reserved().Sub(r.res))
	last := len(w.res) - 1
	w.res[r.idx] = w.res[last]
	w.res[r.idx].idx = r.idx
	w.res[last] = nil
	w.res = w.res[:last]
	if r.placedAt > w.usageAt.Load() {
		w.addSince(-r.estCPU, -r.estMem)
	}
	c.setOpen(w)
	w.mu.Unlock()
	out := r.public()
	sh.recycle(r)
	return out, true
}

func (c *cluster) hasReservation(key Key) bool {
	sh := c.shard(key)
	sh.mu.Lock()
	_, ok := sh.m[key]
	sh.mu.Unlock()
	return ok
}

func (c *cluster) info(w *worker) WorkerInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	wi := WorkerInfo{
		Worker:   Worker{ID: w.id, Labels: maps.Clone(w.labels), Capacity: w.capacity, State: w.state},
		Reserved: w.reserved(),
		Jobs:     len(w.res),
		LastSeen: unixTime(w.seenAt.Load()),
	}
	if at := w.usageAt.Load(); at != 0 {
		wi.Telemetry = Telemetry{At: unixTime(at), CPUFraction: math.Float64frombits(w.cpuFrac.Load()),
			MemoryUsedBytes: w.usedMem}
	}
	return wi
}

func (c *cluster) reservations() []Reservation {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []Reservation
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, r := range sh.m {
			out = append(out, r.public())
		}
		sh.mu.Unlock()
	}
	return out
}
