package projections

import (
	"bytes"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// JobView is the read model of one job: what lists and status pages show.
// It keeps no script, env or secrets.
type JobView struct {
	ID              string            `json:"id"`
	Name            string            `json:"name"`
	Queue           string            `json:"queue"`
	Submitter       string            `json:"submitter"`
	Labels          map[string]string `json:"labels,omitempty"`
	Selector        map[string]string `json:"selector,omitempty"`
	Priority        int               `json:"priority"`
	Resources       domain.Resources  `json:"resources"`
	Status          domain.JobStatus  `json:"status"`
	Parked          string            `json:"parked,omitempty"`
	Attempt         uint32            `json:"attempt"`
	MaxAttempts     int               `json:"max_attempts"`
	Worker          string            `json:"worker,omitempty"`
	CancelRequested bool              `json:"cancel_requested,omitempty"`
	Timeout         time.Duration     `json:"timeout,omitempty"`
	SubmittedAt     time.Time         `json:"submitted_at"`
	ScheduledAt     time.Time         `json:"scheduled_at,omitzero"`
	StartedAt       time.Time         `json:"started_at,omitzero"`
	EndedAt         time.Time         `json:"ended_at,omitzero"`
	ExitCode        int               `json:"exit_code"`
	Signal          string            `json:"signal,omitempty"`
	Reason          string            `json:"reason,omitempty"`
	Runtime         time.Duration     `json:"runtime,omitempty"`
	// Seq is the job's order of submission in this log (1, 2, ...), the
	// cursor for paging.
	Seq uint64 `json:"seq"`
	// Position is the log position of the job's last event.
	Position uint64 `json:"position"`
}

// Jobs is the job view: every job by id, in submission order, with the
// active jobs of each worker. Safe for concurrent readers while the runner
// applies. Terminal and queued jobs are kept in a compact encoding (see
// jobs_compact.go and jobs_queue.go); the others as *JobView.
type Jobs struct {
	mu       sync.RWMutex
	ids      jobIDs      // id -> index in order
	order    []jobRef    // by Seq
	live     []*JobView  // jobs not stored compactly; slots named by jobRefs
	free     []uint32    // unused slots of live
	store    jobStore    // compact records of terminal jobs
	queue    queueStore  // compact records of queued jobs
	intern   internTable // strings shared by compact records
	enc      jobEncoder
	scratch  JobView                        // a job being changed by Apply, when it is not live
	onWorker map[string]map[string]struct{} // worker -> active job ids
	counts   map[domain.JobStatus]int
}

var _ Projection = (*Jobs)(nil)

// NewJobs returns an empty job view.
func NewJobs() *Jobs {
	j := &Jobs{}
	j.reset()
	return j
}

func (j *Jobs) reset() {
	j.ids = newJobIDs()
	j.order = nil
	j.live, j.free = nil, nil
	j.store = jobStore{}
	j.queue = queueStore{}
	j.scratch = JobView{}
	j.intern = internTable{}
	j.enc = jobEncoder{intern: &j.intern}
	j.onWorker = map[string]map[string]struct{}{}
	j.counts = map[domain.JobStatus]int{}
}

// Name implements Projection.
func (j *Jobs) Name() string { return "jobs.v1" }

// Apply implements Projection.
func (j *Jobs) Apply(env *eventstore.Envelope, ev eventstore.Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if e, ok := ev.(domain.JobSubmitted); ok {
		if _, dup := j.ids.get(e.JobID); dup {
			return fmt.Errorf("job %s submitted twice", e.JobID)
		}
		spec := e.Spec.WithDefaults()
		v := &j.scratch
		*v = JobView{ID: e.JobID, Name: spec.Name, Queue: spec.Queue, Submitter: e.Submitter, Labels: spec.Labels, Selector: spec.Selector,
			Priority: spec.Priority, Resources: spec.Resources, Status: domain.JobStatusQueued, MaxAttempts: spec.MaxAttempts,
			Timeout: spec.Timeout, SubmittedAt: e.At.UTC(), ExitCode: -1, Seq: uint64(len(j.order) + 1), Position: env.Position}
		j.add(v)
		return nil
	}
	agg, id, ok := domain.ParseStream(env.StreamID)
	if !ok {
		return fmt.Errorf("event %s on unknown stream %s", env.Type, env.StreamID)
	}
	if agg != "job" {
		return nil // worker events do not change jobs
	}
	i, ok := j.ids.get(id)
	if !ok {
		return fmt.Errorf("%s for unknown job %s", env.Type, id)
	}
	// A compact job is decoded, changed and stored again. A queued one often
	// changes (parked, unparked, cancel requested, scheduled); a terminal one
	// does not (Decide gives no events after a terminal one), but the fold
	// does not rely on it.
	v := j.load(i, id)
	before := v.Status
	v.Position = env.Position
	var err error
	switch e := ev.(type) {
	case domain.JobParked:
		v.Parked = e.Reason
	case domain.JobUnparked:
		v.Parked = ""
	case domain.JobScheduled:
		v.Status, v.Attempt, v.Worker, v.Parked, v.ScheduledAt = domain.JobStatusScheduled, e.Attempt, e.WorkerID, "", e.At.UTC()
		j.bind(v)
	case domain.JobAccepted:
		v.Status = domain.JobStatusAccepted
	case domain.JobStarted:
		v.Status, v.StartedAt = domain.JobStatusRunning, e.At.UTC()
	case domain.JobCancelRequested:
		v.CancelRequested = true
		if v.Status == domain.JobStatusQueued {
			v.Reason = e.Reason
		}
	case domain.JobRequeued:
		j.unbind(v)
		v.Status, v.Worker, v.Reason = domain.JobStatusQueued, "", e.Reason
	case domain.JobSucceeded:
		j.end(v, domain.JobStatusSucceeded, e.At, 0, "", "", e.Runtime)
	case domain.JobFailed:
		j.end(v, domain.JobStatusFailed, e.At, e.ExitCode, e.Signal, e.Reason, e.Runtime)
	case domain.JobCancelled:
		j.end(v, domain.JobStatusCancelled, e.At, e.ExitCode, e.Signal, e.Reason, e.Runtime)
	case domain.JobTimedOut:
		j.end(v, domain.JobStatusTimedOut, e.At, e.ExitCode, e.Signal, e.Reason, e.Runtime)
	default:
		err = fmt.Errorf("job view: unhandled event %s", env.Type)
	}
	if v.Status != before {
		j.counts[before]--
		j.counts[v.Status]++
	}
	j.save(i, v) // also on error: the position changed, as it always has
	return err
}

// add appends v, a new job with the next Seq.
func (j *Jobs) add(v *JobView) {
	i := uint32(len(j.order))
	j.ids.put(v.ID, i)
	j.order = append(j.order, 0)
	j.counts[v.Status]++
	j.save(i, v)
}

// load returns the job at index i, whose id is id, to change: the live view
// itself, or a compact one decoded into j.scratch (which save must store
// again).
func (j *Jobs) load(i uint32, id string) *JobView {
	r := j.order[i]
	if r.live() {
		return j.live[r.slot()]
	}
	// id is the job's id byte for byte: jobIDs keys a UUID or ULID id by
	// its bytes only when it is canonical, which formatJobID gives back.
	decodeJobID(j.record(r), j.intern.strs, uint64(i)+1, id, &j.scratch)
	return &j.scratch
}

// record returns the compact record r refers to (r is not live).
func (j *Jobs) record(r jobRef) []byte {
	if r.queued() {
		return j.queue.record(r.addr())
	}
	return j.store.record(r.addr())
}

// save stores v, the job at index i (v is its live view, or j.scratch):
// compactly when it is terminal or queued and encodes exactly, else as a
// live view. A queued job's old record is dead once it is saved again; a
// terminal job's (which is not saved again in practice) stays in the store.
func (j *Jobs) save(i uint32, v *JobView) {
	r := j.order[i]
	if r.queued() {
		j.queue.kill(r.addr()) // load decoded it; nothing refers to it now
	}
	nr := j.place(r, v)
	if v == &j.scratch {
		j.scratch = JobView{} // pin none of the job's strings and maps
	}
	j.order[i] = nr
	if len(j.queue.sparse) > 0 {
		j.relocate()
	}
}

// place stores v, whose old place was r, and returns its new ref.
func (j *Jobs) place(r jobRef, v *JobView) jobRef {
	code := statusCode(v.Status)
	if queued := v.Status == domain.JobStatusQueued; queued || v.Status.Terminal() {
		if rec, ok := j.enc.encodeJob(v); ok {
			if r.live() {
				j.live[r.slot()] = nil
				j.free = append(j.free, r.slot())
			}
			if queued {
				return queuedRef(code, j.queue.add(rec))
			}
			return storedRef(code, j.store.add(rec))
		}
	}
	if r.live() && j.live[r.slot()] == v {
		return liveRef(code, r.slot())
	}
	if v == &j.scratch {
		nv := new(JobView)
		*nv = *v
		v = nv
	}
	var slot uint32
	if n := len(j.free); n > 0 {
		slot = j.free[n-1]
		j.free = j.free[:n-1]
		j.live[slot] = v
	} else {
		slot = uint32(len(j.live))
		j.live = append(j.live, v)
	}
	return liveRef(code, slot)
}

// viewAt returns a copy of the job at index i.
func (j *Jobs) viewAt(i uint32) JobView {
	r := j.order[i]
	if r.live() {
		return *j.live[r.slot()]
	}
	var v JobView
	decodeJob(j.record(r), j.intern.strs, uint64(i)+1, &v)
	return v
}

func (j *Jobs) bind(v *JobView) {
	set := j.onWorker[v.Worker]
	if set == nil {
		set = map[string]struct{}{}
		j.onWorker[v.Worker] = set
	}
	set[v.ID] = struct{}{}
}

func (j *Jobs) unbind(v *JobView) {
	if set := j.onWorker[v.Worker]; set != nil {
		delete(set, v.ID)
		if len(set) == 0 {
			delete(j.onWorker, v.Worker)
		}
	}
}

func (j *Jobs) end(v *JobView, s domain.JobStatus, at time.Time, exit int, signal, reason string, runtime time.Duration) {
	j.unbind(v)
	v.Status, v.EndedAt, v.ExitCode, v.Signal, v.Reason, v.Runtime = s, at.UTC(), exit, signal, reason, runtime
	v.Parked = ""
}

// Get returns a copy of job id's view.
func (j *Jobs) Get(id string) (JobView, bool) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	i, ok := j.ids.get(id)
	if !ok {
		return JobView{}, false
	}
	return j.viewAt(i), true
}

