package projections

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// jobEventGen makes a random, often nonsensical, stream of job events: the
// views must fold any sequence the same way, including events after a
// terminal one, for unknown jobs and of unhandled types.
type jobEventGen struct {
	r       *rand.Rand
	pos     uint64
	ids     []string
	status  map[string]domain.JobStatus
	attempt map[string]uint32
	workers []string
	n       int
	// queueHeavy makes long queues: phases of submitting, parking,
	// unparking and cancel-requesting queued jobs alternate with phases
	// of scheduling them, and active jobs are often requeued.
	queueHeavy bool
}

func newJobEventGen(seed uint64) *jobEventGen {
	return &jobEventGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), status: map[string]domain.JobStatus{},
		attempt: map[string]uint32{}, workers: []string{"w1", "w2", "worker-3", strings.Repeat("w", 80)}}
}

func (g *jobEventGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g *jobEventGen) newID() string {
	g.n++
	switch g.r.IntN(8) {
	case 0:
		return fmt.Sprintf("job-%d", g.n)
	case 1:
		return strings.ToUpper(eventstore.NewID().String()) // UUID-shaped, not canonical
	case 2:
		return fmt.Sprintf("x%0127d", g.n) // longest valid id
	case 3:
		return fmt.Sprintf("%08d-0000-0000-0000-00000000000g", g.n) // dashes right, not hex
	case 4:
		return fmt.Sprintf("a.b_c-%d", g.n)
	case 5, 6:
		return g.ulid()
	}
	return eventstore.NewID().String()
}

// ulid returns a ULID the way the server writes them (core.newID): 26
// lower-case Crockford digits; one in eight is not canonical (upper case, a
// first digit above 7, or a letter outside the alphabet) and must be kept as
// a string.
func (g *jobEventGen) ulid() string {
	b := make([]byte, 26)
	b[0] = crockford[g.r.IntN(8)]
	for i := 1; i < 26; i++ {
		b[i] = crockford[g.r.IntN(32)]
	}
	switch g.r.IntN(24) {
	case 0:
		return strings.ToUpper(string(b))
	case 1:
		b[0] = '8'
	case 2:
		b[g.r.IntN(26)] = 'u'
	}
	return string(b)
}

func (g *jobEventGen) time() time.Time {
	base := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	switch g.r.IntN(14) {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(0, 0)
	case 2:
		return time.Time{}.Add(time.Duration(g.r.Int64N(1000)))
	case 3:
		return time.Date(2700, 1, 2, 3, 4, 5, 6, time.UTC) // beyond int64 nanoseconds
	case 4:
		return time.Date(1500, 1, 2, 3, 4, 5, 999999999, time.FixedZone("x", 3600))
	case 5:
		return time.Now() // with a monotonic reading
	case 6:
		return base.Add(-time.Duration(g.r.Int64N(int64(time.Hour)))).In(time.Local)
	case 7:
		return time.Date(2262, 4, 11, 23, 47, 16, 854775807, time.UTC) // near the int64 limit
	}
	return base.Add(time.Duration(g.r.Int64N(int64(48 * time.Hour))))
}

func (g *jobEventGen) labels() map[string]string {
	switch g.r.IntN(5) {
	case 0:
		return nil
	case 1:
		return map[string]string{}
	}
	m := map[string]string{}
	for i := g.r.IntN(4); i >= 0; i-- {
		m[g.pick("team", "env", "k", "", strings.Repeat("long", 20))] = g.pick("a", "b", "", "prod", fmt.Sprintf("v%d", g.r.IntN(1000)))
	}
	return m
}

func (g *jobEventGen) text() string {
	return g.pick("", "agent-lost", "exit status 3", "killed by SIGKILL", fmt.Sprintf("unique reason %d", g.r.Int()), strings.Repeat("r", 300))
}

