package api

import (
	"encoding/json"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hodei-jobs/hodei/api/jobpb"
)

// The JSON shapes of the REST API (and of the CLI's -o json). Field names
// are job.proto's; statuses are lower-case names ("running"); durations are
// Go duration strings ("1m30s"); times are RFC 3339.

// Resources is the JSON form of jobpb.Resources.
type Resources struct {
	Slots       int64 `json:"slots"`
	CPUMillis   int64 `json:"cpu_millis"`
	MemoryBytes int64 `json:"memory_bytes"`
}

// JobSpec is the JSON form of jobpb.JobSpec.
type JobSpec struct {
	Name        string            `json:"name"`
	Script      string            `json:"script"`
	Env         map[string]string `json:"env,omitempty"`
	Secrets     map[string]string `json:"secrets,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Selector    map[string]string `json:"selector,omitempty"`
	Resources   Resources         `json:"resources"`
	Priority    int32             `json:"priority,omitempty"`
	Timeout     string            `json:"timeout,omitempty"`
	MaxAttempts int32             `json:"max_attempts,omitempty"`
	Queue       string            `json:"queue,omitempty"`
}

// SubmitJob is one job to submit (the body of POST /api/v1/jobs).
type SubmitJob struct {
	IdempotencyKey string  `json:"idempotency_key,omitempty"`
	Spec           JobSpec `json:"spec"`
}

// SubmitJobsRequest is the body of POST /api/v1/jobs/batch.
type SubmitJobsRequest struct {
	Jobs []SubmitJob `json:"jobs"`
}

// SubmitJobResult is the outcome of one submitted job.
type SubmitJobResult struct {
	Job     Job  `json:"job"`
	Created bool `json:"created"`
}

// SubmitJobsResponse answers a batch submit.
type SubmitJobsResponse struct {
	Results  []SubmitJobResult `json:"results"`
	Position uint64            `json:"position"`
}

// Attempt is the JSON form of jobpb.Attempt.
type Attempt struct {
	Number      uint32    `json:"number"`
	Worker      string    `json:"worker,omitempty"`
	ScheduledAt time.Time `json:"scheduled_at,omitzero"`
	AcceptedAt  time.Time `json:"accepted_at,omitzero"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	EndedAt     time.Time `json:"ended_at,omitzero"`
	Result      string    `json:"result,omitempty"`
	Reason      string    `json:"reason,omitempty"`
}

// Job is the JSON form of jobpb.Job.
type Job struct {
	ID              string    `json:"id"`
	Spec            JobSpec   `json:"spec"`
	Submitter       string    `json:"submitter"`
	Status          string    `json:"status"`
	Parked          string    `json:"parked,omitempty"`
	Attempt         uint32    `json:"attempt"`
	Worker          string    `json:"worker,omitempty"`
	SubmittedAt     time.Time `json:"submitted_at,omitzero"`
	StartedAt       time.Time `json:"started_at,omitzero"`
	EndedAt         time.Time `json:"ended_at,omitzero"`
	CancelRequested bool      `json:"cancel_requested,omitempty"`
	CancelledBy     string    `json:"cancelled_by,omitempty"`
	CancelReason    string    `json:"cancel_reason,omitempty"`
	ExitCode        int32     `json:"exit_code"`
	Signal          string    `json:"signal,omitempty"`
	Reason          string    `json:"reason,omitempty"`
	Runtime         string    `json:"runtime,omitempty"`
	Attempts        []Attempt `json:"attempts,omitempty"`
	Version         uint64    `json:"version"`
}

// JobSummary is the JSON form of jobpb.JobSummary.
type JobSummary struct {
	ID              string            `json:"id"`
	Name            string            `json:"name"`
	Queue           string            `json:"queue"`
	Submitter       string            `json:"submitter"`
	Labels          map[string]string `json:"labels,omitempty"`
	Priority        int32             `json:"priority"`
	Resources       Resources         `json:"resources"`
	Status          string            `json:"status"`
	Parked          string            `json:"parked,omitempty"`
	Attempt         uint32            `json:"attempt"`
	MaxAttempts     int32             `json:"max_attempts"`
	Worker          string            `json:"worker,omitempty"`
	CancelRequested bool              `json:"cancel_requested,omitempty"`
	SubmittedAt     time.Time         `json:"submitted_at,omitzero"`
	ScheduledAt     time.Time         `json:"scheduled_at,omitzero"`
	StartedAt       time.Time         `json:"started_at,omitzero"`
	EndedAt         time.Time         `json:"ended_at,omitzero"`
	ExitCode        int32             `json:"exit_code"`
	Signal          string            `json:"signal,omitempty"`
	Reason          string            `json:"reason,omitempty"`
	Runtime         string            `json:"runtime,omitempty"`
	Seq             uint64            `json:"seq"`
	Position        uint64            `json:"position"`
}