// JobFilter selects jobs for List. Zero fields match everything.
type JobFilter struct {
	Statuses []domain.JobStatus
	Queue    string
	Worker   string
	Labels   map[string]string // every pair must match
	// After is a Seq cursor: list jobs submitted after it (newest first when
	// Descending, then jobs submitted before it).
	After      uint64
	Limit      int
	Descending bool
}

func (f *JobFilter) match(v *JobView) bool {
	if len(f.Statuses) > 0 {
		ok := false
		for _, s := range f.Statuses {
			ok = ok || v.Status == s
		}
		if !ok {
			return false
		}
	}
	if (f.Queue != "" && v.Queue != f.Queue) || (f.Worker != "" && v.Worker != f.Worker) {
		return false
	}
	for k, want := range f.Labels {
		if v.Labels[k] != want {
			return false
		}
	}
	return true
}

// jobMatcher is a JobFilter prepared for matching jobRefs.
type jobMatcher struct {
	f        *JobFilter
	statuses uint16 // bit per status code in f.Statuses
	rest     bool   // f has a queue, worker or labels
	rec      recordMatcher
}

func newJobMatcher(f *JobFilter, t *internTable) jobMatcher {
	m := jobMatcher{f: f, rest: f.Queue != "" || f.Worker != "" || len(f.Labels) > 0}
	if m.rest {
		m.rec = newRecordMatcher(f, t)
	}
	for _, s := range f.Statuses {
		if c := statusCode(s); c != statusOther {
			m.statuses |= 1 << c
		}
	}
	return m
}

