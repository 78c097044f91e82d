package projections

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// InstanceView is the read model of one provisioned agent instance that has
// not ended. Ended instances leave the view (their streams keep the story).
type InstanceView struct {
	ID          string                `json:"id"`
	Provider    string                `json:"provider"`
	Driver      string                `json:"driver"`
	Ephemeral   bool                  `json:"ephemeral,omitempty"`
	Jobs        []string              `json:"jobs,omitempty"`
	Status      domain.InstanceStatus `json:"status"`
	Handle      string                `json:"handle,omitempty"`
	WorkerID    string                `json:"worker_id,omitempty"`
	Reason      string                `json:"reason,omitempty"`
	RequestedAt time.Time             `json:"requested_at"`
	StartedAt   time.Time             `json:"started_at,omitzero"`
	ConnectedAt time.Time             `json:"connected_at,omitzero"`
}

// Instances is the view of live provisioned instances. Safe for concurrent
// readers while the runner applies.
type Instances struct {
	mu    sync.RWMutex
	byID  map[string]*InstanceView
	ended uint64
}

var _ Projection = (*Instances)(nil)

// NewInstances returns an empty instance view.
func NewInstances() *Instances { return &Instances{byID: map[string]*InstanceView{}} }

// Name implements Projection.
func (p *Instances) Name() string { return "instances.v1" }

// Apply implements Projection.
func (p *Instances) Apply(env *eventstore.Envelope, ev eventstore.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	get := func(id string) (*InstanceView, error) {
		v := p.byID[id]
		if v == nil {
			return nil, fmt.Errorf("instances: %s at position %d for unknown instance %s", env.Type, env.Position, id)
		}
		return v, nil
	}
	switch e := ev.(type) {
	case domain.InstanceRequested:
		p.byID[e.InstanceID] = &InstanceView{ID: e.InstanceID, Provider: e.Provider, Driver: e.Driver,
			Ephemeral: e.Ephemeral, Jobs: slices.Clone(e.Jobs), Status: domain.InstanceStatusRequested,
			Reason: e.Reason, RequestedAt: e.At.UTC()}
	case domain.InstanceStarted:
		v, err := get(e.InstanceID)
		if err != nil {
			return err
		}
		v.Status, v.Handle, v.StartedAt = domain.InstanceStatusStarted, e.Handle, e.At.UTC()
	case domain.InstanceConnected:
		v, err := get(e.InstanceID)
		if err != nil {
			return err
		}
		v.Status, v.WorkerID, v.ConnectedAt = domain.InstanceStatusConnected, e.WorkerID, e.At.UTC()
	case domain.InstanceFailed:
		if _, ok := p.byID[e.InstanceID]; ok {
			delete(p.byID, e.InstanceID)
			p.ended++
		}
	case domain.InstanceTerminated:
		if _, ok := p.byID[e.InstanceID]; ok {
			delete(p.byID, e.InstanceID)
			p.ended++
		}
	}
	return nil
}

// Get returns a copy of one live instance.
func (p *Instances) Get(id string) (InstanceView, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	v := p.byID[id]
	if v == nil {
		return InstanceView{}, false
	}
	c := *v
	c.Jobs = slices.Clone(v.Jobs)
	return c, true
}

// List returns copies of the live instances, by id.
func (p *Instances) List() []InstanceView {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]InstanceView, 0, len(p.byID))
	for _, v := range p.byID {
		c := *v
		c.Jobs = slices.Clone(v.Jobs)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b InstanceView) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Ended is how many instances have failed or terminated.
func (p *Instances) Ended() uint64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.ended
}

type instancesState struct {
	Instances []InstanceView `json:"instances"`
	Ended     uint64         `json:"ended"`
}

// MarshalState implements Projection.
func (p *Instances) MarshalState() ([]byte, error) {
	return marshalState(instancesState{Instances: p.List(), Ended: p.Ended()})
}

// UnmarshalState implements Projection.
func (p *Instances) UnmarshalState(b []byte) error {
	var st instancesState
	if b != nil {
		if err := unmarshalState(b, &st); err != nil {
			return fmt.Errorf("instances snapshot: %w", err)
		}
	}
	m := make(map[string]*InstanceView, len(st.Instances))
	for i := range st.Instances {
		v := st.Instances[i]
		m[v.ID] = &v
	}
	p.mu.Lock()
	p.byID, p.ended = m, st.Ended
	p.mu.Unlock()
	return nil
}
