package core

import (
	"context"
	"time"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
)

// lifecycleLoop enforces the deadlines the log cannot enforce by itself:
// lost workers, accept timeouts and job timeouts. It ticks at a quarter of
// the heartbeat interval, so a dead agent is noticed within LostAfter plus
// that tick.
func (c *Core) lifecycleLoop(ctx context.Context) error {
	tick := time.NewTicker(max(c.cfg.HeartbeatInterval/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		c.checkWorkers(ctx)
		c.checkJobs(ctx)
	}
}

// checkWorkers marks lost every online worker not heard from for LostAfter,
// and fails the active attempts of lost workers (also those a crash left
// behind after the worker.lost was written).
func (c *Core) checkWorkers(ctx context.Context) {
	now := c.now()
	for _, w := range c.workers.List() {
		switch w.Status {
		case domain.WorkerStatusOnline:
			last, connected := c.lastHeard(w.ID, c.started)
			if last.IsZero() || now.Sub(last) <= c.cfg.LostAfter {
				continue
			}
			c.log.Warn("worker lost", "worker", w.ID, "last_seen", last, "connected", connected)
			if err := c.lose(ctx, w.ID, last, domain.ReasonMissedHeartbeats, "system:lifecycle", now); err != nil {
				c.log.Error("mark worker lost", "worker", w.ID, "err", err)
			}
		case domain.WorkerStatusLost, domain.WorkerStatusDeregistered:
			if w.ActiveJobs > 0 {
				reason := domain.ReasonAgentLost
				if w.Status == domain.WorkerStatusDeregistered {
					reason = domain.ReasonWorkerDeregistered
				}
				c.failJobsOn(ctx, w.ID, reason)
			}
		}
	}
}

// lastHeard returns when worker id was last heard of: its session's last
// heartbeat, else when its stream closed, else def. connected reports a
// session.
func (c *Core) lastHeard(id string, def time.Time) (last time.Time, connected bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.sessions[id]; s != nil {
		return s.lastSeen, true
	}
	if g, ok := c.gone[id]; ok {
		return g, false
	}
	return def, false
}

// lose records worker id lost (last heard of at last), stops listening to
// a stream it may still have open, and fails its active attempts so they
// are re-queued.
func (c *Core) lose(ctx context.Context, id string, last time.Time, reason, actor string, now time.Time) error {
	_, err := c.cmd.Worker(ctx, id, domain.MarkLost{LastSeen: last, Reason: reason, At: now}, command.Meta{Actor: actor})
	if err != nil {
		return err
	}
	c.mu.Lock()
	if s := c.sessions[id]; s != nil {
		delete(c.sessions, id)
		c.gone[id] = s.lastSeen
	}
	c.mu.Unlock()
	c.failJobsOn(ctx, id, domain.ReasonAgentLost)
	return nil
}

func (c *Core) failJobsOn(ctx context.Context, worker, reason string) {
	ids := c.jobs.ActiveOn(worker)
	if len(ids) == 0 {
		return
	}
	now := c.now()
	cmds := make([]command.JobCommand, 0, len(ids))
	for _, id := range ids {
		v, ok := c.jobs.Get(id)
		if !ok {
			continue
		}
		cmds = append(cmds, command.JobCommand{JobID: id, Meta: command.Meta{Actor: "system:lifecycle"},
			Cmd: domain.FailAttempt{WorkerID: worker, Attempt: v.Attempt, Reason: reason, At: now}})
	}
	errs := c.cmd.RunJobs(ctx, cmds)
	for i, err := range errs {
		if err != nil {
			c.log.Warn("fail attempt", "job", cmds[i].JobID, "worker", worker, "err", err)
		}
	}
}

// checkJobs fails attempts not accepted in time and times out jobs whose
// agent did not report their timeout.
func (c *Core) checkJobs(ctx context.Context) {
	now := c.now()
	var cmds []command.JobCommand
	meta := command.Meta{Actor: "system:lifecycle"}
	for _, w := range c.workers.List() {
		if w.ActiveJobs == 0 {
			continue
		}
		for _, id := range c.jobs.ActiveOn(w.ID) {
			j, err := c.cmd.LoadJob(ctx, id)
			if err != nil {
				continue
			}
			switch {
			case j.Status == domain.JobStatusScheduled && !j.AcceptBy.IsZero() && now.After(j.AcceptBy):
				cmds = append(cmds, command.JobCommand{JobID: id, Meta: meta,
					Cmd: domain.FailAttempt{WorkerID: j.Worker, Attempt: j.Attempt, Reason: domain.ReasonAcceptTimeout, At: now}})
			case j.Status == domain.JobStatusRunning && !j.Deadline.IsZero() && now.After(j.Deadline.Add(c.cfg.TimeoutGrace)):
				cmds = append(cmds, command.JobCommand{JobID: id, Meta: meta, Cmd: domain.TimeOut{At: now}})
			}
		}
	}
	if len(cmds) == 0 {
		return
	}
	errs := c.cmd.RunJobs(ctx, cmds)
	for i, err := range errs {
		if err != nil {
			c.log.Warn("enforce deadline", "job", cmds[i].JobID, "err", err)
		} else if _, ok := cmds[i].Cmd.(domain.TimeOut); ok {
			if j, err := c.cmd.LoadJob(ctx, cmds[i].JobID); err == nil {
				if a := c.agent(j.Worker); a != nil {
					_ = a.Fence(j.ID, j.Attempt, "timed out by the server")
				}
			}
		}
	}
}
