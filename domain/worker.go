package domain

import (
	"fmt"
	"maps"
	"time"
)

// MaxProtocolVersion bounds the protocol version a worker may declare; the
// hwp package decides which versions it speaks.
const MaxProtocolVersion = 1 << 16

// WorkerInfo is what an agent declares about itself when it connects.
// Labels may include labels the server forces; the caller merges them.
type WorkerInfo struct {
	Name            string            `json:"name"`
	Labels          map[string]string `json:"labels"`
	Capacity        Resources         `json:"capacity"`
	AgentVersion    string            `json:"agent_version"`
	ProtocolVersion uint32            `json:"protocol_version"`
}

// Validate returns a *FieldError (ErrInvalidWorkerInfo) naming the first bad
// field of i.
func (i WorkerInfo) Validate() error {
	bad := func(field, reason string) error {
		return &FieldError{Field: field, Reason: reason, Err: ErrInvalidWorkerInfo}
	}
	if reason := checkText(i.Name, MaxNameBytes, false); reason != "" {
		return bad("name", reason)
	}
	if field, reason := checkLabels("labels", i.Labels); reason != "" {
		return bad(field, reason)
	}
	if field, reason := checkResources("capacity", i.Capacity, 1); reason != "" {
		return bad(field, reason)
	}
	if reason := checkText(i.AgentVersion, 64, false); reason != "" {
		return bad("agent_version", reason)
	}
	if i.ProtocolVersion == 0 || i.ProtocolVersion > MaxProtocolVersion {
		return bad("protocol_version", fmt.Sprintf("%d is outside 1..%d", i.ProtocolVersion, MaxProtocolVersion))
	}
	return nil
}

func (i WorkerInfo) clone() WorkerInfo {
	i.Labels = maps.Clone(i.Labels)
	return i
}

// WorkerStatus is whether a worker is connected.
type WorkerStatus string

// Worker statuses. Draining is a separate flag, so a draining worker that is
// lost and comes back is still draining.
const (
	WorkerStatusOnline       WorkerStatus = "online"
	WorkerStatusLost         WorkerStatus = "lost"
	WorkerStatusDeregistered WorkerStatus = "deregistered" // terminal
)

// Worker is the state of one worker, folded from its stream. The zero Worker
// does not exist yet. It holds what the worker declared, not what it runs:
// reservations and running jobs are projections of job events.
type Worker struct {
	ID          string       `json:"id"`
	Info        WorkerInfo   `json:"info"`
	Status      WorkerStatus `json:"status"`
	Draining    bool         `json:"draining"`
	DrainReason string       `json:"drain_reason"`

	RegisteredAt   time.Time `json:"registered_at"`
	ConnectedAt    time.Time `json:"connected_at"` // last register or reconnect
	LastSeen       time.Time `json:"last_seen"`    // as of the last WorkerLost
	LostAt         time.Time `json:"lost_at"`      // zero unless lost
	LostReason     string    `json:"lost_reason"`
	DeregisteredAt time.Time `json:"deregistered_at"`

	// Cert is the worker's current client certificate (worker.enrolled,
	// worker.identity_renewed); RevokedAt is set once its identity is revoked.
	Cert          CertRef   `json:"cert"`
	RevokedAt     time.Time `json:"revoked_at"`
	RevokedReason string    `json:"revoked_reason"`

	// Version is the number of events applied: the stream version to expect
	// when appending what Decide returns.
	Version uint64 `json:"version"`
}

// Exists reports whether the worker has registered.
func (w Worker) Exists() bool { return w.Status != "" }

// Schedulable reports whether the scheduler may give w new jobs.
func (w Worker) Schedulable() bool { return w.Status == WorkerStatusOnline && !w.Draining }

// CanRun reports whether w may be given a job with spec (defaults filled in,
// as in Job.Spec) when nothing else runs there: schedulable, labels match the
// selector, and the job fits the declared capacity. The scheduler subtracts
// its reservations with Resources.Fits.
func (w Worker) CanRun(spec JobSpec) bool {
	return w.Schedulable() && MatchSelector(spec.Selector, w.Info.Labels) && spec.Resources.Fits(w.Info.Capacity)
}

// Apply returns the state after e. Like Job.Apply it trusts e and ignores
// events of other aggregates.
func (w Worker) Apply(e Event) Worker {
	w.Version++
	switch e := e.(type) {
	case WorkerRegistered:
		return Worker{
			ID: e.WorkerID, Info: e.Info, Status: WorkerStatusOnline,
			RegisteredAt: utc(e.At), ConnectedAt: utc(e.At), Version: w.Version,
		}
	case WorkerReconnected:
		w.Info = e.Info
		w.Status = WorkerStatusOnline
		w.ConnectedAt = utc(e.At)
		w.LostAt, w.LostReason = time.Time{}, ""
	case WorkerDrainStarted:
		w.Draining, w.DrainReason = true, e.Reason
	case WorkerResumed:
		w.Draining, w.DrainReason = false, ""
	case WorkerLost:
		w.Status = WorkerStatusLost
		w.LastSeen = utc(e.LastSeen)
		w.LostAt, w.LostReason = utc(e.At), e.Reason
	case WorkerDeregistered:
		w.Status = WorkerStatusDeregistered
		w.DeregisteredAt = utc(e.At)
	case WorkerEnrolled, WorkerIdentityRenewed, WorkerIdentityRevoked:
		w = w.applyIdentity(e)
	}
	return w
}
