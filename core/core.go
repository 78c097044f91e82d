package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/projections"
	"github.com/hodei-jobs/hodei/scheduler"
)

// Config tunes the orchestrator. Zero values take the defaults.
type Config struct {
	// HeartbeatInterval is what agents are told to use (default 5s).
	HeartbeatInterval time.Duration
	// LostAfter is how long a worker may go without a heartbeat before it is
	// lost (default 3 heartbeat intervals).
	LostAfter time.Duration
	// AcceptTimeout is how long an agent has to accept an assignment
	// (default 30s).
	AcceptTimeout time.Duration
	// TimeoutGrace is how long past a job's deadline the server waits for the
	// agent's own report before it times the job out itself (default 30s).
	TimeoutGrace time.Duration
	// CancelGrace is the SIGTERM-to-SIGKILL grace sent with cancels (default 10s).
	CancelGrace time.Duration
	// RoundSize bounds the placements of one scheduling round (default 2048).
	RoundSize int
	// SnapshotDir holds projection snapshots ("" for none).
	SnapshotDir string
	// Scheduler configures placement.
	Scheduler scheduler.Config
	// Clock is the time source (default time.Now).
	Clock func() time.Time
	// Logger receives operational logs (default slog.Default()).
	Logger *slog.Logger
	// Secrets resolves a job's secret names to values at assignment; nil
	// means jobs that name secrets cannot be assigned.
	Secrets SecretResolver
	// Metrics, when set, receives timings of the scheduling path.
	Metrics Metrics
}

// Metrics receives the core's timings (the server exports them to
// Prometheus). Methods must be cheap and must not block.
type Metrics interface {
	// QueueWait is the time a job attempt waited from being queued to being
	// scheduled.
	QueueWait(d time.Duration)
	// Round is one scheduling round: how long deciding and committing took,
	// and how many jobs it placed and parked.
	Round(d time.Duration, placed, parked int)
}

type noMetrics struct{}

func (noMetrics) QueueWait(time.Duration)       {}
func (noMetrics) Round(time.Duration, int, int) {}

// SecretResolver returns the values of the named secrets.
type SecretResolver interface {
	Resolve(ctx context.Context, names []string) (map[string]string, error)
}

func (c *Config) defaults() {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 5 * time.Second
	}
	if c.LostAfter <= 0 {
		c.LostAfter = 3 * c.HeartbeatInterval
	}
	if c.AcceptTimeout <= 0 {
		c.AcceptTimeout = 30 * time.Second
	}
	if c.TimeoutGrace <= 0 {
		c.TimeoutGrace = 30 * time.Second
	}
	if c.CancelGrace <= 0 {
		c.CancelGrace = 10 * time.Second
	}
	if c.RoundSize <= 0 {
		c.RoundSize = 2048
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
	if c.Scheduler.HeartbeatInterval == 0 {
		c.Scheduler.HeartbeatInterval = c.HeartbeatInterval
	}
}

// Core is the running orchestrator. Create it with New, then Run it.
type Core struct {
	cfg       Config
	store     eventstore.Store
	codec     *eventstore.Codec
	cmd       *command.Handler
	jobs      *projections.Jobs
	workers   *projections.Workers
	instances *projections.Instances
	runner    *projections.Runner
	sched     *scheduler.Scheduler
	log       *slog.Logger
	started   time.Time
	stopping  chan struct{}

	mu       sync.Mutex
	sessions map[string]*session  // worker id -> connected agent
	gone     map[string]time.Time // worker id -> last heard of, since its stream closed

	qmu    sync.Mutex
	queued map[string]struct{} // queued job ids, for PendingJobs
}

// session is one connected agent.
type session struct {
	agent    Agent
	lastSeen time.Time
	tele     Telemetry
}

// New wires a core over store. It does not read the log yet: Run does.
func New(store eventstore.Store, cfg Config) (*Core, error) {
	cfg.defaults()
	sched, err := scheduler.New(cfg.Scheduler)
	if err != nil {
		return nil, fmt.Errorf("new core: %w", err)
	}
	codec := command.NewCodec()
	c := &Core{
		cfg:       cfg,
		store:     store,
		codec:     codec,
		cmd:       command.New(store, codec, command.Options{Clock: cfg.Clock}),
		jobs:      projections.NewJobs(),
		workers:   projections.NewWorkers(),
		instances: projections.NewInstances(),
		queued:    map[string]struct{}{},
		sched:     sched,
		log:       cfg.Logger,
		stopping:  make(chan struct{}),
		sessions:  map[string]*session{},
		gone:      map[string]time.Time{},
	}
	c.runner, err = projections.NewRunner(store, codec, projections.RunnerOptions{
		SnapshotDir: cfg.SnapshotDir,
		Observe:     c.observe,
	}, c.jobs, c.workers, c.instances)
	if err != nil {
		return nil, fmt.Errorf("new core: %w", err)
	}
	return c, nil
}

