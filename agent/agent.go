package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hodei-jobs/hodei/hwp/hwppb"
)

// RefusedError is returned by Run when the server refuses the agent for good
// (incompatible protocol version, rejected join token).
type RefusedError struct {
	Code    hwppb.Refused_Code
	Message string
}

// Error implements error.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("connect: refused by server (%s): %s", e.Code, e.Message)
}

// Agent runs jobs for one hodei server. Create it with New and call Run once.
type Agent struct {
	cfg  Config
	wake chan struct{} // cap 1: the sender has something to do

	jobsWG sync.WaitGroup // one per job goroutine

	mu          sync.Mutex
	jobs        map[jobKey]*job
	order       []*job // assignment order, for round-robin sending
	rr          int
	draining    bool
	stopping    bool
	drainReason string
	workerID    string
	identity    string
	identityExp time.Time
	maxChunk    int
	inflight    uint64 // per-attempt unacknowledged log bytes allowed; 0 unlimited
	flushEvery  time.Duration
	heartbeat   time.Duration
	welcomed    chan struct{} // closed at the first Welcome

	// The persisted identity (identity.go): key and client certificate
	// (nil until the server signs one), the pinned CA fingerprint, and the
	// directory they live in. persistMu orders writes of it.
	key           *ecdsa.PrivateKey
	cert          *tls.Certificate
	caFingerprint string
	idDir         string
	persistMu     sync.Mutex
}

// New validates cfg and returns an Agent. It removes spool files left by an
// earlier agent process in WorkDir (their jobs died with it).
func New(cfg Config) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.WorkDir, filepath.Join(cfg.WorkDir, "jobs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("new agent: %w", err)
		}
	}
	if err := os.RemoveAll(filepath.Join(cfg.WorkDir, "spool")); err != nil {
		return nil, fmt.Errorf("new agent: clear spool: %w", err)
	}
	a := &Agent{
		cfg:       cfg,
		wake:      make(chan struct{}, 1),
		jobs:      map[jobKey]*job{},
		maxChunk:  cfg.MaxLogChunk,
		inflight:  uint64(cfg.MaxInflightLog),
		heartbeat: defaultHeartbeat,
		welcomed:  make(chan struct{}),
		idDir:     filepath.Join(cfg.WorkDir, IdentityDir),
	}
	if err := a.loadIdentity(); err != nil {
		return nil, fmt.Errorf("new agent: %w", err)
	}
	if d, ok := a.cfg.Dialer.(GRPCDialer); ok && d.TLS != nil {
		// Present the client certificate the server signed (mutual TLS),
		// always the current one: it is renewed over the stream.
		d.TLS = d.TLS.Clone()
		d.TLS.GetClientCertificate = a.getClientCertificate
		a.cfg.Dialer = d
	}
	return a, nil
}

// loadIdentity reads the identity an earlier run persisted in WorkDir, or
// starts one (a new key). An identity for another CA than the join token's
// is set aside: the agent enrols with the new server.
func (a *Agent) loadIdentity() error {
	if err := os.MkdirAll(a.idDir, 0o700); err != nil {
		return err
	}
	id, err := LoadIdentity(a.cfg.WorkDir)
	if err != nil {
		return err
	}
	if a.key, err = loadKey(a.idDir); err != nil {
		return err
	}
	cert, err := loadCert(a.idDir, a.key)
	if err != nil {
		a.cfg.Logger.Warn("ignoring the saved client certificate", "err", err)
		cert = nil
	}
	fp, ferr := JoinTokenFingerprint(a.cfg.Token)
	if ferr == nil && id.CAFingerprint != "" && id.CAFingerprint != fp {
		a.cfg.Logger.Info("the join token is for another server: enrolling anew", "saved_worker_id", id.WorkerID)
		id, cert = Identity{}, nil
	}
	if ferr == nil {
		id.CAFingerprint = fp
	}
	a.workerID, a.identity, a.identityExp, a.caFingerprint, a.cert = id.WorkerID, id.Token, id.TokenExpires, id.CAFingerprint, cert
	if id.WorkerID != "" {
		a.cfg.Logger.Info("loaded saved identity", "worker_id", id.WorkerID, "client_certificate", cert != nil)
	}
	return nil
}

// Welcomed is closed when the agent is first registered with the server.
func (a *Agent) Welcomed() <-chan struct{} { return a.welcomed }

// WorkerID returns the worker id from the last Welcome ("" before).
func (a *Agent) WorkerID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.workerID
}

// Drain stops taking new jobs; Run returns nil once the running jobs have
// finished and their logs and results are acknowledged by the server. With
// cancel the running jobs are cancelled first (SIGTERM, SIGKILL after grace).
func (a *Agent) Drain(cancel bool) {
	a.mu.Lock()
	a.beginDrainLocked("agent drain", cancel)
	a.mu.Unlock()
	a.notify()
}