// next returns the next envelope and event.
func (g *jobEventGen) next() (*eventstore.Envelope, eventstore.Event) {
	g.pos++
	env := &eventstore.Envelope{Position: g.pos}
	fill := g.queueHeavy && g.pos/500%2 == 0
	submitOdds := 6
	if g.queueHeavy {
		submitOdds = 12
		if fill {
			submitOdds = 2
		}
	}
	if len(g.ids) == 0 || g.r.IntN(submitOdds) == 0 {
		id := g.newID()
		if len(g.ids) > 0 && g.r.IntN(40) == 0 {
			id = g.ids[g.r.IntN(len(g.ids))] // submitted twice
		} else {
			g.ids = append(g.ids, id)
			g.status[id] = domain.JobStatusQueued
		}
		spec := domain.JobSpec{Name: g.pick("", "bench", "build", fmt.Sprintf("n%d", g.r.IntN(100000))), Labels: g.labels(), Selector: g.labels(),
			Queue: g.pick("", "default", "q1"), Priority: g.r.IntN(21) - 10, MaxAttempts: g.r.IntN(4),
			Resources: domain.Resources{Slots: g.r.Int64N(3), CPUMillis: g.r.Int64N(8000), MemoryBytes: g.r.Int64N(1 << 40)}}
		if g.r.IntN(3) == 0 {
			spec.Timeout = time.Duration(g.r.Int64N(int64(time.Hour)))
		}
		env.StreamID, env.Type = domain.JobStream(id), domain.TypeJobSubmitted
		return env, domain.JobSubmitted{JobID: id, Spec: spec, Submitter: g.pick("alice", "bob", ""), At: g.time()}
	}
	id := g.ids[g.r.IntN(len(g.ids))]
	switch g.r.IntN(60) {
	case 0:
		id = "missing-" + id[:min(len(id), 10)]
	case 1:
		env.StreamID, env.Type = domain.WorkerStream("w1"), "worker.registered"
		return env, domain.WorkerRegistered{WorkerID: "w1"}
	case 2:
		env.StreamID, env.Type = domain.JobStream(id), "worker.registered"
		return env, domain.WorkerRegistered{WorkerID: "w1"} // unhandled on a job stream
	}
	env.StreamID = domain.JobStream(id)
	st := g.status[id]
	worker := g.pick(g.workers...)
	at := g.time()
	kind := g.r.IntN(12)
	if g.queueHeavy && g.r.IntN(10) < 8 {
		switch {
		case st == domain.JobStatusQueued && fill:
			kind = []int{0, 0, 1, 5, 5, 6}[g.r.IntN(6)]
		case st == domain.JobStatusQueued:
			kind = []int{2, 2, 2, 2, 0, 1, 5, 10}[g.r.IntN(8)]
		case st == domain.JobStatusScheduled:
			kind = []int{3, 7, 7}[g.r.IntN(3)]
		case st == domain.JobStatusAccepted:
			kind = []int{4, 7}[g.r.IntN(2)]
		case st == domain.JobStatusRunning:
			kind = []int{8, 9, 7, 7, 6}[g.r.IntN(5)]
		}
	} else if g.r.IntN(10) < 7 { // mostly the natural next step
		switch {
		case st == domain.JobStatusQueued:
			kind = []int{0, 1, 2, 2, 2, 10}[g.r.IntN(6)]
		case st == domain.JobStatusScheduled:
			kind = []int{3, 3, 7, 6}[g.r.IntN(4)]
		case st == domain.JobStatusAccepted:
			kind = []int{4, 4, 7, 9}[g.r.IntN(4)]
		case st == domain.JobStatusRunning:
			kind = []int{8, 8, 8, 9, 10, 11, 6, 7}[g.r.IntN(8)]
		}
	}
	var ev eventstore.Event
	a := g.attempt[id]
	switch kind {
	case 0:
		ev = domain.JobParked{JobID: id, Reason: g.text(), At: at}
	case 1:
		ev = domain.JobUnparked{JobID: id, At: at}
	case 2:
		a++
		g.attempt[id] = a
		st = domain.JobStatusScheduled
		ev = domain.JobScheduled{JobID: id, Attempt: a, WorkerID: worker, At: at}
	case 3:
		st = domain.JobStatusAccepted
		ev = domain.JobAccepted{JobID: id, Attempt: a, WorkerID: worker, At: at}
	case 4:
		st = domain.JobStatusRunning
		ev = domain.JobStarted{JobID: id, Attempt: a, WorkerID: worker, At: at}
	case 5:
		ev = domain.JobCancelRequested{JobID: id, By: "user:x", Reason: g.text(), At: at}
	case 6:
		ev = domain.JobCancelRequested{JobID: id, By: "user:x", Reason: g.text(), At: at}
	case 7:
		st = domain.JobStatusQueued
		ev = domain.JobRequeued{JobID: id, Attempt: a, WorkerID: worker, Reason: g.text(), At: at}
	case 8:
		st = domain.JobStatusSucceeded
		ev = domain.JobSucceeded{JobID: id, Attempt: a, WorkerID: worker, Runtime: time.Duration(g.r.Int64N(int64(time.Hour))), At: at}
	case 9:
		st = domain.JobStatusFailed
		ev = domain.JobFailed{JobID: id, Attempt: a, WorkerID: worker, ExitCode: g.r.IntN(300) - 150, Signal: g.pick("", "SIGKILL"),
			Reason: g.text(), Runtime: time.Duration(g.r.Int64N(int64(time.Hour))) - time.Minute, At: at}
	case 10:
		st = domain.JobStatusCancelled
		ev = domain.JobCancelled{JobID: id, Attempt: a, WorkerID: worker, By: "u", Reason: g.text(), ExitCode: -1, Runtime: 5, At: at}
	case 11:
		st = domain.JobStatusTimedOut
		ev = domain.JobTimedOut{JobID: id, Attempt: a, WorkerID: worker, Reason: g.text(), ExitCode: g.r.IntN(3) - 1,
			Signal: g.pick("", "SIGTERM"), Runtime: time.Duration(g.r.Int64N(1 << 62)), At: at}
	}
	g.status[id] = st
	env.Type = ev.EventType()
	return env, ev
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// compareJobs checks every read of got against want.
func compareJobs(t *testing.T, step int, got *Jobs, want *refJobs, g *jobEventGen) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("after %d events: %s", step, fmt.Sprintf(format, args...))
	}
	for _, id := range append(g.ids, "nope", "00000000-0000-0000-0000-000000000000") {
		gv, gok := got.Get(id)
		wv, wok := want.Get(id)
		if gok != wok || !reflect.DeepEqual(gv, wv) {
			fail("Get(%q) = %+v, %v; want %+v, %v", id, gv, gok, wv, wok)
		}
	}
	n := uint64(len(g.ids))
	filters := []JobFilter{
		{}, {Descending: true}, {Limit: 7}, {Limit: 7, Descending: true}, {After: n / 2, Limit: 5}, {After: n / 2, Limit: 5, Descending: true},
		{After: n + 3, Descending: true, Limit: 3}, {After: n + 3, Limit: 3},
		{Statuses: []domain.JobStatus{domain.JobStatusRunning}, Limit: 1000},
		{Statuses: []domain.JobStatus{domain.JobStatusSucceeded, domain.JobStatusQueued}, Descending: true, Limit: 11},
		{Statuses: []domain.JobStatus{"bogus"}},
		{Statuses: []domain.JobStatus{domain.JobStatusFailed, domain.JobStatusTimedOut, domain.JobStatusCancelled}, Queue: "q1", Limit: 1000},
		{Queue: "default", Descending: true, Limit: 13},
		{Worker: "w2", Limit: 1000},
		{Worker: "w1", Statuses: []domain.JobStatus{domain.JobStatusSucceeded}, Limit: 1000},
		{Labels: map[string]string{"team": "a"}, Limit: 1000},
		{Labels: map[string]string{"env": ""}, Limit: 1000},
		{Labels: map[string]string{"": "prod", "k": "b"}, Limit: 1000},
		{Labels: map[string]string{strings.Repeat("long", 20): "a"}, Queue: "q1", Worker: "w1", Limit: 1000},
	}
	for _, f := range filters {
		for {
			gl, gn := got.List(f)
			wl, wn := want.List(f)
			if gn != wn || !reflect.DeepEqual(gl, wl) {
				fail("List(%+v) = %d jobs, next %d; want %d jobs, next %d", f, len(gl), gn, len(wl), wn)
			}
			if wn == 0 || f.Limit > 100 {
				break
			}
			f.After = wn
		}
	}
	for _, w := range append(g.workers, "", "none") {
		if gw, ww := got.ActiveOn(w), want.ActiveOn(w); !reflect.DeepEqual(gw, ww) {
			fail("ActiveOn(%q) = %v, want %v", w, gw, ww)
		}
	}
	if gc, wc := got.Counts(), want.Counts(); !reflect.DeepEqual(gc, wc) {
		fail("Counts() = %v, want %v", gc, wc)
	}
	var ge, we []JobView
	got.Each(func(v JobView) bool { ge = append(ge, v); return true })
	want.Each(func(v JobView) bool { we = append(we, v); return true })
	if !reflect.DeepEqual(ge, we) {
		fail("Each differs")
	}
	ge = ge[:0]
	got.Each(func(v JobView) bool { ge = append(ge, v); return len(ge) < 3 })
	if len(we) > 3 && len(ge) != 3 {
		fail("Each did not stop")
	}
	gb, gerr := got.MarshalState()
	wb, werr := want.MarshalState()
	if gerr != nil || werr != nil || !bytes.Equal(gb, wb) {
		fail("MarshalState() = %d bytes, %v; want %d bytes, %v", len(gb), gerr, len(wb), werr)
	}
	if err := checkQueueStore(got); err != nil {
		fail("%v", err)
	}
}

