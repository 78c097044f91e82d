package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/projections"
)

// What providers (package provider) need from the core: the queue, the
// instance view, instance commands, parking, and fast handling of agents
// whose container or Pod is gone.

// Agent labels with a meaning to the core.
const (
	// LabelEphemeral set to "true" makes a worker run exactly one job: the
	// core drains it the moment that job is placed, so nothing else is
	// handed to it between finishing and exiting.
	LabelEphemeral = "hodei.ephemeral"
)

// Instances is the view of live provisioned instances.
func (c *Core) Instances() *projections.Instances { return c.instances }

// PendingJobs returns the queued jobs (not cancel-requested), oldest first.
func (c *Core) PendingJobs() []projections.JobView {
	c.qmu.Lock()
	ids := make([]string, 0, len(c.queued))
	for id := range c.queued {
		ids = append(ids, id)
	}
	c.qmu.Unlock()
	out := make([]projections.JobView, 0, len(ids))
	for _, id := range ids {
		if v, ok := c.jobs.Get(id); ok && v.Status == domain.JobStatusQueued && !v.CancelRequested {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b projections.JobView) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// trackQueue keeps the set of queued jobs PendingJobs reads.
func (c *Core) trackQueue(id string, queued bool) {
	c.qmu.Lock()
	if queued {
		c.queued[id] = struct{}{}
	} else {
		delete(c.queued, id)
	}
	c.qmu.Unlock()
}

// Instance runs an instance command as actor ("system:provider:NAME") and
// waits until the read models show its events.
func (c *Core) Instance(ctx context.Context, id, actor string, cmd domain.InstanceCommand) (domain.Instance, error) {
	res, err := c.cmd.Instance(ctx, id, cmd, command.Meta{Actor: actor})
	if err != nil {
		return res.State, fmt.Errorf("instance %s: %w", id, err)
	}
	if len(res.Events) > 0 {
		if err := c.runner.WaitFor(ctx, res.Append.LastPosition); err != nil {
			return res.State, err
		}
	}
	return res.State, nil
}

// ParkJobs parks queued jobs with reason (a provider that cannot start
// agents for them says why). Jobs no longer queued are skipped.
func (c *Core) ParkJobs(ctx context.Context, actor string, ids []string, reason string) error {
	now := c.now()
	cmds := make([]command.JobCommand, 0, len(ids))
	for _, id := range ids {
		cmds = append(cmds, command.JobCommand{JobID: id, Meta: command.Meta{Actor: actor}, Cmd: domain.Park{Reason: reason, At: now}})
	}
	errs := c.cmd.RunJobs(ctx, cmds)
	var first error
	for i, err := range errs {
		if err != nil && !errors.Is(err, domain.ErrInvalidTransition) && first == nil {
			first = fmt.Errorf("park job %s: %w", cmds[i].JobID, err)
		}
	}
	return first
}

// WorkerGone handles a worker whose container or Pod the provider saw end:
// it is marked lost now (not after missed heartbeats) and its attempts are
// failed so they are re-queued.
func (c *Core) WorkerGone(ctx context.Context, workerID, reason string) error {
	w, ok := c.workers.Get(workerID)
	if !ok || w.Status != domain.WorkerStatusOnline {
		return nil
	}
	now := c.now()
	last, _ := c.lastHeard(workerID, now)
	if last.After(now) {
		last = now
	}
	if err := c.lose(ctx, workerID, last, reason, "system:provider", now); err != nil {
		return fmt.Errorf("mark worker %s lost: %w", workerID, err)
	}
	return nil
}

// drainEphemeral drains an ephemeral worker that was just given its job.
func (c *Core) drainEphemeral(ctx context.Context, workerID string) {
	w, ok := c.workers.Get(workerID)
	if !ok || w.Labels[LabelEphemeral] != "true" {
		return
	}
	_ = c.sched.Drain(workerID)
	_, err := c.cmd.Worker(ctx, workerID, domain.Drain{By: "system:scheduler", Reason: "ephemeral: runs one job", At: c.now()},
		command.Meta{Actor: "system:scheduler"})
	if err != nil {
		c.log.Warn("drain ephemeral worker", "worker", workerID, "err", err)
	}
}
