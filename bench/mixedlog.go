package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// MixedLogConfig configures WriteMixedLog.
type MixedLogConfig struct {
	// Events is exactly how many events the log gets (default 10,000).
	Events int
	// Workers is the size of the fleet (default 100).
	Workers int
	// JobsPerRound is how many jobs go through their lifecycle together, as
	// the server's batches would interleave them (default 400).
	JobsPerRound int
	// Start is the time of the first event (default 2026-01-01T00:00:00Z).
	// Every event is 1 ms after the one before it, so event times are
	// deterministic and strictly increasing with position.
	Start time.Time
	// Progress, when set, is told how many events are written so far.
	Progress func(done, total uint64)
}

// WriteMixedLog appends a realistic log of exactly cfg.Events events to an
// empty store through the command handler, so every event is one the domain
// decided. Workers register; jobs are submitted, scheduled, accepted, started
// and finished in rounds, in interleaved batches. The mix has every event
// type of domain.Events(): one job in ten fails; some are parked first and
// unparked; in each round one worker is lost with its running attempts
// (re-queued and run again elsewhere) and reconnects; some jobs are cancelled
// while queued or while running; some time out (reported by the agent, or
// enforced by the server); every ten rounds a worker drains and resumes, and
// every fifty one is revoked, deregistered and replaced by a provider's
// instance; every ten a worker's identity is renewed and a provider starts
// an instance that is not needed after all, or (every twenty) fails. The
// log ends wherever cfg.Events falls, usually with jobs still running, as a
// live log does.
// Only the event ids are random.
func WriteMixedLog(ctx context.Context, store eventstore.Store, cfg MixedLogConfig) error {
	if cfg.Events <= 0 {
		cfg.Events = 10_000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 100
	}
	cfg.Workers = max(cfg.Workers, 2) // a lost worker's jobs run again on another
	if cfg.JobsPerRound <= 0 {
		cfg.JobsPerRound = 400
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	g := &mixedGen{cfg: cfg, ctx: ctx, now: cfg.Start.Add(-time.Millisecond)}
	g.h = command.New(store, command.NewCodec(), command.Options{CacheSize: 4 * cfg.JobsPerRound, Clock: g.tick})
	return g.run()
}

type mixedGen struct {
	cfg     MixedLogConfig
	ctx     context.Context
	h       *command.Handler
	now     time.Time // time of the last event
	written int
	roster  []string // worker ids in service
	nextW   int      // next worker number
}

// tick is the handler's clock: each event 1 ms after the last.
func (g *mixedGen) tick() time.Time {
	g.now = g.now.Add(time.Millisecond)
	return g.now
}

// at is the time a command is decided: that of the event it will cause.
func (g *mixedGen) at() time.Time { return g.now.Add(time.Millisecond) }

func (g *mixedGen) left() int { return g.cfg.Events - g.written }

func (g *mixedGen) progress() {
	if g.cfg.Progress != nil {
		g.cfg.Progress(uint64(g.written), uint64(g.cfg.Events))
	}
}

func mixedWorkerInfo(id string, n int) domain.WorkerInfo {
	return domain.WorkerInfo{Name: "node-" + id,
		Labels:       map[string]string{"os": "linux", "pool": fmt.Sprintf("p%d", n%4), "zone": fmt.Sprintf("z%d", n%3)},
		Capacity:     domain.Resources{Slots: 8, CPUMillis: 8000, MemoryBytes: 16 << 30},
		AgentVersion: "1.4.2", ProtocolVersion: 1}
}

// worker runs one worker command if the log has room for its event.
func (g *mixedGen) worker(id string, cmd domain.WorkerCommand, actor string) error {
	if g.left() <= 0 {
		return nil
	}
	res, err := g.h.Worker(g.ctx, id, cmd, command.Meta{Actor: actor, CorrelationID: eventstore.NewID()})
	if err != nil {
		return fmt.Errorf("write mixed log: worker %s %s: %w", id, cmd.CommandName(), err)
	}
	g.written += len(res.Events)
	return nil
}

func (g *mixedGen) addWorker() error {
	id := fmt.Sprintf("w%03d", g.nextW)
	n := g.nextW
	g.nextW++
	g.roster = append(g.roster, id)
	if err := g.worker(id, domain.Register{WorkerID: id, Info: mixedWorkerInfo(id, n), At: g.at()}, "agent:"+id); err != nil {
		return err
	}
	return g.worker(id, domain.Enrol{TokenID: fmt.Sprintf("%016x", n), Cert: mixedCert(n, g.at()),
		IdentityExpiresAt: g.at().Add(15 * time.Minute), At: g.at()}, "system:identity")
}

func mixedCert(n int, at time.Time) domain.CertRef {
	return domain.CertRef{Serial: fmt.Sprintf("%x", 0x1000+n), Fingerprint: fmt.Sprintf("%064x", n), NotAfter: at.Add(24 * time.Hour)}
}

// instance runs one provider instance command if the log has room.
func (g *mixedGen) instance(id string, cmd domain.InstanceCommand) error {
	if g.left() <= 0 {
		return nil
	}
	res, err := g.h.Instance(g.ctx, id, cmd, command.Meta{Actor: "system:provider:docker"})
	if err != nil {
		return fmt.Errorf("write mixed log: instance %s %s: %w", id, cmd.CommandName(), err)
	}
	g.written += len(res.Events)
	return nil
}

// provision is a provider's round: an instance that starts and is not
// needed after all, or one whose image is missing.
func (g *mixedGen) provision(round int) error {
	id := fmt.Sprintf("docker-%04x", round)
	req := domain.RequestInstance{InstanceID: id, Provider: "docker", Driver: "docker", Jobs: []string{fmt.Sprintf("j%08d", round*g.cfg.JobsPerRound)},
		Reason: "1 queued job(s) match pool=docker and no connected agent can take them", At: g.at()}
	if err := g.instance(id, req); err != nil || g.left() <= 0 {
		return err
	}
	if round%20 == 6 {
		return g.instance(id, domain.FailInstance{Reason: "start: image hodei-agent:dev not found in the local engine", At: g.at()})
	}
	if err := g.instance(id, domain.MarkInstanceStarted{Handle: fmt.Sprintf("%012x", round), At: g.at()}); err != nil || g.left() <= 0 {
		return err
	}
	return g.instance(id, domain.TerminateInstance{Reason: "not needed any more: no job waits for it", At: g.at()})
}

func (g *mixedGen) run() error {
	for i := 0; i < g.cfg.Workers && g.left() > 0; i++ {
		if err := g.addWorker(); err != nil {
			return err
		}
	}
	g.progress()
	for round := 0; g.left() > 0; round++ {
		if err := g.round(round); err != nil {
			return err
		}
		g.progress()
		if err := g.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// mixedPlan is one job's commands, each deciding exactly one event; the
// commands of a round run step by step, the k-th of every job in one batch.
type mixedPlan struct {
	id    string
	corr  eventstore.ID
	steps []mixedStep
}

type mixedStep struct {
	actor string
	cmd   func() domain.JobCommand // built when its batch is, for its time
}

var mixedJobNames = []string{"build", "unit-tests", "integration", "lint", "deploy-staging", "nightly-backup", "render-docs"}

func (g *mixedGen) round(round int) error {
	nw := len(g.roster)
	lost := g.roster[round%nw]
	plans := make([]mixedPlan, 0, g.cfg.JobsPerRound)
	for k := 0; k < g.cfg.JobsPerRound; k++ {
		n := round*g.cfg.JobsPerRound + k
		plans = append(plans, g.plan(n, lost))
	}
	drained := ""
	for step := 0; g.left() > 0; step++ {
		var batch []command.JobCommand
		for i := range plans {
			if step < len(plans[i].steps) && len(batch) < g.left() {
				s := plans[i].steps[step]
				batch = append(batch, command.JobCommand{JobID: plans[i].id, Cmd: s.cmd(),
					Meta: command.Meta{Actor: s.actor, CorrelationID: plans[i].corr}})
			}
		}
		if len(batch) == 0 {
			break
		}
		res, errs := g.h.Jobs(g.ctx, batch)
		for i, err := range errs {
			if err != nil {
				return fmt.Errorf("write mixed log: job %s %s: %w", batch[i].JobID, batch[i].Cmd.CommandName(), err)
			}
			if len(res[i].Events) != 1 {
				return fmt.Errorf("write mixed log: job %s %s decided %d events, want 1",
					batch[i].JobID, batch[i].Cmd.CommandName(), len(res[i].Events))
			}
		}
		g.written += len(batch)
		switch step {
		case 3: // every first attempt has started: the round's lost worker misses its heartbeats
			if err := g.worker(lost, domain.MarkLost{LastSeen: g.at().Add(-15 * time.Second), At: g.at()}, "system:heartbeat"); err != nil {
				return err
			}
			if d := g.roster[(round/10+7)%nw]; round%10 == 5 && d != lost {
				drained = d
				if err := g.worker(d, domain.Drain{By: "user:ops", Reason: "kernel upgrade", At: g.at()}, "user:ops"); err != nil {
					return err
				}
			}
		case 5:
			if err := g.worker(lost, domain.Reconnect{Info: mixedWorkerInfo(lost, round%nw), At: g.at()}, "agent:"+lost); err != nil {
				return err
			}
		}
	}
	if drained != "" {
		if err := g.worker(drained, domain.Resume{By: "user:ops", At: g.at()}, "user:ops"); err != nil {
			return err
		}
	}
	if round%10 == 7 {
		w := g.roster[round%len(g.roster)]
		if err := g.worker(w, domain.RenewIdentity{Cert: mixedCert(round, g.at()), IdentityExpiresAt: g.at().Add(15 * time.Minute),
			At: g.at()}, "system:identity"); err != nil {
			return err
		}
	}
	if round%10 == 6 {
		if err := g.provision(round); err != nil {
			return err
		}
	}
	if round%50 == 49 && g.left() > 0 {
		// A worker is revoked and leaves; a provider starts its
		// replacement.
		i := (round / 50) % nw
		old := g.roster[i]
		if err := g.worker(old, domain.RevokeIdentity{By: "user:ops", Reason: "host retired", At: g.at()}, "user:ops"); err != nil {
			return err
		}
		if err := g.worker(old, domain.Deregister{Reason: "scaled down", At: g.at()}, "system:autoscaler"); err != nil {
			return err
		}
		g.roster = append(g.roster[:i:i], g.roster[i+1:]...)
		inst := fmt.Sprintf("docker-r%04x", round)
		if err := g.instance(inst, domain.RequestInstance{InstanceID: inst, Provider: "docker", Driver: "docker",
			Reason: "replacing " + old, At: g.at()}); err != nil {
			return err
		}
		if err := g.instance(inst, domain.MarkInstanceStarted{Handle: fmt.Sprintf("r%011x", round), At: g.at()}); err != nil {
			return err
		}
		if err := g.addWorker(); err != nil {
			return err
		}
		if err := g.instance(inst, domain.MarkInstanceConnected{WorkerID: g.roster[len(g.roster)-1], At: g.at()}); err != nil {
			return err
		}
	}
	return nil
}

// plan is the lifecycle of job number n; lost is the worker lost this round.
func (g *mixedGen) plan(n int, lost string) mixedPlan {
	nw := len(g.roster)
	id := fmt.Sprintf("j%08d", n)
	w, w2 := g.roster[n%nw], g.roster[(n+1)%nw]
	user := "user:" + []string{"alice", "bob", "carol", "ci-bot"}[n%4]
	name := mixedJobNames[n%len(mixedJobNames)]
	spec := domain.JobSpec{
		Name:      name,
		Script:    "set -e\nmake " + name + "\n",
		Env:       map[string]string{"CI": "true", "BUILD_NUMBER": fmt.Sprint(n)},
		Labels:    map[string]string{"team": []string{"core", "web", "data"}[n%3]},
		Resources: domain.Resources{Slots: 1, CPUMillis: int64(500 * (1 + n%4)), MemoryBytes: int64(256<<20) << (n % 3)},
		Priority:  10 * (1 + n%10),
		Queue:     []string{"default", "ci", "batch"}[n%3],
	}
	if n%7 == 3 {
		spec.Selector = map[string]string{"pool": fmt.Sprintf("p%d", n%4)}
	}
	if n%5 == 1 {
		spec.Secrets = map[string]string{"DEPLOY_TOKEN": "deploy-token"}
	}
	switch {
	case n%250 == 33:
		spec.Timeout = 30 * time.Minute
	case n%500 == 77:
		spec.Timeout = time.Second
	}
	runtime := time.Duration(1+n%600) * time.Second
	p := mixedPlan{id: id, corr: eventstore.NewID()}
	add := func(actor string, f func() domain.JobCommand) { p.steps = append(p.steps, mixedStep{actor, f}) }
	add(user, func() domain.JobCommand { return domain.Submit{JobID: id, Spec: spec, Submitter: user, At: g.at()} })
	run := func(w string, attempt uint32) {
		add("system:scheduler", func() domain.JobCommand {
			return domain.Schedule{WorkerID: w, AcceptBy: g.at().Add(30 * time.Second), At: g.at()}
		})
		add("agent:"+w, func() domain.JobCommand { return domain.Accept{WorkerID: w, Attempt: attempt, At: g.at()} })
		add("agent:"+w, func() domain.JobCommand { return domain.Start{WorkerID: w, Attempt: attempt, At: g.at()} })
	}
	finish := func(w string, attempt uint32, exit int, signal string, timedOut bool) {
		add("agent:"+w, func() domain.JobCommand {
			return domain.Finish{WorkerID: w, Attempt: attempt, ExitCode: exit, Signal: signal, TimedOut: timedOut,
				Runtime: runtime, At: g.at()}
		})
	}
	switch {
	case w == lost: // its worker is lost while it runs: re-queued, run again elsewhere
		run(w, 1)
		add("system:heartbeat", func() domain.JobCommand {
			return domain.FailAttempt{WorkerID: w, Attempt: 1, Reason: domain.ReasonAgentLost, At: g.at()}
		})
		run(w2, 2)
		finish(w2, 2, 0, "", false)
	case n%200 == 21: // cancelled while queued
		add(user, func() domain.JobCommand { return domain.Cancel{By: user, Reason: "submitted by mistake", At: g.at()} })
	case n%100 == 13: // cancelled while running
		run(w, 1)
		add(user, func() domain.JobCommand {
			return domain.Cancel{By: user, Reason: "superseded by a newer build", At: g.at()}
		})
		finish(w, 1, -1, "SIGTERM", false)
	case n%250 == 33: // killed by the agent at its timeout
		run(w, 1)
		finish(w, 1, -1, "SIGKILL", true)
	case n%500 == 77: // the agent went quiet: the server enforces the timeout
		run(w, 1)
		add("system:timeouts", func() domain.JobCommand { return domain.TimeOut{At: g.at().Add(2 * time.Second)} })
	case n%50 == 7: // parked until capacity appears
		add("system:scheduler", func() domain.JobCommand {
			return domain.Park{Reason: "no online worker has 2000m CPU free", At: g.at()}
		})
		add("system:scheduler", func() domain.JobCommand { return domain.Unpark{At: g.at()} })
		run(w, 1)
		finish(w, 1, 0, "", false)
	case n%10 == 9:
		run(w, 1)
		finish(w, 1, 1, "", false)
	default:
		run(w, 1)
		finish(w, 1, 0, "", false)
	}
	return p
}
