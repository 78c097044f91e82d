package scheduler

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Scheduler places job attempts on workers. All methods are safe for
// concurrent use. ScheduleRound, Submit and Remove serialize on one mutex
// (the queue); worker events, heartbeats, Reserve and Release go straight to
// the concurrent worker table and leave a note in an inbox that the next
// round reads, so an agent's stream never waits for a scheduling round.
type Scheduler struct {
	cfg   Config
	c     *cluster
	ready chan struct{}

	inMu  sync.Mutex
	in    inbox
	spare map[string]Resources

	mu         sync.Mutex // guards everything below
	rng        *rand.Rand
	jobs       map[string]*item // pending job attempts by job id
	tenants    map[string]*tenant
	drf        tenantHeap
	active     int // items in tenant heaps
	blocked    itemHeap
	blockTimer timerHeap[*item]
	parked     map[shape]*parkGroup
	nparked    int
	parkTimer  timerHeap[*parkGroup]
	entries    map[string]*selEntry   // canonical selector key -> cache entry
	sets       map[uint64][]*matchSet // interned match sets of generation setsGen, by hash
	setsGen    uint64
	setsOK     bool
	setScratch []uint64
	kb         keyBuilder
	freeItems  []*item
	itemBuf    []*item
	seen       map[string]struct{}
	memo       map[shape]verdict // this round's failed shapes
	cand       []cand            // sampler scratch
	sink       int64             // keeps the sampler's touch loads from being optimized away
	scratch    []uint64          // selector evaluation scratch
	seq        uint64
	total      Resources // cluster.total as of the last round
	wA, wL, wF float64   // score weights, normalized to sum 1
	attempts   uint64    // decisions made, for Stats
}

// inbox collects what happened outside the queue lock since the last round.
type inbox struct {
	usage    map[string]Resources // per-queue change of reserved resources
	releases int
	wakes    []*wakeEvent
	wakeAll  bool
}

// maxWakes bounds the inbox: past it, the next round re-checks every parked
// shape once instead of matching each event.
const maxWakes = 1024

// New returns a Scheduler with no workers and no jobs.
func New(cfg Config) (*Scheduler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.QueueWeights = maps.Clone(cfg.QueueWeights) // SetQueueWeight writes to it
	sum := cfg.AllocWeight + cfg.LoadWeight + cfg.AffinityWeight
	s := &Scheduler{
		cfg:     cfg,
		c:       newCluster(&cfg),
		ready:   make(chan struct{}, 1),
		in:      inbox{usage: map[string]Resources{}},
		spare:   map[string]Resources{},
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5851F42D4C957F2D)),
		jobs:    make(map[string]*item),
		tenants: make(map[string]*tenant),
		parked:  make(map[shape]*parkGroup),
		entries: make(map[string]*selEntry),
		sets:    make(map[uint64][]*matchSet),
		seen:    make(map[string]struct{}),
		memo:    make(map[shape]verdict),
		wA:      cfg.AllocWeight / sum,
		wL:      cfg.LoadWeight / sum,
		wF:      cfg.AffinityWeight / sum,
	}
	return s, nil
}

// Ready is signalled (without blocking, capacity 1) whenever something
// happened that a round may act on: a submit, a release, a worker change.
// The core waits on it and on a timer for Round.NextRetry; between the two
// it never needs to poll.
func (s *Scheduler) Ready() <-chan struct{} { return s.ready }

func (s *Scheduler) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

func (s *Scheduler) note(f func(in *inbox)) {
	s.inMu.Lock()
	f(&s.in)
	s.inMu.Unlock()
	s.signal()
}

func (s *Scheduler) noteWake(ev *wakeEvent) {
	if ev == nil {
		return
	}
	s.note(func(in *inbox) {
		if len(in.wakes) >= maxWakes {
			in.wakeAll = true
			return
		}
		in.wakes = append(in.wakes, ev)
	})
}

// UpsertWorker adds a worker or updates its labels, capacity and state; now
// counts as a sign of life. New capacity wakes parked jobs it could run.
// Lowering capacity below what is reserved keeps the reservations: the
// worker takes nothing new until enough jobs end.
func (s *Scheduler) UpsertWorker(now time.Time, w Worker) error {
	if err := checkWorker(w); err != nil {
		return fmt.Errorf("upsert worker %q: %w", w.ID, err)
	}
	s.noteWake(s.c.upsert(now.UnixNano(), w))
	return nil
}

