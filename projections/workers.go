package projections

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// WorkerView is the read model of one worker: its declared details, status
// and the resources its active jobs hold. Live telemetry is not here (it is
// not an event); the server overlays it.
type WorkerView struct {
	ID           string              `json:"id"`
	Name         string              `json:"name"`
	Labels       map[string]string   `json:"labels,omitempty"`
	Capacity     domain.Resources    `json:"capacity"`
	Reserved     domain.Resources    `json:"reserved"`
	ActiveJobs   int                 `json:"active_jobs"`
	Status       domain.WorkerStatus `json:"status"`
	Draining     bool                `json:"draining,omitempty"`
	AgentVersion string              `json:"agent_version,omitempty"`
	RegisteredAt time.Time           `json:"registered_at"`
	LastChange   time.Time           `json:"last_change"`
	LostReason   string              `json:"lost_reason,omitempty"`
	// Revoked is set once the worker's identity is revoked: it may never
	// connect again under its id.
	Revoked  bool   `json:"revoked,omitempty"`
	Position uint64 `json:"position"`
}

// Workers is the cluster view: every worker with the resources reserved by
// the jobs scheduled onto it (from job.scheduled until the attempt ends or is
// re-queued). Safe for concurrent readers while the runner applies.
type Workers struct {
	mu      sync.RWMutex
	byID    map[string]*WorkerView
	holding map[string]holding // job id -> the worker and resources its active attempt holds
}

type holding struct {
	Worker    string           `json:"worker"`
	Resources domain.Resources `json:"resources"`
}

var _ Projection = (*Workers)(nil)

// NewWorkers returns an empty cluster view.
func NewWorkers() *Workers {
	w := &Workers{}
	w.byID, w.holding = map[string]*WorkerView{}, map[string]holding{}
	return w
}

// Name implements Projection.
func (w *Workers) Name() string { return "workers.v1" }

// Apply implements Projection.
func (w *Workers) Apply(env *eventstore.Envelope, ev eventstore.Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch e := ev.(type) {
	case domain.WorkerRegistered:
		v := w.byID[e.WorkerID]
		if v == nil {
			v = &WorkerView{ID: e.WorkerID, RegisteredAt: e.At.UTC()}
			w.byID[e.WorkerID] = v
		}
		w.info(v, e.Info)
		v.Status, v.LastChange, v.Position = domain.WorkerStatusOnline, e.At.UTC(), env.Position
	case domain.WorkerReconnected:
		v, err := w.get(e.WorkerID, env)
		if err != nil {
			return err
		}
		w.info(v, e.Info)
		v.Status, v.LostReason, v.LastChange, v.Position = domain.WorkerStatusOnline, "", e.At.UTC(), env.Position
	case domain.WorkerDrainStarted:
		return w.update(e.WorkerID, env, e.At, func(v *WorkerView) { v.Draining = true })
	case domain.WorkerResumed:
		return w.update(e.WorkerID, env, e.At, func(v *WorkerView) { v.Draining = false })
	case domain.WorkerLost:
		return w.update(e.WorkerID, env, e.At, func(v *WorkerView) { v.Status, v.LostReason = domain.WorkerStatusLost, e.Reason })
	case domain.WorkerDeregistered:
		return w.update(e.WorkerID, env, e.At, func(v *WorkerView) { v.Status = domain.WorkerStatusDeregistered })
	case domain.WorkerIdentityRevoked:
		return w.update(e.WorkerID, env, e.At, func(v *WorkerView) { v.Revoked = true })
	case domain.WorkerEnrolled, domain.WorkerIdentityRenewed:
		// Credentials change, not what the cluster view shows.
	case domain.JobScheduled:
		w.release(e.JobID)
		if v := w.byID[e.WorkerID]; v != nil {
			v.Reserved = v.Reserved.Add(e.Resources)
			v.ActiveJobs++
		}
		w.holding[e.JobID] = holding{Worker: e.WorkerID, Resources: e.Resources}
	case domain.JobRequeued, domain.JobSucceeded, domain.JobFailed, domain.JobCancelled, domain.JobTimedOut:
		_, id, _ := domain.ParseStream(env.StreamID)
		w.release(id)
	case domain.JobSubmitted, domain.JobParked, domain.JobUnparked, domain.JobAccepted, domain.JobStarted, domain.JobCancelRequested:
	case domain.InstanceRequested, domain.InstanceStarted, domain.InstanceConnected, domain.InstanceFailed, domain.InstanceTerminated:
	default:
		return fmt.Errorf("cluster view: unhandled event %s", env.Type)
	}
	return nil
}

func (w *Workers) info(v *WorkerView, info domain.WorkerInfo) {
	v.Name, v.Labels, v.Capacity, v.AgentVersion = info.Name, info.Labels, info.Capacity, info.AgentVersion
}

func (w *Workers) get(id string, env *eventstore.Envelope) (*WorkerView, error) {
	v := w.byID[id]
	if v == nil {
		return nil, fmt.Errorf("%s for unknown worker %s", env.Type, id)
	}
	return v, nil
}

func (w *Workers) update(id string, env *eventstore.Envelope, at time.Time, fn func(*WorkerView)) error {
	v, err := w.get(id, env)
	if err != nil {
		return err
	}
	fn(v)
	v.LastChange, v.Position = at.UTC(), env.Position
	return nil
}

func (w *Workers) release(job string) {
	h, ok := w.holding[job]
	if !ok {
		return
	}
	delete(w.holding, job)
	if v := w.byID[h.Worker]; v != nil {
		v.Reserved = v.Reserved.Sub(h.Resources)
		v.ActiveJobs--
	}
}

// Get returns a copy of worker id's view.
func (w *Workers) Get(id string) (WorkerView, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	v := w.byID[id]
	if v == nil {
		return WorkerView{}, false
	}
	return *v, true
}

// List returns copies of every worker, sorted by id.
func (w *Workers) List() []WorkerView {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]WorkerView, 0, len(w.byID))
	for _, v := range w.byID {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// workersState is the snapshot layout. Holdings are a slice sorted by job
// id, not a map: the encoder sorts the keys of only some map types, and the
// state hash must not depend on Go's map order.
type workersState struct {
	Workers []WorkerView `json:"workers"`
	Holding []heldByJob  `json:"holding"`
}

type heldByJob struct {
	Job string `json:"job"`
	holding
}

// MarshalState implements Projection.
func (w *Workers) MarshalState() ([]byte, error) {
	st := workersState{Workers: w.List()}
	w.mu.RLock()
	for k, v := range w.holding {
		st.Holding = append(st.Holding, heldByJob{Job: k, holding: v})
	}
	w.mu.RUnlock()
	sort.Slice(st.Holding, func(i, j int) bool { return st.Holding[i].Job < st.Holding[j].Job })
	return marshalState(st)
}

// UnmarshalState implements Projection.
func (w *Workers) UnmarshalState(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.byID, w.holding = map[string]*WorkerView{}, map[string]holding{}
	if b == nil {
		return nil
	}
	var st workersState
	if err := unmarshalState(b, &st); err != nil {
		return fmt.Errorf("cluster view snapshot: %w", err)
	}
	for i := range st.Workers {
		v := st.Workers[i]
		w.byID[v.ID] = &v
	}
	for _, h := range st.Holding {
		w.holding[h.Job] = h.holding
	}
	return nil
}
