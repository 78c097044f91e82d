package hwp

import (
	"context"
	"crypto/ecdsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/hwp/hwppb"
	"github.com/hodei-jobs/hodei/pki"
)

// Orchestrator is what the server side of the protocol needs from the core
// (*core.Core implements it).
type Orchestrator interface {
	Connect(ctx context.Context, hello core.Hello, agent core.Agent) (string, []core.JobRef, error)
	Disconnect(workerID string, agent core.Agent)
	Heartbeat(workerID string, t core.Telemetry) error
	ReportMany(ctx context.Context, workerID string, reports []core.Report) []error
	CheckAttempt(workerID, jobID string, attempt uint32) error
	Leave(ctx context.Context, workerID, reason string) error
	DrainWorker(ctx context.Context, workerID, by, reason string) (domain.Worker, error)
}

// Logs is the server log store as the protocol uses it.
type Logs interface {
	// Append stores data at offset and returns the stored length (the ack).
	Append(jobID string, attempt uint32, offset uint64, data []byte) (uint64, error)
	// Finish marks the attempt's log complete.
	Finish(jobID string, attempt uint32, total uint64, crc32c uint32) error
	// Size is the stored length of an attempt's log (0 when none).
	Size(jobID string, attempt uint32) uint64
}

// ServerConfig configures the protocol server.
type ServerConfig struct {
	// JoinToken, when set, must equal the agent's credentials.join_token.
	// Ignored when Joiner is set.
	JoinToken string
	// Joiner, when set, admits agents by their join tokens (expiry, uses,
	// revocation) instead of JoinToken.
	Joiner Joiner
	// Identities, when set, gives every admitted agent a short-lived
	// identity token in Welcome, admits agents by it on reconnect, renews it
	// over the stream (TokenRefresh) and cuts the stream within one
	// heartbeat interval once it is expired or revoked.
	Identities Identities
	// Certifier, when set (with Identities), signs a client certificate for
	// every admitted agent that sends a CSR in Hello and renews it over the
	// stream; the agent then dials with mutual TLS and needs no join token to
	// reconnect.
	Certifier Certifier
	// IdentityLog, when set (with Identities), records enrolments, renewals
	// and revocations as worker events, and is where revocation is checked.
	IdentityLog IdentityLog
	// Revocations, when set, reports revocations made outside the event log
	// (the token store: `hodei worker revoke`, `hodei token revoke`); the
	// server records them in the log when it first sees them.
	Revocations Revocations
	// HeartbeatInterval is sent to agents in Welcome.
	HeartbeatInterval time.Duration
	// MaxChunkBytes is the largest log chunk agents may send (default 64 KiB).
	MaxChunkBytes uint32
	// FlushInterval is the agents' log coalescing window (default 0: send
	// output as soon as it is read, for the lowest latency).
	FlushInterval time.Duration
	// HelloTimeout bounds the wait for Hello (default 10s).
	HelloTimeout time.Duration
	// ServerVersion is reported to agents.
	ServerVersion string
	Logger        *slog.Logger
}

// Joiner admits agents by join token. Both methods return errors that are
// safe to show the agent (they never contain the secret).
type Joiner interface {
	// Join checks token for an agent that already has worker id agentID
	// ("" on first contact) and returns the token's id.
	Join(token, agentID string) (tokenID string, err error)
	// Enrolled records that workerID joined with the token tokenID
	// (replacing the worker id replaces, "" if none); it fails when the
	// token has no enrolments left.
	Enrolled(tokenID, workerID, replaces string) error
}

// Identities issues and checks worker identity tokens (auth.Identities).
type Identities interface {
	// Issue returns a new token for workerID and its expiry.
	Issue(workerID string) (token string, expires time.Time, err error)
	// Verify returns the worker id of a live (unexpired, unrevoked) token.
	Verify(token string) (workerID string, expires time.Time, err error)
	// Renew verifies token and returns a fresh one when it is close to
	// expiry ("" otherwise).
	Renew(token string) (fresh string, expires time.Time, err error)
}

// Certifier signs agents' client certificates (*pki.Bundle).
type Certifier interface {
	// IssueClient signs a client certificate for workerID and pub, a key the
	// caller has checked the agent holds.
	IssueClient(pub *ecdsa.PublicKey, workerID string, now time.Time) (pki.ClientCert, error)
}

