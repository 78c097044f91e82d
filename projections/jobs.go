package projections

import (
	"bytes"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

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
// applies.
type Jobs struct {
	mu       sync.RWMutex
	byID     map[string]*JobView
	order    []*JobView                     // by Seq
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
	j.byID = map[string]*JobView{}
	j.order = nil
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
		if _, dup := j.byID[e.JobID]; dup {
			return fmt.Errorf("job %s submitted twice", e.JobID)
		}
		spec := e.Spec.WithDefaults()
		v := &JobView{ID: e.JobID, Name: spec.Name, Queue: spec.Queue, Submitter: e.Submitter, Labels: spec.Labels, Selector: spec.Selector,
			Priority: spec.Priority, Resources: spec.Resources, Status: domain.JobStatusQueued, MaxAttempts: spec.MaxAttempts,
			Timeout: spec.Timeout, SubmittedAt: e.At.UTC(), ExitCode: -1, Seq: uint64(len(j.order) + 1), Position: env.Position}
		j.byID[e.JobID] = v
		j.order = append(j.order, v)
		j.counts[v.Status]++
		return nil
	}
	agg, id, ok := domain.ParseStream(env.StreamID)
	if !ok {
		return fmt.Errorf("event %s on unknown stream %s", env.Type, env.StreamID)
	}
	if agg != "job" {
		return nil // worker events do not change jobs
	}
	v := j.byID[id]
	if v == nil {
		return fmt.Errorf("%s for unknown job %s", env.Type, id)
	}
	before := v.Status
	v.Position = env.Position
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
		return fmt.Errorf("job view: unhandled event %s", env.Type)
	}
	if v.Status != before {
		j.counts[before]--
		j.counts[v.Status]++
	}
	return nil
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
	v := j.byID[id]
	if v == nil {
		return JobView{}, false
	}
	return *v, true
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

// List returns copies of the jobs that match f, in submission order (or
// reverse), at most f.Limit (default 100), and the cursor for the next page
// (0 when there is none).
func (j *Jobs) List(f JobFilter) ([]JobView, uint64) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	j.mu.RLock()
	defer j.mu.RUnlock()
	var out []JobView
	n := uint64(len(j.order))
	if f.Descending {
		start := n
		if f.After > 0 && f.After <= n {
			start = f.After - 1
		}
		for i := start; i > 0; i-- {
			if v := j.order[i-1]; f.match(v) {
				if len(out) == f.Limit {
					return out, out[len(out)-1].Seq
				}
				out = append(out, *v)
			}
		}
		return out, 0
	}
	for i := f.After; i < n; i++ {
		if v := j.order[i]; f.match(v) {
			if len(out) == f.Limit {
				return out, out[len(out)-1].Seq
			}
			out = append(out, *v)
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
	for _, v := range j.order {
		if !fn(*v) {
			return
		}
	}
}

// MarshalState implements Projection: the jobs in submission order.
func (j *Jobs) MarshalState() ([]byte, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return marshalState(j.order)
}

// UnmarshalState implements Projection.
func (j *Jobs) UnmarshalState(b []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.reset()
	if b == nil {
		return nil
	}
	var order []*JobView
	if err := unmarshalState(b, &order); err != nil {
		return fmt.Errorf("job view snapshot: %w", err)
	}
	for i, v := range order {
		if v == nil || v.Seq != uint64(i+1) || j.byID[v.ID] != nil {
			return fmt.Errorf("job view snapshot: entry %d is out of order", i)
		}
		j.byID[v.ID] = v
		j.order = append(j.order, v)
		j.counts[v.Status]++
		if v.Status.Active() && v.Worker != "" {
			j.bind(v)
		}
	}
	return nil
}

// marshalState encodes v with msgpack, map keys sorted, so equal states give
// equal bytes.
func marshalState(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.SetCustomStructTag("json")
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func unmarshalState(b []byte, v any) error {
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.SetCustomStructTag("json")
	return dec.Decode(v)
}