// checkQueueStore checks that the queue store's counts agree with the
// queued refs: every chunk held has current records (but the tail), and
// every queued ref is current in a chunk held.
func checkQueueStore(j *Jobs) error {
	j.mu.RLock()
	defer j.mu.RUnlock()
	s := &j.queue
	refs, refBytes := make(map[uint32]int), make(map[uint32]int)
	for i, r := range j.order {
		if !r.queued() {
			continue
		}
		if r.code() != statusCode(domain.JobStatusQueued) {
			return fmt.Errorf("job %d: queued ref with status code %d", i, r.code())
		}
		n := uint32(r.addr() >> 24)
		if int(n) >= len(s.chunks) || s.chunks[n].b == nil || int(r.addr()&(1<<24-1)) >= len(s.chunks[n].b) {
			return fmt.Errorf("job %d: queued ref %x is not in a chunk held", i, r)
		}
		refs[n]++
		l, k := binary.Uvarint(s.chunks[n].b[r.addr()&(1<<24-1):])
		refBytes[n] += k + int(l)
	}
	held, bytes := 0, 0
	for n, c := range s.chunks {
		if c.b == nil {
			if c.live != 0 || refs[uint32(n)] != 0 {
				return fmt.Errorf("dropped chunk %d has %d current records, %d refs", n, c.live, refs[uint32(n)])
			}
			continue
		}
		held++
		bytes += cap(c.b)
		if c.live != refs[uint32(n)] || c.liveBytes != refBytes[uint32(n)] {
			return fmt.Errorf("chunk %d counts %d current records of %d bytes, refs %d of %d bytes",
				n, c.live, c.liveBytes, refs[uint32(n)], refBytes[uint32(n)])
		}
		tail := s.hasTail && uint32(n) == s.tail
		if !tail && c.liveBytes*queueSparse < len(c.b) {
			return fmt.Errorf("chunk %d is not the tail and holds %d current bytes of %d", n, c.liveBytes, len(c.b))
		}
		if c.pending {
			return fmt.Errorf("chunk %d is waiting for relocation after Apply", n)
		}
		if c.live == 0 && (!s.hasTail || uint32(n) != s.tail || len(c.b) != 0) {
			return fmt.Errorf("chunk %d has no current records and is held (tail %d, %v; %d bytes)", n, s.tail, s.hasTail, len(c.b))
		}
	}
	if len(s.sparse) != 0 {
		return fmt.Errorf("%d chunks waiting for relocation after Apply", len(s.sparse))
	}
	if held != s.held || bytes != s.bytes || held+len(s.free) != len(s.chunks) {
		return fmt.Errorf("queue store: %d chunks held (%d counted), %d bytes (%d counted), %d free of %d",
			held, s.held, bytes, s.bytes, len(s.free), len(s.chunks))
	}
	return nil
}