// IdentityLog is the event log side of worker identities (the server wires
// a command handler).
type IdentityLog interface {
	// IdentityCommand decides cmd (domain.Enrol, RenewIdentity or
	// RevokeIdentity) on workerID and appends its events, caused by actor. It
	// returns domain errors (domain.ErrIdentityRevoked) wrapped.
	IdentityCommand(ctx context.Context, workerID string, cmd domain.WorkerCommand, actor string) (domain.Worker, error)
	// LoadWorker returns the worker's current state (zero when unknown).
	LoadWorker(ctx context.Context, workerID string) (domain.Worker, error)
}

// Revocations reports worker revocations kept outside the event log
// (*auth.Store).
type Revocations interface {
	// WorkerRevocation reports whether workerID is revoked, by whom and why.
	// An error (the record could not be read) refuses the worker for now
	// without recording a revocation.
	WorkerRevocation(workerID string) (by, reason string, revoked bool, err error)
}

// certRenewBefore is how close to expiry a client certificate is renewed
// (over the stream, or when the agent reconnects with it).
const certRenewBefore = pki.ClientLifetime / 3

// welcomeMaxMessageBytes is the gRPC message size limit agents are told.
const welcomeMaxMessageBytes = 4 << 20

// Server implements hwppb.WorkerProtocolServer on top of the core.
type Server struct {
	hwppb.UnimplementedWorkerProtocolServer
	core Orchestrator
	logs Logs
	cfg  ServerConfig
	log  *slog.Logger

	stop     chan struct{} // closed by Stop
	stopOnce sync.Once
	recv     sync.WaitGroup // stream readers, which outlive their handler by a moment
}

// Stop ends every agent stream (agents reconnect to the next server and
// resume); new streams are refused. Call it before the gRPC server's
// GracefulStop, then Wait.
func (s *Server) Stop() { s.stopOnce.Do(func() { close(s.stop) }) }

// Wait returns when every stream reader has finished (after the gRPC
// server has stopped and closed the streams).
func (s *Server) Wait() { s.recv.Wait() }

