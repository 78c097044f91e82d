package server_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/server"
)

type testServer struct {
	*server.Server
	store eventstore.Store
	logs  *logstore.Store
	ctx   context.Context
}

func startServer(t *testing.T, hb time.Duration) *testServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	store := memory.New(memory.Options{})
	logs, err := logstore.Open(t.TempDir(), logstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	srv, err := server.New(ctx, store, logs, server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: quiet, Core: core.Config{HeartbeatInterval: hb}, ShutdownGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
		logs.Close()
	})
	dumpOnFailure(t, store)
	return &testServer{Server: srv, store: store, logs: logs, ctx: ctx}
}

// startAgent runs a real agent in this process against srv.
func startAgent(t *testing.T, srv *testServer, name string) *agent.Agent {
	t.Helper()
	ctx, cancel := context.WithCancel(srv.ctx)
	a, err := agent.New(agent.Config{Server: srv.GRPCAddr(), Name: name, Slots: 2, WorkDir: t.TempDir(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-a.Welcomed():
	case <-srv.ctx.Done():
		t.Fatal("agent was not welcomed")
	}
	return a
}

// watcher reads the log in order, keeping what it has read but not used.
type watcher struct {
	sub     *eventstore.Subscription
	pending []eventstore.Envelope
}

// waitEvent returns the next event of type typ on stream, skipping others.
func waitEvent(t *testing.T, ctx context.Context, w *watcher, typ, stream string) eventstore.Envelope {
	t.Helper()
	for {
		for len(w.pending) > 0 {
			e := w.pending[0]
			w.pending = w.pending[1:]
			if e.Type == typ && e.StreamID == stream {
				return e
			}
		}
		batch, err := w.sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s on %s after position %d: %v", typ, stream, w.sub.Position(), err)
		}
		w.pending = batch
	}
}

func TestJobRunsOnARealAgent(t *testing.T) {
	srv := startServer(t, time.Second)
	sub := &watcher{sub: srv.store.Subscribe(0)}
	defer sub.sub.Close()
	startAgent(t, srv, "a1")
	res := srv.Core().Submit(srv.ctx, "alice", []core.SubmitRequest{{Spec: domain.JobSpec{Name: "colours",
		Script: `printf '\033[31mred\033[0m\n'; echo "second line"; exit 3`}}})
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	id := res[0].JobID
	waitEvent(t, srv.ctx, sub, domain.TypeJobFailed, domain.JobStream(id))
	// The log is complete once the finish is recorded; follow it to EOF.
	f, err := srv.logs.Follow(srv.ctx, id, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	want := "\x1b[31mred\x1b[0m\r\nsecond line\r\n"
	if string(b) != want {
		t.Fatalf("log = %q, want %q", b, want)
	}
	j, err := srv.Core().Job(srv.ctx, id)
	if err != nil || j.ExitCode != 3 || j.Status != domain.JobStatusFailed {
		t.Fatalf("job = %+v, %v; want failed with exit 3", j.Status, err)
	}
}

func TestStoppedAgentsJobIsRequeued(t *testing.T) {
	srv := startServer(t, 100*time.Millisecond)
	sub := &watcher{sub: srv.store.Subscribe(0)}
	defer sub.sub.Close()
	ctx, stop := context.WithCancel(srv.ctx)
	a1, err := agent.New(agent.Config{Server: srv.GRPCAddr(), Name: "leaving", Slots: 1, WorkDir: t.TempDir(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a1.Run(ctx) }()
	<-a1.Welcomed()
	res := srv.Core().Submit(srv.ctx, "alice", []core.SubmitRequest{{Spec: domain.JobSpec{Name: "long", Script: "sleep 1000"}}})
	id := res[0].JobID
	waitEvent(t, srv.ctx, sub, domain.TypeJobStarted, domain.JobStream(id))
	stop() // the agent cancels its job and says goodbye: deregistered, the attempt re-queued
	<-done
	waitEvent(t, srv.ctx, sub, domain.TypeJobRequeued, domain.JobStream(id))
	waitEvent(t, srv.ctx, sub, domain.TypeWorkerDeregistered, domain.WorkerStream(a1.WorkerID()))
	// A second agent picks up attempt 2.
	a2 := startAgent(t, srv, "rescuer")
	waitEvent(t, srv.ctx, sub, domain.TypeJobStarted, domain.JobStream(id))
	j, err := srv.Core().Job(srv.ctx, id)
	if err != nil || j.Attempt != 2 || j.Worker != a2.WorkerID() {
		t.Fatalf("job = attempt %d on %s, %v; want attempt 2 on %s", j.Attempt, j.Worker, err, a2.WorkerID())
	}
	if _, err := srv.Core().Cancel(srv.ctx, id, "alice", "test over"); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, srv.ctx, sub, domain.TypeJobCancelled, domain.JobStream(id))
}
