package core

import (
	"context"
	"errors"
	"time"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/scheduler"
)

// observe follows every committed event (after the read models applied it)
// and keeps the scheduler and the agents in step with the log. It runs on
// the projections runner's goroutine and never blocks: agent calls only
// queue messages.
func (c *Core) observe(env *eventstore.Envelope, ev eventstore.Event) {
	now := c.now()
	switch e := ev.(type) {
	case domain.JobSubmitted:
		c.trackQueue(e.JobID, true)
		if err := c.sched.Submit(now, schedJob(e.JobID, 1, e.Spec, e.At)); err != nil && !errors.Is(err, scheduler.ErrDuplicate) {
			c.log.Error("queue submitted job", "job", e.JobID, "err", err)
		}
	case domain.JobScheduled:
		if v, ok := c.jobs.Get(e.JobID); ok && e.Attempt == 1 {
			c.cfg.Metrics.QueueWait(e.At.Sub(v.SubmittedAt))
		}
		c.trackQueue(e.JobID, false)
		// Our own round reserved it already (ErrDuplicate); after a restart
		// the reservation comes from here.
		c.sched.Remove(e.JobID)
		err := c.sched.Reserve(now, scheduler.Reservation{JobID: e.JobID, Attempt: e.Attempt, WorkerID: e.WorkerID,
			Resources: scheduler.Resources(e.Resources), PlacedAt: e.At})
		if err != nil && !errors.Is(err, scheduler.ErrDuplicate) {
			c.log.Warn("reserve scheduled job", "job", e.JobID, "worker", e.WorkerID, "err", err)
		}
	case domain.JobRequeued:
		c.trackQueue(e.JobID, true)
		c.sched.Release(e.JobID, e.Attempt)
		if v, ok := c.jobs.Get(e.JobID); ok {
			if err := c.sched.Submit(now, c.schedJobFromView(v)); err != nil && !errors.Is(err, scheduler.ErrDuplicate) {
				c.log.Error("queue re-queued job", "job", e.JobID, "err", err)
			}
		}
	case domain.JobCancelRequested:
		if v, ok := c.jobs.Get(e.JobID); ok && v.Status.Active() {
			if a := c.agent(v.Worker); a != nil {
				if err := a.Cancel(v.ID, v.Attempt, e.Reason, c.cfg.CancelGrace); err != nil {
					c.log.Warn("send cancel", "job", v.ID, "worker", v.Worker, "err", err)
				}
			}
		}
	case domain.JobSucceeded:
		c.ended(e.JobID, e.Attempt)
	case domain.JobFailed:
		c.ended(e.JobID, e.Attempt)
	case domain.JobCancelled:
		c.ended(e.JobID, e.Attempt)
	case domain.JobTimedOut:
		c.ended(e.JobID, e.Attempt)
	case domain.WorkerRegistered:
		c.upsertWorker(now, e.WorkerID)
	case domain.WorkerReconnected:
		c.upsertWorker(now, e.WorkerID)
	case domain.WorkerResumed:
		c.upsertWorker(now, e.WorkerID)
	case domain.WorkerLost:
		_ = c.sched.SetWorkerState(e.WorkerID, scheduler.StateLost)
	case domain.WorkerDrainStarted:
		_ = c.sched.Drain(e.WorkerID)
		if a := c.agent(e.WorkerID); a != nil {
			_ = a.Drain(e.Reason)
		}
	case domain.WorkerDeregistered:
		_, _ = c.sched.RemoveWorker(e.WorkerID)
	}
}

func (c *Core) ended(jobID string, attempt uint32) {
	c.trackQueue(jobID, false)
	c.sched.Remove(jobID) // cancelled or failed while queued
	if attempt > 0 {
		c.sched.Release(jobID, attempt)
	}
}

func (c *Core) upsertWorker(now time.Time, id string) {
	w, ok := c.workers.Get(id)
	if !ok {
		return
	}
	if err := c.sched.UpsertWorker(now, schedWorker(w.ID, w.Labels, w.Capacity, w.Status, w.Draining)); err != nil {
		c.log.Error("scheduler worker", "worker", id, "err", err)
	}
}

