package provider

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/projections"
)

// Cluster is what the Manager needs from the orchestrator (core.Core
// implements it).
type Cluster interface {
	// PendingJobs returns the queued jobs, oldest first.
	PendingJobs() []projections.JobView
	// Workers is the cluster view.
	Workers() *projections.Workers
	// Instances is the view of live instances.
	Instances() *projections.Instances
	// Instance runs an instance command and waits for the views.
	Instance(ctx context.Context, id, actor string, cmd domain.InstanceCommand) (domain.Instance, error)
	// ParkJobs parks queued jobs with a reason.
	ParkJobs(ctx context.Context, actor string, ids []string, reason string) error
	// DrainWorker tells a worker to finish its jobs and leave.
	DrainWorker(ctx context.Context, workerID, by, reason string) (domain.Worker, error)
	// WorkerGone marks a worker whose instance ended lost at once.
	WorkerGone(ctx context.Context, workerID, reason string) error
}

// Config is one provider: a driver and the agents it starts.
type Config struct {
	// Name identifies the provider in events and labels: a DNS label of at
	// most 20 bytes ([a-z0-9-]).
	Name string
	// Image is the agent image.
	Image string
	// Labels are the labels its agents offer; jobs whose selector they
	// match (and whose resources fit) are its demand.
	Labels map[string]string
	// PlatformLabels are extra labels on the containers or Pods.
	PlatformLabels map[string]string
	// Slots is how many jobs one agent runs at once (default 1; always 1
	// when Ephemeral).
	Slots int
	// CPUMillis and MemoryBytes are what one agent offers (0: unlimited);
	// drivers set them as limits.
	CPUMillis   uint64
	MemoryBytes uint64
	// Max bounds the instances alive at once (requested, starting or
	// connected). Required.
	Max int
	// IdleTimeout is how long a connected agent may run no job before it
	// is drained and removed (default 1m).
	IdleTimeout time.Duration
	// Ephemeral agents run exactly one job, then leave and are removed.
	Ephemeral bool
	// LostTimeout is how long a connected instance's worker may stay lost
	// (partitioned, frozen) before the instance is removed and no longer
	// counts against Max (default 1m). Its attempts were re-queued when it
	// was lost.
	LostTimeout time.Duration
	// StartTimeout is how long an instance has from being requested to its
	// agent connecting; past it the instance fails with the platform's
	// reason, is removed, and the waiting jobs are parked with that reason
	// (default 2m).
	StartTimeout time.Duration
	// ServerAddress is the HWP address agents dial, as they see it from
	// inside the platform (e.g. the Docker bridge gateway "172.17.0.1:7070").
	ServerAddress string
	// TLSServerName is the name agents verify the server certificate
	// against (default "localhost", which every server certificate
	// carries; trust itself is pinned to the CA by the join token).
	TLSServerName string
	// Plaintext makes agents dial without TLS (servers run with
	// --insecure-plaintext only).
	Plaintext bool
	// Env is extra agent environment.
	Env map[string]string
	// BackoffMin and BackoffMax bound the wait after a failed start
	// (defaults 1s and 1m; it doubles per consecutive failure).
	BackoffMin, BackoffMax time.Duration
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$`)

// Validate names the first bad field of c.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("provider %q: %s: %s", c.Name, field, fmt.Sprintf(format, args...))
	}
	switch {
	case !nameRE.MatchString(c.Name):
		return bad("name", "%q is not a DNS label of 1-20 bytes [a-z0-9-]", c.Name)
	case c.Image == "":
		return bad("image", "empty")
	case c.Max <= 0:
		return bad("max", "%d: must be at least 1", c.Max)
	case c.Slots < 0 || c.Slots > domain.MaxSlots:
		return bad("slots", "%d: want 0..%d", c.Slots, domain.MaxSlots)
	case c.IdleTimeout < 0:
		return bad("idle_timeout", "negative")
	case c.StartTimeout < 0:
		return bad("start_timeout", "negative")
	case c.LostTimeout < 0:
		return bad("lost_timeout", "negative")
	case c.ServerAddress == "":
		return bad("server_address", "empty: agents need the address they dial the server at")
	case c.BackoffMin < 0 || c.BackoffMax < 0:
		return bad("backoff", "negative")
	}
	for k := range c.Labels {
		if k == AgentLabelInstance || k == labelProviderAgent || k == labelEphemeral {
			return bad("labels", "%q is set by the provider itself", k)
		}
		if strings.ContainsAny(k, ",=") {
			return bad("labels", "key %q holds ',' or '='", k)
		}
	}
	for k, v := range c.Labels {
		if strings.ContainsAny(v, ",=") {
			return bad("labels", "value %q of %q holds ',' or '='", v, k)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Slots == 0 || c.Ephemeral {
		c.Slots = 1
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = time.Minute
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 2 * time.Minute
	}
	if c.LostTimeout == 0 {
		c.LostTimeout = time.Minute
	}
	if c.TLSServerName == "" {
		c.TLSServerName = "localhost"
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = time.Minute
	}
	c.BackoffMax = max(c.BackoffMax, c.BackoffMin)
	return c
}

// Agent labels the provider sets (besides AgentLabelInstance).
const (
	labelProviderAgent = "hodei.provider"
	labelEphemeral     = "hodei.ephemeral" // core.LabelEphemeral
)

// Options wires a Manager.
type Options struct {
	// Owner is this server's owner id (LabelOwner); required.
	Owner string
	// Cluster is the orchestrator; required.
	Cluster Cluster
	// Driver is the platform; required.
	Driver Driver
	// Credential returns a one-time join token for an instance (nil: the
	// server takes agents without tokens, --insecure-anonymous).
	Credential func(ctx context.Context, instanceID string) (string, error)
	// Interval is the reconcile period (default 200ms).
	Interval time.Duration
	// ListEvery is how often the platform is listed (default 1s).
	ListEvery time.Duration
	// Clock is the time source (default time.Now).
	Clock func() time.Time
	// Logger receives decisions (default slog.Default()).
	Logger *slog.Logger
}

// Manager runs one provider: it reconciles demand (queued jobs its agents
// could run), the instances the log says are alive, and what the platform
// shows.
type Manager struct {
	cfg   Config
	opts  Options
	actor string
	log   *slog.Logger

	mu        sync.Mutex
	starting  map[string]bool      // instance ids whose Start is in flight
	idleSince map[string]time.Time // connected instance -> idle since
	drainedAt map[string]time.Time // instance -> when we drained its idle worker
	leftAt    map[string]time.Time // instance -> first seen running after its agent left
	firstSeen map[string]time.Time // pending job -> first seen pending
	failures  int
	nextTry   time.Time
	lastErr   string
	swept     bool
	platform  map[string]Instance // by instance id, from the last List
	listedAt  time.Time
	listErr   error
	wg        sync.WaitGroup
}

// NewManager checks cfg and returns a manager; Run starts it.
func NewManager(cfg Config, opts Options) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Owner == "" || opts.Cluster == nil || opts.Driver == nil {
		return nil, fmt.Errorf("provider %q: owner, cluster and driver are required", cfg.Name)
	}
	if opts.Interval <= 0 {
		opts.Interval = 200 * time.Millisecond
	}
	if opts.ListEvery <= 0 {
		opts.ListEvery = time.Second
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Manager{
		cfg: cfg.withDefaults(), opts: opts, actor: "system:provider:" + cfg.Name,
		log:      opts.Logger.With("provider", cfg.Name, "driver", opts.Driver.Kind()),
		starting: map[string]bool{}, idleSince: map[string]time.Time{}, drainedAt: map[string]time.Time{},
		leftAt:    map[string]time.Time{},
		firstSeen: map[string]time.Time{},
	}, nil
}

// Name is the provider's name.
func (m *Manager) Name() string { return m.cfg.Name }

// Run sweeps what a previous run left behind, then reconciles until ctx
// ends. Instances it started stay up when it returns (a restarted server
// adopts them); in-flight starts are waited for.
func (m *Manager) Run(ctx context.Context) error {
	defer m.wg.Wait()
	m.mu.Lock()
	swept := m.swept
	m.mu.Unlock()
	if !swept {
		if err := m.Sweep(ctx); err != nil {
			m.log.Warn("sweep at start", "err", err)
		}
	}
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		m.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sweep removes platform instances the log does not know (a crash between
// creating one and recording it, or another server's data dir with our
// owner id) and settles log instances the platform no longer has. Run
// sweeps first unless Sweep was called. Managers that share an owner id
// must all be swept before any of them runs: a sweep would take another
// running manager's brand-new instance for a leftover.
func (m *Manager) Sweep(ctx context.Context) error {
	m.mu.Lock()
	m.swept = true
	m.mu.Unlock()
	got, err := m.opts.Driver.List(ctx, m.opts.Owner)
	if err != nil {
		return err
	}
	live := map[string]projections.InstanceView{}
	for _, v := range m.opts.Cluster.Instances().List() {
		live[v.ID] = v
	}
	onPlatform := map[string]bool{}
	for _, in := range got {
		onPlatform[in.InstanceID] = true
		v, ok := live[in.InstanceID]
		if !ok {
			m.log.Info("sweep: removing an instance the log does not own", "instance", in.InstanceID, "handle", in.Handle)
			if err := m.opts.Driver.Remove(ctx, in.Handle); err != nil {
				m.log.Warn("sweep: remove", "instance", in.InstanceID, "err", err)
			}
			continue
		}
		if v.Provider == m.cfg.Name && v.Status == domain.InstanceStatusRequested {
			m.command(ctx, v.ID, domain.MarkInstanceStarted{Handle: in.Handle, At: m.now()})
		}
	}
	if sw, ok := m.opts.Driver.(OrphanSweeper); ok {
		keep := map[string]bool{}
		for id := range live {
			keep[id] = true
		}
		if err := sw.SweepOrphans(ctx, m.opts.Owner, keep); err != nil {
			m.log.Warn("sweep: orphans", "err", err)
		}
	}
	for _, v := range live {
		if v.Provider != m.cfg.Name || onPlatform[v.ID] {
			continue
		}
		if v.Status == domain.InstanceStatusRequested {
			m.command(ctx, v.ID, domain.FailInstance{Reason: "the server restarted before the instance was started", At: m.now()})
			continue
		}
		m.workerGone(ctx, v, "its "+m.opts.Driver.Kind()+" instance is gone")
		m.command(ctx, v.ID, domain.TerminateInstance{Reason: "gone from the platform across a server restart", At: m.now()})
	}
	return nil
}

func (m *Manager) now() time.Time { return m.opts.Clock() }

func (m *Manager) command(ctx context.Context, id string, cmd domain.InstanceCommand) bool {
	if _, err := m.opts.Cluster.Instance(ctx, id, m.actor, cmd); err != nil {
		if ctx.Err() == nil {
			m.log.Error("instance event", "instance", id, "command", cmd.CommandName(), "err", err)
		}
		return false
	}
	return true
}

// reconcile is one pass: note connections, settle ended instances, enforce
// start deadlines, drain idle agents, then start what demand needs.
func (m *Manager) reconcile(ctx context.Context) {
	now := m.now()
	m.refreshPlatform(ctx, now)
	mine := m.mine()
	workers := map[string]projections.WorkerView{} // by instance id
	for _, w := range m.opts.Cluster.Workers().List() {
		if id := w.Labels[AgentLabelInstance]; id != "" && w.Labels[labelProviderAgent] == m.cfg.Name {
			if old, ok := workers[id]; !ok || w.RegisteredAt.After(old.RegisteredAt) {
				workers[id] = w
			}
		}
	}
	for _, v := range mine {
		if ctx.Err() != nil {
			return
		}
		w, hasWorker := workers[v.ID]
		m.mu.Lock()
		starting := m.starting[v.ID]
		m.mu.Unlock()
		// An agent that connects while its start is in flight is marked
		// connected once instance.started is recorded, next pass.
		if hasWorker && w.Status == domain.WorkerStatusOnline && v.Status != domain.InstanceStatusConnected && !starting {
			if m.command(ctx, v.ID, domain.MarkInstanceConnected{WorkerID: w.ID, At: now}) {
				v.Status, v.WorkerID, v.ConnectedAt = domain.InstanceStatusConnected, w.ID, now
				m.mu.Lock()
				m.failures, m.lastErr = 0, ""
				m.mu.Unlock()
			}
		}
		if m.settleEnded(ctx, v, w, hasWorker, now) {
			continue
		}
		if v.Status != domain.InstanceStatusConnected {
			m.checkStart(ctx, v, now)
			continue
		}
		if hasWorker && w.Status == domain.WorkerStatusLost && now.Sub(w.LastChange) >= m.cfg.LostTimeout {
			// Partitioned or frozen past the grace: its attempts were
			// re-queued long ago; free its place under Max.
			m.remove(ctx, v, fmt.Sprintf("its agent (worker %s) has been lost for %s: removed", w.ID, m.cfg.LostTimeout))
			continue
		}
		m.checkIdle(ctx, v, w, hasWorker, now)
	}
	m.scale(ctx, now)
}

// mine is this provider's live instances.
func (m *Manager) mine() []projections.InstanceView {
	all := m.opts.Cluster.Instances().List()
	out := all[:0]
	for _, v := range all {
		if v.Provider == m.cfg.Name {
			out = append(out, v)
		}
	}
	return out
}

func (m *Manager) refreshPlatform(ctx context.Context, now time.Time) {
	m.mu.Lock()
	due := now.Sub(m.listedAt) >= m.opts.ListEvery || m.platform == nil
	m.mu.Unlock()
	if !due {
		return
	}
	got, err := m.opts.Driver.List(ctx, m.opts.Owner)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.listedAt, m.listErr = now, err
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("list instances", "err", err)
		}
		return
	}
	m.platform = make(map[string]Instance, len(got))
	for _, in := range got {
		m.platform[in.InstanceID] = in
	}
}

// observed returns the platform's view of an instance; known is false when
// the last List failed, the instance is still being started, or the List
// began before it was started.
func (m *Manager) observed(id string, started time.Time) (in Instance, present, known bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.listErr != nil || m.platform == nil || m.starting[id] || !m.listedAt.After(started) {
		return Instance{}, false, false
	}
	in, present = m.platform[id]
	return in, present, true
}

// settleEnded removes and records instances whose agent process ended (or
// that vanished). It reports whether v has ended.
func (m *Manager) settleEnded(ctx context.Context, v projections.InstanceView, w projections.WorkerView, hasWorker bool, now time.Time) bool {
	in, present, known := m.observed(v.ID, v.StartedAt)
	if !known || v.Status == domain.InstanceStatusRequested {
		return false
	}
	if present && in.Phase != PhaseExited {
		// Running: but an agent that left (drained, deregistered) and
		// whose process lingers is removed after a grace.
		if hasWorker && w.Status == domain.WorkerStatusDeregistered {
			m.mu.Lock()
			since, ok := m.leftAt[v.ID]
			if !ok {
				m.leftAt[v.ID] = now
			}
			m.mu.Unlock()
			if ok && now.Sub(since) > 30*time.Second {
				m.remove(ctx, v, "the agent left but its process did not exit: removed")
				return true
			}
		}
		return false
	}
	var reason string
	switch {
	case !present:
		reason = "gone from the platform"
	case hasWorker && w.Status == domain.WorkerStatusDeregistered:
		reason = "the agent left"
		if w.Draining || v.Ephemeral {
			reason = "the agent drained and left"
		}
		if v.Ephemeral {
			reason += " (ephemeral: its one job ended)"
		} else if r := m.drainReason(v.ID); r != "" {
			reason += " (" + r + ")"
		}
	default:
		reason = "the agent process ended"
		if in.Reason != "" {
			reason += ": " + in.Reason
		}
	}
	if v.Status == domain.InstanceStatusConnected && hasWorker && w.Status == domain.WorkerStatusOnline {
		m.workerGone(ctx, v, "its "+m.opts.Driver.Kind()+" instance ended: "+reason)
	}
	if present {
		if err := m.opts.Driver.Remove(ctx, in.Handle); err != nil {
			m.log.Warn("remove ended instance", "instance", v.ID, "err", err)
			return true // try again next pass
		}
	}
	if v.Status == domain.InstanceStatusConnected {
		m.command(ctx, v.ID, domain.TerminateInstance{Reason: reason, At: now})
	} else {
		m.failed(ctx, v, "exited before its agent connected: "+reason, now)
	}
	m.forget(v.ID)
	return true
}

func (m *Manager) drainReason(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.drainedAt[id]; ok {
		return "idle for " + m.cfg.IdleTimeout.String()
	}
	return ""
}

func (m *Manager) workerGone(ctx context.Context, v projections.InstanceView, reason string) {
	if v.WorkerID == "" {
		return
	}
	if err := m.opts.Cluster.WorkerGone(ctx, v.WorkerID, reason); err != nil {
		m.log.Warn("worker gone", "worker", v.WorkerID, "err", err)
	}
}

func (m *Manager) forget(id string) {
	m.mu.Lock()
	delete(m.idleSince, id)
	delete(m.drainedAt, id)
	delete(m.leftAt, id)
	m.mu.Unlock()
}

// checkStart fails an instance whose agent did not connect in time, with
// the platform's reason.
func (m *Manager) checkStart(ctx context.Context, v projections.InstanceView, now time.Time) {
	m.mu.Lock()
	starting := m.starting[v.ID]
	m.mu.Unlock()
	if starting || now.Sub(v.RequestedAt) < m.cfg.StartTimeout {
		return
	}
	in, present, _ := m.observed(v.ID, v.StartedAt)
	reason := fmt.Sprintf("its agent did not connect within %s", m.cfg.StartTimeout)
	if present && in.Reason != "" {
		reason += ": " + in.Reason
	} else if present {
		reason += " (platform phase " + string(in.Phase) + ")"
	}
	if v.Handle != "" {
		if err := m.opts.Driver.Remove(ctx, v.Handle); err != nil {
			m.log.Warn("remove instance that did not connect", "instance", v.ID, "err", err)
			return
		}
	}
	m.failed(ctx, v, reason, now)
}

// failed records a failed instance, backs off, and parks the jobs still
// waiting for this provider with the reason.
func (m *Manager) failed(ctx context.Context, v projections.InstanceView, reason string, now time.Time) {
	m.command(ctx, v.ID, domain.FailInstance{Reason: reason, At: now})
	m.forget(v.ID)
	m.backoff(ctx, reason, now)
}

func (m *Manager) backoff(ctx context.Context, reason string, now time.Time) {
	m.mu.Lock()
	m.failures++
	d := m.cfg.BackoffMin << min(m.failures-1, 20)
	if d > m.cfg.BackoffMax || d <= 0 {
		d = m.cfg.BackoffMax
	}
	m.nextTry, m.lastErr = now.Add(d), reason
	m.mu.Unlock()
	var ids []string
	for _, j := range m.demand(now) {
		ids = append(ids, j.ID)
	}
	if len(ids) == 0 {
		return
	}
	msg := fmt.Sprintf("provider %s cannot start agents: %s (retrying in %s)", m.cfg.Name, reason, d)
	if err := m.opts.Cluster.ParkJobs(ctx, m.actor, ids, msg); err != nil && ctx.Err() == nil {
		m.log.Warn("park waiting jobs", "err", err)
	}
	m.log.Warn("instance failed; backing off", "reason", reason, "retry_in", d, "waiting_jobs", len(ids))
}

// checkIdle drains a connected agent that ran nothing for IdleTimeout.
func (m *Manager) checkIdle(ctx context.Context, v projections.InstanceView, w projections.WorkerView, hasWorker bool, now time.Time) {
	if !hasWorker || w.Status != domain.WorkerStatusOnline || !m.idleDue(v.ID, w, now) {
		return
	}
	_, err := m.opts.Cluster.DrainWorker(ctx, w.ID, m.actor, fmt.Sprintf("idle for %s", m.cfg.IdleTimeout))
	if err != nil {
		m.mu.Lock()
		delete(m.drainedAt, v.ID)
		m.mu.Unlock()
		m.log.Warn("drain idle agent", "worker", w.ID, "err", err)
	}
}

// idleDue tracks how long instance id's worker has been idle and reports,
// once, that it has been idle for IdleTimeout (recording the drain).
func (m *Manager) idleDue(id string, w projections.WorkerView, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.ActiveJobs > 0 || w.Draining {
		delete(m.idleSince, id)
		return false
	}
	since, ok := m.idleSince[id]
	if !ok {
		m.idleSince[id] = now
		return false
	}
	if _, drained := m.drainedAt[id]; drained || now.Sub(since) < m.cfg.IdleTimeout {
		return false
	}
	m.drainedAt[id] = now
	return true
}

// demand is the queued jobs this provider's agents could run that have
// waited long enough for the scheduler to have tried the connected agents
// (parked, or queued for 300ms).
func (m *Manager) demand(now time.Time) []projections.JobView {
	pending := m.opts.Cluster.PendingJobs()
	offered := domain.Resources{Slots: int64(m.cfg.Slots), CPUMillis: int64(m.cfg.CPUMillis), MemoryBytes: int64(m.cfg.MemoryBytes)}
	labels := m.agentLabels("x")
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[string]time.Time, len(pending))
	var out []projections.JobView
	for _, j := range pending {
		first, ok := m.firstSeen[j.ID]
		if !ok {
			first = now
		}
		seen[j.ID] = first
		if !domain.MatchSelector(j.Selector, labels) || !fits(j.Resources, offered) {
			continue
		}
		if j.Parked != "" || now.Sub(first) >= 300*time.Millisecond {
			out = append(out, j)
		}
	}
	m.firstSeen = seen
	return out
}

func fits(need, offered domain.Resources) bool {
	return need.Slots <= offered.Slots &&
		(offered.CPUMillis == 0 || need.CPUMillis <= offered.CPUMillis) &&
		(offered.MemoryBytes == 0 || need.MemoryBytes <= offered.MemoryBytes)
}

// scale starts instances for uncovered demand (within Max and the backoff)
// and removes starting instances demand no longer needs.
func (m *Manager) scale(ctx context.Context, now time.Time) {
	jobs := m.demand(now)
	mine := m.mine()
	slots := m.cfg.Slots
	var coming []projections.InstanceView // will take jobs soon
	for _, v := range mine {
		switch {
		case v.Status != domain.InstanceStatusConnected:
			coming = append(coming, v)
		case now.Sub(v.ConnectedAt) < 3*time.Second:
			// Connected a moment ago: the scheduler may not have placed
			// on it yet.
			coming = append(coming, v)
		}
	}
	need := (len(jobs) + slots - 1) / slots
	if excess := len(coming) - need; excess > 0 {
		m.trim(ctx, coming, excess, jobs)
		return
	}
	uncovered := len(jobs) - len(coming)*slots
	if uncovered <= 0 {
		return
	}
	m.mu.Lock()
	wait := now.Before(m.nextTry)
	m.mu.Unlock()
	if wait {
		return
	}
	n := min((uncovered+slots-1)/slots, m.cfg.Max-len(mine))
	if n <= 0 {
		return
	}
	waiting := jobs[len(coming)*slots:]
	for i := range n {
		chunk := waiting[i*slots : min((i+1)*slots, len(waiting))]
		m.start(ctx, chunk, len(jobs), now)
	}
}

// trim removes up to excess instances that have not connected, newest
// first (a just-connected one stays: the scheduler places on it).
func (m *Manager) trim(ctx context.Context, coming []projections.InstanceView, excess int, jobs []projections.JobView) {
	sort.Slice(coming, func(i, j int) bool { return coming[i].RequestedAt.After(coming[j].RequestedAt) })
	waiting := map[string]bool{}
	for _, j := range jobs {
		waiting[j.ID] = true
	}
	for _, v := range coming {
		if excess == 0 {
			return
		}
		m.mu.Lock()
		starting := m.starting[v.ID]
		m.mu.Unlock()
		if v.Status == domain.InstanceStatusConnected || starting {
			continue
		}
		var gone []string
		for _, j := range v.Jobs {
			if !waiting[j] {
				gone = append(gone, j)
			}
		}
		reason := "not needed any more: no job waits for it"
		if len(gone) > 0 {
			reason = fmt.Sprintf("not needed any more: job %s no longer waits (cancelled or placed elsewhere)", strings.Join(gone, ", "))
		}
		if !m.remove(ctx, v, reason) {
			continue
		}
		m.log.Info("instance not needed", "instance", v.ID, "reason", reason)
		excess--
	}
}

// remove deletes an instance from the platform and records why; false
// when the platform refused (the next pass tries again).
func (m *Manager) remove(ctx context.Context, v projections.InstanceView, reason string) bool {
	if v.Handle != "" {
		if err := m.opts.Driver.Remove(ctx, v.Handle); err != nil {
			m.log.Warn("remove instance", "instance", v.ID, "err", err)
			return false
		}
	}
	m.command(ctx, v.ID, domain.TerminateInstance{Reason: reason, At: m.now()})
	m.forget(v.ID)
	return true
}

func (m *Manager) agentLabels(id string) map[string]string {
	l := maps.Clone(m.cfg.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[AgentLabelInstance], l[labelProviderAgent] = id, m.cfg.Name
	if m.cfg.Ephemeral {
		l[labelEphemeral] = "true"
	}
	return l
}

// start records the decision, then starts the instance in the background.
func (m *Manager) start(ctx context.Context, jobs []projections.JobView, waiting int, now time.Time) {
	id := m.cfg.Name + "-" + randHex(4)
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	reason := fmt.Sprintf("%d queued job(s) match %s and no connected agent can take them; this one is for %s",
		waiting, describe(m.cfg.Labels), strings.Join(ids, ", "))
	if len(jobs) > 0 && jobs[0].Parked != "" {
		reason += " (scheduler: " + jobs[0].Parked + ")"
	}
	_, err := m.opts.Cluster.Instance(ctx, id, m.actor, domain.RequestInstance{InstanceID: id, Provider: m.cfg.Name,
		Driver: m.opts.Driver.Kind(), Ephemeral: m.cfg.Ephemeral, Jobs: ids, Reason: reason, At: now})
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("request instance", "err", err)
		}
		return
	}
	m.log.Info("instance requested", "instance", id, "jobs", ids)
	m.mu.Lock()
	m.starting[id] = true
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		handle, err := m.launch(ctx, id)
		done := func() {
			m.mu.Lock()
			delete(m.starting, id)
			m.mu.Unlock()
		}
		at := m.now()
		if err != nil {
			done()
			if ctx.Err() != nil {
				return // shutting down: the next run's sweep settles it
			}
			v, _ := m.opts.Cluster.Instances().Get(id)
			m.failed(ctx, v, "start: "+err.Error(), at)
			return
		}
		// Started is recorded before the start stops being in flight: the
		// agent may connect before the platform's start call returns, and
		// reconcile waits for this to mark it connected (a connected
		// instance refuses MarkInstanceStarted, which would lose its handle).
		ok := m.command(ctx, id, domain.MarkInstanceStarted{Handle: handle, At: at})
		done()
		if !ok {
			return
		}
		m.log.Info("instance started", "instance", id, "handle", handle, "took", at.Sub(now).Round(time.Millisecond))
	}()
}

func (m *Manager) launch(ctx context.Context, id string) (string, error) {
	env := maps.Clone(m.cfg.Env)
	if env == nil {
		env = map[string]string{}
	}
	env["HODEI_SERVER"] = m.cfg.ServerAddress
	env["HODEI_LABELS"] = formatLabels(m.agentLabels(id))
	env["HODEI_SLOTS"] = strconv.Itoa(m.cfg.Slots)
	if m.cfg.Plaintext {
		env["HODEI_INSECURE_PLAINTEXT"] = "true"
	} else {
		env["HODEI_TLS_SERVER_NAME"] = m.cfg.TLSServerName
	}
	secret := map[string]string{}
	if m.opts.Credential != nil {
		tok, err := m.opts.Credential(ctx, id)
		if err != nil {
			return "", fmt.Errorf("join token: %w", err)
		}
		secret["HODEI_TOKEN"] = tok
	}
	return m.opts.Driver.Start(ctx, StartRequest{InstanceID: id, Provider: m.cfg.Name, Owner: m.opts.Owner,
		Image: m.cfg.Image, Env: env, SecretEnv: secret, CPUMillis: m.cfg.CPUMillis, MemoryBytes: m.cfg.MemoryBytes,
		Labels: maps.Clone(m.cfg.PlatformLabels)})
}

// Status is a provider's state for operators.
type Status struct {
	Name      string                     `json:"name"`
	Driver    string                     `json:"driver"`
	Max       int                        `json:"max"`
	Instances []projections.InstanceView `json:"instances"`
	Failures  int                        `json:"consecutive_failures"`
	LastError string                     `json:"last_error,omitempty"`
	NextTry   time.Time                  `json:"next_try,omitzero"`
}

// Status returns the provider's live instances and backoff state.
func (m *Manager) Status() Status {
	st := Status{Name: m.cfg.Name, Driver: m.opts.Driver.Kind(), Max: m.cfg.Max, Instances: m.mine()}
	m.mu.Lock()
	st.Failures, st.LastError = m.failures, m.lastErr
	if m.failures > 0 {
		st.NextTry = m.nextTry
	}
	m.mu.Unlock()
	return st
}

func formatLabels(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

func describe(l map[string]string) string {
	if len(l) == 0 {
		return "this provider (no labels)"
	}
	return formatLabels(l)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
