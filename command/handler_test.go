package command_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/memory"
)

var t0 = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

func submit(id string) domain.Submit {
	return domain.Submit{JobID: id, Submitter: "alice", At: t0, Spec: domain.JobSpec{Name: id, Script: "true"}}
}

var meta = command.Meta{Actor: "user:alice"}

func TestRunAndCache(t *testing.T) {
	ctx := context.Background()
	s := memory.New(memory.Options{})
	h := command.New(s, command.NewCodec(), command.Options{})
	res, err := h.Job(ctx, "j1", submit("j1"), meta)
	if err != nil || res.State.Status != domain.JobStatusQueued || res.Append.Version != 1 {
		t.Fatalf("Job(submit) = %+v, %v", res, err)
	}
	if _, err := h.Job(ctx, "j1", submit("j1"), meta); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("second submit = %v, want ErrAlreadyExists", err)
	}
	// A second handler on the same store has no cache: it folds the stream.
	h2 := command.New(s, command.NewCodec(), command.Options{})
	res, err = h2.Job(ctx, "j1", domain.Schedule{WorkerID: "w1", At: t0}, meta)
	if err != nil || res.State.Status != domain.JobStatusScheduled || res.Append.Version != 2 {
		t.Fatalf("Job(schedule) on a fresh handler = %+v, %v", res, err)
	}
	// The first handler's cache is stale now: its cancel conflicts, reloads,
	// and decides against the scheduled job (a cancel request, not a cancel).
	res, err = h.Job(ctx, "j1", domain.Cancel{By: "user:alice", Reason: "no longer needed", At: t0}, meta)
	if err != nil || res.State.Status != domain.JobStatusScheduled || !res.State.CancelRequested || res.Append.Version != 3 {
		t.Fatalf("Job(cancel) with a stale cache = %+v, %v", res.State, err)
	}
	// A no-op decides nothing and appends nothing.
	res, err = h.Job(ctx, "j1", domain.Cancel{By: "user:alice", Reason: "again", At: t0}, meta)
	if err != nil || len(res.Events) != 0 {
		t.Fatalf("repeated cancel = %+v, %v; want no events", res, err)
	}
	if head, _ := s.Head(ctx); head.Position != 3 {
		t.Fatalf("log holds %d events, want 3", head.Position)
	}
}

func TestConcurrentCommandsOnOneJob(t *testing.T) {
	ctx := context.Background()
	s := memory.New(memory.Options{})
	handlers := []*command.Handler{
		command.New(s, command.NewCodec(), command.Options{}),
		command.New(s, command.NewCodec(), command.Options{}),
	}
	if _, err := handlers[0].Job(ctx, "j", submit("j"), meta); err != nil {
		t.Fatal(err)
	}
	// Many schedulers race to schedule the same queued job: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := handlers[i%2].Job(ctx, "j", domain.Schedule{WorkerID: fmt.Sprintf("w%d", i), At: t0}, meta)
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, domain.ErrInvalidTransition) {
				t.Errorf("schedule = %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d schedules won, want 1", wins)
	}
}

func TestBatch(t *testing.T) {
	ctx := context.Background()
	s := memory.New(memory.Options{})
	h := command.New(s, command.NewCodec(), command.Options{})
	cmds := []command.JobCommand{
		{JobID: "a", Cmd: submit("a"), Meta: meta},
		{JobID: "b", Cmd: submit("b"), Meta: meta},
		{JobID: "a", Cmd: domain.Schedule{WorkerID: "w1", At: t0}, Meta: meta}, // after a's submit
		{JobID: "c", Cmd: domain.Schedule{WorkerID: "w1", At: t0}, Meta: meta}, // no such job
		{JobID: "d", Cmd: domain.Submit{JobID: "d", At: t0}, Meta: meta},       // invalid spec
	}
	res, errs := h.Jobs(ctx, cmds)
	if errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("batch errors = %v", errs)
	}
	if !errors.Is(errs[3], domain.ErrNotFound) || !errors.Is(errs[4], domain.ErrInvalidJobSpec) {
		t.Fatalf("batch errors = %v, want not found and invalid spec", errs)
	}
	if res[2].State.Status != domain.JobStatusScheduled || res[2].Append.Version != 2 {
		t.Fatalf("a after batch = %+v", res[2])
	}
	if head, _ := s.Head(ctx); head.Position != 3 {
		t.Fatalf("log holds %d events, want 3", head.Position)
	}
}

