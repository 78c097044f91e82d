package core_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/memory"
)

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeAgent records what the core sends.
type fakeAgent struct {
	assigned chan core.Assignment
	mu       sync.Mutex
	cancels  []string
	fences   []string
}

func newFakeAgent() *fakeAgent { return &fakeAgent{assigned: make(chan core.Assignment, 100)} }

func (a *fakeAgent) Assign(as core.Assignment) error { a.assigned <- as; return nil }
func (a *fakeAgent) Cancel(job string, _ uint32, _ string, _ time.Duration) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancels = append(a.cancels, job)
	return nil
}
func (a *fakeAgent) Fence(job string, _ uint32, _ string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fences = append(a.fences, job)
	return nil
}
func (a *fakeAgent) Drain(string) error { return nil }

type harness struct {
	t     *testing.T
	ctx   context.Context
	store *memory.Store
	core  *core.Core
	clock *clock
	sub   *eventstore.Subscription
	buf   []eventstore.Envelope
}

func start(t *testing.T) *harness {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	clk := &clock{}
	clk.ns.Store(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC).UnixNano())
	s := memory.New(memory.Options{Clock: clk.now})
	c, err := core.New(s, core.Config{HeartbeatInterval: 40 * time.Millisecond, Clock: clk.now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	return &harness{t: t, ctx: ctx, store: s, core: c, clock: clk, sub: s.Subscribe(0)}
}

// waitEvent reads the log until an event of type typ on stream appears.
func (h *harness) waitEvent(typ, stream string) eventstore.Envelope {
	h.t.Helper()
	for {
		for len(h.buf) > 0 {
			e := h.buf[0]
			h.buf = h.buf[1:]
			if e.Type == typ && e.StreamID == stream {
				return e
			}
		}
		batch, err := h.sub.Next(h.ctx)
		if err != nil {
			h.t.Fatalf("waiting for %s on %s: %v", typ, stream, err)
		}
		h.buf = batch
	}
}

func (h *harness) connect(name string, slots int64) (string, *fakeAgent) {
	h.t.Helper()
	a := newFakeAgent()
	id, stale, err := h.core.Connect(h.ctx, core.Hello{Name: name, Capacity: domain.Resources{Slots: slots, CPUMillis: 4000, MemoryBytes: 8 << 30},
		Labels: map[string]string{"os": "linux"}, AgentVersion: "test", ProtocolVersion: 1}, a)
	if err != nil || len(stale) != 0 {
		h.t.Fatalf("Connect() = %s, %v, %v", id, stale, err)
	}
	return id, a
}

func (h *harness) submit(spec domain.JobSpec) string {
	h.t.Helper()
	res := h.core.Submit(h.ctx, "alice", []core.SubmitRequest{{Spec: spec}})
	if res[0].Err != nil {
		h.t.Fatalf("Submit() = %v", res[0].Err)
	}
	return res[0].JobID
}

func (h *harness) report(worker string, r core.Report) {
	h.t.Helper()
	if errs := h.core.ReportMany(h.ctx, worker, []core.Report{r}); errs[0] != nil {
		h.t.Fatalf("report %+v = %v", r, errs[0])
	}
}

func TestJobRunsToSuccess(t *testing.T) {
	h := start(t)
	w, agent := h.connect("w1", 2)
	id := h.submit(domain.JobSpec{Name: "hello", Script: "echo hi", Env: map[string]string{"A": "1"}})
	as := <-agent.assigned
	if as.JobID != id || as.Attempt != 1 || as.Script != "echo hi" || as.Env["A"] != "1" {
		t.Fatalf("assignment = %+v", as)
	}
	h.report(w, core.Report{Kind: core.ReportAccepted, JobID: id, Attempt: 1})
	h.report(w, core.Report{Kind: core.ReportStarted, JobID: id, Attempt: 1})
	h.report(w, core.Report{Kind: core.ReportFinished, JobID: id, Attempt: 1, ExitCode: 0})
	e := h.waitEvent(domain.TypeJobSucceeded, domain.JobStream(id))
	if err := h.core.WaitFor(h.ctx, e.Position); err != nil {
		t.Fatal(err)
	}
	v, _ := h.core.Jobs().Get(id)
	if v.Status != domain.JobStatusSucceeded || v.Worker != w || v.ExitCode != 0 {
		t.Fatalf("job view = %+v", v)
	}
	if wv, _ := h.core.Workers().Get(w); wv.ActiveJobs != 0 {
		t.Fatalf("worker still holds %d jobs", wv.ActiveJobs)
	}
	// A report for the ended attempt is fenced.
	errs := h.core.ReportMany(h.ctx, w, []core.Report{{Kind: core.ReportStarted, JobID: id, Attempt: 1}})
	if errs[0] == nil {
		t.Fatalf("report after the job ended = nil error")
	}
}

func TestLostWorkerRequeuesItsJob(t *testing.T) {
	h := start(t)
	w1, a1 := h.connect("w1", 1)
	id := h.submit(domain.JobSpec{Name: "long", Script: "sleep 100"})
	<-a1.assigned
	h.report(w1, core.Report{Kind: core.ReportAccepted, JobID: id, Attempt: 1})
	h.report(w1, core.Report{Kind: core.ReportStarted, JobID: id, Attempt: 1})
	// A second worker connects, then the first goes silent past LostAfter.
	w2, a2 := h.connect("w2", 1)
	h.core.Disconnect(w1, a1)
	h.clock.advance(time.Second)
	_ = h.core.Heartbeat(w2, core.Telemetry{CPUPercent: 1})
	h.waitEvent(domain.TypeWorkerLost, domain.WorkerStream(w1))
	h.waitEvent(domain.TypeJobRequeued, domain.JobStream(id))
	as := <-a2.assigned
	if as.JobID != id || as.Attempt != 2 {
		t.Fatalf("re-queued assignment = %+v, want attempt 2 of %s", as, id)
	}
	// The old agent's report for attempt 1 is fenced.
	if errs := h.core.ReportMany(h.ctx, w1, []core.Report{{Kind: core.ReportFinished, JobID: id, Attempt: 1}}); errs[0] == nil {
		t.Fatalf("stale report accepted")
	}
}

func TestCancel(t *testing.T) {
	h := start(t)
	// Queued (no worker): cancelled at once.
	q := h.submit(domain.JobSpec{Name: "q", Script: "true"})
	if j, err := h.core.Cancel(h.ctx, q, "alice", "not needed"); err != nil || j.Status != domain.JobStatusCancelled {
		t.Fatalf("Cancel(queued) = %+v, %v", j.Status, err)
	}
	// Running: the agent is told, and the job ends when it reports.
	w, a := h.connect("w1", 1)
	id := h.submit(domain.JobSpec{Name: "r", Script: "sleep 100"})
	<-a.assigned
	h.report(w, core.Report{Kind: core.ReportStarted, JobID: id, Attempt: 1})
	if j, err := h.core.Cancel(h.ctx, id, "alice", ""); err != nil || j.Status != domain.JobStatusRunning || !j.CancelRequested {
		t.Fatalf("Cancel(running) = %+v, %v", j, err)
	}
	e := h.waitEvent(domain.TypeJobCancelRequested, domain.JobStream(id))
	if err := h.core.WaitFor(h.ctx, e.Position); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	cancels := append([]string(nil), a.cancels...)
	a.mu.Unlock()
	if len(cancels) != 1 || cancels[0] != id {
		t.Fatalf("agent got cancels %v, want [%s]", cancels, id)
	}
	h.report(w, core.Report{Kind: core.ReportFinished, JobID: id, Attempt: 1, ExitCode: -1, Signal: "SIGTERM"})
	h.waitEvent(domain.TypeJobCancelled, domain.JobStream(id))
}

func TestUnschedulableJobIsParkedWithReason(t *testing.T) {
	h := start(t)
	h.connect("w1", 1)
	id := h.submit(domain.JobSpec{Name: "gpu", Script: "true", Selector: map[string]string{"gpu": "true"}})
	e := h.waitEvent(domain.TypeJobParked, domain.JobStream(id))
	if err := h.core.WaitFor(h.ctx, e.Position); err != nil {
		t.Fatal(err)
	}
	v, _ := h.core.Jobs().Get(id)
	if v.Parked == "" {
		t.Fatalf("parked job has no reason: %+v", v)
	}
	t.Logf("parked: %s", v.Parked)
}