// ListJobsResponse is the JSON form of jobpb.ListJobsResponse.
type ListJobsResponse struct {
	Jobs          []JobSummary `json:"jobs"`
	NextPageToken string       `json:"next_page_token,omitempty"`
	Position      uint64       `json:"position"`
}

// Telemetry is the JSON form of jobpb.Telemetry.
type Telemetry struct {
	At               time.Time `json:"at,omitzero"`
	CPUPercent       float64   `json:"cpu_percent"`
	MemoryUsedBytes  int64     `json:"memory_used_bytes"`
	MemoryTotalBytes int64     `json:"memory_total_bytes"`
	FreeSlots        int64     `json:"free_slots"`
}

// Worker is the JSON form of jobpb.Worker.
type Worker struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Labels       map[string]string `json:"labels,omitempty"`
	Capacity     Resources         `json:"capacity"`
	Reserved     Resources         `json:"reserved"`
	ActiveJobs   int64             `json:"active_jobs"`
	Status       string            `json:"status"`
	Draining     bool              `json:"draining,omitempty"`
	AgentVersion string            `json:"agent_version,omitempty"`
	RegisteredAt time.Time         `json:"registered_at,omitzero"`
	LastChange   time.Time         `json:"last_change,omitzero"`
	LostReason   string            `json:"lost_reason,omitempty"`
	Connected    bool              `json:"connected"`
	Telemetry    *Telemetry        `json:"telemetry,omitempty"`
}

// Event is the JSON form of jobpb.Event; Payload is the decoded event.
type Event struct {
	Position      uint64          `json:"position"`
	Stream        string          `json:"stream"`
	StreamVersion uint64          `json:"stream_version"`
	Type          string          `json:"type"`
	SchemaVersion uint32          `json:"schema_version"`
	EventID       string          `json:"event_id,omitempty"`
	Time          time.Time       `json:"time,omitzero"`
	Actor         string          `json:"actor"`
	CorrelationID string          `json:"correlation_id,omitempty"`
	CausationID   string          `json:"causation_id,omitempty"`
	Payload       json.RawMessage `json:"payload"`
	Hash          string          `json:"hash"`
}

// Secret is the JSON form of jobpb.Secret: never a value.
type Secret struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// LogChunk is one SSE "log" message of /api/v1/jobs/{id}/log?follow=1:
// the log text from a byte offset of one attempt (split on UTF-8
// boundaries, so Text is the bytes from Offset to Offset+len(Text)).
type LogChunk struct {
	Attempt uint32 `json:"attempt"`
	Offset  uint64 `json:"offset"`
	Text    string `json:"text"`
}

// ErrorBody is every REST error response.
type ErrorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
	Code  string `json:"code"`
}

