package api

import (
	"encoding/json"
	"maps"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/projections"
	"github.com/hodei-jobs/hodei/secrets"
)

// Generated types stop here: everything below converts between them and
// domain, projection and core types.

var statusToPB = map[domain.JobStatus]jobpb.JobStatus{
	domain.JobStatusQueued:    jobpb.JobStatus_JOB_STATUS_QUEUED,
	domain.JobStatusScheduled: jobpb.JobStatus_JOB_STATUS_SCHEDULED,
	domain.JobStatusAccepted:  jobpb.JobStatus_JOB_STATUS_ACCEPTED,
	domain.JobStatusRunning:   jobpb.JobStatus_JOB_STATUS_RUNNING,
	domain.JobStatusSucceeded: jobpb.JobStatus_JOB_STATUS_SUCCEEDED,
	domain.JobStatusFailed:    jobpb.JobStatus_JOB_STATUS_FAILED,
	domain.JobStatusCancelled: jobpb.JobStatus_JOB_STATUS_CANCELLED,
	domain.JobStatusTimedOut:  jobpb.JobStatus_JOB_STATUS_TIMED_OUT,
}

var statusFromPB = func() map[jobpb.JobStatus]domain.JobStatus {
	m := make(map[jobpb.JobStatus]domain.JobStatus, len(statusToPB))
	for k, v := range statusToPB {
		m[v] = k
	}
	return m
}()

// StatusName returns the lower-case name of a job status ("running"), as
// REST and the CLI show it; "" for JOB_STATUS_UNSPECIFIED.
func StatusName(s jobpb.JobStatus) string { return string(statusFromPB[s]) }

// ParseStatus is StatusName's inverse; ok is false for an unknown name.
func ParseStatus(name string) (jobpb.JobStatus, bool) {
	s, ok := statusToPB[domain.JobStatus(name)]
	return s, ok
}

var workerStatusToPB = map[domain.WorkerStatus]jobpb.WorkerStatus{
	domain.WorkerStatusOnline:       jobpb.WorkerStatus_WORKER_STATUS_ONLINE,
	domain.WorkerStatusLost:         jobpb.WorkerStatus_WORKER_STATUS_LOST,
	domain.WorkerStatusDeregistered: jobpb.WorkerStatus_WORKER_STATUS_DEREGISTERED,
}

