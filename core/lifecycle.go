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
			c.mu.Lock()
			last, connected := c.started, false
			if s := c.sessions[w.ID]; s != nil {
				last, connected = s.lastSeen, true
			} else if g, ok := c.gone[w.ID]; ok {
				last = g
			}
			c.mu.Unlock()
			if last.IsZero() || now.Sub(last) <= c.cfg.LostAfter {
				continue
			}
			c.log.Warn("worker lost", "worker", w.ID, "last_seen", last, "connected", connected)
			_, err := c.cmd.Worker(ctx, w.ID, domain.MarkLost{LastSeen: last, Reason: domain.ReasonMissedHeartbeats, At: now},
				command.Meta{Actor: "system:lifecycle"})
			if err != nil {
				c.log.Error("mark worker lost", "worker", w.ID, "err", err)
				continue
			}
			if connected {
				// A stream that is open but silent: stop listening to it.
				c.mu.Lock()
				if s := c.sessions[w.ID]; s != nil {
					delete(c.sessions, w.ID)
					c.gone[w.ID] = s.lastSeen
				}
				c.mu.Unlock()
			}
			c.failJobsOn(ctx, w.ID, domain.ReasonAgentLost)
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
	_, errs := c.cmd.Jobs(ctx, cmds)
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
	_, errs := c.cmd.Jobs(ctx, cmds)
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
