package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/agent/agentbench"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/bolt"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/server"
)

// AgentLabel is the worker label that pins a bench job to one agent: an
// agent the bench uses must be started with -labels AgentLabel=NAME (its
// -name), and StartJob selects on it.
const AgentLabel = "bench-agent"

// AgentServerConfig configures StartAgentServer. The zero value runs a
// bbolt event store in a new temp dir.
type AgentServerConfig struct {
	// Dir holds the job logs (and the bbolt file with Store "bolt");
	// default a new temp dir, removed by Close.
	Dir string
	// Store is the event store: "bolt" (default, as `hodei server`: a
	// registration waits for its fsync) or "memory".
	Store string
	// HeartbeatInterval is what agents are told (default 5s, as `hodei server`).
	HeartbeatInterval time.Duration
	// CancelGrace is the SIGTERM-to-SIGKILL grace of cancelled bench jobs
	// (default 2s).
	CancelGrace time.Duration
	// MaxLogBytes caps each attempt's stored log (default 1 GiB): the
	// production default of 64 MiB would truncate a flooding job within a
	// second or two, and a truncated log stops counting as stored.
	MaxLogBytes int64
	// Logger receives the server's logs (default: discarded).
	Logger *slog.Logger
}

// AgentServer is a real Hodei server running in this process (server.New:
// the core, the HWP service agents dial, the log store) on 127.0.0.1 port 0,
// for measuring agents against it. It implements agentbench.Server:
//
//   - WaitAgent follows the event log for the agent's worker.registered
//     (or worker.reconnected) and then waits for the core to hold its
//     stream;
//   - StartJob submits the job through core.Submit, pinned to the agent by
//     AgentLabel, and returns a Log that follows the job's attempt 1 in the
//     log store: what a server-side viewer (the API's WatchLog) reads. Each
//     read is timestamped when the follower wakes with it, so a latency
//     measured with it is from the write in the job's PTY to the server-side
//     subscriber.
//
// Close it when done; it stops the server and removes what it created.
type AgentServer struct {
	srv    *server.Server
	store  eventstore.Store
	logs   logstore.Logs
	tmp    string // removed by Close ("" when Dir was given)
	grace  time.Duration
	base   context.Context // parent of followers; ends at Close
	stop   context.CancelFunc
	runErr chan error
	wg     sync.WaitGroup // the event watcher and the log readers

	mu       sync.Mutex
	agents   map[string]registration // by agent name, the latest registration
	changed  chan struct{}           // closed and replaced when agents changes
	watchErr error                   // why the watcher stopped, if it did
}

// registration is what a worker.registered or worker.reconnected says.
type registration struct {
	id     string
	labels map[string]string
}

var _ agentbench.Server = (*AgentServer)(nil)

// StartAgentServer opens the stores, starts the server and returns once it
// listens.
func StartAgentServer(ctx context.Context, cfg AgentServerConfig) (_ *AgentServer, err error) {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.CancelGrace <= 0 {
		cfg.CancelGrace = 2 * time.Second
	}
	if cfg.MaxLogBytes == 0 {
		cfg.MaxLogBytes = 1 << 30
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &AgentServer{grace: cfg.CancelGrace, agents: map[string]registration{}, changed: make(chan struct{}),
		runErr: make(chan error, 1)}
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "hodei-bench-server-"); err != nil {
			return nil, fmt.Errorf("bench server: %w", err)
		}
		s.tmp = dir
	}
	// Undo what is done so far when a later step fails.
	defer func() {
		if err != nil {
			if s.logs != nil {
				_ = s.logs.Close()
			}
			if s.store != nil {
				_ = s.store.Close()
			}
			if s.tmp != "" {
				_ = os.RemoveAll(s.tmp)
			}
		}
	}()
	switch cfg.Store {
	case "memory":
		s.store = memory.New(memory.Options{})
	case "", "bolt":
		if s.store, err = bolt.Open(filepath.Join(dir, "events.db"), bolt.Options{}); err != nil {
			return nil, fmt.Errorf("bench server: %w", err)
		}
	default:
		return nil, fmt.Errorf("bench server: store %q: want memory or bolt", cfg.Store)
	}
	if s.logs, err = logstore.Open(filepath.Join(dir, "logs"), logstore.Options{MaxBytesPerAttempt: cfg.MaxLogBytes,
		Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("bench server: %w", err)
	}
	s.srv, err = server.New(ctx, s.store, s.logs, server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: cfg.Logger, ShutdownGrace: 2 * time.Second, Version: "bench",
		Core: core.Config{HeartbeatInterval: cfg.HeartbeatInterval, CancelGrace: cfg.CancelGrace}})
	if err != nil {
		return nil, fmt.Errorf("bench server: %w", err)
	}
	if err = s.srv.Listen(); err != nil {
		return nil, fmt.Errorf("bench server: %w", err)
	}
	// The watcher reads the log from its start, so no registration can slip
	// between starting the server and watching it.
	sub := s.store.Subscribe(0)
	s.base, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Go(func() { s.watch(sub) })
	go func() { s.runErr <- s.srv.Run(s.base) }()
	return s, nil
}