// Jobs is the job view.
func (c *Core) Jobs() *projections.Jobs { return c.jobs }

// Workers is the cluster view.
func (c *Core) Workers() *projections.Workers { return c.workers }

// Codec is the event codec (every domain event registered).
func (c *Core) Codec() *eventstore.Codec { return c.codec }

// Store is the event log.
func (c *Core) Store() eventstore.Store { return c.store }

// SchedulerStats returns the scheduler's queue counts.
func (c *Core) SchedulerStats() scheduler.Stats { return c.sched.Stats() }

// AgentStreams is the number of connected agent streams.
func (c *Core) AgentStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions)
}

// Position is the log position the read models reflect.
func (c *Core) Position() uint64 { return c.runner.Position() }

// WaitFor blocks until the read models reflect position pos.
func (c *Core) WaitFor(ctx context.Context, pos uint64) error { return c.runner.WaitFor(ctx, pos) }

// Open loads the read models (snapshot plus the tail of the log) and seeds
// the scheduler from them. After Open the core answers reads; Run starts the
// loops.
func (c *Core) Open(ctx context.Context) error {
	if err := c.runner.Open(ctx); err != nil {
		return err
	}
	if err := c.seed(); err != nil {
		return err
	}
	if err := c.runner.CatchUp(ctx); err != nil {
		return fmt.Errorf("open core: %w", err)
	}
	c.started = c.cfg.Clock()
	return nil
}

// seed loads the scheduler from the read models as they are after Open's
// snapshots: every worker, every reservation, every queued job. The tail of
// the log then reaches the scheduler through observe.
func (c *Core) seed() error {
	now := c.cfg.Clock()
	for _, w := range c.workers.List() {
		if w.Status == domain.WorkerStatusDeregistered {
			continue
		}
		if err := c.sched.UpsertWorker(now, schedWorker(w.ID, w.Labels, w.Capacity, w.Status, w.Draining)); err != nil {
			c.log.Warn("seed scheduler: worker", "worker", w.ID, "err", err)
		}
	}
	var queued []scheduler.Job
	c.jobs.Each(func(v projections.JobView) bool {
		switch {
		case v.Status == domain.JobStatusQueued && !v.CancelRequested:
			queued = append(queued, c.schedJobFromView(v))
			c.trackQueue(v.ID, true)
		case v.Status.Active():
			err := c.sched.Reserve(now, scheduler.Reservation{JobID: v.ID, Attempt: v.Attempt, Queue: v.Queue,
				WorkerID: v.Worker, Resources: scheduler.Resources(v.Resources), PlacedAt: v.ScheduledAt})
			if err != nil {
				c.log.Warn("seed scheduler: reservation", "job", v.ID, "err", err)
			}
		}
		return true
	})
	for _, j := range queued {
		if err := c.sched.Submit(now, j); err != nil {
			c.log.Warn("seed scheduler: job", "job", j.ID, "err", err)
		}
	}
	return nil
}

// Run follows the log and runs the scheduling and lifecycle loops until ctx
// ends. Call Open first.
func (c *Core) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.runner.Run(ctx) })
	g.Go(func() error { return c.scheduleLoop(ctx) })
	g.Go(func() error { return c.lifecycleLoop(ctx) })
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (c *Core) now() time.Time { return c.cfg.Clock() }

func schedWorker(id string, labels map[string]string, capacity domain.Resources, st domain.WorkerStatus, draining bool) scheduler.Worker {
	w := scheduler.Worker{ID: id, Labels: labels, Capacity: scheduler.Resources(capacity)}
	switch {
	case st == domain.WorkerStatusLost:
		w.State = scheduler.StateLost
	case draining:
		w.State = scheduler.StateDraining
	}
	return w
}

func (c *Core) schedJobFromView(v projections.JobView) scheduler.Job {
	return scheduler.Job{ID: v.ID, Attempt: v.Attempt + 1, Queue: v.Queue, Priority: v.Priority,
		SubmittedAt: v.SubmittedAt, Resources: scheduler.Resources(v.Resources), Selector: scheduler.SelectorFromMap(v.Selector)}
}

func schedJob(id string, attempt uint32, spec domain.JobSpec, submitted time.Time) scheduler.Job {
	spec = spec.WithDefaults()
	return scheduler.Job{ID: id, Attempt: attempt, Queue: spec.Queue, Priority: spec.Priority, SubmittedAt: submitted,
		Resources: scheduler.Resources(spec.Resources), Selector: scheduler.SelectorFromMap(spec.Selector)}
}