// A decision that appends nothing is not checked by the store, so one made
// against a stale cached state must be confirmed against the stream: a
// report for an attempt another handler just scheduled is not "not assigned".
func TestStaleCacheIsConfirmedBeforeAnError(t *testing.T) {
	ctx := context.Background()
	s := memory.New(memory.Options{})
	h1 := command.New(s, command.NewCodec(), command.Options{})
	h2 := command.New(s, command.NewCodec(), command.Options{})
	for _, id := range []string{"a", "b"} {
		if _, err := h1.Job(ctx, id, submit(id), meta); err != nil { // h1 caches both at version 1
			t.Fatal(err)
		}
		if _, err := h2.Job(ctx, id, domain.Schedule{WorkerID: "w1", At: t0}, meta); err != nil {
			t.Fatal(err)
		}
	}
	res, err := h1.Job(ctx, "a", domain.Accept{WorkerID: "w1", Attempt: 1, At: t0}, meta)
	if err != nil || res.State.Status != domain.JobStatusAccepted {
		t.Fatalf("accept through a stale cache = %v, %v; want accepted", res.State.Status, err)
	}
	results, errs := h1.Jobs(ctx, []command.JobCommand{
		{JobID: "b", Cmd: domain.Accept{WorkerID: "w1", Attempt: 1, At: t0}, Meta: meta},
		{JobID: "b", Cmd: domain.Start{WorkerID: "w1", Attempt: 1, At: t0}, Meta: meta},
	})
	if errs[0] != nil || errs[1] != nil || results[1].State.Status != domain.JobStatusRunning {
		t.Fatalf("batch through a stale cache = %v, %v; want running", results[1].State.Status, errs)
	}
	// A real error is still an error after the confirmation.
	if _, err := h1.Job(ctx, "b", domain.Start{WorkerID: "w2", Attempt: 1, At: t0}, meta); !errors.Is(err, domain.ErrStaleAttempt) {
		t.Fatalf("report from the wrong worker = %v, want ErrStaleAttempt", err)
	}
}

// RunJobs reports the same outcomes as Jobs, and the state it caches for a
// job is the fold of the stream: a later command against the cache decides
// from the state the batch left.
func TestRunJobsCachesTheBatchState(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	s := &countingStore{Store: mem}
	h := command.New(s, command.NewCodec(), command.Options{})
	errs := h.RunJobs(ctx, []command.JobCommand{
		{JobID: "a", Cmd: submit("a"), Meta: meta},
		{JobID: "a", Cmd: domain.Schedule{WorkerID: "w1", At: t0}, Meta: meta},
		{JobID: "a", Cmd: domain.Schedule{WorkerID: "w2", At: t0}, Meta: meta}, // already scheduled
		{JobID: "c", Cmd: domain.Schedule{WorkerID: "w1", At: t0}, Meta: meta}, // no such job
	})
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], domain.ErrInvalidTransition) || !errors.Is(errs[3], domain.ErrNotFound) {
		t.Fatalf("RunJobs errors = %v", errs)
	}
	// The cached state must be "scheduled on w1 at version 2": accepting on
	// w1 decides from the cache alone (no read of the stream) and appends at
	// version 3 with no conflict.
	reads := s.reads.Load()
	res, err := h.Job(ctx, "a", domain.Accept{WorkerID: "w1", Attempt: 1, At: t0}, meta)
	if err != nil || res.State.Status != domain.JobStatusAccepted || res.Append.Version != 3 {
		t.Fatalf("accept on w1 = %+v, %v", res.State, err)
	}
	if n := s.reads.Load() - reads; n != 0 {
		t.Fatalf("%d stream reads to accept after the batch, want 0: the batch did not cache its state", n)
	}
	fresh := command.New(s, command.NewCodec(), command.Options{})
	st, err := fresh.LoadJob(ctx, "a")
	if err != nil || st.Status != res.State.Status || st.Worker != "w1" || st.Attempt != 1 {
		t.Fatalf("stream fold = %+v, %v; cached = %+v", st, err, res.State)
	}
}

// countingStore counts ReadStream calls: cache misses and confirmations.
type countingStore struct {
	eventstore.Store
	reads atomic.Int64
}

func (c *countingStore) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.Envelope, error) {
	c.reads.Add(1)
	return c.Store.ReadStream(ctx, stream, from, limit)
}

// TestEndedJobsLeaveTheCache checks that a job that has ended makes room in
// the cache for the jobs still in play, and is read from its stream when a
// command reaches it later.
func TestEndedJobsLeaveTheCache(t *testing.T) {
	ctx := context.Background()
	s := &countingStore{Store: memory.New(memory.Options{})}
	h := command.New(s, command.NewCodec(), command.Options{CacheSize: 2})
	for _, id := range []string{"a", "b"} {
		if _, err := h.Job(ctx, id, submit(id), meta); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := h.Job(ctx, "a", domain.Cancel{By: "alice", Reason: "test", At: t0}, meta); err != nil || res.State.Status != domain.JobStatusCancelled {
		t.Fatalf("cancel a = %+v, %v", res.State, err)
	}
	// a has ended: c takes its place and b stays cached.
	if _, err := h.Job(ctx, "c", submit("c"), meta); err != nil {
		t.Fatal(err)
	}
	reads := s.reads.Load()
	if res, err := h.Job(ctx, "b", domain.Schedule{WorkerID: "w1", At: t0}, meta); err != nil || res.Append.Version != 2 {
		t.Fatalf("schedule b = %+v, %v", res, err)
	}
	if n := s.reads.Load() - reads; n != 0 {
		t.Errorf("%d stream reads to schedule b, want 0: the ended job a kept its place in the cache", n)
	}
	reads = s.reads.Load()
	st, err := h.LoadJob(ctx, "a")
	if err != nil || st.Status != domain.JobStatusCancelled {
		t.Fatalf("LoadJob(a) = %+v, %v", st, err)
	}
	if n := s.reads.Load() - reads; n == 0 {
		t.Error("LoadJob(a) read no stream: the ended job is still cached")
	}
}