func (a *Agent) beginDrainLocked(reason string, cancel bool) {
	if !a.draining {
		a.draining = true
		a.drainReason = reason
		a.cfg.Logger.Info("draining", "reason", reason, "cancel", cancel, "jobs", len(a.jobs))
	}
	if cancel {
		for _, j := range a.order {
			a.cancelLocked(j, hwppb.FinishReason_CANCELLED, "cancelled: "+reason, 0)
		}
	}
}

// notify wakes the sender.
func (a *Agent) notify() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Run connects to the server and serves it until the agent has drained
// (returns nil), ctx is cancelled (a cancel-all stop: running jobs get
// SIGTERM then SIGKILL after their grace, final logs are delivered within
// StopTimeout; returns nil), or the server refuses the agent for good
// (returns a *RefusedError after killing any jobs).
//
// Running jobs survive dropped connections: their output is spooled and
// resent after reconnecting, from the offset the server holds.
func (a *Agent) Run(ctx context.Context) error {
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		select {
		case <-runCtx.Done():
			return
		case <-ctx.Done():
		}
		a.mu.Lock()
		a.stopping = true
		a.draining = true
		for _, j := range a.order {
			a.cancelLocked(j, hwppb.FinishReason_AGENT_STOPPED, "agent stopped", 0)
		}
		a.mu.Unlock()
		a.notify()
		// Jobs end within their grace; then final delivery gets StopTimeout.
		jobsDone := make(chan struct{})
		wg.Go(func() { a.jobsWG.Wait(); close(jobsDone) })
		select {
		case <-jobsDone:
		case <-runCtx.Done():
			return
		}
		select {
		case <-a.cfg.Clock.After(a.cfg.StopTimeout):
			cancelRun()
		case <-runCtx.Done():
		}
	})

	err := a.connectLoop(runCtx)
	cancelRun()
	a.killAll()
	a.jobsWG.Wait()
	a.mu.Lock()
	for _, j := range a.order {
		a.dropLocked(j)
	}
	a.mu.Unlock()
	return err
}

// connectLoop runs sessions until the agent is done.
func (a *Agent) connectLoop(ctx context.Context) error {
	bo := a.cfg.Backoff
	for {
		if a.exitReady() {
			return nil
		}
		welcomed, err := a.session(ctx)
		if errors.Is(err, errExit) {
			return nil
		}
		var refused *RefusedError
		if errors.As(err, &refused) && refused.Code != hwppb.Refused_DUPLICATE_AGENT && refused.Code != hwppb.Refused_UNAVAILABLE {
			if refused.Code == hwppb.Refused_UNAUTHENTICATED && a.dropIdentity() {
				// The identity token expired while we were away: enrol again.
				continue
			}
			a.cfg.Logger.Error("refused by server", "code", refused.Code.String(), "message", refused.Message)
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if welcomed {
			bo.Reset()
		}
		d := bo.Next()
		a.cfg.Logger.Warn("disconnected from server", "err", err, "retry_in", d)
		if a.exitReady() {
			return nil
		}
		// Wait out the backoff; a drain or stop that completes meanwhile (no
		// session is reading wake now) ends the loop early.
		for timer := a.cfg.Clock.After(d); timer != nil; {
			select {
			case <-ctx.Done():
				return nil
			case <-timer:
				timer = nil
			case <-a.wake:
				if a.exitReady() {
					return nil
				}
			}
		}
	}
}

// busyLocked counts the slots in use: attempts whose process runs and that
// are not fenced.
func (a *Agent) busyLocked() int {
	n := 0
	for _, j := range a.order {
		if !j.finished && !j.fenced {
			n++
		}
	}
	return n
}

// exitReady reports whether a drain or stop has nothing left to deliver.
func (a *Agent) exitReady() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.exitReadyLocked()
}

func (a *Agent) exitReadyLocked() bool {
	return (a.draining || a.stopping) && len(a.jobs) == 0
}

// dropIdentity forgets what the server refused, one step at a time, and
// reports whether there was anything to forget (the agent then tries
// again): first the identity token and client certificate (keeping the
// worker id, so the server can record the replacement), then, with a join
// token to enrol with, the worker id itself (the token may be another one
// than the worker enrolled with, or the worker was revoked).
func (a *Agent) dropIdentity() bool {
	a.mu.Lock()
	switch {
	case a.identity != "" || a.cert != nil:
		a.identity, a.identityExp, a.cert = "", time.Time{}, nil
	case a.workerID != "" && a.cfg.Token != "":
		a.workerID = ""
	default:
		a.mu.Unlock()
		return false
	}
	a.mu.Unlock()
	a.persistIdentity()
	return true
}

// killAll SIGKILLs every job still running (Run is returning).
func (a *Agent) killAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, j := range a.order {
		if !j.finished {
			j.kill = true
			j.pokeJob()
		}
	}
}

