package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/projections"
)

func TestJobAndWorkerViews(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	s := memory.New(memory.Options{})
	codec := command.NewCodec()
	h := command.New(s, codec, command.Options{})
	meta := command.Meta{Actor: "user:test"}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	info := domain.WorkerInfo{Name: "w1", Labels: map[string]string{"os": "linux"},
		Capacity: domain.Resources{Slots: 4, CPUMillis: 4000, MemoryBytes: 8 << 30}, AgentVersion: "v1", ProtocolVersion: 1}
	must(h.Worker(ctx, "w1", domain.Register{WorkerID: "w1", Info: info, At: at}, meta))
	for i := 0; i < 4; i++ {
		id := fmt.Sprintf("j%d", i)
		must(h.Job(ctx, id, domain.Submit{JobID: id, Submitter: "alice", At: at,
			Spec: domain.JobSpec{Name: id, Script: "true", Resources: domain.Resources{CPUMillis: 500}}}, meta))
	}
	for i := 0; i < 3; i++ {
		must(h.Job(ctx, fmt.Sprintf("j%d", i), domain.Schedule{WorkerID: "w1", At: at}, meta))
	}
	must(h.Job(ctx, "j0", domain.Start{WorkerID: "w1", Attempt: 1, At: at}, meta))
	must(h.Job(ctx, "j0", domain.Finish{WorkerID: "w1", Attempt: 1, ExitCode: 0, At: at.Add(time.Second)}, meta))
	must(h.Job(ctx, "j1", domain.Start{WorkerID: "w1", Attempt: 1, At: at}, meta))
	must(h.Job(ctx, "j1", domain.Finish{WorkerID: "w1", Attempt: 1, ExitCode: 3, At: at.Add(time.Second)}, meta))
	must(h.Job(ctx, "j2", domain.FailAttempt{WorkerID: "w1", Attempt: 1, Reason: domain.ReasonAgentLost, At: at}, meta))
	must(h.Job(ctx, "j3", domain.Cancel{By: "user:alice", Reason: "test", At: at}, meta))

	jobs, workers := projections.NewJobs(), projections.NewWorkers()
	r, err := projections.NewRunner(s, codec, projections.RunnerOptions{}, jobs, workers)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]domain.JobStatus{"j0": domain.JobStatusSucceeded, "j1": domain.JobStatusFailed,
		"j2": domain.JobStatusQueued, "j3": domain.JobStatusCancelled}
	for id, st := range want {
		v, ok := jobs.Get(id)
		if !ok || v.Status != st {
			t.Errorf("Get(%s) = %+v, want status %s", id, v, st)
		}
	}
	if v, _ := jobs.Get("j1"); v.ExitCode != 3 || v.Attempt != 1 {
		t.Errorf("j1 = %+v, want exit 3 on attempt 1", v)
	}
	w, _ := workers.Get("w1")
	if w.ActiveJobs != 0 || w.Reserved != (domain.Resources{}) || w.Capacity.Slots != 4 {
		t.Errorf("worker = %+v, want nothing reserved after every attempt ended", w)
	}
	if got := jobs.Counts(); got[domain.JobStatusQueued] != 1 || got[domain.JobStatusSucceeded] != 1 {
		t.Errorf("Counts() = %v", got)
	}
	page, next := jobs.List(projections.JobFilter{Limit: 2})
	if len(page) != 2 || page[0].ID != "j0" || next != 2 {
		t.Errorf("List(limit 2) = %v, next %d", page, next)
	}
	page, next = jobs.List(projections.JobFilter{After: next, Limit: 2})
	if len(page) != 2 || page[0].ID != "j2" || next != 0 {
		t.Errorf("List(after 2) = %v, next %d", page, next)
	}
	if page, _ := jobs.List(projections.JobFilter{Statuses: []domain.JobStatus{domain.JobStatusFailed}}); len(page) != 1 || page[0].ID != "j1" {
		t.Errorf("List(failed) = %v", page)
	}

	// Snapshot round trip hashes the same.
	for _, p := range []projections.Projection{jobs, workers} {
		h1, err := projections.StateHash(p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := p.MarshalState()
		if err := p.UnmarshalState(b); err != nil {
			t.Fatalf("%s: UnmarshalState() = %v", p.Name(), err)
		}
		if h2, _ := projections.StateHash(p); h1 != h2 {
			t.Errorf("%s: state hash changed across a snapshot round trip", p.Name())
		}
	}
}

// The state hash must not depend on map iteration order: many workers with
// many active jobs hash the same every time.
func TestWorkersStateIsDeterministic(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	s := memory.New(memory.Options{})
	codec := command.NewCodec()
	h := command.New(s, codec, command.Options{})
	meta := command.Meta{Actor: "user:test"}
	for w := 0; w < 5; w++ {
		id := fmt.Sprintf("w%d", w)
		info := domain.WorkerInfo{Name: id, Labels: map[string]string{"a": "1", "b": "2", "c": "3"},
			Capacity: domain.Resources{Slots: 100, CPUMillis: 100000, MemoryBytes: 1 << 40}, AgentVersion: "t", ProtocolVersion: 1}
		if _, err := h.Worker(ctx, id, domain.Register{WorkerID: id, Info: info, At: at}, meta); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 60; i++ {
		id := fmt.Sprintf("j%d", i)
		if _, errs := h.Jobs(ctx, []command.JobCommand{
			{JobID: id, Meta: meta, Cmd: domain.Submit{JobID: id, At: at, Submitter: "t", Spec: domain.JobSpec{Name: id, Script: "true"}}},
			{JobID: id, Meta: meta, Cmd: domain.Schedule{WorkerID: fmt.Sprintf("w%d", i%5), At: at}},
		}); errs[1] != nil {
			t.Fatal(errs[1])
		}
	}
	var first [32]byte
	for i := 0; i < 20; i++ {
		w := projections.NewWorkers()
		r, _ := projections.NewRunner(s, codec, projections.RunnerOptions{}, w)
		if err := r.Open(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		hash, err := projections.StateHash(w)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = hash
		} else if hash != first {
			t.Fatalf("rebuild %d hashes %x, the first %x: the encoding depends on map order", i, hash, first)
		}
	}
}
