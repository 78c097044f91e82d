package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/scheduler"
)

// Agent is the server side of one connected agent's stream, as the core
// sees it. hwp implements it. Every method only queues a message and must
// not block; an error means the stream is gone or its queue is full.
type Agent interface {
	Assign(a Assignment) error
	Cancel(jobID string, attempt uint32, reason string, grace time.Duration) error
	// Fence tells the agent to kill a stale attempt and drop its output.
	Fence(jobID string, attempt uint32, reason string) error
	Drain(reason string) error
}

// Assignment is a job attempt sent to an agent, secrets resolved.
type Assignment struct {
	JobID       string
	Attempt     uint32
	Name        string
	Script      string
	Env         map[string]string
	Secrets     map[string]string // env var name -> secret value
	Timeout     time.Duration
	CancelGrace time.Duration
}

// Hello is what a connecting agent declares.
type Hello struct {
	// WorkerID is the id the agent had before a reconnect; "" for a new worker.
	WorkerID        string
	Name            string
	Labels          map[string]string
	Capacity        domain.Resources
	AgentVersion    string
	ProtocolVersion uint32
	// Running are the attempts the agent still runs after a reconnect.
	Running []JobRef
}

// JobRef names one job attempt.
type JobRef struct {
	JobID   string
	Attempt uint32
}

// Telemetry is one heartbeat's live figures. Not an event.
type Telemetry struct {
	At              time.Time `json:"at"`
	CPUPercent      float64   `json:"cpu_percent"` // 0..100 of the whole machine
	MemoryUsedBytes int64     `json:"memory_used_bytes"`
	MemoryTotal     int64     `json:"memory_total_bytes"`
	FreeSlots       int       `json:"free_slots"`
}

// ErrUnknownWorker is returned for reports from a worker id that has no
// connected session.
var ErrUnknownWorker = errors.New("unknown worker")

// Connect registers a new worker or reconnects a known one and attaches its
// agent. It returns the worker id and the attempts among hello.Running that
// the agent must stop (not, or no longer, assigned to it).
func (c *Core) Connect(ctx context.Context, hello Hello, agent Agent) (string, []JobRef, error) {
	now := c.now()
	info := domain.WorkerInfo{Name: hello.Name, Labels: hello.Labels, Capacity: hello.Capacity,
		AgentVersion: hello.AgentVersion, ProtocolVersion: hello.ProtocolVersion}
	id := hello.WorkerID
	meta := command.Meta{Actor: "agent:" + id}
	var err error
	if id != "" {
		if w, lerr := c.cmd.LoadWorker(ctx, id); lerr != nil {
			return "", nil, lerr
		} else if !w.Exists() || w.Status == domain.WorkerStatusDeregistered {
			id = "" // unknown or gone: enrol as a new worker
		}
	}
	if id == "" {
		id = "w-" + newID(now)
		meta.Actor = "agent:" + id
	}
	// Attach the stream before the event that makes the worker schedulable,
	// so an assignment decided right after it is not sent into the void.
	c.mu.Lock()
	prev := c.sessions[id]
	c.sessions[id] = &session{agent: agent, lastSeen: now}
	gone, wasGone := c.gone[id]
	delete(c.gone, id)
	c.mu.Unlock()
	if hello.WorkerID == "" || id != hello.WorkerID {
		_, err = c.cmd.Worker(ctx, id, domain.Register{WorkerID: id, Info: info, At: now}, meta)
	} else {
		_, err = c.cmd.Worker(ctx, id, domain.Reconnect{Info: info, At: now}, meta)
	}
	if err != nil {
		c.mu.Lock()
		if s := c.sessions[id]; s != nil && s.agent == agent {
			if prev != nil {
				c.sessions[id] = prev
			} else {
				delete(c.sessions, id)
			}
			if wasGone {
				c.gone[id] = gone
			}
		}
		c.mu.Unlock()
		return "", nil, fmt.Errorf("connect worker: %w", err)
	}

	var stale []JobRef
	for _, r := range hello.Running {
		v, ok := c.jobs.Get(r.JobID)
		if !ok || v.Worker != id || v.Attempt != r.Attempt || !v.Status.Active() {
			// The read model may lag the log; the job aggregate is authoritative.
			j, err := c.cmd.LoadJob(ctx, r.JobID)
			if err != nil || j.Worker != id || j.Attempt != r.Attempt || !j.Status.Active() {
				stale = append(stale, r)
			}
		}
	}
	c.log.Info("agent connected", "worker", id, "name", hello.Name, "running", len(hello.Running), "stale", len(stale))
	return id, stale, nil
}