// NewServer returns the protocol server.
func NewServer(c Orchestrator, logs Logs, cfg ServerConfig) *Server {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.MaxChunkBytes == 0 {
		cfg.MaxChunkBytes = 64 << 10
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{core: c, logs: logs, cfg: cfg, log: cfg.Logger, stop: make(chan struct{})}
}

// Connect implements the agent stream: Hello, Welcome, then messages both
// ways until either side ends it.
func (s *Server) Connect(stream hwppb.WorkerProtocol_ConnectServer) error {
	ctx := stream.Context()
	select {
	case <-s.stop:
		return status.Error(codes.Unavailable, "the server is shutting down: reconnect")
	default:
	}
	hello, err := s.recvHello(stream)
	if err != nil {
		return err
	}
	pc, err := peerCert(ctx)
	if err != nil {
		return s.refuse(stream, codes.PermissionDenied, err.Error())
	}
	tokenID, refused := s.check(ctx, hello, pc)
	if refused != nil {
		code := codes.FailedPrecondition
		if pc.worker != "" && pc.worker != hello.GetAgentId() {
			code = codes.PermissionDenied
		}
		_ = stream.Send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Refused{Refused: refused}})
		return status.Error(code, refused.Message)
	}
	// The key a client certificate is (re)issued for: a CSR's, which proves
	// possession by its signature, or the one the agent's TLS handshake just
	// proved.
	key := pc.key
	if csr := hello.GetCsr(); len(csr) > 0 && s.cfg.Certifier != nil && s.cfg.Identities != nil {
		r, err := pki.ParseCSR(csr)
		if err != nil {
			return s.refuse(stream, codes.InvalidArgument, "hello.csr: "+err.Error())
		}
		key = r.PublicKey.(*ecdsa.PublicKey) // ParseCSR accepts only ECDSA P-256
	}
	sess := newSession(s, stream)
	ch := toCoreHello(hello)
	var replaces string
	if tokenID != "" && s.cfg.Identities != nil && ch.WorkerID != "" {
		// With identities, only an identity (token or certificate) resumes
		// a worker id: a join token (which may have been copied) enrols a
		// new worker, so it can never report on another worker's jobs.
		replaces, ch.WorkerID = ch.WorkerID, ""
	}
	id, stale, err := s.core.Connect(ctx, ch, sess)
	if err != nil {
		var fe *domain.FieldError
		if errors.As(err, &fe) {
			return status.Errorf(codes.InvalidArgument, "hello: %v", err)
		}
		return status.Errorf(codes.Unavailable, "register agent: %v", err)
	}
	sess.worker = id
	defer s.core.Disconnect(id, sess)
	if s.cfg.Joiner != nil && tokenID != "" {
		if err := s.cfg.Joiner.Enrolled(tokenID, id, replaces); err != nil {
			refused := &hwppb.Refused{Code: hwppb.Refused_UNAUTHENTICATED, Message: err.Error()}
			_ = stream.Send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Refused{Refused: refused}})
			return status.Error(codes.FailedPrecondition, refused.Message)
		}
	}

	welcome := &hwppb.Welcome{
		WorkerId:          id,
		ProtocolVersion:   &hwppb.Version{Major: ProtocolVersion.Major, Minor: min(ProtocolVersion.Minor, hello.GetProtocolVersion().GetMinor())},
		HeartbeatInterval: durationpb.New(s.cfg.HeartbeatInterval),
		Limits: &hwppb.Limits{MaxLogChunkBytes: s.cfg.MaxChunkBytes, LogFlushInterval: durationpb.New(s.cfg.FlushInterval),
			MaxMessageBytes: welcomeMaxMessageBytes},
		ServerVersion: s.cfg.ServerVersion,
	}
	if s.cfg.Identities != nil {
		tok, exp, err := s.cfg.Identities.Issue(id)
		if err != nil {
			return status.Errorf(codes.Unavailable, "issue identity: %v", err)
		}
		sess.identity = tok
		welcome.IdentityToken, welcome.IdentityExpiresAt = tok, timestamppb.New(exp)
		sess.key, sess.certNotAfter = key, pc.notAfter
		if id != pc.worker {
			sess.certNotAfter = time.Time{} // a certificate of another (departed) worker id: reissue
		}
		var cert domain.CertRef
		if sess.key != nil && s.cfg.Certifier != nil && (len(hello.GetCsr()) > 0 || time.Until(sess.certNotAfter) < certRenewBefore) {
			cc, err := s.cfg.Certifier.IssueClient(sess.key, id, time.Now())
			if err != nil {
				return status.Errorf(codes.Unavailable, "issue client certificate: %v", err)
			}
			cert = domain.CertRef{Serial: cc.Serial, Fingerprint: cc.Fingerprint, NotAfter: cc.NotAfter}
			sess.certNotAfter = cc.NotAfter
			welcome.ClientCertificate, welcome.ClientCertificateExpiresAt = cc.DER, timestamppb.New(cc.NotAfter)
		}
		if err := s.recordIdentity(ctx, id, hello.GetAgentId(), tokenID, replaces, cert, exp); err != nil {
			if errors.Is(err, domain.ErrIdentityRevoked) {
				return s.refuse(stream, codes.FailedPrecondition, err.Error())
			}
			return status.Errorf(codes.Unavailable, "record identity: %v", err)
		}
	}
	isStale := map[core.JobRef]bool{}
	for _, r := range stale {
		isStale[r] = true
	}
	for _, r := range hello.GetRunningJobs() {
		ref := core.JobRef{JobID: r.GetJobId(), Attempt: r.GetAttempt()}
		if !isStale[ref] {
			welcome.Resume = append(welcome.Resume, &hwppb.JobOffset{JobId: ref.JobID, Attempt: ref.Attempt,
				Offset: s.logs.Size(ref.JobID, ref.Attempt)})
		}
	}
	if err := stream.Send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Welcome{Welcome: welcome}}); err != nil {
		return err
	}
	for _, r := range stale {
		_ = sess.Fence(r.JobID, r.Attempt, "attempt is not assigned to this worker")
	}
	return sess.run(ctx)
}

// refuse sends Refused (UNAUTHENTICATED) and returns the stream's status.
func (s *Server) refuse(stream hwppb.WorkerProtocol_ConnectServer, code codes.Code, msg string) error {
	_ = stream.Send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Refused{Refused: &hwppb.Refused{Code: hwppb.Refused_UNAUTHENTICATED, Message: msg}}})
	return status.Error(code, msg)
}

// recordIdentity appends what admitting worker id did to its identity: an
// enrolment (a join token, or an identity of an earlier worker id, agentID,
// that the core replaced), or a renewal when a reconnect got a new
// certificate. A plain reconnect records nothing more (worker.reconnected
// says it).
func (s *Server) recordIdentity(ctx context.Context, id, agentID, tokenID, replaces string, cert domain.CertRef, exp time.Time) error {
	if s.cfg.IdentityLog == nil {
		return nil
	}
	now := time.Now()
	var cmd domain.WorkerCommand
	switch {
	case tokenID != "" || id != agentID:
		if replaces == "" && agentID != id {
			replaces = agentID
		}
		cmd = domain.Enrol{TokenID: tokenID, Replaces: replaces, Cert: cert, IdentityExpiresAt: exp, At: now}
	case cert.Serial != "":
		cmd = domain.RenewIdentity{Cert: cert, IdentityExpiresAt: exp, At: now}
	default:
		return nil
	}
	_, err := s.cfg.IdentityLog.IdentityCommand(ctx, id, cmd, "agent:"+id)
	return err
}