func checkWorker(w Worker) error {
	if w.ID == "" {
		return invalid("id", "empty")
	}
	if err := checkLabels(w.Labels); err != nil {
		return err
	}
	if err := w.Capacity.check("capacity"); err != nil {
		return err
	}
	if w.State > StateLost {
		return invalid("state", "unknown state %d", w.State)
	}
	return nil
}

// RemoveWorker forgets a worker and drops every reservation on it. It
// returns those reservations so the core can re-queue their jobs as new
// attempts (or fail them). ErrUnknownWorker if id is not known.
func (s *Scheduler) RemoveWorker(id string) ([]Reservation, error) {
	res, ok := s.c.remove(id)
	if !ok {
		return nil, fmt.Errorf("remove worker %q: %w", id, ErrUnknownWorker)
	}
	if len(res) > 0 {
		s.note(func(in *inbox) {
			for _, r := range res {
				in.usage[r.Queue] = in.usage[r.Queue].Sub(r.Resources)
			}
		})
	}
	return res, nil
}

// SetWorkerState moves a worker to ready, draining or lost. Only ready
// workers get new jobs; reservations are kept in every state.
func (s *Scheduler) SetWorkerState(id string, st State) error {
	if st > StateLost {
		return fmt.Errorf("set worker %q state: %w", id, invalid("state", "unknown state %d", st))
	}
	ev, err := s.c.setWorkerState(id, st)
	if err != nil {
		return fmt.Errorf("set worker %q state: %w", id, err)
	}
	s.noteWake(ev)
	return nil
}

// Drain stops new placements on a worker; its running jobs keep their
// reservations. Same as SetWorkerState(id, StateDraining).
func (s *Scheduler) Drain(id string) error { return s.SetWorkerState(id, StateDraining) }

// Heartbeat records a worker's telemetry. Reports older than the last one
// are ignored. A worker whose telemetry had expired takes jobs again, and
// parked jobs it matches are retried.
func (s *Scheduler) Heartbeat(id string, t Telemetry) error {
	if err := t.check(); err != nil {
		return fmt.Errorf("heartbeat %q: %w", id, prefixField("telemetry.", err))
	}
	ev, err := s.c.heartbeat(id, t)
	if err != nil {
		return fmt.Errorf("heartbeat %q: %w", id, err)
	}
	s.noteWake(ev)
	return nil
}

// Reserve records a reservation the scheduler did not decide in this
// process, typically an assignment replayed from the event log at startup.
// It uses the same fit function as scheduling and fails with ErrNoRoom
// rather than exceed the worker's declared capacity; ErrDuplicate if the job
// attempt already holds a reservation; ErrUnknownWorker. It works in any
// worker state: the job is already there.
func (s *Scheduler) Reserve(now time.Time, r Reservation) error {
	key := Key{r.JobID, r.Attempt}
	if r.JobID == "" {
		return fmt.Errorf("reserve %s: %w", key, invalid("job_id", "empty"))
	}
	if err := r.Resources.check("resources"); err != nil {
		return fmt.Errorf("reserve %s: %w", key, err)
	}
	if r.Queue == "" {
		r.Queue = DefaultQueue
	}
	req := r.Resources
	req.Slots = max(req.Slots, 1)
	if err := s.c.reserve(r.WorkerID, key, r.Queue, req, now.UnixNano()); err != nil {
		return fmt.Errorf("reserve %s on %q: %w", key, r.WorkerID, err)
	}
	s.note(func(in *inbox) { in.usage[r.Queue] = in.usage[r.Queue].Add(req) })
	return nil
}

// Release frees the reservation of one job attempt: call it when the
// attempt ends or its assignment fails. It returns the released reservation,
// or false if the attempt held none (so a duplicate Release is harmless).
// Released capacity wakes blocked jobs.
func (s *Scheduler) Release(jobID string, attempt uint32) (Reservation, bool) {
	r, ok := s.c.release(Key{jobID, attempt})
	if ok {
		s.note(func(in *inbox) {
			in.usage[r.Queue] = in.usage[r.Queue].Sub(r.Resources)
			in.releases++
		})
	}
	return r, ok
}