// matchAt reports whether the job at index i matches; it decodes nothing
// when the status alone decides.
func (j *Jobs) matchAt(m *jobMatcher, i uint32) bool {
	r := j.order[i]
	if r.live() {
		return m.f.match(j.live[r.slot()])
	}
	// A compact job's status is always a known one.
	if len(m.f.Statuses) > 0 && m.statuses&(1<<r.code()) == 0 {
		return false
	}
	return !m.rest || m.rec.match(j.record(r), j.intern.strs)
}

// List returns copies of the jobs that match f, in submission order (or
// reverse), at most f.Limit (default 100), and the cursor for the next page
// (0 when there is none).
func (j *Jobs) List(f JobFilter) ([]JobView, uint64) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	j.mu.RLock()
	defer j.mu.RUnlock()
	m := newJobMatcher(&f, &j.intern)
	var out []JobView
	n := uint64(len(j.order))
	if f.Descending {
		start := n
		if f.After > 0 && f.After <= n {
			start = f.After - 1
		}
		for i := start; i > 0; i-- {
			if j.matchAt(&m, uint32(i-1)) {
				if len(out) == f.Limit {
					return out, out[len(out)-1].Seq
				}
				out = append(out, j.viewAt(uint32(i-1)))
			}
		}
		return out, 0
	}
	for i := f.After; i < n; i++ {
		if j.matchAt(&m, uint32(i)) {
			if len(out) == f.Limit {
				return out, out[len(out)-1].Seq
			}
			out = append(out, j.viewAt(uint32(i)))
		}
	}
	return out, 0
}