// revocation reports why workerID may not connect, or "": its identity is
// revoked in the event log, or in the token store (then it is recorded in
// the log now).
func (s *Server) revocation(ctx context.Context, workerID string) string {
	if workerID == "" {
		return ""
	}
	if s.cfg.Revocations != nil {
		by, reason, ok, err := s.cfg.Revocations.WorkerRevocation(workerID)
		if err != nil {
			return err.Error() // fail closed, but record nothing: it may pass
		}
		if ok {
			if s.cfg.IdentityLog != nil {
				_, err := s.cfg.IdentityLog.IdentityCommand(ctx, workerID,
					domain.RevokeIdentity{By: by, Reason: reason, At: time.Now()}, "user:"+by)
				if err != nil && !errors.Is(err, domain.ErrNotFound) && !errors.Is(err, domain.ErrWorkerDeregistered) {
					s.log.Warn("record revocation", "worker", workerID, "err", err)
				}
			}
			return fmt.Sprintf("worker %s is revoked: %s", workerID, reason)
		}
	}
	if s.cfg.IdentityLog != nil {
		w, err := s.cfg.IdentityLog.LoadWorker(ctx, workerID)
		if err != nil {
			return fmt.Sprintf("check worker %s: %v", workerID, err) // fail closed
		}
		if w.Revoked() {
			return fmt.Sprintf("worker %s is revoked: %s", workerID, w.RevokedReason)
		}
	}
	return ""
}

// clientCert is what a verified client certificate says.
type clientCert struct {
	worker   string // "" when the agent presented none
	key      *ecdsa.PublicKey
	notAfter time.Time
}

// peerCert returns the client certificate the TLS handshake verified against
// the CA (the listener verifies any that is given). A verified certificate
// that names no worker is refused.
func peerCert(ctx context.Context) (clientCert, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return clientCert{}, nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return clientCert{}, nil
	}
	leaf := ti.State.VerifiedChains[0][0]
	id := pki.WorkerID(leaf)
	key, _ := leaf.PublicKey.(*ecdsa.PublicKey)
	if id == "" || key == nil {
		return clientCert{}, errors.New("client certificate names no worker")
	}
	return clientCert{worker: id, key: key, notAfter: leaf.NotAfter}, nil
}

func (s *Server) recvHello(stream hwppb.WorkerProtocol_ConnectServer) (*hwppb.Hello, error) {
	type result struct {
		m   *hwppb.AgentMessage
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := stream.Recv()
		ch <- result{m, err}
	}()
	t := time.NewTimer(s.cfg.HelloTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		h := r.m.GetHello()
		if h == nil {
			return nil, status.Error(codes.InvalidArgument, "first message must be hello")
		}
		return h, nil
	case <-t.C:
		return nil, status.Errorf(codes.DeadlineExceeded, "no hello within %s", s.cfg.HelloTimeout)
	}
}