func TestJobsCompactMatchesReference(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		heavy := seed > 4
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			g := newJobEventGen(seed)
			g.queueHeavy = heavy
			maxQueued, maxHeld, dropped, moved := 0, 0, false, 0
			got, want := NewJobs(), newRefJobs()
			compareJobs(t, 0, got, want, g)
			const events, every = 6000, 250
			for i := 1; i <= events; i++ {
				env, ev := g.next()
				gerr, werr := got.Apply(env, ev), want.Apply(env, ev)
				if errString(gerr) != errString(werr) {
					t.Fatalf("event %d (%s): Apply() = %v, want %v", i, env.Type, gerr, werr)
				}
				if i%every == 0 {
					compareJobs(t, i, got, want, g)
				}
				maxQueued = max(maxQueued, want.counts[domain.JobStatusQueued])
				maxHeld = max(maxHeld, got.queue.held)
				if len(got.queue.free) > 0 {
					dropped = true
				}
				moved = max(moved, got.queue.moved)
				if i == events/2 || i == events*3/4 {
					// Restart both from the old view's snapshot and go on.
					b, err := want.MarshalState()
					if err != nil {
						t.Fatal(err)
					}
					got, want = NewJobs(), newRefJobs()
					if err := got.UnmarshalState(b); err != nil {
						t.Fatal(err)
					}
					if err := want.UnmarshalState(b); err != nil {
						t.Fatal(err)
					}
					compareJobs(t, i, got, want, g)
				}
			}
			if got.store.bytes == 0 || len(got.live) == len(got.order) {
				t.Errorf("nothing was stored compactly")
			}
			if heavy && (maxQueued < 500 || maxHeld < 3 || !dropped || moved == 0) {
				t.Errorf("at most %d jobs were queued at once, in %d chunks; a chunk was dropped: %v; %d records relocated",
					maxQueued, maxHeld, dropped, moved)
			}
		})
	}
}

func TestJobsUnmarshalStateErrors(t *testing.T) {
	g := newJobEventGen(9)
	ref := newRefJobs()
	for i := 0; i < 300; i++ {
		env, ev := g.next()
		_ = ref.Apply(env, ev)
	}
	good, _ := ref.MarshalState()
	views := append([]*JobView(nil), ref.order...)
	dup := append(append([]*JobView(nil), views...), views[0])
	swapped := append([]*JobView(nil), views...)
	swapped[1], swapped[2] = swapped[2], swapped[1]
	withNil := append(append([]*JobView(nil), views[:3]...), nil)
	empty, _ := marshalState([]*JobView{})
	nilState, _ := marshalState([]*JobView(nil))
	cases := map[string][]byte{"good": good, "nil": nil, "empty": empty, "nilState": nilState,
		"truncated": good[:len(good)/2], "garbage": []byte{0x93, 0x01}, "map": []byte{0x80}}
	for name, vs := range map[string][]*JobView{"dup": dup, "swapped": swapped, "withNil": withNil} {
		b, err := marshalState(vs)
		if err != nil {
			t.Fatal(err)
		}
		cases[name] = b
	}
	for name, b := range cases {
		got, want := NewJobs(), newRefJobs()
		gerr, werr := got.UnmarshalState(b), want.UnmarshalState(b)
		if (gerr == nil) != (werr == nil) {
			t.Errorf("%s: UnmarshalState() = %v, want %v", name, gerr, werr)
			continue
		}
		if werr != nil {
			continue // the old view kept part of the snapshot; the new one keeps nothing
		}
		gb, _ := got.MarshalState()
		wb, _ := want.MarshalState()
		if !bytes.Equal(gb, wb) {
			t.Errorf("%s: state after UnmarshalState differs", name)
		}
	}
}

