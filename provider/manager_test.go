package provider_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/provider"
)

var _ provider.Cluster = (*core.Core)(nil)

// fakeDriver "starts" instances as in-process agents that talk to the core
// directly: enough to test the Manager's decisions without a platform.
type fakeDriver struct {
	c        *core.Core
	mu       sync.Mutex
	inst     map[string]*fakeInst // by handle
	starts   int
	peak     int
	startErr error
	connect  bool // agents connect (false: they stay pending forever)
	// connectFirst makes Start return only after the agent registered (the
	// agent wins the race with the platform's start call).
	connectFirst bool
	frozen       map[string]bool // instance id -> heartbeats stopped
	jobsRun      map[string][]string
}

type fakeInst struct {
	in     provider.Instance
	owner  string
	cancel context.CancelFunc
	done   chan struct{}
}

func newFakeDriver(c *core.Core) *fakeDriver {
	return &fakeDriver{c: c, inst: map[string]*fakeInst{}, connect: true, jobsRun: map[string][]string{}, frozen: map[string]bool{}}
}

func (d *fakeDriver) Kind() string { return "fake" }

func (d *fakeDriver) running() int {
	n := 0
	for _, in := range d.inst {
		if in.in.Phase != provider.PhaseExited {
			n++
		}
	}
	return n
}

func (d *fakeDriver) Start(ctx context.Context, req provider.StartRequest) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.starts++
	if d.startErr != nil {
		return "", d.startErr
	}
	if req.SecretEnv["HODEI_TOKEN"] != "token-"+req.InstanceID {
		return "", fmt.Errorf("fake: no one-time token for %s", req.InstanceID)
	}
	handle := "h-" + req.InstanceID
	actx, cancel := context.WithCancel(context.Background())
	fi := &fakeInst{in: provider.Instance{InstanceID: req.InstanceID, Handle: handle, Phase: provider.PhasePending, Created: time.Now()},
		owner: req.Owner, cancel: cancel, done: make(chan struct{})}
	d.inst[handle] = fi
	d.peak = max(d.peak, d.running())
	if !d.connect {
		return handle, nil
	}
	fi.in.Phase = provider.PhaseRunning
	labels := map[string]string{}
	for _, kv := range strings.Split(req.Env["HODEI_LABELS"], ",") {
		k, v, _ := strings.Cut(kv, "=")
		labels[k] = v
	}
	go d.runAgent(actx, fi, labels)
	if d.connectFirst {
		d.mu.Unlock()
		for !d.registered(req.InstanceID) {
			time.Sleep(5 * time.Millisecond)
		}
		d.mu.Lock()
	}
	return handle, nil
}

// fakeAgent is the core.Agent side of an in-process agent.
type fakeAgent struct {
	assign chan core.Assignment
	drain  chan struct{}
	once   sync.Once
}

func (a *fakeAgent) Assign(as core.Assignment) error { a.assign <- as; return nil }
func (a *fakeAgent) Cancel(string, uint32, string, time.Duration) error {
	return nil
}
func (a *fakeAgent) Fence(string, uint32, string) error { return nil }
func (a *fakeAgent) Drain(string) error {
	a.once.Do(func() { close(a.drain) })
	return nil
}