// check returns why hello is refused, or nil, and the id of the join token
// that admitted it (with a Joiner). An agent with a client certificate
// speaks only for the worker it names and needs no token; any agent naming a
// revoked worker is refused, whatever it presents.
func (s *Server) check(ctx context.Context, h *hwppb.Hello, pc clientCert) (string, *hwppb.Refused) {
	v := h.GetProtocolVersion()
	if _, err := Negotiate(ProtocolVersion, Version{Major: v.GetMajor(), Minor: v.GetMinor()}); err != nil {
		return "", &hwppb.Refused{Code: hwppb.Refused_INCOMPATIBLE_VERSION, Message: err.Error(),
			ServerVersion: &hwppb.Version{Major: ProtocolVersion.Major, Minor: ProtocolVersion.Minor}}
	}
	if pc.worker != "" && pc.worker != h.GetAgentId() {
		return "", &hwppb.Refused{Code: hwppb.Refused_UNAUTHENTICATED,
			Message: fmt.Sprintf("client certificate belongs to worker %s, not %q", pc.worker, h.GetAgentId())}
	}
	if why := s.revocation(ctx, h.GetAgentId()); why != "" {
		return "", &hwppb.Refused{Code: hwppb.Refused_UNAUTHENTICATED, Message: why}
	}
	if pc.worker != "" && s.cfg.Identities != nil {
		return "", nil // the handshake proved the worker id
	}
	if it := h.GetCredentials().GetIdentityToken(); it != "" && s.cfg.Identities != nil {
		w, _, err := s.cfg.Identities.Verify(it)
		if err != nil {
			return "", &hwppb.Refused{Code: hwppb.Refused_UNAUTHENTICATED, Message: err.Error()}
		}
		if w != h.GetAgentId() {
			return "", &hwppb.Refused{Code: hwppb.Refused_UNAUTHENTICATED, Message: "identity token belongs to another worker"}
		}
		return "", nil
	}
	if s.cfg.Joiner != nil {
		tok := h.GetCredentials().GetJoinToken()
		if tok == "" {
			return "", &hwppb.Refused{Code: hwppb.Refused_UNAUTHENTICATED, Message: "join token is missing"}
		}
		id, err := s.cfg.Joiner.Join(tok, h.GetAgentId())
		if err != nil {
			return "", &hwppb.Refused{Code: hwppb.Refused_UNAUTHENTICATED, Message: err.Error()}
		}
		return id, nil
	}
	if s.cfg.JoinToken != "" &&
		subtle.ConstantTimeCompare([]byte(h.GetCredentials().GetJoinToken()), []byte(s.cfg.JoinToken)) != 1 {
		return "", &hwppb.Refused{Code: hwppb.Refused_UNAUTHENTICATED, Message: "join token is missing or wrong"}
	}
	return "", nil
}

func toCoreHello(h *hwppb.Hello) core.Hello {
	c := h.GetCapacity()
	out := core.Hello{
		WorkerID: h.GetAgentId(), Name: h.GetName(), Labels: h.GetLabels(), AgentVersion: h.GetAgentVersion(),
		ProtocolVersion: h.GetProtocolVersion().GetMajor(),
		Capacity: domain.Resources{Slots: int64(c.GetSlots()), CPUMillis: clampInt64(c.GetCpuMillis()),
			MemoryBytes: clampInt64(c.GetMemoryBytes())},
	}
	if out.Name == "" {
		out.Name = h.GetHostname()
	}
	for _, r := range h.GetRunningJobs() {
		out.Running = append(out.Running, core.JobRef{JobID: r.GetJobId(), Attempt: r.GetAttempt()})
	}
	return out
}

func clampInt64(v uint64) int64 {
	if v > 1<<62 {
		return 1 << 62
	}
	return int64(v)
}

// session is one agent stream. It implements core.Agent: the core queues
// messages; a sender goroutine writes them. Reports are applied in batches
// by a reporter goroutine, so reading the stream never waits for a commit.
type session struct {
	s      *Server
	stream hwppb.WorkerProtocol_ConnectServer
	worker string
	// identity is the agent's current identity token (set before run; then
	// owned by guard), key the agent's client certificate key (nil: none)
	// and certNotAfter that certificate's expiry.
	identity     string
	key          *ecdsa.PublicKey
	certNotAfter time.Time

	out chan *hwppb.ServerMessage
	// reports buffers what the agent reported for the reporter. A report
	// is ~140 bytes and the buffer is allocated whole: at 1,024 a session
	// cost ~140 KB, 140 MB at 1,000 agents.
	reports chan pendingReport
	done    chan struct{}
	once    sync.Once

	mu     sync.Mutex
	fenced map[core.JobRef]bool
}

type pendingReport struct {
	r       core.Report
	fin     *hwppb.JobFinished
	flushed chan struct{} // a marker: closed when the reports before it are applied
}

func newSession(s *Server, stream hwppb.WorkerProtocol_ConnectServer) *session {
	return &session{s: s, stream: stream, out: make(chan *hwppb.ServerMessage, 4096),
		reports: make(chan pendingReport, reportBuffer), done: make(chan struct{}), fenced: map[core.JobRef]bool{}}
}

func (ss *session) send(m *hwppb.ServerMessage) error {
	select {
	case <-ss.done:
		return errors.New("agent stream closed")
	default:
	}
	select {
	case ss.out <- m:
		return nil
	default:
		return errors.New("agent send queue full")
	}
}

// Assign implements core.Agent.
func (ss *session) Assign(a core.Assignment) error {
	return ss.send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Assign{Assign: &hwppb.Assign{
		JobId: a.JobID, Attempt: a.Attempt, Script: a.Script, Env: a.Env, Secrets: a.Secrets,
		Timeout: durationOrNil(a.Timeout), CancelGrace: durationOrNil(a.CancelGrace),
	}}})
}