// scheduleLoop runs scheduling rounds whenever the scheduler has work that
// may be placeable (it signals Ready) or a retry is due.
func (c *Core) scheduleLoop(ctx context.Context) error {
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	for {
		t0 := time.Now()
		round := c.sched.ScheduleRound(c.now(), c.cfg.RoundSize)
		if len(round.Placements) > 0 || len(round.Parked) > 0 {
			c.commitRound(ctx, round)
			c.cfg.Metrics.Round(time.Since(t0), len(round.Placements), len(round.Parked))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if round.Pending > 0 {
			continue
		}
		wait := time.Second
		if !round.NextRetry.IsZero() {
			if d := round.NextRetry.Sub(c.now()); d < wait {
				wait = max(d, time.Millisecond)
			}
		}
		timer.Reset(wait)
		select {
		case <-c.sched.Ready():
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// commitRound appends the round's decisions in one batch, then sends the
// assignments. A placement whose append fails gives its reservation back.
func (c *Core) commitRound(ctx context.Context, round scheduler.Round) {
	now := c.now()
	meta := command.Meta{Actor: "system:scheduler", CorrelationID: eventstore.NewID()}
	cmds := make([]command.JobCommand, 0, len(round.Placements)+len(round.Parked))
	for _, p := range round.Placements {
		cmds = append(cmds, command.JobCommand{JobID: p.JobID, Meta: meta,
			Cmd: domain.Schedule{WorkerID: p.WorkerID, AcceptBy: now.Add(c.cfg.AcceptTimeout), At: now}})
	}
	for _, p := range round.Parked {
		cmds = append(cmds, command.JobCommand{JobID: p.JobID, Meta: meta, Cmd: domain.Park{Reason: p.Reason, At: now}})
	}
	results, errs := c.cmd.Jobs(ctx, cmds)
	for i, p := range round.Placements {
		res, err := results[i], errs[i]
		if err == nil && len(res.Events) > 0 {
			if ev, ok := res.Events[0].(domain.JobScheduled); ok && ev.Attempt != p.Attempt {
				// The scheduler's attempt numbering drifted from the log's:
				// trust the log.
				c.sched.Release(p.JobID, p.Attempt)
				_ = c.sched.Reserve(now, scheduler.Reservation{JobID: p.JobID, Attempt: ev.Attempt, Queue: p.Queue,
					WorkerID: p.WorkerID, Resources: p.Resources, PlacedAt: now})
				p.Attempt = ev.Attempt
			}
		}
		if err != nil || len(res.Events) == 0 {
			c.sched.Release(p.JobID, p.Attempt)
			if err != nil && !errors.Is(err, domain.ErrInvalidTransition) && !errors.Is(err, domain.ErrJobTerminal) {
				c.log.Error("schedule job", "job", p.JobID, "worker", p.WorkerID, "err", err)
				// Put it back so it is not lost to a passing store error.
				if res.State.Status == domain.JobStatusQueued {
					_ = c.sched.Submit(now, schedJob(p.JobID, res.State.Attempt+1, res.State.Spec, res.State.SubmittedAt))
				}
			}
			continue
		}
		c.assign(ctx, p.WorkerID, res.State, p.Attempt)
		c.drainEphemeral(ctx, p.WorkerID)
	}
	for k, p := range round.Parked {
		if err := errs[len(round.Placements)+k]; err != nil && !errors.Is(err, domain.ErrInvalidTransition) {
			c.log.Warn("park job", "job", p.JobID, "err", err)
		}
	}
}

// assign sends a scheduled attempt to its agent. If the agent is not
// connected, the accept timeout re-queues the attempt.
func (c *Core) assign(ctx context.Context, worker string, job domain.Job, attempt uint32) {
	a := c.agent(worker)
	if a == nil {
		return
	}
	spec := job.Spec
	as := Assignment{JobID: job.ID, Attempt: attempt, Name: spec.Name, Script: spec.Script, Env: spec.Env,
		Timeout: spec.Timeout, CancelGrace: c.cfg.CancelGrace}
	if len(spec.Secrets) > 0 {
		names := make([]string, 0, len(spec.Secrets))
		for _, n := range spec.Secrets {
			names = append(names, n)
		}
		var vals map[string]string
		var err error
		if c.cfg.Secrets == nil {
			err = errors.New("no secret store is configured")
		} else {
			vals, err = c.cfg.Secrets.Resolve(ctx, names)
		}
		if err != nil {
			c.failStart(ctx, worker, job.ID, attempt, "resolve secrets: "+err.Error())
			return
		}
		as.Secrets = make(map[string]string, len(spec.Secrets))
		for env, name := range spec.Secrets {
			as.Secrets[env] = vals[name]
		}
	}
	if err := a.Assign(as); err != nil {
		c.log.Warn("send assignment", "job", job.ID, "worker", worker, "err", err)
		c.failAttempt(ctx, worker, job.ID, attempt, domain.ReasonAssignFailed)
	}
}

// failStart ends an attempt that cannot start for a reason retrying will not
// fix (a missing secret): the job fails.
func (c *Core) failStart(ctx context.Context, worker, jobID string, attempt uint32, reason string) {
	now := c.now()
	_, err := c.cmd.Job(ctx, jobID, domain.Finish{WorkerID: worker, Attempt: attempt, ExitCode: -1, Reason: reason, At: now},
		command.Meta{Actor: "system:scheduler"})
	if err != nil {
		c.log.Warn("fail job start", "job", jobID, "err", err)
	}
}

func (c *Core) failAttempt(ctx context.Context, worker, jobID string, attempt uint32, reason string) {
	_, err := c.cmd.Job(ctx, jobID, domain.FailAttempt{WorkerID: worker, Attempt: attempt, Reason: reason, At: c.now()},
		command.Meta{Actor: "system:lifecycle"})
	if err != nil && !errors.Is(err, domain.ErrStaleAttempt) && !errors.Is(err, domain.ErrJobTerminal) {
		c.log.Warn("fail attempt", "job", jobID, "attempt", attempt, "reason", reason, "err", err)
	}
}