func TestParseUUID(t *testing.T) {
	for i := 0; i < 1000; i++ {
		s := eventstore.NewID().String()
		u, ok := parseUUID(s)
		if !ok || formatUUID(u[:]) != s {
			t.Fatalf("parseUUID(%q) = %x, %v", s, u, ok)
		}
	}
	for _, s := range []string{"", "0190b6a2-7c1e-7000-8000-00000000000", "0190B6A2-7C1E-7000-8000-000000000000",
		"0190b6a2-7c1e-7000-8000-00000000000g", "0190b6a2x7c1e-7000-8000-000000000000", "0190b6a27c1e70008000000000000000"} {
		if _, ok := parseUUID(s); ok {
			t.Errorf("parseUUID(%q) ok", s)
		}
	}
}

// benchJobEvents returns the events of n bench-like jobs, each submitted,
// scheduled, accepted, started and succeeded, as `hodei bench lifecycle`
// makes them.
func benchJobEvents(n int, each func(*eventstore.Envelope, eventstore.Event)) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var pos uint64
	emit := func(id string, ev eventstore.Event) {
		pos++
		each(&eventstore.Envelope{Position: pos, StreamID: domain.JobStream(id), Type: ev.EventType()}, ev)
	}
	for i := 0; i < n; i++ {
		id := eventstore.NewID().String()
		t0 := at.Add(time.Duration(i) * 137 * time.Microsecond)
		w := fmt.Sprintf("bench-w%d", i%8)
		emit(id, domain.JobSubmitted{JobID: id, Submitter: "bench", At: t0,
			Spec: domain.JobSpec{Name: "bench", Script: "true"}.WithDefaults()})
		emit(id, domain.JobScheduled{JobID: id, Attempt: 1, WorkerID: w, At: t0.Add(1234567)})
		emit(id, domain.JobAccepted{JobID: id, Attempt: 1, WorkerID: w, At: t0.Add(2345678)})
		emit(id, domain.JobStarted{JobID: id, Attempt: 1, WorkerID: w, At: t0.Add(3456789)})
		emit(id, domain.JobSucceeded{JobID: id, Attempt: 1, WorkerID: w, Runtime: 4567890, At: t0.Add(9876543)})
	}
}

// copyEvent gives each job's strings their own allocations, as decoding
// events from the log does, so the reference view is measured fairly.
func copyEvent(ev eventstore.Event) eventstore.Event {
	c := func(s string) string { return string([]byte(s)) }
	switch e := ev.(type) {
	case domain.JobSubmitted:
		e.JobID, e.Submitter, e.Spec.Name, e.Spec.Queue = c(e.JobID), c(e.Submitter), c(e.Spec.Name), c(e.Spec.Queue)
		return e
	case domain.JobScheduled:
		e.WorkerID = c(e.WorkerID)
		return e
	}
	return ev
}

func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkJobsMemory reports the live heap per job of 200,000 finished
// bench-like jobs, for the compact view and the old one.
func BenchmarkJobsMemory(b *testing.B) {
	benchJobsMemory(b, func(eventstore.Event) bool { return true })
}

// benchJobsMemory reports the live heap per job of 200,000 bench-like jobs
// folded with the events keep accepts, for the compact view and the old one.
func benchJobsMemory(b *testing.B, keep func(eventstore.Event) bool) {
	const n = 200_000
	for _, impl := range []string{"compact", "reference"} {
		b.Run(impl, func(b *testing.B) {
			var perJob float64
			for range b.N {
				before := heapAlloc()
				p := newJobFolder(impl)
				benchJobEvents(n, func(env *eventstore.Envelope, ev eventstore.Event) {
					if !keep(ev) {
						return
					}
					env.StreamID = string([]byte(env.StreamID))
					if err := p.Apply(env, copyEvent(ev)); err != nil {
						b.Fatal(err)
					}
				})
				after := heapAlloc()
				perJob = float64(int64(after)-int64(before)) / n
				runtime.KeepAlive(p)
			}
			b.ReportMetric(perJob, "B/job")
		})
	}
}

// BenchmarkJobsList lists the newest 100 of 200,000 mostly finished jobs,
// unfiltered and filtered by an active status.
func BenchmarkJobsList(b *testing.B) {
	const n = 200_000
	type lister interface {
		Apply(*eventstore.Envelope, eventstore.Event) error
		List(JobFilter) ([]JobView, uint64)
	}
	for _, impl := range []string{"compact", "reference"} {
		var p lister = NewJobs()
		if impl == "reference" {
			p = newRefJobs()
		}
		i := 0
		benchJobEvents(n, func(env *eventstore.Envelope, ev eventstore.Event) {
			// Leave every 1000th job running.
			if _, ok := ev.(domain.JobSucceeded); ok {
				if i++; i%1000 == 0 {
					return
				}
			}
			if err := p.Apply(env, ev); err != nil {
				b.Fatal(err)
			}
		})
		for _, f := range []struct {
			name string
			f    JobFilter
		}{
			{"newest100", JobFilter{Descending: true, Limit: 100}},
			{"newest100running", JobFilter{Descending: true, Limit: 100, Statuses: []domain.JobStatus{domain.JobStatusRunning}}},
			{"newest100queue", JobFilter{Descending: true, Limit: 100, Queue: "q1"}},
		} {
			b.Run(impl+"/"+f.name, func(b *testing.B) {
				for range b.N {
					if l, _ := p.List(f.f); len(l) == 0 && f.f.Queue == "" {
						b.Fatal("empty list")
					}
				}
			})
		}
	}
}