// Cancel implements core.Agent.
func (ss *session) Cancel(jobID string, attempt uint32, reason string, grace time.Duration) error {
	return ss.send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Cancel{Cancel: &hwppb.Cancel{
		JobId: jobID, Attempt: attempt, Reason: reason, Grace: durationOrNil(grace)}}})
}

// Fence implements core.Agent. Each attempt is fenced once per stream.
func (ss *session) Fence(jobID string, attempt uint32, reason string) error {
	ss.mu.Lock()
	ref := core.JobRef{JobID: jobID, Attempt: attempt}
	if ss.fenced[ref] {
		ss.mu.Unlock()
		return nil
	}
	ss.fenced[ref] = true
	ss.mu.Unlock()
	ss.s.log.Warn("fencing stale attempt", "worker", ss.worker, "job", jobID, "attempt", attempt, "reason", reason)
	return ss.send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Fence{Fence: &hwppb.Fence{JobId: jobID, Attempt: attempt, Reason: reason}}})
}

// Drain implements core.Agent.
func (ss *session) Drain(reason string) error {
	return ss.send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Drain{Drain: &hwppb.Drain{Reason: reason}}})
}

func (ss *session) isFenced(jobID string, attempt uint32) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.fenced[core.JobRef{JobID: jobID, Attempt: attempt}]
}

func durationOrNil(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}

// run serves the stream until it ends; it waits for its goroutines.
func (ss *session) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	sendErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		sendErr <- ss.sender(ctx)
		cancel()
	}()
	go func() {
		defer wg.Done()
		ss.reporter(ctx)
	}()
	// The reader runs on its own goroutine so a server stop can end the
	// handler while Recv is blocked; the gRPC server then closes the stream
	// and the reader returns (Server.Wait waits for it).
	recvDone := make(chan error, 1)
	ss.s.recv.Add(1)
	go func() {
		defer ss.s.recv.Done()
		recvDone <- ss.receiver(ctx)
	}()
	cut := make(chan error, 1)
	if ss.s.cfg.Identities != nil && ss.identity != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ss.guard(ctx); err != nil {
				cut <- err
			}
		}()
	}
	var err error
	select {
	case err = <-recvDone:
	case err = <-cut:
	case <-ss.s.stop:
		err = status.Error(codes.Unavailable, "the server is shutting down: reconnect")
	}
	ss.once.Do(func() { close(ss.done) })
	cancel()
	wg.Wait()
	if err == nil || errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || status.Code(err) == codes.Unavailable {
		select {
		case serr := <-sendErr:
			if serr != nil && !errors.Is(serr, context.Canceled) {
				return serr
			}
		default:
		}
		return nil
	}
	return err
}

// guard renews the agent's identity token (and client certificate) before
// it expires and ends the stream (Unauthenticated) at the first heartbeat
// tick after it expired or was revoked.
func (ss *session) guard(ctx context.Context) error {
	t := time.NewTicker(ss.s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if why := ss.s.revocation(ctx, ss.worker); why != "" {
			if ctx.Err() != nil {
				return nil
			}
			ss.s.log.Warn("cutting agent stream", "worker", ss.worker, "err", why)
			// No new jobs go to it while it waits to be marked lost (then its
			// running jobs are re-queued). The stream takes no more messages
			// first: the agent must see the cut, not a drain it would obey by
			// leaving quietly.
			ss.once.Do(func() { close(ss.done) })
			if _, err := ss.s.core.DrainWorker(context.WithoutCancel(ctx), ss.worker, "server", why); err != nil {
				ss.s.log.Warn("drain revoked worker", "worker", ss.worker, "err", err)
			}
			return status.Error(codes.Unauthenticated, "identity: "+why)
		}
		fresh, exp, err := ss.s.cfg.Identities.Renew(ss.identity)
		if err != nil {
			ss.s.log.Warn("cutting agent stream", "worker", ss.worker, "err", err)
			return status.Errorf(codes.Unauthenticated, "identity: %v", err)
		}
		if fresh == "" {
			continue
		}
		ss.identity = fresh
		refresh := &hwppb.TokenRefresh{Token: fresh, ExpiresAt: timestamppb.New(exp)}
		var cert domain.CertRef
		if ss.key != nil && ss.s.cfg.Certifier != nil && time.Until(ss.certNotAfter) < certRenewBefore {
			cc, err := ss.s.cfg.Certifier.IssueClient(ss.key, ss.worker, time.Now())
			if err != nil {
				ss.s.log.Warn("renew client certificate", "worker", ss.worker, "err", err)
			} else {
				ss.certNotAfter = cc.NotAfter
				cert = domain.CertRef{Serial: cc.Serial, Fingerprint: cc.Fingerprint, NotAfter: cc.NotAfter}
				refresh.ClientCertificate, refresh.ClientCertificateExpiresAt = cc.DER, timestamppb.New(cc.NotAfter)
			}
		}
		if l := ss.s.cfg.IdentityLog; l != nil {
			_, err := l.IdentityCommand(ctx, ss.worker, domain.RenewIdentity{Cert: cert, IdentityExpiresAt: exp, At: time.Now()}, "system:identity")
			if errors.Is(err, domain.ErrIdentityRevoked) {
				return status.Errorf(codes.Unauthenticated, "identity: %v", err)
			}
			if err != nil {
				ss.s.log.Warn("record identity renewal", "worker", ss.worker, "err", err)
			}
		}
		if err := ss.send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_TokenRefresh{TokenRefresh: refresh}}); err != nil {
			return nil // the stream is ending anyway
		}
	}
}