func (d *fakeDriver) runAgent(ctx context.Context, fi *fakeInst, labels map[string]string) {
	defer close(fi.done)
	a := &fakeAgent{assign: make(chan core.Assignment, 16), drain: make(chan struct{})}
	id, _, err := d.c.Connect(ctx, core.Hello{Name: fi.in.InstanceID, Labels: labels,
		Capacity: domain.Resources{Slots: 1, CPUMillis: 1000, MemoryBytes: 1 << 30}, AgentVersion: "fake", ProtocolVersion: 1}, a)
	if err != nil {
		d.exit(fi, "connect: "+err.Error())
		return
	}
	defer d.c.Disconnect(id, a)
	hb := time.NewTicker(20 * time.Millisecond)
	defer hb.Stop()
	running, draining := 0, false
	drain := a.drain
	finished := make(chan core.Assignment, 16)
	for {
		select {
		case <-ctx.Done(): // killed
			return
		case <-hb.C:
			d.mu.Lock()
			frozen := d.frozen[fi.in.InstanceID]
			d.mu.Unlock()
			if !frozen {
				_ = d.c.Heartbeat(id, core.Telemetry{At: time.Now(), FreeSlots: 1 - running})
			}
		case as := <-a.assign:
			running++
			d.mu.Lock()
			d.jobsRun[fi.in.InstanceID] = append(d.jobsRun[fi.in.InstanceID], as.JobID)
			d.mu.Unlock()
			d.c.ReportMany(ctx, id, []core.Report{{Kind: core.ReportAccepted, JobID: as.JobID, Attempt: as.Attempt},
				{Kind: core.ReportStarted, JobID: as.JobID, Attempt: as.Attempt}})
			go func() {
				select {
				case <-time.After(30 * time.Millisecond):
					finished <- as
				case <-ctx.Done():
				}
			}()
		case as := <-finished:
			running--
			d.c.ReportMany(ctx, id, []core.Report{{Kind: core.ReportFinished, JobID: as.JobID, Attempt: as.Attempt}})
			if draining && running == 0 {
				_ = d.c.Leave(ctx, id, "drained")
				d.exit(fi, "")
				return
			}
		case <-drain:
			draining, drain = true, nil
			if running == 0 {
				_ = d.c.Leave(ctx, id, "drained")
				d.exit(fi, "")
				return
			}
		}
	}
}

func (d *fakeDriver) registered(instance string) bool {
	for _, w := range d.c.Workers().List() {
		if w.Labels[provider.AgentLabelInstance] == instance {
			return true
		}
	}
	return false
}

func (d *fakeDriver) exit(fi *fakeInst, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fi.in.Phase = provider.PhaseExited
	fi.in.Reason = "exited with code 0"
	if reason != "" {
		fi.in.Reason = reason
	}
}

// kill simulates a container killed from outside.
func (d *fakeDriver) kill(handle string) {
	d.mu.Lock()
	fi := d.inst[handle]
	d.mu.Unlock()
	fi.cancel()
	<-fi.done
	d.mu.Lock()
	fi.in.Phase, fi.in.Reason = provider.PhaseExited, "exited with code 137"
	d.mu.Unlock()
}

func (d *fakeDriver) Remove(_ context.Context, handle string) error {
	d.mu.Lock()
	fi := d.inst[handle]
	delete(d.inst, handle)
	d.mu.Unlock()
	if fi != nil {
		fi.cancel()
	}
	return nil
}

func (d *fakeDriver) List(_ context.Context, owner string) ([]provider.Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []provider.Instance
	for _, fi := range d.inst {
		if fi.owner == owner {
			out = append(out, fi.in)
		}
	}
	return out, nil
}

func (d *fakeDriver) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.inst)
}

type rig struct {
	t   *testing.T
	ctx context.Context
	c   *core.Core
	d   *fakeDriver
	s   *memory.Store
	run func(cfg provider.Config) *provider.Manager
	// managerCtx, when set, is the context the next run's Manager runs in.
	managerCtx context.Context
}

