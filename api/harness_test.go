package api_test

import (
	"context"
	"errors"
	"hash/crc32"
	"log/slog"
	"net"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/secrets"
	"github.com/hodei-jobs/hodei/web"
)

// clock is a settable test clock: nothing times out unless a test moves it.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeAgent records what the core sends to it.
type fakeAgent struct {
	assigned chan core.Assignment
	mu       sync.Mutex
	cancels  []string
}

func newFakeAgent() *fakeAgent { return &fakeAgent{assigned: make(chan core.Assignment, 100)} }

func (a *fakeAgent) Assign(as core.Assignment) error { a.assigned <- as; return nil }
func (a *fakeAgent) Cancel(job string, _ uint32, _ string, _ time.Duration) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancels = append(a.cancels, job)
	return nil
}
func (a *fakeAgent) Fence(string, uint32, string) error { return nil }
func (a *fakeAgent) Drain(string) error                 { return nil }

// harness is a core on a memory store with the API served over gRPC on a
// loopback port and over HTTP by httptest.
type harness struct {
	t       *testing.T
	ctx     context.Context
	clock   *clock
	store   *memory.Store
	core    *core.Core
	logs    *logstore.Store
	secrets *secrets.Store
	svc     *api.Service
	client  jobpb.JobServiceClient
	addr    string
	http    *httptest.Server
}

type harnessOptions struct {
	auth      api.Authenticator
	ui        bool // serve the web UI
	providers func() any
}

func start(t *testing.T, opts ...harnessOptions) *harness {
	t.Helper()
	var o harnessOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	clk := &clock{}
	clk.ns.Store(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC).UnixNano())
	store := memory.New(memory.Options{Clock: clk.now})
	logs, err := logstore.Open(t.TempDir(), logstore.Options{SyncInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := secrets.Open(t.TempDir(), secrets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := core.New(store, core.Config{HeartbeatInterval: 40 * time.Millisecond, Clock: clk.now,
		Logger: slog.New(slog.DiscardHandler), Secrets: sec})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := c.Run(ctx); err != nil {
			t.Errorf("core Run() = %v", err)
		}
	}()

	aopts := api.Options{Logger: slog.New(slog.DiscardHandler), Authenticator: o.auth, Keepalive: time.Hour, Providers: o.providers}
	if o.ui {
		aopts.UI = web.Handler()
	}
	svc := api.New(c, logs, sec, aopts)
	g := grpc.NewServer()
	svc.RegisterGRPC(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("Serve() = %v", err)
		}
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(svc.HTTPHandler())
	t.Cleanup(func() {
		_ = conn.Close()
		hs.CloseClientConnections()
		hs.Close()
		g.Stop()
		cancel()
		wg.Wait()
		if err := logs.Close(); err != nil {
			t.Errorf("logs Close() = %v", err)
		}
	})
	return &harness{t: t, ctx: ctx, clock: clk, store: store, core: c, logs: logs, secrets: sec, svc: svc,
		client: jobpb.NewJobServiceClient(conn), addr: lis.Addr().String(), http: hs}
}

func (h *harness) connect(name string, slots int64) (string, *fakeAgent) {
	h.t.Helper()
	a := newFakeAgent()
	id, stale, err := h.core.Connect(h.ctx, core.Hello{Name: name, Capacity: domain.Resources{Slots: slots, CPUMillis: 4000, MemoryBytes: 8 << 30},
		Labels: map[string]string{"os": "linux"}, AgentVersion: "test", ProtocolVersion: 1}, a)
	if err != nil || len(stale) != 0 {
		h.t.Fatalf("Connect() = %s, %v, %v", id, stale, err)
	}
	// Let the read models see the worker (reads do not wait for writes
	// made outside the API).
	head, err := h.store.Head(h.ctx)
	if err == nil {
		err = h.core.WaitFor(h.ctx, head.Position)
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return id, a
}

func (h *harness) report(worker string, r core.Report) {
	h.t.Helper()
	if errs := h.core.ReportMany(h.ctx, worker, []core.Report{r}); errs[0] != nil {
		h.t.Fatalf("report %+v = %v", r, errs[0])
	}
}

// assignment waits for the agent's next assignment.
func (h *harness) assignment(a *fakeAgent) core.Assignment {
	h.t.Helper()
	select {
	case as := <-a.assigned:
		return as
	case <-h.ctx.Done():
		h.t.Fatal("no assignment before the deadline")
		return core.Assignment{}
	}
}

// start reports an assignment accepted and started.
func (h *harness) run(worker string, as core.Assignment) {
	h.t.Helper()
	h.report(worker, core.Report{Kind: core.ReportAccepted, JobID: as.JobID, Attempt: as.Attempt})
	h.report(worker, core.Report{Kind: core.ReportStarted, JobID: as.JobID, Attempt: as.Attempt})
}

// write appends output to an attempt's log, as hwp does for LogChunks.
func (h *harness) write(as core.Assignment, data string) {
	h.t.Helper()
	st, err := h.logs.Stat(as.JobID, as.Attempt)
	off := st.Received
	if errors.Is(err, logstore.ErrNotFound) {
		off = 0
	} else if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.logs.Append(as.JobID, as.Attempt, off, []byte(data)); err != nil {
		h.t.Fatalf("Append() = %v", err)
	}
}

// finish reports the attempt finished with exit, then finishes its log, in
// the order hwp does.
func (h *harness) finish(worker string, as core.Assignment, exit int) {
	h.t.Helper()
	h.report(worker, core.Report{Kind: core.ReportFinished, JobID: as.JobID, Attempt: as.Attempt, ExitCode: exit})
	var all []byte
	buf := make([]byte, 4096)
	for {
		n, err := h.logs.Read(as.JobID, as.Attempt, uint64(len(all)), buf)
		all = append(all, buf[:n]...)
		if n == 0 || err != nil {
			break
		}
	}
	if err := h.logs.Finish(as.JobID, as.Attempt, uint64(len(all)), crc32.Checksum(all, crc32.MakeTable(crc32.Castagnoli))); err != nil {
		h.t.Fatalf("log Finish() = %v", err)
	}
}

func (h *harness) submit(spec *jobpb.JobSpec, key string) *jobpb.Job {
	h.t.Helper()
	resp, err := h.client.SubmitJobs(h.ctx, &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{IdempotencyKey: key, Spec: spec}}})
	if err != nil {
		h.t.Fatalf("SubmitJobs() = %v", err)
	}
	return resp.GetResults()[0].GetJob()
}

// waitEvent reads the log from position after until an event of type typ
// on stream appears.
func (h *harness) waitEvent(after uint64, typ, stream string) eventstore.Envelope {
	h.t.Helper()
	sub := h.store.Subscribe(after)
	defer sub.Close()
	for {
		batch, err := sub.Next(h.ctx)
		if err != nil {
			h.t.Fatalf("waiting for %s on %s: %v", typ, stream, err)
		}
		for _, e := range batch {
			if e.Type == typ && e.StreamID == stream {
				return e
			}
		}
	}
}