func (ss *session) sender(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-ss.out:
			if err := ss.stream.Send(m); err != nil {
				return err
			}
		}
	}
}

// receiver reads agent messages. Log chunks are stored inline (so a job's
// finish is never applied before its output); reports go to the reporter.
func (ss *session) receiver(ctx context.Context) error {
	for {
		m, err := ss.stream.Recv()
		if err != nil {
			return err
		}
		switch x := m.GetMsg().(type) {
		case *hwppb.AgentMessage_Heartbeat:
			h := x.Heartbeat
			err := ss.s.core.Heartbeat(ss.worker, core.Telemetry{CPUPercent: h.GetCpuPercent(),
				MemoryUsedBytes: clampInt64(h.GetMemoryUsedBytes()), MemoryTotal: clampInt64(h.GetMemoryTotalBytes()),
				FreeSlots: int(h.GetFreeSlots())})
			if errors.Is(err, core.ErrUnknownWorker) {
				// The server stopped listening to this stream (the worker was
				// marked lost while it was silent): the agent must reconnect,
				// which records worker.reconnected and resumes its jobs.
				return status.Error(codes.Unavailable, "worker was marked lost: reconnect")
			}
		case *hwppb.AgentMessage_JobAccepted:
			ss.report(ctx, pendingReport{r: core.Report{Kind: core.ReportAccepted, JobID: x.JobAccepted.GetJobId(), Attempt: x.JobAccepted.GetAttempt()}})
		case *hwppb.AgentMessage_JobRejected:
			r := x.JobRejected
			ss.report(ctx, pendingReport{r: core.Report{Kind: core.ReportRejected, JobID: r.GetJobId(), Attempt: r.GetAttempt(),
				Message: r.GetReason().String() + ": " + r.GetMessage()}})
		case *hwppb.AgentMessage_JobStarted:
			r := x.JobStarted
			ss.report(ctx, pendingReport{r: core.Report{Kind: core.ReportStarted, JobID: r.GetJobId(), Attempt: r.GetAttempt(),
				At: r.GetStartedAt().AsTime()}})
		case *hwppb.AgentMessage_LogChunk:
			ss.logChunk(x.LogChunk)
		case *hwppb.AgentMessage_JobFinished:
			f := x.JobFinished
			rep := core.Report{Kind: core.ReportFinished, JobID: f.GetJobId(), Attempt: f.GetAttempt(),
				ExitCode: int(f.GetExitCode()), Signal: f.GetSignal(), Message: f.GetMessage(), At: f.GetFinishedAt().AsTime()}
			if f.GetStartedAt() != nil && f.GetFinishedAt() != nil {
				rep.Runtime = f.GetFinishedAt().AsTime().Sub(f.GetStartedAt().AsTime())
			}
			switch f.GetReason() {
			case hwppb.FinishReason_TIMED_OUT:
				rep.TimedOut = true
			case hwppb.FinishReason_AGENT_STOPPED:
				rep.Stopped = true
			case hwppb.FinishReason_START_FAILED:
				if rep.Message == "" {
					rep.Message = "the job could not start"
				}
			}
			ss.report(ctx, pendingReport{r: rep, fin: f})
		case *hwppb.AgentMessage_Draining:
			// The agent takes no new jobs: stop assigning to it.
			if _, err := ss.s.core.DrainWorker(ctx, ss.worker, "agent:"+ss.worker, x.Draining.GetReason()); err != nil {
				ss.s.log.Warn("drain worker", "worker", ss.worker, "err", err)
			}
		case *hwppb.AgentMessage_Goodbye:
			// The agent leaves on purpose (drained or stopped): it is gone,
			// not lost. Its last reports are applied first.
			ss.flushReports(ctx)
			reason := "agent left: " + x.Goodbye.GetReason().String()
			if err := ss.s.core.Leave(ctx, ss.worker, reason); err != nil {
				ss.s.log.Warn("deregister worker", "worker", ss.worker, "err", err)
			}
			return nil
		case *hwppb.AgentMessage_Hello:
			return status.Error(codes.InvalidArgument, "hello sent twice")
		default:
			return status.Error(codes.InvalidArgument, "empty or unknown agent message")
		}
	}
}