// Disconnect detaches agent from worker id. The worker is not lost yet: it
// has LostAfter to come back before its jobs are re-queued.
func (c *Core) Disconnect(id string, agent Agent) {
	c.mu.Lock()
	if s := c.sessions[id]; s != nil && s.agent == agent {
		delete(c.sessions, id)
		// Remember when we last heard from it, for the lost check.
		c.gone[id] = s.lastSeen
	}
	c.mu.Unlock()
	c.log.Info("agent disconnected", "worker", id)
}

// Heartbeat records a heartbeat's telemetry.
func (c *Core) Heartbeat(id string, t Telemetry) error {
	t.At = c.now()
	c.mu.Lock()
	s := c.sessions[id]
	if s != nil {
		s.lastSeen, s.tele = t.At, t
	}
	c.mu.Unlock()
	if s == nil {
		return ErrUnknownWorker
	}
	// CPU percent is of the whole machine, which is what agents declare as
	// their CPU capacity: the fraction is the scheduler's load figure.
	cpu := t.CPUPercent / 100
	if cpu < 0 || cpu != cpu {
		cpu = 0
	}
	_ = c.sched.Heartbeat(id, scheduler.Telemetry{At: t.At, CPUFraction: cpu, MemoryUsedBytes: max(t.MemoryUsedBytes, 0)})
	return nil
}

// Telemetry returns the last heartbeat of a connected worker.
func (c *Core) Telemetry(id string) (Telemetry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.sessions[id]; s != nil {
		return s.tele, true
	}
	return Telemetry{}, false
}

// Connected reports whether worker id has a live agent stream.
func (c *Core) Connected(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions[id] != nil
}

func (c *Core) agent(id string) Agent {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.sessions[id]; s != nil {
		return s.agent
	}
	return nil
}

// ReportKind is what an agent reports about an attempt.
type ReportKind int

// Report kinds.
const (
	ReportAccepted ReportKind = iota + 1
	ReportRejected
	ReportStarted
	ReportFinished
)

// Report is one agent report about one job attempt.
type Report struct {
	Kind     ReportKind
	JobID    string
	Attempt  uint32
	At       time.Time // when the agent observed it; zero: now
	ExitCode int
	Signal   string
	TimedOut bool
	Stopped  bool // the agent was stopped: the attempt produced no result
	Message  string
	Runtime  time.Duration
}

// CheckAttempt reports whether job attempt is assigned to worker id and
// still active, from the read model: the cheap check for log chunks. It
// returns a *domain.StaleAttemptError otherwise.
func (c *Core) CheckAttempt(id, jobID string, attempt uint32) error {
	v, ok := c.jobs.Get(jobID)
	if ok && v.Worker == id && v.Attempt == attempt && v.Status.Active() {
		return nil
	}
	// The read model may lag a just-committed job.scheduled: ask the aggregate.
	j, err := c.cmd.LoadJob(context.Background(), jobID)
	if err == nil && j.Worker == id && j.Attempt == attempt && j.Status.Active() {
		return nil
	}
	return &domain.StaleAttemptError{JobID: jobID, Worker: id, Attempt: attempt, Current: j.Attempt, Assigned: j.Worker, Status: j.Status}
}

// ReportMany applies a batch of reports from worker id through one append.
// errs[i] is nil, or a domain error; errors.Is(err, domain.ErrStaleAttempt)
// means the agent must stop that attempt.
func (c *Core) ReportMany(ctx context.Context, id string, reports []Report) []error {
	now := c.now()
	meta := command.Meta{Actor: "agent:" + id}
	cmds := make([]command.JobCommand, len(reports))
	for i, r := range reports {
		at := r.At
		if at.IsZero() || at.After(now) {
			at = now
		}
		var cmd domain.JobCommand
		switch r.Kind {
		case ReportAccepted:
			cmd = domain.Accept{WorkerID: id, Attempt: r.Attempt, At: at}
		case ReportStarted:
			cmd = domain.Start{WorkerID: id, Attempt: r.Attempt, At: at}
		case ReportRejected:
			cmd = domain.FailAttempt{WorkerID: id, Attempt: r.Attempt, Reason: domain.ReasonRejected + ": " + r.Message, At: at}
		case ReportFinished:
			if r.Stopped {
				cmd = domain.FailAttempt{WorkerID: id, Attempt: r.Attempt, Reason: "agent-stopped", At: at}
			} else {
				cmd = domain.Finish{WorkerID: id, Attempt: r.Attempt, ExitCode: r.ExitCode, Signal: r.Signal,
					TimedOut: r.TimedOut, Reason: r.Message, Runtime: r.Runtime, At: at}
			}
		default:
			cmd = nil
		}
		cmds[i] = command.JobCommand{JobID: r.JobID, Cmd: cmd, Meta: meta}
	}
	return c.cmd.RunJobs(ctx, cmds)
}