// Readers run while Apply moves jobs into the compact store (run with -race).
func TestJobsConcurrentReaders(t *testing.T) {
	j := NewJobs()
	type applied struct {
		env *eventstore.Envelope
		ev  eventstore.Event
	}
	var ids []string
	var events []applied
	benchJobEvents(500, func(env *eventstore.Envelope, ev eventstore.Event) {
		if e, ok := ev.(domain.JobSubmitted); ok {
			ids = append(ids, e.JobID)
		}
		events = append(events, applied{env, ev})
	})
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-done:
					return
				default:
				}
				j.Get(ids[k%len(ids)])
				j.List(JobFilter{Descending: true, Limit: 10, Queue: "default"})
				j.List(JobFilter{Statuses: []domain.JobStatus{domain.JobStatusSucceeded}, Worker: "bench-w1"})
				j.ActiveOn("bench-w1")
				j.Counts()
				if k%64 == 0 {
					j.Each(func(JobView) bool { return true })
					if _, err := j.MarshalState(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	for _, a := range events {
		if err := j.Apply(a.env, a.ev); err != nil {
			t.Error(err)
		}
	}
	close(done)
	wg.Wait()
	if c := j.Counts(); c[domain.JobStatusSucceeded] != 500 {
		t.Errorf("Counts() = %v", c)
	}
}

// Every time a view can hold either round trips exactly or keeps the job
// out of the compact store.
func TestJobsCompactTimes(t *testing.T) {
	cases := []struct {
		t    time.Time
		want bool
	}{
		{time.Time{}, true},
		{time.Time{}.In(time.Local), true},
		{time.Unix(0, 0), true},
		{time.Unix(0, 0).UTC(), true},
		{time.Unix(-1, 999999999).UTC(), true},
		{time.Date(2026, 11, 27, 10, 0, 0, 123, time.UTC), true},
		{time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), true},
		{time.Date(-500, 1, 1, 0, 0, 0, 1, time.UTC), true},
		{time.Unix(1<<40, 5), true},
		{time.Now(), false}, // monotonic reading
		{time.Now().UTC(), true},
		{time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)), false},
	}
	intern := &internTable{}
	enc := jobEncoder{intern: intern}
	for _, c := range cases {
		for field := 0; field < 4; field++ {
			v := JobView{ID: "a", Status: domain.JobStatusFailed, Labels: map[string]string{}, Seq: 7,
				SubmittedAt: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
			*[]*time.Time{&v.SubmittedAt, &v.ScheduledAt, &v.StartedAt, &v.EndedAt}[field] = c.t
			rec, ok := enc.encodeJob(&v)
			if ok != c.want {
				t.Errorf("encodeJob(time %v in field %d) ok = %v, want %v", c.t, field, ok, c.want)
				continue
			}
			if !ok {
				continue
			}
			var got JobView
			decodeJob(rec, intern.strs, 7, &got)
			if !reflect.DeepEqual(got, v) {
				t.Errorf("time %#v in field %d: decoded %+v, want %+v", c.t, field, got, v)
			}
		}
	}
}

// A bench-like fold (every job compact) snapshots to the old view's bytes,
// and restores from them.
func TestJobsBenchLikeMatchesReference(t *testing.T) {
	got, want := NewJobs(), newRefJobs()
	benchJobEvents(20_000, func(env *eventstore.Envelope, ev eventstore.Event) {
		if err := got.Apply(env, ev); err != nil {
			t.Fatal(err)
		}
		if err := want.Apply(env, ev); err != nil {
			t.Fatal(err)
		}
	})
	if len(got.live) != 0 && got.live[0] != nil {
		t.Errorf("a finished job is still live")
	}
	gb, _ := got.MarshalState()
	wb, _ := want.MarshalState()
	if !bytes.Equal(gb, wb) {
		t.Fatalf("MarshalState() differs from the old view's")
	}
	restored := NewJobs()
	if err := restored.UnmarshalState(wb); err != nil {
		t.Fatal(err)
	}
	if rb, _ := restored.MarshalState(); !bytes.Equal(rb, wb) {
		t.Fatalf("MarshalState() after UnmarshalState differs")
	}
	// The old view's Get after a restore (times in time.Local, nil maps).
	restoredRef := newRefJobs()
	if err := restoredRef.UnmarshalState(wb); err != nil {
		t.Fatal(err)
	}
	for _, v := range restoredRef.order[:100] {
		if g, _ := restored.Get(v.ID); !reflect.DeepEqual(g, *v) {
			t.Fatalf("Get(%s) after restore = %+v, want %+v", v.ID, g, *v)
		}
	}
}