// Addr returns the address agents dial (the server's gRPC listener).
func (s *AgentServer) Addr() string { return s.srv.GRPCAddr() }

// Close stops the server (agents still connected are cut off: stop them
// first), waits for everything it started, closes the stores and removes
// the temp dir it made.
func (s *AgentServer) Close() error {
	s.stop()
	err := <-s.runErr
	s.wg.Wait()
	if e := s.logs.Close(); e != nil && err == nil {
		err = e
	}
	if e := s.store.Close(); e != nil && err == nil {
		err = e
	}
	if s.tmp != "" {
		if e := os.RemoveAll(s.tmp); e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return fmt.Errorf("bench server: close: %w", err)
	}
	return nil
}

// watch records every agent registration by name until Close.
func (s *AgentServer) watch(sub *eventstore.Subscription) {
	defer sub.Close()
	codec := s.srv.Core().Codec()
	for {
		batch, err := sub.Next(s.base)
		if err != nil {
			s.mu.Lock()
			s.watchErr = fmt.Errorf("watch events: %w", err)
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			return
		}
		var regs []domain.WorkerRegistered // the reconnected ones too
		for _, env := range batch {
			if env.Type != domain.TypeWorkerRegistered && env.Type != domain.TypeWorkerReconnected {
				continue
			}
			ev, err := codec.Decode(&env)
			if err != nil {
				continue // not one we can match by name
			}
			switch e := ev.(type) {
			case domain.WorkerRegistered:
				regs = append(regs, e)
			case domain.WorkerReconnected:
				regs = append(regs, domain.WorkerRegistered{WorkerID: e.WorkerID, Info: e.Info, At: e.At})
			}
		}
		if len(regs) == 0 {
			continue
		}
		s.mu.Lock()
		for _, r := range regs {
			s.agents[r.Info.Name] = registration{id: r.WorkerID, labels: r.Info.Labels}
		}
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

// lookup returns the latest registration of name, whether there is one, and
// a channel closed at the next change.
func (s *AgentServer) lookup(name string) (registration, bool, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.agents[name]
	return r, ok, s.changed, s.watchErr
}

// WaitAgent blocks until an agent named name is registered and the core
// holds its stream, so a job submitted next is sent to it at once.
//
// The registration is a notification (the event log); the stream is
// attached by the core right after that append returns, with nothing to
// wait on. So once the registration is seen, WaitAgent re-checks
// core.Connected at short, growing intervals (50µs up to 5ms): the wait is
// microseconds in practice and never adds more than one interval.
func (s *AgentServer) WaitAgent(ctx context.Context, name string) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	pause := 50 * time.Microsecond
	for {
		r, ok, changed, err := s.lookup(name)
		if err != nil {
			return fmt.Errorf("wait agent %s: %w", name, err)
		}
		var recheck <-chan time.Time
		if ok {
			if s.srv.Core().Connected(r.id) {
				return nil
			}
			if timer == nil {
				timer = time.NewTimer(pause)
			} else {
				timer.Reset(pause)
			}
			recheck = timer.C
			pause = min(2*pause, 5*time.Millisecond)
		}
		select {
		case <-changed:
		case <-recheck:
		case <-ctx.Done():
			return fmt.Errorf("wait agent %s: %w", name, ctx.Err())
		}
	}
}

// StartJob submits job to run on agent agentName (registered, with the
// label AgentLabel=agentName) and returns its log, followed from the
// first byte of attempt 1. The job gets one attempt. The assignment has no
// working directory, so a Job.WorkingDir is honoured by a cd in front of
// the script.
func (s *AgentServer) StartJob(ctx context.Context, agentName string, job agentbench.Job) (agentbench.Log, error) {
	r, ok, _, _ := s.lookup(agentName)
	if !ok {
		return nil, fmt.Errorf("start job %s: agent %s is not registered (WaitAgent first)", job.ID, agentName)
	}
	if r.labels[AgentLabel] != agentName {
		return nil, fmt.Errorf("start job %s: agent %s lacks the label %s=%s: start it with -labels %s=%s",
			job.ID, agentName, AgentLabel, agentName, AgentLabel, agentName)
	}
	script := job.Script
	if job.WorkingDir != "" {
		script = "cd " + shellQuote(job.WorkingDir) + " || exit 1\n" + script
	}
	spec := domain.JobSpec{Name: job.ID, Script: script, Selector: map[string]string{AgentLabel: agentName}, MaxAttempts: 1}
	res := s.srv.Core().Submit(ctx, "bench", []core.SubmitRequest{{JobID: job.ID, Spec: spec}})
	if err := res[0].Err; err != nil {
		return nil, fmt.Errorf("start job %s: %w", job.ID, err)
	}
	fctx, cancel := context.WithCancel(s.base)
	f, err := s.logs.Follow(fctx, job.ID, 1, 0)
	if err != nil {
		cancel()
		_, _ = s.srv.Core().Cancel(context.WithoutCancel(ctx), job.ID, "bench", "bench could not follow its log")
		return nil, fmt.Errorf("start job %s: %w", job.ID, err)
	}
	l := &jobLog{s: s, id: job.ID, f: f, ctx: fctx, cancel: cancel, chunks: make(chan logChunk, 16),
		done: make(chan struct{}), stopping: make(chan struct{})}
	s.wg.Go(l.read)
	return l, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// logChunk is one read of a follower and when it returned.
type logChunk struct {
	data []byte
	at   time.Time
}

// jobLog is a bench job's log as a server-side viewer reads it. One reader
// goroutine owns the follower (a Follower is single-goroutine and bound to
// one context) and hands timestamped reads to Next.
//
// Slow-consumer policy: the reader holds at most 16 reads in its channel and
// then waits for Next; the follower itself queues nothing (it reads on from
// the file), so a slow bench never slows the agent or the server.
type jobLog struct {
	s      *AgentServer
	id     string
	f      logstore.Cursor
	ctx    context.Context // the follower's: ends at Stop or at the server's Close
	cancel context.CancelFunc

	chunks   chan logChunk
	done     chan struct{} // closed when the reader ends; err is set then
	err      error
	stopping chan struct{} // closed by Stop: the reader drops what it reads

	once    sync.Once
	stopErr error
}

// readBytes is the most one follower read returns: large enough that a
// flooding job's log is read in few calls.
const readBytes = 256 << 10

func (l *jobLog) read() {
	defer close(l.done)
	defer l.f.Close()
	buf := make([]byte, readBytes)
	for {
		n, err := l.f.Read(buf)
		at := time.Now() // the follower's wake: before any copy or hand-off
		if n > 0 {
			c := logChunk{data: append([]byte(nil), buf[:n]...), at: at}
			select {
			case l.chunks <- c:
			case <-l.stopping:
			case <-l.ctx.Done(): // the next Read returns the error
			}
		}
		if err != nil {
			l.err = err
			return
		}
	}
}

// Next implements agentbench.Log. It returns io.EOF once the job's log is
// finished and read to its end.
func (l *jobLog) Next(ctx context.Context) ([]byte, time.Time, error) {
	select {
	case c := <-l.chunks:
		return c.data, c.at, nil
	case <-ctx.Done():
		return nil, time.Time{}, ctx.Err()
	case <-l.done:
	}
	select {
	case c := <-l.chunks:
		return c.data, c.at, nil
	default:
	}
	if errors.Is(l.err, io.EOF) {
		return nil, time.Time{}, io.EOF
	}
	return nil, time.Time{}, fmt.Errorf("follow log of %s: %w", l.id, l.err)
}

// Stored implements agentbench.Log: the bytes of attempt 1 in the log store.
func (l *jobLog) Stored() int64 {
	st, err := l.s.logs.Stat(l.id, 1)
	if err != nil {
		return 0
	}
	return int64(st.Size)
}

// Stop implements agentbench.Log: it cancels the job if it is still active
// and waits until its log is finished (the agent reported the end), at most
// the cancel grace plus 5 seconds or until ctx ends, then ends the
// subscription.
func (l *jobLog) Stop(ctx context.Context) error {
	l.once.Do(func() {
		close(l.stopping)
		j, err := l.s.srv.Core().Cancel(ctx, l.id, "bench", "bench over")
		if err != nil && !errors.Is(err, domain.ErrJobTerminal) {
			l.stopErr = fmt.Errorf("stop job %s: %w", l.id, err)
		}
		// A job cancelled before it ran has no log to wait for.
		_, serr := l.s.logs.Stat(l.id, 1)
		if err == nil && j.Status.Terminal() && errors.Is(serr, logstore.ErrNotFound) {
			l.cancel()
		}
		t := time.NewTimer(l.s.grace + 5*time.Second)
		select {
		case <-l.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		l.cancel()
		<-l.done
	})
	return l.stopErr
}
