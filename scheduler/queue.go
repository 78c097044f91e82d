package scheduler

// The queue: where pending job attempts wait, all guarded by Scheduler.mu.
//
//	          Submit / wake / retry
//	                  |
//	                  v
//	  DRF heap of tenants (min weighted dominant share)
//	    tenant.active: heap on the aging key (t_enq - priority*AgingRate)
//	                  |
//	            ScheduleRound: pop, decide
//	     .------------+-------------------.
//	  placed        blocked               parked
//	 (reserved)   (feasible, no room     (nothing could ever run it:
//	               now: backoff heap,     grouped by shape with a reason;
//	               woken by releases)     woken by matching worker events
//	                                      or a jittered periodic retry)

type itemState uint8

const (
	stActive  itemState = iota // in its tenant's active heap
	stBlocked                  // in the blocked heap, waiting for room
	stParked                   // in a parkGroup, nothing can run it
)

// item is one pending job attempt.
type item struct {
	// Of the submitted Job, only what deciding needs: at 100,000 queued jobs
	// every byte here is 100 KB.
	id       string
	affinity []Preference // a private copy
	req      Resources    // Slots at least 1
	entry    *selEntry    // the selector cache entry: canonical selector and its key
	key      int64        // aging key: smaller goes first
	seq      uint64       // submission order, breaks key ties (FIFO)
	t        *tenant
	idx      int        // position in whichever heap holds it
	group    *parkGroup // the group it is parked in, or probing for
	reason   string     // last park reason reported, so it is reported once
	attempt  uint32
	timer    uint32 // generation of its live backoff timer
	fails    int32  // consecutive blocked attempts: the backoff exponent
	state    itemState
}

// shape is what feasibility depends on. Jobs of one shape are parked
// together and share a per-round verdict.
type shape struct {
	sel string
	req Resources
}

func (it *item) shape() shape { return shape{it.entry.key, it.req} }

func itemLess(a, b *item) bool { return a.key < b.key || a.key == b.key && a.seq < b.seq }

// itemHeap is a binary min-heap on (key, seq) that keeps item.idx current.
type itemHeap []*item

func (h *itemHeap) push(it *item) {
	it.idx = len(*h)
	*h = append(*h, it)
	h.up(it.idx)
}

func (h *itemHeap) pop() *item {
	return h.remove(0)
}

func (h *itemHeap) remove(i int) *item {
	old := *h
	it := old[i]
	last := len(old) - 1
	if i != last {
		old[i] = old[last]
		old[i].idx = i
	}
	old[last] = nil
	*h = old[:last]
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
	it.idx = -1
	return it
}

func (h itemHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !itemLess(h[i], h[p]) {
			return
		}
		h[i], h[p] = h[p], h[i]
		h[i].idx, h[p].idx = i, p
		i = p
	}
}

func (h itemHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && itemLess(h[r], h[l]) {
			m = r
		}
		if !itemLess(h[m], h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		h[i].idx, h[m].idx = i, m
		i = m
	}
	return i > start
}

// tenant is one queue for fair share.
type tenant struct {
	name    string
	weight  float64
	usage   Resources // reserved by its placed jobs
	share   float64   // weighted dominant share: max_r usage_r / (weight * total_r)
	served  uint64    // round-robin among equal shares: least recently served first
	active  itemHeap
	pending int // items of this tenant in any state
	heapIdx int // position in the DRF heap, -1 if absent
}

func tenantLess(a, b *tenant) bool {
	if a.share != b.share {
		return a.share < b.share
	}
	if a.served != b.served {
		return a.served < b.served
	}
	return a.name < b.name
}

// dominantShare is DRF's s_i = max_r U_r / (w * C_r) over the resources the
// cluster has.
func dominantShare(u, total Resources, weight float64) float64 {
	s := 0.0
	if total.Slots > 0 {
		s = max(s, float64(u.Slots)/float64(total.Slots))
	}
	if total.CPUMillis > 0 {
		s = max(s, float64(u.CPUMillis)/float64(total.CPUMillis))
	}
	if total.MemoryBytes > 0 {
		s = max(s, float64(u.MemoryBytes)/float64(total.MemoryBytes))
	}
	return s / weight
}

// tenantHeap is the DRF heap: the tenant with the smallest weighted dominant
// share is served next (progressive filling).
type tenantHeap []*tenant

func (h *tenantHeap) push(t *tenant) {
	t.heapIdx = len(*h)
	*h = append(*h, t)
	h.up(t.heapIdx)
}

func (h *tenantHeap) remove(i int) {
	old := *h
	t := old[i]
	last := len(old) - 1
	if i != last {
		old[i] = old[last]
		old[i].heapIdx = i
	}
	old[last] = nil
	*h = old[:last]
	if i != last {
		h.fix(i)
	}
	t.heapIdx = -1
}

func (h tenantHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h tenantHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h tenantHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !tenantLess(h[i], h[p]) {
			return
		}
		h[i], h[p] = h[p], h[i]
		h[i].heapIdx, h[p].heapIdx = i, p
		i = p
	}
}

func (h tenantHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && tenantLess(h[r], h[l]) {
			m = r
		}
		if !tenantLess(h[m], h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		h[i].heapIdx, h[m].heapIdx = i, m
		i = m
	}
	return i > start
}

// parkGroup holds the parked jobs of one shape. A retry (worker event or
// timer) sends only its best job out as a probe; the rest follow only if the
// probe is no longer parked. So a wake costs one decision, not one per job.
type parkGroup struct {
	shape   shape
	sel     Selector
	items   itemHeap
	reason  string
	since   int64
	retries int    // consecutive failed retries: the backoff exponent
	timer   uint32 // generation of the live retry timer
	probe   *item  // the job out probing, or nil
	dead    bool   // removed from Scheduler.parked
}

// timer is an entry of a retry heap. Entries are never removed early: a
// fired entry whose gen no longer matches its target is ignored (lazy
// deletion), which keeps Remove and wake-ups O(log n).
type timer[T any] struct {
	at     int64
	target T
	gen    uint32
}

type timerHeap[T any] []timer[T]

func (h *timerHeap[T]) push(t timer[T]) {
	*h = append(*h, t)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].at <= s[i].at {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *timerHeap[T]) pop() timer[T] {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	var zero timer[T]
	s[last] = zero
	s = s[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		m := l
		if r := l + 1; r < len(s) && s[r].at < s[l].at {
			m = r
		}
		if s[i].at <= s[m].at {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}