// queuedJobEvents returns the events of n bench-like jobs in the order of a
// deep queue: every job submitted first, then each scheduled, accepted,
// started and succeeded.
func queuedJobEvents(n int) (submits, rest []benchEvent) {
	benchJobEvents(n, func(env *eventstore.Envelope, ev eventstore.Event) {
		if _, ok := ev.(domain.JobSubmitted); ok {
			submits = append(submits, benchEvent{env, ev})
		} else {
			rest = append(rest, benchEvent{env, ev})
		}
	})
	return submits, rest
}

type benchEvent struct {
	env *eventstore.Envelope
	ev  eventstore.Event
}

type jobFolder interface {
	Apply(*eventstore.Envelope, eventstore.Event) error
}

func newJobFolder(impl string) jobFolder {
	if impl == "reference" {
		return newRefJobs()
	}
	return NewJobs()
}

// BenchmarkJobsQueuedMemory reports the live heap per job of 200,000
// bench-like jobs submitted and not yet scheduled (the peak of `hodei bench
// lifecycle`), for the compact view and the old one.
func BenchmarkJobsQueuedMemory(b *testing.B) {
	benchJobsMemory(b, func(ev eventstore.Event) bool {
		_, submitted := ev.(domain.JobSubmitted)
		return submitted // every job stays queued
	})
}

// BenchmarkJobsFold reports the cost of folding the lifecycle event mix
// (submit, schedule, accept, start, succeed) per event: one job at a time
// ("interleaved") and with every job queued before the first is scheduled
// ("queued").
func BenchmarkJobsFold(b *testing.B) {
	const n = 20_000
	var interleaved []benchEvent
	benchJobEvents(n, func(env *eventstore.Envelope, ev eventstore.Event) {
		interleaved = append(interleaved, benchEvent{env, ev})
	})
	submits, rest := queuedJobEvents(n)
	queued := append(submits, rest...)
	for _, order := range []struct {
		name   string
		events []benchEvent
	}{{"interleaved", interleaved}, {"queued", queued}} {
		for _, impl := range []string{"compact", "reference"} {
			b.Run(order.name+"/"+impl, func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					p := newJobFolder(impl)
					for _, e := range order.events {
						if err := p.Apply(e.env, e.ev); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(order.events)), "ns/event")
			})
		}
	}
}