func newRig(t *testing.T) *rig {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s := memory.New(memory.Options{})
	c, err := core.New(s, core.Config{HeartbeatInterval: 50 * time.Millisecond, AcceptTimeout: time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Run(ctx) }()
	r := &rig{t: t, ctx: ctx, c: c, s: s, d: newFakeDriver(c)}
	r.run = func(cfg provider.Config) *provider.Manager {
		if cfg.Name == "" {
			cfg.Name = "fake"
		}
		cfg.Image, cfg.ServerAddress = "agent:test", "127.0.0.1:1"
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{"pool": "fake"}
		}
		m, err := provider.NewManager(cfg, provider.Options{Owner: "test-owner", Cluster: c, Driver: r.d,
			Credential: func(_ context.Context, id string) (string, error) { return "token-" + id, nil },
			Interval:   20 * time.Millisecond, ListEvery: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		mctx := ctx
		if r.managerCtx != nil {
			mctx = r.managerCtx
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = m.Run(mctx) }()
		return m
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}

func (r *rig) submit(n int) []string {
	r.t.Helper()
	reqs := make([]core.SubmitRequest, n)
	for i := range reqs {
		reqs[i].Spec = domain.JobSpec{Name: fmt.Sprintf("j%d", i), Script: "true", Selector: map[string]string{"pool": "fake"}}
	}
	var ids []string
	for _, res := range r.c.Submit(r.ctx, "alice", reqs) {
		if res.Err != nil {
			r.t.Fatal(res.Err)
		}
		ids = append(ids, res.JobID)
	}
	return ids
}

func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *rig) allSucceeded(ids []string) func() bool {
	return func() bool {
		for _, id := range ids {
			if v, ok := r.c.Jobs().Get(id); !ok || v.Status != domain.JobStatusSucceeded {
				return false
			}
		}
		return true
	}
}

// instanceEvents returns the instance event types in log order.
func (r *rig) instanceEvents() map[string][]string {
	out := map[string][]string{}
	envs, err := r.s.ReadAll(r.ctx, 1, 1<<20)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, e := range envs {
		if agg, id, ok := domain.ParseStream(e.StreamID); ok && agg == "instance" {
			out[id] = append(out[id], e.Type)
		}
	}
	return out
}

func TestStartsAnAgentForAQueuedJobAndRemovesItWhenIdle(t *testing.T) {
	r := newRig(t)
	r.run(provider.Config{Max: 2, IdleTimeout: 200 * time.Millisecond})
	ids := r.submit(1)
	r.waitFor("the job to succeed", r.allSucceeded(ids))
	r.waitFor("the idle instance to go", func() bool { return r.d.count() == 0 && len(r.c.Instances().List()) == 0 })
	evs := r.instanceEvents()
	if len(evs) != 1 {
		t.Fatalf("instances = %v, want one", evs)
	}
	for _, types := range evs {
		want := []string{"instance.requested", "instance.started", "instance.connected", "instance.terminated"}
		if strings.Join(types, " ") != strings.Join(want, " ") {
			t.Errorf("events = %v, want %v", types, want)
		}
	}
}

func TestNeverExceedsMax(t *testing.T) {
	r := newRig(t)
	r.run(provider.Config{Max: 4, IdleTimeout: 100 * time.Millisecond})
	ids := r.submit(20)
	r.waitFor("20 jobs to succeed", r.allSucceeded(ids))
	r.waitFor("every instance to go", func() bool { return r.d.count() == 0 })
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	if r.d.peak > 4 || r.d.peak == 0 {
		t.Errorf("peak instances = %d, want 1..4", r.d.peak)
	}
}

func TestEphemeralRunsOneJobPerInstance(t *testing.T) {
	r := newRig(t)
	r.run(provider.Config{Max: 3, Ephemeral: true, IdleTimeout: time.Minute})
	ids := r.submit(6)
	r.waitFor("6 jobs to succeed", r.allSucceeded(ids))
	r.waitFor("every instance to go", func() bool { return r.d.count() == 0 && len(r.c.Instances().List()) == 0 })
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	total := 0
	for inst, jobs := range r.d.jobsRun {
		if len(jobs) != 1 {
			t.Errorf("instance %s ran %v, want exactly one job", inst, jobs)
		}
		total += len(jobs)
	}
	if total != 6 {
		t.Errorf("%d jobs ran, want 6", total)
	}
}

func TestStartFailureParksJobsAndBacksOff(t *testing.T) {
	r := newRig(t)
	r.d.startErr = fmt.Errorf("image agent:test not found: %w", provider.ErrImage)
	r.run(provider.Config{Max: 2, BackoffMin: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond})
	ids := r.submit(1)
	r.waitFor("the job to be parked with the provider's reason", func() bool {
		v, _ := r.c.Jobs().Get(ids[0])
		return strings.Contains(v.Parked, "image agent:test not found")
	})
	time.Sleep(time.Second)
	r.d.mu.Lock()
	starts := r.d.starts
	r.d.startErr = nil
	r.d.mu.Unlock()
	// 100+200+400+400... ms: at most ~5 attempts in ~1.1s, never a tight loop.
	if starts < 2 || starts > 6 {
		t.Errorf("%d start attempts in ~1s with backoff 100ms..400ms", starts)
	}
	r.waitFor("the job to succeed once the image is there", r.allSucceeded(ids))
}

func TestCancellingAPendingJobRemovesItsInstance(t *testing.T) {
	r := newRig(t)
	r.d.connect = false
	r.run(provider.Config{Max: 2, StartTimeout: time.Minute})
	ids := r.submit(1)
	r.waitFor("an instance to start", func() bool { return r.d.count() == 1 })
	if _, err := r.c.Cancel(r.ctx, ids[0], "alice", ""); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the instance to be removed", func() bool { return r.d.count() == 0 && len(r.c.Instances().List()) == 0 })
}

func TestStartTimeoutFailsWithPlatformReason(t *testing.T) {
	r := newRig(t)
	r.d.connect = false
	r.run(provider.Config{Max: 1, StartTimeout: 300 * time.Millisecond, BackoffMin: time.Hour})
	ids := r.submit(1)
	r.waitFor("the job parked with the start timeout", func() bool {
		v, _ := r.c.Jobs().Get(ids[0])
		return strings.Contains(v.Parked, "did not connect within 300ms")
	})
	if r.d.count() != 0 {
		t.Errorf("%d instances left after the start timeout", r.d.count())
	}
}

func TestKilledInstanceRequeuesItsJob(t *testing.T) {
	r := newRig(t)
	r.run(provider.Config{Max: 2, IdleTimeout: time.Minute})
	// Hold the first job by making agents slow: kill the instance while the
	// job is running.
	ids := r.submit(1)
	var handle string
	r.waitFor("the job to run", func() bool {
		v, _ := r.c.Jobs().Get(ids[0])
		if v.Status == domain.JobStatusSucceeded {
			t.Skip("the job finished before it could be killed")
		}
		if v.Status != domain.JobStatusRunning {
			return false
		}
		for _, iv := range r.c.Instances().List() {
			if iv.WorkerID == v.Worker {
				handle = iv.Handle
			}
		}
		return handle != ""
	})
	r.d.kill(handle)
	r.waitFor("the job to succeed elsewhere", r.allSucceeded(ids))
	v, _ := r.c.Jobs().Get(ids[0])
	if v.Attempt < 2 {
		t.Errorf("job attempt = %d, want a second attempt after the kill", v.Attempt)
	}
}

func TestSweepRemovesInstancesTheLogDoesNotKnow(t *testing.T) {
	r := newRig(t)
	r.d.inst["stray"] = &fakeInst{in: provider.Instance{InstanceID: "stray-1", Handle: "stray", Phase: provider.PhaseRunning},
		owner: "test-owner", cancel: func() {}, done: make(chan struct{})}
	r.d.inst["other"] = &fakeInst{in: provider.Instance{InstanceID: "other-1", Handle: "other", Phase: provider.PhaseRunning},
		owner: "someone-else", cancel: func() {}, done: make(chan struct{})}
	r.run(provider.Config{Max: 1})
	r.waitFor("the stray instance to be swept", func() bool {
		r.d.mu.Lock()
		defer r.d.mu.Unlock()
		_, stray := r.d.inst["stray"]
		return !stray
	})
	r.d.mu.Lock()
	_, other := r.d.inst["other"]
	r.d.mu.Unlock()
	if !other {
		t.Error("the sweep removed another owner's instance")
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	base := provider.Config{Name: "docker", Image: "img", Max: 1, ServerAddress: "h:1"}
	for _, tc := range []struct {
		mut  func(*provider.Config)
		want string
	}{
		{func(c *provider.Config) { c.Name = "Bad_Name" }, "name"},
		{func(c *provider.Config) { c.Image = "" }, "image"},
		{func(c *provider.Config) { c.Max = 0 }, "max"},
		{func(c *provider.Config) { c.ServerAddress = "" }, "server_address"},
		{func(c *provider.Config) { c.Labels = map[string]string{"hodei.instance": "x"} }, "labels"},
		{func(c *provider.Config) { c.Labels = map[string]string{"a": "b,c"} }, "labels"},
	} {
		c := base
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", c, err, tc.want)
		}
	}
	if err := base.Validate(); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
	if !errors.Is(fmt.Errorf("x: %w", provider.ErrImage), provider.ErrImage) {
		t.Fatal("ErrImage does not wrap")
	}
}

func TestAgentConnectingBeforeStartReturnsKeepsTheHandle(t *testing.T) {
	r := newRig(t)
	r.d.connectFirst = true
	r.run(provider.Config{Max: 1, IdleTimeout: 200 * time.Millisecond})
	ids := r.submit(1)
	r.waitFor("the job to succeed", r.allSucceeded(ids))
	r.waitFor("the idle instance to go", func() bool { return r.d.count() == 0 && len(r.c.Instances().List()) == 0 })
	for id, types := range r.instanceEvents() {
		want := "instance.requested instance.started instance.connected instance.terminated"
		if got := strings.Join(types, " "); got != want {
			t.Errorf("instance %s: events %s, want %s", id, got, want)
		}
	}
}

func TestLostAgentIsRemovedAfterLostTimeout(t *testing.T) {
	r := newRig(t)
	r.run(provider.Config{Max: 1, IdleTimeout: time.Minute, LostTimeout: 300 * time.Millisecond})
	first := r.submit(1)
	r.waitFor("the first job to succeed", r.allSucceeded(first))
	inst := r.c.Instances().List()
	if len(inst) != 1 {
		t.Fatalf("instances = %+v, want one", inst)
	}
	r.d.mu.Lock()
	r.d.frozen[inst[0].ID] = true
	r.d.mu.Unlock()
	r.waitFor("the frozen worker to be lost", func() bool {
		w, ok := r.c.Workers().Get(inst[0].WorkerID)
		return ok && w.Status == domain.WorkerStatusLost
	})
	// Max is 1: the frozen instance must be removed before a second one
	// can start for the next job.
	second := r.submit(1)
	r.waitFor("the second job to succeed on a new instance", r.allSucceeded(second))
	evs := r.instanceEvents()[inst[0].ID]
	if len(evs) == 0 || evs[len(evs)-1] != "instance.terminated" {
		t.Errorf("frozen instance events = %v, want it terminated", evs)
	}
}

func TestRestartedManagerAdoptsLiveInstances(t *testing.T) {
	r := newRig(t)
	first, stop := context.WithCancel(r.ctx)
	r.managerCtx = first
	cfg := provider.Config{Max: 2, IdleTimeout: 400 * time.Millisecond}
	r.run(cfg)
	ids := r.submit(1)
	r.waitFor("the job to succeed", r.allSucceeded(ids))
	live := r.c.Instances().List()
	if len(live) != 1 || live[0].Status != domain.InstanceStatusConnected {
		t.Fatalf("instances = %+v, want one connected", live)
	}
	stop() // the server restarts; the container keeps running
	r.managerCtx = nil
	r.run(cfg)
	// The new manager keeps the instance (the log owns it), runs the next
	// job on it, and removes it when idle.
	more := r.submit(1)
	r.waitFor("the next job to succeed", r.allSucceeded(more))
	if v, _ := r.c.Jobs().Get(more[0]); v.Worker != live[0].WorkerID {
		t.Errorf("next job ran on %s, want the adopted worker %s", v.Worker, live[0].WorkerID)
	}
	r.waitFor("the idle instance to go", func() bool { return r.d.count() == 0 && len(r.c.Instances().List()) == 0 })
	if n := len(r.instanceEvents()); n != 1 {
		t.Errorf("%d instances in the log, want 1", n)
	}
}