// ActiveOn returns the ids of the jobs scheduled, accepted or running on
// worker, sorted.
func (j *Jobs) ActiveOn(worker string) []string {
	j.mu.RLock()
	defer j.mu.RUnlock()
	out := make([]string, 0, len(j.onWorker[worker]))
	for id := range j.onWorker[worker] {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Counts returns the number of jobs in each status.
func (j *Jobs) Counts() map[domain.JobStatus]int {
	j.mu.RLock()
	defer j.mu.RUnlock()
	out := make(map[domain.JobStatus]int, len(j.counts))
	for s, n := range j.counts {
		if n > 0 {
			out[s] = n
		}
	}
	return out
}

// Each calls fn with a copy of every job in submission order until fn
// returns false.
func (j *Jobs) Each(fn func(JobView) bool) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	for i := range j.order {
		if !fn(j.viewAt(uint32(i))) {
			return
		}
	}
}

// MarshalState implements Projection: the jobs in submission order, encoded
// as the msgpack array of *JobView that this view has always written. Compact
// jobs are decoded one at a time into the encoder.
func (j *Jobs) MarshalState() ([]byte, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if len(j.order) == 0 {
		return marshalState([]*JobView(nil))
	}
	var buf bytes.Buffer
	enc := newStateEncoder(&buf)
	if err := enc.EncodeArrayLen(len(j.order)); err != nil {
		return nil, err
	}
	var scratch JobView
	for i, r := range j.order {
		v := &scratch
		if r.live() {
			v = j.live[r.slot()]
		} else {
			decodeJob(j.record(r), j.intern.strs, uint64(i)+1, v)
		}
		if err := enc.Encode(v); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// UnmarshalState implements Projection. It decodes the jobs one at a time,
// storing the terminal and queued ones compactly. On an error the view is left empty.
func (j *Jobs) UnmarshalState(b []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.reset()
	if b == nil {
		return nil
	}
	if err := j.unmarshal(b); err != nil {
		j.reset()
		return err
	}
	return nil
}

func (j *Jobs) unmarshal(b []byte) error {
	dec := newStateDecoder(b)
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return fmt.Errorf("job view snapshot: %w", err)
	}
	if n > 0 {
		j.order = make([]jobRef, 0, min(n, len(b)))
	}
	for i := 0; i < n; i++ {
		c, err := dec.PeekCode()
		if err != nil {
			return fmt.Errorf("job view snapshot: %w", err)
		}
		if c == msgpcode.Nil {
			return fmt.Errorf("job view snapshot: entry %d is out of order", i)
		}
		v := new(JobView)
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("job view snapshot: %w", err)
		}
		if _, dup := j.ids.get(v.ID); v.Seq != uint64(i+1) || dup {
			return fmt.Errorf("job view snapshot: entry %d is out of order", i)
		}
		if v.Status.Active() && v.Worker != "" {
			j.bind(v)
		}
		j.add(v)
	}
	return nil
}

// marshalState encodes v with msgpack, map keys sorted, so equal states give
// equal bytes.
func marshalState(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := newStateEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func newStateEncoder(buf *bytes.Buffer) *msgpack.Encoder {
	enc := msgpack.NewEncoder(buf)
	enc.SetSortMapKeys(true)
	enc.SetCustomStructTag("json")
	enc.UseCompactInts(true)
	return enc
}

func unmarshalState(b []byte, v any) error {
	return newStateDecoder(b).Decode(v)
}

func newStateDecoder(b []byte) *msgpack.Decoder {
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.SetCustomStructTag("json")
	return dec
}
