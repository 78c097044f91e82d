package projections

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// refJobs is the job view as it was before compact storage (a verbatim copy
// of the old jobs.go), the reference for the equivalence tests.
//
// The old view: every job by id, in submission order, with the
// active jobs of each worker. Safe for concurrent readers while the runner
// applies.
type refJobs struct {
	mu       sync.RWMutex
	byID     map[string]*JobView
	order    []*JobView                     // by Seq
	onWorker map[string]map[string]struct{} // worker -> active job ids
	counts   map[domain.JobStatus]int
}

// newRefJobs returns an empty job view.
func newRefJobs() *refJobs {
	j := &refJobs{}
	j.reset()
	return j
}

func (j *refJobs) reset() {
	j.byID = map[string]*JobView{}
	j.order = nil
	j.onWorker = map[string]map[string]struct{}{}
	j.counts = map[domain.JobStatus]int{}
}

// Name implements Projection.
func (j *refJobs) Name() string { return "jobs.v1" }

// Apply implements Projection.
func (j *refJobs) Apply(env *eventstore.Envelope, ev eventstore.Event) error {
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

func (j *refJobs) bind(v *JobView) {
	set := j.onWorker[v.Worker]
	if set == nil {
		set = map[string]struct{}{}
		j.onWorker[v.Worker] = set
	}
	set[v.ID] = struct{}{}
}

func (j *refJobs) unbind(v *JobView) {
	if set := j.onWorker[v.Worker]; set != nil {
		delete(set, v.ID)
		if len(set) == 0 {
			delete(j.onWorker, v.Worker)
		}
	}
}

func (j *refJobs) end(v *JobView, s domain.JobStatus, at time.Time, exit int, signal, reason string, runtime time.Duration) {
	j.unbind(v)
	v.Status, v.EndedAt, v.ExitCode, v.Signal, v.Reason, v.Runtime = s, at.UTC(), exit, signal, reason, runtime
	v.Parked = ""
}

// Get returns a copy of job id's view.
func (j *refJobs) Get(id string) (JobView, bool) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	v := j.byID[id]
	if v == nil {
		return JobView{}, false
	}
	return *v, true
}

// List returns copies of the jobs that match f, in submission order (or
// reverse), at most f.Limit (default 100), and the cursor for the next page
// (0 when there is none).
func (j *refJobs) List(f JobFilter) ([]JobView, uint64) {
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
func (j *refJobs) ActiveOn(worker string) []string {
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
func (j *refJobs) Counts() map[domain.JobStatus]int {
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
func (j *refJobs) Each(fn func(JobView) bool) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	for _, v := range j.order {
		if !fn(*v) {
			return
		}
	}
}

// MarshalState implements Projection: the jobs in submission order.
func (j *refJobs) MarshalState() ([]byte, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return marshalState(j.order)
}

// UnmarshalState implements Projection.
func (j *refJobs) UnmarshalState(b []byte) error {
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