// WorkerStatusName returns the lower-case name of a worker status ("online").
func WorkerStatusName(s jobpb.WorkerStatus) string {
	for k, v := range workerStatusToPB {
		if v == s {
			return string(k)
		}
	}
	return ""
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func dur(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func resourcesToPB(r domain.Resources) *jobpb.Resources {
	return &jobpb.Resources{Slots: r.Slots, CpuMillis: r.CPUMillis, MemoryBytes: r.MemoryBytes}
}

func specToPB(s domain.JobSpec) *jobpb.JobSpec {
	return &jobpb.JobSpec{
		Name: s.Name, Script: s.Script, Env: s.Env, Secrets: s.Secrets, Labels: s.Labels, Selector: s.Selector,
		Resources: resourcesToPB(s.Resources), Priority: int32(s.Priority), Timeout: dur(s.Timeout),
		MaxAttempts: int32(s.MaxAttempts), Queue: s.Queue,
	}
}

// specFromPB converts a submitted spec. field prefixes the names of bad
// fields ("jobs[0].spec"). It checks only what the conversion needs; the
// domain validates the rest.
func specFromPB(p *jobpb.JobSpec, field string) (domain.JobSpec, error) {
	if p == nil {
		return domain.JobSpec{}, badInput(field, "missing")
	}
	s := domain.JobSpec{
		Name: p.GetName(), Script: p.GetScript(), Env: p.GetEnv(), Secrets: p.GetSecrets(), Labels: p.GetLabels(),
		Selector: p.GetSelector(), Priority: int(p.GetPriority()), MaxAttempts: int(p.GetMaxAttempts()), Queue: p.GetQueue(),
	}
	if r := p.GetResources(); r != nil {
		s.Resources = domain.Resources{Slots: r.GetSlots(), CPUMillis: r.GetCpuMillis(), MemoryBytes: r.GetMemoryBytes()}
	}
	if t := p.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil {
			return s, badInput(field+".timeout", "%v", err)
		}
		s.Timeout = t.AsDuration()
	}
	return s, nil
}

func jobToPB(j domain.Job) *jobpb.Job {
	out := &jobpb.Job{
		Id: j.ID, Spec: specToPB(j.Spec), Submitter: j.Submitter, Status: statusToPB[j.Status], Parked: j.Parked,
		Attempt: j.Attempt, Worker: j.Worker, SubmittedAt: ts(j.SubmittedAt), StartedAt: ts(j.StartedAt), EndedAt: ts(j.EndedAt),
		CancelRequested: j.CancelRequested, CancelledBy: j.CancelledBy, CancelReason: j.CancelReason,
		ExitCode: int32(j.ExitCode), Signal: j.Signal, Reason: j.Reason, Runtime: dur(j.Runtime), Version: j.Version,
	}
	if !j.Status.Terminal() {
		out.ExitCode = -1
	}
	for _, a := range j.Attempts {
		out.Attempts = append(out.Attempts, &jobpb.Attempt{
			Number: a.Number, Worker: a.Worker, ScheduledAt: ts(a.ScheduledAt), AcceptedAt: ts(a.AcceptedAt),
			StartedAt: ts(a.StartedAt), EndedAt: ts(a.EndedAt), Result: a.Result, Reason: a.Reason,
		})
	}
	return out
}

func summaryToPB(v projections.JobView) *jobpb.JobSummary {
	return &jobpb.JobSummary{
		Id: v.ID, Name: v.Name, Queue: v.Queue, Submitter: v.Submitter, Labels: v.Labels, Priority: int32(v.Priority),
		Resources: resourcesToPB(v.Resources), Status: statusToPB[v.Status], Parked: v.Parked, Attempt: v.Attempt,
		MaxAttempts: int32(v.MaxAttempts), Worker: v.Worker, CancelRequested: v.CancelRequested,
		SubmittedAt: ts(v.SubmittedAt), ScheduledAt: ts(v.ScheduledAt), StartedAt: ts(v.StartedAt), EndedAt: ts(v.EndedAt),
		ExitCode: int32(v.ExitCode), Signal: v.Signal, Reason: v.Reason, Runtime: dur(v.Runtime), Seq: v.Seq, Position: v.Position,
	}
}

func workerToPB(w core.WorkerStatus) *jobpb.Worker {
	out := &jobpb.Worker{
		Id: w.ID, Name: w.Name, Labels: w.Labels, Capacity: resourcesToPB(w.Capacity), Reserved: resourcesToPB(w.Reserved),
		ActiveJobs: int64(w.ActiveJobs), Status: workerStatusToPB[w.Status], Draining: w.Draining, AgentVersion: w.AgentVersion,
		RegisteredAt: ts(w.RegisteredAt), LastChange: ts(w.LastChange), LostReason: w.LostReason, Connected: w.Connected,
	}
	if t := w.Telemetry; t != nil {
		out.Telemetry = &jobpb.Telemetry{At: ts(t.At), CpuPercent: t.CPUPercent, MemoryUsedBytes: t.MemoryUsedBytes,
			MemoryTotalBytes: t.MemoryTotal, FreeSlots: int64(t.FreeSlots)}
	}
	return out
}

func secretToPB(i secrets.Info) *jobpb.Secret {
	return &jobpb.Secret{Name: i.Name, CreatedAt: ts(i.CreatedAt), UpdatedAt: ts(i.UpdatedAt)}
}

// eventToPB converts an envelope, its payload decoded by codec to JSON. A
// payload the codec cannot decode (a type this binary does not know) is
// shown field by field as stored.
func eventToPB(codec *eventstore.Codec, e *eventstore.Envelope) *jobpb.Event {
	out := &jobpb.Event{
		Position: e.Position, Stream: e.StreamID, StreamVersion: e.StreamVersion, Type: e.Type,
		SchemaVersion: uint32(e.SchemaVersion), Time: ts(e.Time), Actor: e.Actor, Hash: e.Hash.String(),
	}
	if !e.EventID.IsZero() {
		out.EventId = e.EventID.String()
	}
	if !e.CorrelationID.IsZero() {
		out.CorrelationId = e.CorrelationID.String()
	}
	if !e.CausationID.IsZero() {
		out.CausationId = e.CausationID.String()
	}
	var payload any
	if ev, err := codec.Decode(e); err == nil {
		payload = ev
	} else if fields, ferr := eventstore.DecodeFields(e.Payload); ferr == nil {
		payload = fields
	}
	if b, err := json.Marshal(payload); err == nil {
		out.PayloadJson = string(b)
	} else {
		out.PayloadJson = "null"
	}
	return out
}

// specEqual reports whether two specs, both with defaults filled in, ask for
// the same job (nil and empty maps are equal).
func specEqual(a, b domain.JobSpec) bool {
	return a.Name == b.Name && a.Script == b.Script && a.Resources == b.Resources && a.Priority == b.Priority &&
		a.Timeout == b.Timeout && a.MaxAttempts == b.MaxAttempts && a.Queue == b.Queue &&
		maps.Equal(a.Env, b.Env) && maps.Equal(a.Secrets, b.Secrets) && maps.Equal(a.Labels, b.Labels) &&
		maps.Equal(a.Selector, b.Selector)
}