// flushReports waits until the reporter has applied every queued report.
func (ss *session) flushReports(ctx context.Context) {
	done := make(chan struct{})
	ss.report(ctx, pendingReport{flushed: done})
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (ss *session) report(ctx context.Context, r pendingReport) {
	select {
	case ss.reports <- r:
	case <-ctx.Done():
	}
}

func (ss *session) logChunk(c *hwppb.LogChunk) {
	job, attempt := c.GetJobId(), c.GetAttempt()
	if ss.isFenced(job, attempt) {
		return
	}
	if err := ss.s.core.CheckAttempt(ss.worker, job, attempt); err != nil {
		_ = ss.Fence(job, attempt, err.Error())
		return
	}
	if uint32(len(c.GetData())) > ss.s.cfg.MaxChunkBytes {
		ss.s.log.Warn("log chunk too large", "worker", ss.worker, "job", job, "bytes", len(c.GetData()))
	}
	acked, err := ss.s.logs.Append(job, attempt, c.GetOffset(), c.GetData())
	if err != nil {
		// A gap: tell the agent what is stored so it resends from there.
		ss.s.log.Warn("store log chunk", "worker", ss.worker, "job", job, "attempt", attempt, "err", err)
	}
	_ = ss.send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_LogAck{LogAck: &hwppb.LogAck{JobId: job, Attempt: attempt, Offset: acked}}})
}

// reportBuffer is the capacity of a session's reports channel; a full one
// holds the agent's stream back until the reporter catches up.
const reportBuffer = 256

// reporter applies reports in batches: whatever is queued when it is free
// goes to the core in one ReportMany (one append).
func (ss *session) reporter(ctx context.Context) {
	batch := make([]pendingReport, 0, 256)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case r := <-ss.reports:
			batch = append(batch, r)
		}
	fill:
		for len(batch) < 1024 {
			select {
			case r := <-ss.reports:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		var marks []chan struct{}
		reps := make([]core.Report, 0, len(batch))
		kept := batch[:0:0]
		for _, r := range batch {
			if r.flushed != nil {
				marks = append(marks, r.flushed)
				continue
			}
			reps = append(reps, r.r)
			kept = append(kept, r)
		}
		var errs []error
		if len(reps) > 0 {
			errs = ss.s.core.ReportMany(context.WithoutCancel(ctx), ss.worker, reps)
		}
		for i, err := range errs {
			r := kept[i]
			switch {
			case err == nil:
			case errors.Is(err, domain.ErrStaleAttempt):
				_ = ss.Fence(r.r.JobID, r.r.Attempt, err.Error())
				continue
			case r.fin != nil && errors.Is(err, domain.ErrJobTerminal):
				// A finish repeated after a reconnect: already recorded.
			default:
				// Not recorded: no finished ack, so the agent keeps the
				// attempt and reports it again after reconnecting.
				ss.s.log.Warn("agent report", "worker", ss.worker, "job", r.r.JobID, "attempt", r.r.Attempt, "err", err)
				continue
			}
			if r.fin != nil {
				// A job that wrote nothing has no log file; creating and
				// syncing an empty one per job would cost more than the job.
				// Readers learn that it ended from its events.
				total := r.fin.GetLogBytes()
				if total > 0 || ss.s.logs.Size(r.r.JobID, r.r.Attempt) > 0 {
					if err := ss.s.logs.Finish(r.r.JobID, r.r.Attempt, total, r.fin.GetLogCrc32C()); err != nil {
						ss.s.log.Warn("finish log", "job", r.r.JobID, "attempt", r.r.Attempt, "err", err)
					}
				}
				_ = ss.send(&hwppb.ServerMessage{Msg: &hwppb.ServerMessage_LogAck{LogAck: &hwppb.LogAck{
					JobId: r.r.JobID, Attempt: r.r.Attempt, Offset: ss.s.logs.Size(r.r.JobID, r.r.Attempt), Finished: true}}})
			}
		}
		for _, m := range marks {
			close(m)
		}
	}
}