// Once every queued job has been scheduled and has finished, the queue store
// holds nothing but its rewound tail chunk, and it released its chunks as
// the queue drained, oldest first.
func TestJobsQueueStoreReleasesChunks(t *testing.T) {
	const n = 20_000
	j, ref := NewJobs(), newRefJobs()
	apply := func(e benchEvent) {
		t.Helper()
		if err := j.Apply(e.env, e.ev); err != nil {
			t.Fatal(err)
		}
		if err := ref.Apply(e.env, e.ev); err != nil {
			t.Fatal(err)
		}
	}
	submits, rest := queuedJobEvents(n)
	// A job with a record larger than a chunk, queued in the middle.
	big := domain.JobSpec{Name: "big", Labels: map[string]string{"k": strings.Repeat("v", 2*queueChunkSize)}}.WithDefaults()
	bigEnv := &eventstore.Envelope{Position: 1 << 40, StreamID: domain.JobStream("big"), Type: domain.TypeJobSubmitted}
	for i, e := range submits {
		apply(e)
		if i == n/2 {
			apply(benchEvent{bigEnv, domain.JobSubmitted{JobID: "big", Spec: big, At: time.Unix(5, 0).UTC()}})
		}
	}
	if err := checkQueueStore(j); err != nil {
		t.Fatal(err)
	}
	full := j.queue.held
	if min := n * 40 / queueChunkSize; full < min {
		t.Fatalf("%d queued jobs in %d chunks, want at least %d", n, full, min)
	}
	for i, e := range rest {
		apply(e)
		if i == len(rest)/2 {
			// Half the jobs have left the queue, and about half the chunks.
			if h := j.queue.held; h > full/2+3 {
				t.Errorf("half the queue drained: %d of %d chunks held", h, full)
			}
			if err := checkQueueStore(j); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ev := range []eventstore.Event{
		domain.JobParked{JobID: "big", Reason: "no worker"},
		domain.JobScheduled{JobID: "big", Attempt: 1, WorkerID: "w", At: time.Unix(6, 0).UTC()},
		domain.JobCancelled{JobID: "big", Attempt: 1, WorkerID: "w", At: time.Unix(7, 0).UTC()},
	} {
		bigEnv = &eventstore.Envelope{Position: bigEnv.Position + 1, StreamID: bigEnv.StreamID, Type: ev.EventType()}
		apply(benchEvent{bigEnv, ev})
	}
	if err := checkQueueStore(j); err != nil {
		t.Fatal(err)
	}
	s := &j.queue
	if s.held > 1 || s.bytes > queueChunkSize || (s.hasTail && len(s.chunks[s.tail].b) != 0) {
		t.Errorf("no job queued: the queue store holds %d chunks, %d bytes", s.held, s.bytes)
	}
	if len(s.chunks) > full+2 {
		t.Errorf("chunk table of %d for at most %d chunks held", len(s.chunks), full)
	}
	gb, _ := j.MarshalState()
	wb, _ := ref.MarshalState()
	if !bytes.Equal(gb, wb) {
		t.Errorf("MarshalState() differs from the old view's")
	}
}

// A queued job whose time does not round-trip stays a *JobView through
// parking, unparking and cancel requests.
func TestJobsQueuedFallback(t *testing.T) {
	j := NewJobs()
	now := time.Now() // a monotonic reading
	v := &JobView{ID: "j1", Status: domain.JobStatusQueued, SubmittedAt: now, Seq: 1, ExitCode: -1}
	j.mu.Lock()
	j.add(v)
	j.mu.Unlock()
	want := *v
	for pos, ev := range []eventstore.Event{
		domain.JobParked{JobID: "j1", Reason: "full"},
		domain.JobUnparked{JobID: "j1"},
		domain.JobCancelRequested{JobID: "j1", Reason: "stop"},
	} {
		if err := j.Apply(&eventstore.Envelope{Position: uint64(pos + 1), StreamID: domain.JobStream("j1"), Type: ev.EventType()}, ev); err != nil {
			t.Fatal(err)
		}
		if !j.order[0].live() || j.queue.held != 0 {
			t.Fatalf("after %T: ref %x, %d queue chunks", ev, j.order[0], j.queue.held)
		}
	}
	want.Position, want.CancelRequested, want.Reason = 3, true, "stop"
	if got, _ := j.Get("j1"); !reflect.DeepEqual(got, want) {
		t.Errorf("Get() = %+v, want %+v", got, want)
	}
}

// Jobs that stay queued while those around them are scheduled do not pin
// their chunks: their records are relocated and the chunks dropped.
func TestJobsQueueStoreRelocates(t *testing.T) {
	const n, every = 50_000, 200
	j, ref := NewJobs(), newRefJobs()
	submits, rest := queuedJobEvents(n)
	stay := map[string]bool{}
	for i, e := range submits {
		if i%every == 0 {
			stay[e.ev.(domain.JobSubmitted).JobID] = true
		}
		for _, p := range []jobFolder{j, ref} {
			if err := p.Apply(e.env, e.ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	full := j.queue.held
	k := 0
	for _, e := range rest {
		if _, id, _ := domain.ParseStream(e.env.StreamID); stay[id] {
			continue
		}
		for _, p := range []jobFolder{j, ref} {
			if err := p.Apply(e.env, e.ev); err != nil {
				t.Fatal(err)
			}
		}
		if k++; k%5000 == 0 {
			if err := checkQueueStore(j); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := checkQueueStore(j); err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, c := range j.queue.chunks {
		live += c.liveBytes
	}
	if s := &j.queue; s.held > 3 || s.bytes > queueSparse*live+2*queueChunkSize {
		t.Errorf("%d jobs queued (%d bytes of records) in %d chunks, %d bytes (%d chunks when all were queued)",
			len(stay), live, s.held, s.bytes, full)
	}
	gb, _ := j.MarshalState()
	wb, _ := ref.MarshalState()
	if !bytes.Equal(gb, wb) {
		t.Errorf("MarshalState() differs from the old view's")
	}
	for id := range stay {
		g, _ := j.Get(id)
		w, _ := ref.Get(id)
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("Get(%s) = %+v, want %+v", id, g, w)
		}
	}
}

func TestULIDRoundTrip(t *testing.T) {
	g := newJobEventGen(7)
	for range 10000 {
		id := g.ulid()
		u, ok := parseULID(id)
		canonical := strings.ToLower(id) == id && id[0] <= '7' && !strings.ContainsAny(id, "ilou")
		if ok != canonical {
			t.Fatalf("parseULID(%q) ok = %v, want %v", id, ok, canonical)
		}
		if ok {
			if back := formatULID(u[:]); back != id {
				t.Fatalf("formatULID(parseULID(%q)) = %q", id, back)
			}
			if form, v := parseJobID(id); form != flagULID || v != u {
				t.Fatalf("parseJobID(%q) = %d, %x; want the ULID form", id, form, v)
			}
		}
	}
	for _, bad := range []string{"", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "01arz3ndektsv4rrffq69g5fa", "81arz3ndektsv4rrffq69g5fav", "01arz3ndektsv4rrffq69g5fa-"} {
		if _, ok := parseULID(bad); ok {
			t.Errorf("parseULID(%q) = ok, want not canonical", bad)
		}
	}
	if u, ok := parseULID("7zzzzzzzzzzzzzzzzzzzzzzzzz"); !ok || u != [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff} {
		t.Errorf("parseULID(max) = %x, %v", u, ok)
	}
}
