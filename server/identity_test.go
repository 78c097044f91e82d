package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/hwp"
	"github.com/hodei-jobs/hodei/hwp/hwppb"
	"github.com/hodei-jobs/hodei/pki"
)

// proxy forwards TCP to a server until cut: cutting it drops every
// connection at once, as a crash or a network failure does (no Goodbye
// reaches the server).
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// runAgentAt runs an agent on workDir against addr until the returned stop
// is called (or the test ends).
func runAgentAt(t *testing.T, ctx context.Context, addr, workDir, token string, cfg *tls.Config) (*agent.Agent, <-chan error, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	a, err := agent.New(agent.Config{Server: addr, Name: "a", Slots: 1, WorkDir: workDir, Token: token, TLS: cfg,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() { done <- a.Run(ctx); close(finished) }()
	stop := func() { cancel(); <-finished }
	t.Cleanup(stop)
	return a, done, stop
}

func welcomed(t *testing.T, s *secureServer, a *agent.Agent) {
	t.Helper()
	select {
	case <-a.Welcomed():
	case <-s.ctx.Done():
		t.Fatal("agent was not welcomed")
	}
}

// workerEvents returns the event types of worker id's stream.
func workerEvents(t *testing.T, s *secureServer, id string) []string {
	t.Helper()
	evs, err := s.store.ReadStream(s.ctx, domain.WorkerStream(id), 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// agentCert loads the client certificate an agent saved in workDir.
func agentCert(t *testing.T, workDir string) tls.Certificate {
	t.Helper()
	dir := filepath.Join(workDir, agent.IdentityDir)
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatalf("load the agent's saved certificate: %v", err)
	}
	return c
}

// rawConnect opens a stream with TLS config cfg (nil: trust the CA, no
// client certificate), sends h and returns the stream and the answer to it
// (nil with the error when there is none).
func rawConnect(t *testing.T, s *secureServer, cfg *tls.Config, h *hwppb.Hello) (hwppb.WorkerProtocol_ConnectClient, *hwppb.ServerMessage, error) {
	t.Helper()
	if cfg == nil {
		cfg = s.bundle.ClientTLS()
	}
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(s.ctx)
	t.Cleanup(cancel)
	st, err := hwppb.NewWorkerProtocolClient(cc).Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	h.ProtocolVersion = &hwppb.Version{Major: hwp.ProtocolVersion.Major, Minor: hwp.ProtocolVersion.Minor}
	h.Name, h.AgentVersion, h.Capacity = "raw", "test", &hwppb.Capacity{Slots: 1}
	if err := st.Send(&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Hello{Hello: h}}); err != nil {
		return nil, nil, err
	}
	m, err := st.Recv()
	if err != nil {
		return st, nil, err
	}
	return st, m, nil
}

// withCert trusts the server's CA and presents c.
func withCert(s *secureServer, c tls.Certificate) *tls.Config {
	cfg := s.bundle.ClientTLS()
	cfg.Certificates = []tls.Certificate{c}
	return cfg
}

// finalStatus reads st until it ends and returns the status code it ended
// with.
func finalStatus(st hwppb.WorkerProtocol_ConnectClient) codes.Code {
	for {
		if _, err := st.Recv(); err != nil {
			return status.Code(err)
		}
	}
}

// An enrolled agent keeps its identity in its work dir: restarted with no
// join token (the single-use token is spent), it reconnects over mutual
// TLS with its client certificate as the same worker.
func TestRestartedAgentReconnectsWithItsCertificate(t *testing.T) {
	s, _, _ := startIdentityServer(t)
	jt, _, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	workDir := t.TempDir()
	p := startProxy(t, s.GRPCAddr())
	first, _, stop := runAgentAt(t, s.ctx, p.addr(), workDir, jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	welcomed(t, s, first)
	id := first.WorkerID()
	// The agent dies without a goodbye: the server still knows the worker.
	p.cut()
	stop()

	saved, err := agent.LoadIdentity(workDir)
	if err != nil || saved.WorkerID != id || saved.CAFingerprint != jt.CAFingerprint {
		t.Fatalf("LoadIdentity() = %+v, %v; want worker %s pinned to the CA", saved, err, id)
	}
	cert := agentCert(t, workDir)
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	if pki.WorkerID(leaf) != id {
		t.Fatalf("saved certificate is for %q, want %s", pki.WorkerID(leaf), id)
	}

	// No token: the saved CA fingerprint is the trust anchor, the
	// certificate the credential.
	second, done, _ := runAgentAt(t, s.ctx, s.GRPCAddr(), workDir, "", agent.PinnedTLS(saved.CAFingerprint, "127.0.0.1", nil))
	select {
	case <-second.Welcomed():
	case err := <-done:
		t.Fatalf("restarted agent Run() = %v, want it welcomed", err)
	case <-s.ctx.Done():
		t.Fatal("restarted agent was not welcomed")
	}
	if got := second.WorkerID(); got != id {
		t.Fatalf("restarted agent is worker %s, want %s", got, id)
	}
	got := strings.Join(workerEvents(t, s, id), " ")
	if want := "worker.registered worker.enrolled worker.reconnected"; got != want {
		t.Fatalf("worker events = %s, want %s", got, want)
	}
	ts, err := s.tokens.List()
	if err != nil || len(ts) != 1 || ts[0].Uses() != 1 {
		t.Fatalf("tokens = %+v, %v; want the one token used once", ts, err)
	}
}

// A client certificate speaks only for the worker it names; certificates
// of another CA, and expired ones, fail the handshake.
func TestClientCertificateSpeaksOnlyForItsWorker(t *testing.T) {
	s, _, _ := startIdentityServer(t)
	jt, _, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 2)
	if err != nil {
		t.Fatal(err)
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	a, _, _ := runAgentAt(t, s.ctx, s.GRPCAddr(), dirA, jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	b, _, _ := runAgentAt(t, s.ctx, s.GRPCAddr(), dirB, jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	welcomed(t, s, a)
	welcomed(t, s, b)
	certA := agentCert(t, dirA)

	// A's certificate, claiming B (or nobody): refused, PermissionDenied.
	for _, claim := range []string{b.WorkerID(), ""} {
		st, m, err := rawConnect(t, s, withCert(s, certA), &hwppb.Hello{AgentId: claim, Credentials: &hwppb.Credentials{JoinToken: jt.String()}})
		if err != nil {
			t.Fatalf("hello as %q with A's certificate: %v", claim, err)
		}
		if r := m.GetRefused(); r == nil || r.GetCode() != hwppb.Refused_UNAUTHENTICATED || !strings.Contains(r.GetMessage(), "belongs to worker "+a.WorkerID()) {
			t.Fatalf("hello as %q with A's certificate = %v, want refused", claim, m)
		}
		if code := finalStatus(st); code != codes.PermissionDenied {
			t.Fatalf("stream of hello as %q with A's certificate ended with %v, want PermissionDenied", claim, code)
		}
	}

	// A's worker id with neither its certificate nor a token: refused.
	_, m, err := rawConnect(t, s, nil, &hwppb.Hello{AgentId: a.WorkerID()})
	if err != nil {
		t.Fatal(err)
	}
	if r := m.GetRefused(); r == nil || r.GetCode() != hwppb.Refused_UNAUTHENTICATED {
		t.Fatalf("hello as A without credentials = %v, want refused", m)
	}

	// A certificate for A's key from another CA, and an expired one from
	// ours: the TLS handshake fails before any hello.
	other, err := pki.LoadOrCreate(t.TempDir(), pki.DefaultSANs(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key := certA.PrivateKey.(*ecdsa.PrivateKey)
	for name, issue := range map[string]func() (pki.ClientCert, error){
		"another CA": func() (pki.ClientCert, error) { return other.IssueClient(&key.PublicKey, a.WorkerID(), time.Now()) },
		"expired": func() (pki.ClientCert, error) {
			return s.bundle.IssueClient(&key.PublicKey, a.WorkerID(), time.Now().Add(-2*pki.ClientLifetime))
		},
	} {
		cc, err := issue()
		if err != nil {
			t.Fatal(err)
		}
		cert := tls.Certificate{Certificate: [][]byte{cc.DER}, PrivateKey: key}
		_, m, err := rawConnect(t, s, withCert(s, cert), &hwppb.Hello{AgentId: a.WorkerID()})
		if err == nil {
			t.Fatalf("%s: hello with the certificate = %v, want the handshake to fail", name, m)
		}
	}
}

// A copied join token enrols its holder as a new worker, which cannot
// report on, let alone finish, another worker's job: it is fenced.
func TestCopiedJoinTokenCannotFinishAnotherWorkersJob(t *testing.T) {
	s, _, _ := startIdentityServer(t)
	jt, _, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 2)
	if err != nil {
		t.Fatal(err)
	}
	victim, _, _ := runAgentAt(t, s.ctx, s.GRPCAddr(), t.TempDir(), jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	welcomed(t, s, victim)
	res := s.Core().Submit(s.ctx, "alice", []core.SubmitRequest{{Spec: domain.JobSpec{Name: "long", Script: "sleep 30"}}})
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	jobID := res[0].JobID
	sub := &watcher{sub: s.store.Subscribe(0)}
	defer sub.sub.Close()
	waitEvent(t, s.ctx, sub, domain.TypeJobStarted, domain.JobStream(jobID))

	st, m, err := rawConnect(t, s, nil, &hwppb.Hello{AgentId: victim.WorkerID(), Credentials: &hwppb.Credentials{JoinToken: jt.String()},
		RunningJobs: []*hwppb.RunningJob{{JobId: jobID, Attempt: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	w := m.GetWelcome()
	if w == nil || w.GetWorkerId() == victim.WorkerID() {
		t.Fatalf("hello with a copied token and the victim's id = %v, want a Welcome for a new worker", m)
	}
	now := timestamppb.Now()
	if err := st.Send(&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_JobFinished{JobFinished: &hwppb.JobFinished{
		JobId: jobID, Attempt: 1, ExitCode: 0, StartedAt: now, FinishedAt: now}}}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("attacker stream: %v, want a Fence", err)
		}
		if f := m.GetFence(); f != nil && f.GetJobId() == jobID {
			break
		}
	}
	j, err := s.Core().Job(s.ctx, jobID)
	if err != nil || j.Status != domain.JobStatusRunning || j.Worker != victim.WorkerID() {
		t.Fatalf("job = %s on %s, %v; want still running on the victim %s", j.Status, j.Worker, err, victim.WorkerID())
	}
	if _, err := s.Core().Cancel(s.ctx, jobID, "test", "done"); err != nil {
		t.Fatal(err)
	}
}

// Revoking a worker cuts its stream at the next heartbeat tick, records
// worker.identity_revoked, and its certificate is refused from then on.
func TestRevokedWorkerIsCutAndItsCertificateRefused(t *testing.T) {
	s, _, _ := startIdentityServer(t)
	jt, _, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	workDir := t.TempDir()
	a, done, _ := runAgentAt(t, s.ctx, s.GRPCAddr(), workDir, jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	welcomed(t, s, a)
	id := a.WorkerID()
	cert := agentCert(t, workDir)
	sub := &watcher{sub: s.store.Subscribe(0)}
	defer sub.sub.Close()
	if err := s.tokens.RevokeWorker(id, "ops", "laptop stolen"); err != nil {
		t.Fatal(err)
	}
	e := waitEvent(t, s.ctx, sub, domain.TypeWorkerIdentityRevoked, domain.WorkerStream(id))
	if e.Actor != "user:ops" {
		t.Fatalf("worker.identity_revoked actor = %q, want user:ops", e.Actor)
	}
	// Cut at that tick, and drained: no new jobs go to it.
	waitEvent(t, s.ctx, sub, domain.TypeWorkerDrainStarted, domain.WorkerStream(id))
	// Cut, refused with its certificate, and the spent join token does not
	// bring it back: the agent gives up.
	var refused *agent.RefusedError
	select {
	case err := <-done:
		if !errors.As(err, &refused) || refused.Code != hwppb.Refused_UNAUTHENTICATED {
			t.Fatalf("agent Run() = %v, want refused UNAUTHENTICATED", err)
		}
	case <-s.ctx.Done():
		t.Fatal("revoked agent still connected")
	}
	// Revocation is the worker's state in the log, not only the token store.
	if err := s.Core().WaitFor(s.ctx, e.Position); err != nil {
		t.Fatal(err)
	}
	w, ok := s.Core().Workers().Get(id)
	if !w.Revoked || !ok {
		t.Fatalf("workers view of %s = %+v, want revoked", id, w)
	}
	_, m, rerr := rawConnect(t, s, withCert(s, cert), &hwppb.Hello{AgentId: id})
	if rerr != nil {
		t.Fatal(rerr)
	}
	if r := m.GetRefused(); r == nil || !strings.Contains(r.GetMessage(), "revoked") {
		t.Fatalf("hello with the revoked worker's certificate = %v, want refused", m)
	}
	// With a new join token, the same work dir comes back as a new worker.
	jt2, _, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	again, done2, _ := runAgentAt(t, s.ctx, s.GRPCAddr(), workDir, jt2.String(), agent.PinnedTLS(jt2.CAFingerprint, "127.0.0.1", nil))
	select {
	case <-again.Welcomed():
	case err := <-done2:
		t.Fatalf("agent with a new token Run() = %v, want it welcomed", err)
	case <-s.ctx.Done():
		t.Fatal("agent with a new token was not welcomed")
	}
	if again.WorkerID() == id || again.WorkerID() == "" {
		t.Fatalf("agent with a new token is worker %q, want a new worker", again.WorkerID())
	}
}

// Revoking the join token a worker enrolled with revokes the worker: it is
// recorded in the worker's events.
func TestRevokedJoinTokenIsRecordedOnItsWorkers(t *testing.T) {
	s, _, _ := startIdentityServer(t)
	jt, tok, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, done, _ := runAgentAt(t, s.ctx, s.GRPCAddr(), t.TempDir(), jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	welcomed(t, s, a)
	sub := &watcher{sub: s.store.Subscribe(0)}
	defer sub.sub.Close()
	if err := s.tokens.Revoke(tok.ID); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, s.ctx, sub, domain.TypeWorkerIdentityRevoked, domain.WorkerStream(a.WorkerID()))
	<-done
}

// agedCertifier issues certificates as if age ago: they are already in the
// last third of their life, so the server renews them at once.
type agedCertifier struct {
	s   **secureServer
	age time.Duration
}

func (c agedCertifier) IssueClient(pub *ecdsa.PublicKey, workerID string, now time.Time) (pki.ClientCert, error) {
	return (*c.s).bundle.IssueClient(pub, workerID, now.Add(-c.age))
}

// Renewal over the stream is recorded, and a certificate close to expiry is
// renewed with the identity token.
func TestIdentityRenewalIsRecordedAndRenewsTheCertificate(t *testing.T) {
	var s *secureServer
	s, clk, w := startIdentityServer(t, agedCertifier{s: &s, age: 20 * time.Hour})
	jt, _, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, _, _ := runAgentAt(t, s.ctx, s.GRPCAddr(), t.TempDir(), jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	next(t, s.ctx, w.issued, "identity in Welcome")
	welcomed(t, s, a)
	sub := &watcher{sub: s.store.Subscribe(0)}
	defer sub.sub.Close()
	enrolled := decode(t, waitEvent(t, s.ctx, sub, domain.TypeWorkerEnrolled, domain.WorkerStream(a.WorkerID()))).(domain.WorkerEnrolled)
	clk.add(11 * time.Minute)
	renewed := decode(t, waitEvent(t, s.ctx, sub, domain.TypeWorkerIdentityRenewed, domain.WorkerStream(a.WorkerID()))).(domain.WorkerIdentityRenewed)
	if renewed.Cert.Serial == "" || renewed.Cert.Serial == enrolled.Cert.Serial || renewed.IdentityExpiresAt.IsZero() {
		t.Fatalf("worker.identity_renewed = %+v after enrolment with %+v, want a new certificate", renewed, enrolled.Cert)
	}
}

func decode(t *testing.T, env eventstore.Envelope) domain.Event {
	t.Helper()
	ev, err := command.NewCodec().Decode(&env)
	if err != nil {
		t.Fatal(err)
	}
	return ev.(domain.Event)
}