// SetQueueWeight sets a queue's DRF weight (> 0; default 1): a queue of
// weight 2 is entitled to twice the dominant share of a queue of weight 1.
func (s *Scheduler) SetQueueWeight(queue string, weight float64) error {
	if badWeight(weight) || weight == 0 {
		return fmt.Errorf("set queue weight %q: %w", queue, invalid("weight", "%v must be finite and > 0", weight))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.QueueWeights == nil {
		s.cfg.QueueWeights = map[string]float64{}
	}
	s.cfg.QueueWeights[queue] = weight
	if t := s.tenants[queue]; t != nil {
		t.weight = weight
		s.updateShare(t)
	}
	return nil
}

// Submit queues job attempts. It validates all of them first and queues
// none if any is bad (an *InvalidError naming the job and the field), or if
// one is already pending or reserved (ErrDuplicate). Jobs are copied.
func (s *Scheduler) Submit(now time.Time, jobs ...Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	items := s.itemBuf[:0]
	defer func() {
		clear(items)
		s.itemBuf = items[:0]
		clear(s.seen)
	}()
	for i := range jobs {
		it, err := s.newItem(now, &jobs[i])
		if err == nil {
			if _, dup := s.seen[it.id]; dup {
				err = fmt.Errorf("%w (twice in one call)", ErrDuplicate)
			} else if _, dup := s.jobs[it.id]; dup || s.c.hasReservation(Key{it.id, it.attempt}) {
				err = ErrDuplicate
			}
			s.seen[it.id] = struct{}{}
			items = append(items, it) // so a failure below recycles it too
		}
		if err != nil {
			for _, it := range items {
				s.recycle(it)
			}
			return fmt.Errorf("submit jobs[%d] %q: %w", i, jobs[i].ID, err)
		}
	}
	for k, it := range items { // items[k] is jobs[k]'s
		s.seq++
		it.seq = s.seq
		it.t = s.tenant(cmp.Or(jobs[k].Queue, DefaultQueue))
		it.t.pending++
		s.jobs[it.id] = it
		s.activate(it)
	}
	if len(items) > 0 {
		s.signal()
	}
	return nil
}

// newItem validates j and returns it as a queue item, with its selector
// interned. Caller holds s.mu.
func (s *Scheduler) newItem(now time.Time, j *Job) (*item, error) {
	switch {
	case j.ID == "":
		return nil, invalid("id", "empty")
	case j.Priority < MinPriority || j.Priority > MaxPriority:
		return nil, invalid("priority", "%d is outside %d..%d", j.Priority, MinPriority, MaxPriority)
	}
	if err := j.Resources.check("resources"); err != nil {
		return nil, err
	}
	if err := j.Selector.check("selector"); err != nil {
		return nil, err
	}
	if err := checkPreferences(j.Affinity); err != nil {
		return nil, err
	}
	if j.Queue != "" {
		if reason := checkLabelValue(j.Queue); reason != "" {
			return nil, invalid("queue", "%q: %s", j.Queue, reason)
		}
	}
	it := s.allocItem()
	it.id, it.attempt = j.ID, j.Attempt
	submitted := j.SubmittedAt
	if submitted.IsZero() {
		submitted = now
	}
	it.entry = s.intern(j.Selector) // shared, immutable: the caller keeps theirs
	if len(j.Affinity) > 0 {
		aff := make([]Preference, len(j.Affinity))
		for i, p := range j.Affinity {
			aff[i] = Preference{Requirement{p.Key, p.Op, slices.Clone(p.Values)}, p.Weight}
		}
		it.affinity = aff
	}
	it.req = j.Resources
	it.req.Slots = max(it.req.Slots, 1)
	it.key = submitted.UnixNano() - int64(j.Priority)*int64(s.cfg.AgingRate)
	it.idx = -1
	return it, nil
}

// intern returns the selector cache entry for sel's canonical form. Looking
// up a known selector allocates nothing. The table is bounded by
// SelectorCacheSize: when full it is emptied, and items keep the entries
// they hold (an entry is self-contained and revalidates itself).
func (s *Scheduler) intern(sel Selector) *selEntry {
	k := s.kb.key(sel)
	if e, ok := s.entries[string(k)]; ok {
		return e
	}
	if len(s.entries) >= s.cfg.SelectorCacheSize {
		clear(s.entries)
	}
	e := &selEntry{key: string(k), sel: sel.canonical()}
	s.entries[e.key] = e
	return e
}

// allocItem reuses a finished item when there is one: at 100,000 jobs a
// second, fewer allocations mean less GC and less cache churn.
func (s *Scheduler) allocItem() *item {
	if n := len(s.freeItems); n > 0 {
		it := s.freeItems[n-1]
		s.freeItems = s.freeItems[:n-1]
		return it
	}
	return &item{}
}

// recycle returns a finished item. Its timer generation survives, so a stale
// retry-heap entry for its previous life can never match it.
func (s *Scheduler) recycle(it *item) {
	if len(s.freeItems) >= maxFreeItems {
		return
	}
	gen := it.timer
	*it = item{timer: gen + 1}
	s.freeItems = append(s.freeItems, it)
}

const maxFreeItems = 4096

// Remove takes a job out of the queue (it was cancelled while pending),
// whatever attempt is pending. It returns false if no attempt of jobID is
// pending. It does not touch reservations: use Release for a placed job.
func (s *Scheduler) Remove(jobID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.jobs[jobID]
	if !ok {
		return false
	}
	s.unlink(it)
	s.forget(it)
	return true
}

// unlink takes it out of whatever structure holds it.
func (s *Scheduler) unlink(it *item) {
	switch it.state {
	case stActive:
		it.t.active.remove(it.idx)
		s.active--
		s.fixTenant(it.t)
		if g := it.group; g != nil && g.probe == it {
			// The probe was cancelled: send the next job of its group out
			// instead, so the group is not left without a retry.
			g.probe = nil
			if len(g.items) == 0 {
				s.dropGroup(g)
			} else {
				s.wakeGroup(g)
			}
		}
	case stBlocked:
		s.blocked.remove(it.idx)
		it.timer++
	case stParked:
		g := it.group
		g.items.remove(it.idx)
		s.nparked--
		if len(g.items) == 0 && g.probe == nil {
			s.dropGroup(g)
		}
	}
	it.group = nil
}

// forget drops a job that left the queue for good.
func (s *Scheduler) forget(it *item) {
	delete(s.jobs, it.id)
	it.t.pending--
	s.maybeDropTenant(it.t)
	s.recycle(it)
}

func (s *Scheduler) tenant(name string) *tenant {
	t := s.tenants[name]
	if t == nil {
		w := 1.0
		if v, ok := s.cfg.QueueWeights[name]; ok {
			w = v
		}
		t = &tenant{name: name, weight: w, heapIdx: -1}
		s.tenants[name] = t
	}
	return t
}

func (s *Scheduler) maybeDropTenant(t *tenant) {
	if t.pending == 0 && t.usage == (Resources{}) && t.heapIdx < 0 {
		delete(s.tenants, t.name)
	}
}

func (s *Scheduler) updateShare(t *tenant) {
	t.share = dominantShare(t.usage, s.total, t.weight)
	if t.heapIdx >= 0 {
		s.drf.fix(t.heapIdx)
	}
}

// fixTenant restores t's place in the DRF heap after its active heap or
// share changed.
func (s *Scheduler) fixTenant(t *tenant) {
	switch {
	case len(t.active) == 0 && t.heapIdx >= 0:
		s.drf.remove(t.heapIdx)
		s.maybeDropTenant(t)
	case len(t.active) > 0 && t.heapIdx < 0:
		s.drf.push(t)
	case t.heapIdx >= 0:
		s.drf.fix(t.heapIdx)
	}
}

// activate makes it eligible for the next decision in its tenant.
func (s *Scheduler) activate(it *item) {
	it.state = stActive
	it.t.active.push(it)
	s.active++
	if it.t.heapIdx < 0 {
		s.drf.push(it.t)
	}
}

// Round is the outcome of one ScheduleRound.
type Round struct {
	// Placements are reserved decisions, in decision order.
	Placements []Placement
	// Parked are jobs parked in this round for the first time or for a new
	// reason: report each as unschedulable with its reason.
	Parked []Parked
	// Pending is how many jobs are still ready to try because the round hit
	// its limit: call ScheduleRound again right away if it is not 0.
	Pending int
	// NextRetry is when the earliest backed-off or parked job is due for
	// another try; zero if none is waiting. Call ScheduleRound then (or
	// earlier, on Ready).
	NextRetry time.Time
}

// ScheduleRound makes up to limit placements (limit <= 0: no limit) at time
// now: it takes in what happened since the last round (releases, worker
// changes), brings back jobs whose retry is due, then repeatedly serves the
// queue with the smallest weighted dominant share, taking its job with the
// smallest aging key, and runs filter, score and reserve for it. A job that
// finds no room is backed off; a job nothing can run is parked with a
// reason. Each pending job is decided at most once per round, so a round
// never spins.
func (s *Scheduler) ScheduleRound(now time.Time, limit int) Round {
	nowN := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drainInbox()
	s.fireTimers(nowN)
	clear(s.memo)

	var r Round
	if n := s.active; n > 0 {
		if limit > 0 {
			n = min(n, limit)
		}
		r.Placements = make([]Placement, 0, min(n, 1024))
	}
	for len(s.drf) > 0 && (limit <= 0 || len(r.Placements) < limit) {
		t := s.drf[0]
		it := t.active.pop()
		s.active--
		v, w := s.decide(it, nowN)
		switch v.outcome {
		case placed:
			r.Placements = append(r.Placements, Placement{JobID: it.id, Attempt: it.attempt,
				Queue: t.name, WorkerID: w.id, Resources: it.req})
			s.seq++
			t.served = s.seq
			t.usage = t.usage.Add(it.req)
			t.share = dominantShare(t.usage, s.total, t.weight)
			s.settleProbe(it)
			s.forget(it)
		case parked:
			if p, report := s.park(it, v.reason, nowN); report {
				r.Parked = append(r.Parked, p)
			}
		case blocked:
			s.settleProbe(it)
			s.block(it, nowN)
		case dropped: // already reserved by someone else: nothing to do
			s.settleProbe(it)
			s.forget(it)
		}
		s.fixTenant(t)
	}
	r.Pending = s.active
	r.NextRetry = s.nextRetry()
	return r
}

// settleProbe: it was a parked group's probe and is no longer parked, so
// the shape is feasible again and the rest of the group goes back to work.
func (s *Scheduler) settleProbe(it *item) {
	g := it.group
	if g == nil {
		return
	}
	it.group = nil
	g.probe = nil
	for len(g.items) > 0 {
		o := g.items.pop()
		o.group = nil
		s.nparked--
		s.activate(o)
	}
	s.dropGroup(g)
}

func (s *Scheduler) dropGroup(g *parkGroup) {
	if !g.dead {
		g.dead = true
		g.timer++
		delete(s.parked, g.shape)
	}
}

// park adds it to its shape's group. It reports the job when its reason is
// new to it.
func (s *Scheduler) park(it *item, reason string, now int64) (Parked, bool) {
	g := it.group
	arm := false                   // whether g needs a new retry timer
	if g != nil && g.probe == it { // a probe that failed again: back off
		g.probe = nil
		g.retries++
		arm = true
	} else {
		g = s.parked[it.shape()]
		if g == nil {
			g = &parkGroup{shape: it.shape(), sel: it.entry.sel, since: now}
			s.parked[g.shape] = g
			arm = true
		}
		it.group = g
	}
	if g.reason != reason {
		g.reason, g.since = reason, now
	}
	it.state = stParked
	g.items.push(it)
	s.nparked++
	if arm {
		g.timer++
		s.parkTimer.push(timer[*parkGroup]{now + s.backoff(s.cfg.ParkedRetryMin, s.cfg.ParkedRetryMax, g.retries), g, g.timer})
	}
	if it.reason == reason {
		return Parked{}, false
	}
	it.reason = reason
	return Parked{JobID: it.id, Attempt: it.attempt, Queue: it.t.name, Reason: reason, Since: unixTime(g.since)}, true
}

// block backs off a job that fits somewhere but found no room.
func (s *Scheduler) block(it *item, now int64) {
	it.state = stBlocked
	s.blocked.push(it)
	it.timer++
	s.blockTimer.push(timer[*item]{now + s.backoff(s.cfg.BackoffMin, s.cfg.BackoffMax, int(it.fails)), it, it.timer})
	it.fails++
}

// backoff returns min * 2^n capped at max, spread by +-Jitter.
func (s *Scheduler) backoff(lo, hi time.Duration, n int) int64 {
	d := hi
	if n < 30 && lo<<n < hi {
		d = lo << n
	}
	j := 1 + s.cfg.Jitter*(2*s.rng.Float64()-1)
	return int64(float64(d) * j)
}

// wakeGroup sends a parked group's best job out as a probe.
func (s *Scheduler) wakeGroup(g *parkGroup) {
	if g.dead || g.probe != nil || len(g.items) == 0 {
		return
	}
	it := g.items.pop()
	s.nparked--
	g.probe = it
	s.activate(it)
}

func (s *Scheduler) drainInbox() {
	s.inMu.Lock()
	in := s.in
	s.in = inbox{usage: s.spare}
	s.inMu.Unlock()
	defer func() { clear(in.usage); s.spare = in.usage }()

	if tot := s.c.totalCapacity(); tot != s.total {
		s.total = tot
		for _, t := range s.tenants {
			t.share = dominantShare(t.usage, s.total, t.weight)
		}
		s.drf.init()
	}
	for q, d := range in.usage {
		t := s.tenant(q)
		t.usage = t.usage.Add(d)
		s.updateShare(t)
		s.maybeDropTenant(t)
	}
	for budget := in.releases * s.cfg.WakePerRelease; budget > 0 && len(s.blocked) > 0; budget-- {
		it := s.blocked.pop()
		it.timer++
		s.activate(it)
	}
	if in.wakeAll {
		for _, g := range s.parked {
			s.wakeGroup(g)
		}
		return
	}
	for _, ev := range in.wakes {
		for _, g := range s.parked {
			if g.probe == nil && fits(ev.capacity, Resources{}, g.shape.req) && g.sel.Matches(ev.labels) {
				s.wakeGroup(g)
			}
		}
	}
}

func (s *Scheduler) fireTimers(now int64) {
	for len(s.blockTimer) > 0 && s.blockTimer[0].at <= now {
		tm := s.blockTimer.pop()
		if it := tm.target; it.state == stBlocked && it.timer == tm.gen {
			s.blocked.remove(it.idx)
			s.activate(it)
		}
	}
	for len(s.parkTimer) > 0 && s.parkTimer[0].at <= now {
		tm := s.parkTimer.pop()
		if g := tm.target; !g.dead && g.timer == tm.gen {
			s.wakeGroup(g)
		}
	}
}

func (s *Scheduler) nextRetry() time.Time {
	for len(s.blockTimer) > 0 {
		if tm := s.blockTimer[0]; tm.target.state != stBlocked || tm.target.timer != tm.gen {
			s.blockTimer.pop()
			continue
		}
		break
	}
	for len(s.parkTimer) > 0 {
		if tm := s.parkTimer[0]; tm.target.dead || tm.target.timer != tm.gen {
			s.parkTimer.pop()
			continue
		}
		break
	}
	var at int64
	if len(s.blockTimer) > 0 {
		at = s.blockTimer[0].at
	}
	if len(s.parkTimer) > 0 && (at == 0 || s.parkTimer[0].at < at) {
		at = s.parkTimer[0].at
	}
	return unixTime(at)
}

// Parked lists every parked job with its reason, oldest first.
func (s *Scheduler) Parked() []Parked {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Parked
	for _, g := range s.parked {
		for _, it := range g.items {
			out = append(out, Parked{JobID: it.id, Attempt: it.attempt, Queue: it.t.name,
				Reason: g.reason, Since: unixTime(g.since)})
		}
	}
	slices.SortFunc(out, func(a, b Parked) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return compareStrings(a.JobID, b.JobID)
	})
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Stats counts what the scheduler holds.
type Stats struct {
	Workers   int    // registered workers
	Active    int    // pending jobs ready for the next round
	Blocked   int    // pending jobs backed off, waiting for room
	Parked    int    // pending jobs nothing can run
	Reserved  int    // reservations held
	Decisions uint64 // filter+score+reserve runs so far (a tight loop shows here)
}

// Stats returns current counts.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	st := Stats{Active: s.active, Blocked: len(s.blocked), Parked: s.nparked, Decisions: s.attempts}
	s.mu.Unlock()
	s.c.mu.RLock()
	st.Workers = len(s.c.ids)
	s.c.mu.RUnlock()
	for i := range s.c.shards {
		sh := &s.c.shards[i]
		sh.mu.Lock()
		st.Reserved += len(sh.m)
		sh.mu.Unlock()
	}
	return st
}

// Worker returns a snapshot of one worker.
func (s *Scheduler) Worker(id string) (WorkerInfo, bool) {
	s.c.mu.RLock()
	defer s.c.mu.RUnlock()
	w, ok := s.c.ids[id]
	if !ok {
		return WorkerInfo{}, false
	}
	return s.c.info(w), true
}

// Workers returns a snapshot of every worker, by id.
func (s *Scheduler) Workers() []WorkerInfo {
	s.c.mu.RLock()
	defer s.c.mu.RUnlock()
	out := make([]WorkerInfo, 0, len(s.c.ids))
	for _, id := range slices.Sorted(maps.Keys(s.c.ids)) {
		out = append(out, s.c.info(s.c.ids[id]))
	}
	return out
}

// Reservations returns every reservation held, in no particular order.
func (s *Scheduler) Reservations() []Reservation { return s.c.reservations() }

func (c *cluster) totalCapacity() Resources {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.total
}

func unixTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
