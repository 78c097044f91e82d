package core

import (
	"context"
	"fmt"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/projections"
)

// SubmitRequest is one job to submit.
type SubmitRequest struct {
	// JobID is optional; the core picks a time-ordered id when empty. A
	// caller that wants idempotent submits derives it from its idempotency
	// key: a second submit of the same id returns domain.ErrAlreadyExists.
	JobID string
	Spec  domain.JobSpec
}

// SubmitResult is the outcome of one submitted job.
type SubmitResult struct {
	JobID    string
	Job      domain.Job
	Position uint64 // log position of job.submitted
	Err      error
}

// Submit validates and appends every job in one batch. It returns one
// result per request, in order; a bad spec fails only its own request, with
// a *domain.FieldError naming the field. It returns when the events are
// durable.
func (c *Core) Submit(ctx context.Context, submitter string, reqs []SubmitRequest) []SubmitResult {
	now := c.now()
	meta := command.Meta{Actor: "user:" + submitter, CorrelationID: eventstore.NewID()}
	out := make([]SubmitResult, len(reqs))
	cmds := make([]command.JobCommand, len(reqs))
	for i, r := range reqs {
		id := r.JobID
		if id == "" {
			id = newID(now)
		}
		out[i].JobID = id
		cmds[i] = command.JobCommand{JobID: id, Meta: meta,
			Cmd: domain.Submit{JobID: id, Spec: r.Spec, Submitter: submitter, At: now}}
	}
	results, errs := c.cmd.Jobs(ctx, cmds)
	for i := range out {
		out[i].Job, out[i].Err, out[i].Position = results[i].State, errs[i], results[i].Append.LastPosition
	}
	return out
}

// Cancel cancels a queued job at once, or asks the agent to stop a running
// one (the job ends when the agent reports, or when its worker is lost).
func (c *Core) Cancel(ctx context.Context, jobID, by, reason string) (domain.Job, error) {
	if reason == "" {
		reason = "cancelled by " + by
	}
	res, err := c.cmd.Job(ctx, jobID, domain.Cancel{By: by, Reason: reason, At: c.now()}, command.Meta{Actor: "user:" + by})
	if err != nil {
		return res.State, fmt.Errorf("cancel job %s: %w", jobID, err)
	}
	return res.State, nil
}

// Job returns a job's full state (spec included) from its stream.
func (c *Core) Job(ctx context.Context, jobID string) (domain.Job, error) {
	j, err := c.cmd.LoadJob(ctx, jobID)
	if err != nil {
		return j, err
	}
	if !j.Exists() {
		return j, fmt.Errorf("job %s: %w", jobID, domain.ErrNotFound)
	}
	return j, nil
}

// DrainWorker stops new assignments to a worker and tells its agent to
// finish its running jobs and exit.
func (c *Core) DrainWorker(ctx context.Context, workerID, by, reason string) (domain.Worker, error) {
	res, err := c.cmd.Worker(ctx, workerID, domain.Drain{By: by, Reason: reason, At: c.now()}, command.Meta{Actor: "user:" + by})
	if err != nil {
		return res.State, fmt.Errorf("drain worker %s: %w", workerID, err)
	}
	return res.State, nil
}

// WorkerStatus is a worker's view with its live telemetry.
type WorkerStatus struct {
	projections.WorkerView
	Connected bool       `json:"connected"`
	Telemetry *Telemetry `json:"telemetry,omitempty"`
}

// ListWorkers returns every worker with live telemetry where connected.
func (c *Core) ListWorkers() []WorkerStatus {
	views := c.workers.List()
	out := make([]WorkerStatus, len(views))
	for i, v := range views {
		out[i].WorkerView = v
		if t, ok := c.Telemetry(v.ID); ok {
			out[i].Connected = true
			out[i].Telemetry = &t
		}
	}
	return out
}

// Leave deregisters a worker whose agent said goodbye (drained or stopped):
// it is gone on purpose, not lost. Attempts still on it are failed so they
// are re-queued.
func (c *Core) Leave(ctx context.Context, workerID, reason string) error {
	_, err := c.cmd.Worker(ctx, workerID, domain.Deregister{Reason: reason, At: c.now()}, command.Meta{Actor: "agent:" + workerID})
	if err != nil {
		return fmt.Errorf("deregister worker %s: %w", workerID, err)
	}
	c.failJobsOn(ctx, workerID, domain.ReasonWorkerDeregistered)
	return nil
}