func timeOf(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func durString(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	return d.AsDuration().String()
}

func resourcesOf(r *jobpb.Resources) Resources {
	return Resources{Slots: r.GetSlots(), CPUMillis: r.GetCpuMillis(), MemoryBytes: r.GetMemoryBytes()}
}

// JobSpecFromPB converts a spec to its JSON form.
func JobSpecFromPB(p *jobpb.JobSpec) JobSpec {
	return JobSpec{
		Name: p.GetName(), Script: p.GetScript(), Env: p.GetEnv(), Secrets: p.GetSecrets(), Labels: p.GetLabels(),
		Selector: p.GetSelector(), Resources: resourcesOf(p.GetResources()), Priority: p.GetPriority(),
		Timeout: durString(p.GetTimeout()), MaxAttempts: p.GetMaxAttempts(), Queue: p.GetQueue(),
	}
}

// toPB converts a JSON spec; field prefixes bad field names.
func (s JobSpec) toPB(field string) (*jobpb.JobSpec, error) {
	out := &jobpb.JobSpec{
		Name: s.Name, Script: s.Script, Env: s.Env, Secrets: s.Secrets, Labels: s.Labels, Selector: s.Selector,
		Resources: &jobpb.Resources{Slots: s.Resources.Slots, CpuMillis: s.Resources.CPUMillis, MemoryBytes: s.Resources.MemoryBytes},
		Priority:  s.Priority, MaxAttempts: s.MaxAttempts, Queue: s.Queue,
	}
	if s.Timeout != "" {
		d, err := time.ParseDuration(s.Timeout)
		if err != nil {
			return nil, badInput(field+".timeout", "%q is not a duration like \"90s\" or \"1h30m\"", s.Timeout)
		}
		out.Timeout = durationpb.New(d)
	}
	return out, nil
}

// JobFromPB converts a job to its JSON form.
func JobFromPB(p *jobpb.Job) Job {
	j := Job{
		ID: p.GetId(), Spec: JobSpecFromPB(p.GetSpec()), Submitter: p.GetSubmitter(), Status: StatusName(p.GetStatus()),
		Parked: p.GetParked(), Attempt: p.GetAttempt(), Worker: p.GetWorker(), SubmittedAt: timeOf(p.GetSubmittedAt()),
		StartedAt: timeOf(p.GetStartedAt()), EndedAt: timeOf(p.GetEndedAt()), CancelRequested: p.GetCancelRequested(),
		CancelledBy: p.GetCancelledBy(), CancelReason: p.GetCancelReason(), ExitCode: p.GetExitCode(), Signal: p.GetSignal(),
		Reason: p.GetReason(), Runtime: durString(p.GetRuntime()), Version: p.GetVersion(),
	}
	for _, a := range p.GetAttempts() {
		j.Attempts = append(j.Attempts, Attempt{Number: a.GetNumber(), Worker: a.GetWorker(), ScheduledAt: timeOf(a.GetScheduledAt()),
			AcceptedAt: timeOf(a.GetAcceptedAt()), StartedAt: timeOf(a.GetStartedAt()), EndedAt: timeOf(a.GetEndedAt()),
			Result: a.GetResult(), Reason: a.GetReason()})
	}
	return j
}

// JobSummaryFromPB converts a job summary to its JSON form.
func JobSummaryFromPB(p *jobpb.JobSummary) JobSummary {
	return JobSummary{
		ID: p.GetId(), Name: p.GetName(), Queue: p.GetQueue(), Submitter: p.GetSubmitter(), Labels: p.GetLabels(),
		Priority: p.GetPriority(), Resources: resourcesOf(p.GetResources()), Status: StatusName(p.GetStatus()), Parked: p.GetParked(),
		Attempt: p.GetAttempt(), MaxAttempts: p.GetMaxAttempts(), Worker: p.GetWorker(), CancelRequested: p.GetCancelRequested(),
		SubmittedAt: timeOf(p.GetSubmittedAt()), ScheduledAt: timeOf(p.GetScheduledAt()), StartedAt: timeOf(p.GetStartedAt()),
		EndedAt: timeOf(p.GetEndedAt()), ExitCode: p.GetExitCode(), Signal: p.GetSignal(), Reason: p.GetReason(),
		Runtime: durString(p.GetRuntime()), Seq: p.GetSeq(), Position: p.GetPosition(),
	}
}

// ListJobsFromPB converts a job list to its JSON form.
func ListJobsFromPB(p *jobpb.ListJobsResponse) ListJobsResponse {
	out := ListJobsResponse{Jobs: make([]JobSummary, 0, len(p.GetJobs())), NextPageToken: p.GetNextPageToken(), Position: p.GetPosition()}
	for _, j := range p.GetJobs() {
		out.Jobs = append(out.Jobs, JobSummaryFromPB(j))
	}
	return out
}

// WorkerFromPB converts a worker to its JSON form.
func WorkerFromPB(p *jobpb.Worker) Worker {
	w := Worker{
		ID: p.GetId(), Name: p.GetName(), Labels: p.GetLabels(), Capacity: resourcesOf(p.GetCapacity()),
		Reserved: resourcesOf(p.GetReserved()), ActiveJobs: p.GetActiveJobs(), Status: WorkerStatusName(p.GetStatus()),
		Draining: p.GetDraining(), AgentVersion: p.GetAgentVersion(), RegisteredAt: timeOf(p.GetRegisteredAt()),
		LastChange: timeOf(p.GetLastChange()), LostReason: p.GetLostReason(), Connected: p.GetConnected(),
	}
	if t := p.GetTelemetry(); t != nil {
		w.Telemetry = &Telemetry{At: timeOf(t.GetAt()), CPUPercent: t.GetCpuPercent(), MemoryUsedBytes: t.GetMemoryUsedBytes(),
			MemoryTotalBytes: t.GetMemoryTotalBytes(), FreeSlots: t.GetFreeSlots()}
	}
	return w
}

// EventFromPB converts an event to its JSON form.
func EventFromPB(p *jobpb.Event) Event {
	payload := json.RawMessage(p.GetPayloadJson())
	if !json.Valid(payload) {
		payload = json.RawMessage("null")
	}
	return Event{
		Position: p.GetPosition(), Stream: p.GetStream(), StreamVersion: p.GetStreamVersion(), Type: p.GetType(),
		SchemaVersion: p.GetSchemaVersion(), EventID: p.GetEventId(), Time: timeOf(p.GetTime()), Actor: p.GetActor(),
		CorrelationID: p.GetCorrelationId(), CausationID: p.GetCausationId(), Payload: payload, Hash: p.GetHash(),
	}
}

// SecretFromPB converts a secret's description to its JSON form.
func SecretFromPB(p *jobpb.Secret) Secret {
	return Secret{Name: p.GetName(), CreatedAt: timeOf(p.GetCreatedAt()), UpdatedAt: timeOf(p.GetUpdatedAt())}
}