func (a *Agent) hello() *hwppb.Hello {
	a.mu.Lock()
	defer a.mu.Unlock()
	creds := &hwppb.Credentials{JoinToken: a.cfg.Token}
	if a.identity != "" && (a.identityExp.IsZero() || a.cfg.Clock.Now().Before(a.identityExp)) {
		creds = &hwppb.Credentials{IdentityToken: a.identity}
	}
	h := &hwppb.Hello{
		ProtocolVersion: a.cfg.ProtocolVersion,
		Credentials:     creds,
		AgentId:         a.workerID,
		Name:            a.cfg.Name,
		Labels:          a.cfg.Labels,
		Capacity: &hwppb.Capacity{
			Slots:       uint32(a.cfg.Slots),
			CpuMillis:   a.cfg.CPUMillis,
			MemoryBytes: a.cfg.MemoryBytes,
		},
		AgentVersion: Version,
		Os:           runtime.GOOS,
		Arch:         runtime.GOARCH,
	}
	h.Hostname, _ = os.Hostname()
	if a.key != nil && certDue(a.cert, a.cfg.Clock.Now()) {
		if csr, err := certRequest(a.key); err == nil {
			h.Csr = csr
		} else {
			a.cfg.Logger.Warn("no client certificate request", "err", err)
		}
	}
	for _, j := range a.order {
		rj := &hwppb.RunningJob{
			JobId:       j.key.id,
			Attempt:     j.key.attempt,
			AckedOffset: j.acked,
			SentOffset:  uint64(j.spool.Size()),
			Finished:    j.finished,
		}
		if !j.startedAt.IsZero() {
			rj.StartedAt = timestamppb.New(j.startedAt)
		}
		h.RunningJobs = append(h.RunningJobs, rj)
	}
	return h
}

// welcome applies a Welcome: worker id, limits, token, and where each job's
// log resumes.
func (a *Agent) welcome(w *hwppb.Welcome) error {
	if v := w.GetProtocolVersion(); v != nil && v.GetMajor() != a.cfg.ProtocolVersion.GetMajor() {
		return &RefusedError{Code: hwppb.Refused_INCOMPATIBLE_VERSION,
			Message: fmt.Sprintf("server negotiated HWP %d.%d, agent speaks %d.%d", v.GetMajor(), v.GetMinor(), a.cfg.ProtocolVersion.GetMajor(), a.cfg.ProtocolVersion.GetMinor())}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if id := w.GetWorkerId(); id != "" {
		a.workerID = id
	}
	if t := w.GetIdentityToken(); t != "" {
		a.identity = t
		a.identityExp = time.Time{}
		if e := w.GetIdentityExpiresAt(); e != nil && e.IsValid() {
			a.identityExp = e.AsTime()
		}
	}
	a.setCertLocked(w.GetClientCertificate())
	if a.cert != nil && a.cert.Leaf.Subject.CommonName != a.workerID {
		a.cert = nil // issued to the worker id we had before
	}
	a.heartbeat = defaultHeartbeat
	if d := w.GetHeartbeatInterval(); d != nil && d.IsValid() && d.AsDuration() > 0 {
		a.heartbeat = max(d.AsDuration(), minHeartbeat)
	}
	a.maxChunk = a.cfg.MaxLogChunk
	a.inflight = uint64(a.cfg.MaxInflightLog)
	a.flushEvery = 0
	if l := w.GetLimits(); l != nil {
		if n := int(l.GetMaxLogChunkBytes()); n > 0 {
			a.maxChunk = min(max(n, 1<<10), 4<<20)
		}
		if n := int(l.GetMaxMessageBytes()); n > 0 {
			a.maxChunk = min(a.maxChunk, max(n-1<<10, 1<<10))
		}
		if n := l.GetMaxInflightLogBytes(); n > 0 {
			a.inflight = uint64(max(n, uint32(a.maxChunk)))
		}
		if d := l.GetLogFlushInterval(); d != nil && d.IsValid() && d.AsDuration() > 0 {
			a.flushEvery = min(d.AsDuration(), time.Second)
		}
	}
	resume := map[jobKey]uint64{}
	for _, r := range w.GetResume() {
		resume[jobKey{r.GetJobId(), r.GetAttempt()}] = r.GetOffset()
	}
	for _, j := range a.order {
		size := uint64(j.spool.Size())
		j.sent = min(j.acked, size)
		if off, ok := resume[j.key]; ok {
			j.sent = min(off, size)
			j.acked = max(j.acked, j.sent)
		}
		j.acceptedSent = true // Hello listed it
		j.startedSent = false
		j.finishSent = false
	}
	return nil
}

// markWelcomed closes Welcomed at the first Welcome (once its identity is
// saved).
func (a *Agent) markWelcomed() {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-a.welcomed:
	default:
		close(a.welcomed)
	}
}
