package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/hwp"
	"github.com/hodei-jobs/hodei/hwp/hwppb"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/pki"
	"github.com/hodei-jobs/hodei/server"
)

type secureServer struct {
	*server.Server
	ctx    context.Context
	bundle *pki.Bundle
	tokens *auth.Store
	store  eventstore.Store
}

// startSecureServer runs a server as `hodei server` does by default: TLS
// from its own CA, agents admitted by managed join tokens.
func startSecureServer(t *testing.T) *secureServer {
	t.Helper()
	return startSecureServerWith(t, time.Second, nil)
}

// startSecureServerWith also gives agents identities from ids (nil: none),
// and client certificates from the CA or the first of certifier.
func startSecureServerWith(t *testing.T, hb time.Duration, ids func(dir string, tokens *auth.Store) hwp.Identities, certifier ...hwp.Certifier) *secureServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	dir := t.TempDir()
	b, err := pki.LoadOrCreate(dir, pki.DefaultSANs(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs, err := logstore.Open(t.TempDir(), logstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var identities hwp.Identities
	if ids != nil {
		identities = ids(dir, tokens)
	}
	store := memory.New(memory.Options{})
	var cert hwp.Certifier = b
	if len(certifier) > 0 {
		cert = certifier[0]
	}
	srv, err := server.New(ctx, store, logs, server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), Core: core.Config{HeartbeatInterval: hb}, ShutdownGrace: time.Second,
		TLS: b.ServerTLS(), Joiner: tokens, Identities: identities, Certifier: cert, Revocations: tokens})
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
	return &secureServer{Server: srv, ctx: ctx, bundle: b, tokens: tokens, store: store}
}

// runAgent runs an agent with token and TLS config; it returns the agent
// and a channel with Run's result.
func runAgent(t *testing.T, s *secureServer, token string, cfg *tls.Config) (*agent.Agent, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(s.ctx)
	a, err := agent.New(agent.Config{Server: s.GRPCAddr(), Name: "a", Slots: 1, WorkDir: t.TempDir(), Token: token, TLS: cfg,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() { done <- a.Run(ctx); close(finished) }()
	t.Cleanup(func() { cancel(); <-finished })
	return a, done
}

func TestAgentWithOnlyAJoinTokenTrustsTheServer(t *testing.T) {
	s := startSecureServer(t)
	jt, tok, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := runAgent(t, s, jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	select {
	case <-a.Welcomed():
	case <-s.ctx.Done():
		t.Fatal("agent with a join token was not welcomed")
	}
	ts, err := s.tokens.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].ID != tok.ID || len(ts[0].Enrolled) != 1 || ts[0].Enrolled[0].WorkerID != a.WorkerID() {
		t.Fatalf("tokens after enrolment = %+v, want one enrolment of %s", ts, a.WorkerID())
	}
	// The single use is spent: a second agent with the same token is refused.
	_, done := runAgent(t, s, jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	var refused *agent.RefusedError
	if err := <-done; !errors.As(err, &refused) || refused.Code != hwppb.Refused_UNAUTHENTICATED ||
		!strings.Contains(refused.Message, "used up") {
		t.Fatalf("second agent Run() = %v, want refused: used up", err)
	}
}

func TestAgentsWithBadJoinTokensAreRefused(t *testing.T) {
	s := startSecureServer(t)
	pinned := agent.PinnedTLS(s.bundle.Fingerprint(), "127.0.0.1", nil)
	expired, _, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Nanosecond, 1)
	if err != nil {
		t.Fatal(err)
	}
	revoked, rt, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.tokens.Revoke(rt.ID); err != nil {
		t.Fatal(err)
	}
	forged := revoked
	forged.ID = strings.Repeat("1", 16)
	for name, tok := range map[string]string{"no token": "", "expired": expired.String(), "revoked": revoked.String(),
		"unknown": forged.String(), "not a join token": "join-secret"} {
		_, done := runAgent(t, s, tok, pinned)
		var refused *agent.RefusedError
		if err := <-done; !errors.As(err, &refused) || refused.Code != hwppb.Refused_UNAUTHENTICATED {
			t.Errorf("%s: Run() = %v, want refused UNAUTHENTICATED", name, err)
		}
	}
}

func TestTLSListenersRejectWrongCAAndPlaintext(t *testing.T) {
	s := startSecureServer(t)
	other, err := pki.LoadOrCreate(t.TempDir(), pki.DefaultSANs(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Pinned to another CA: the handshake fails before any token is sent.
	_, err = tls.Dial("tcp", s.GRPCAddr(), agent.PinnedTLS(other.Fingerprint(), "127.0.0.1", nil))
	if !errors.Is(err, agent.ErrFingerprintMismatch) {
		t.Fatalf("grpc Dial(wrong fingerprint) = %v, want %v", err, agent.ErrFingerprintMismatch)
	}
	// HTTP is TLS too: trusted with the CA, refused in plaintext.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: s.bundle.ClientTLS()}, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + s.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatalf("GET https /healthz = %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "ok") {
		t.Fatalf("GET https /healthz = %d %q", resp.StatusCode, b)
	}
	resp, err = (&http.Client{Timeout: 5 * time.Second}).Get("http://" + s.HTTPAddr() + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("GET http /healthz = 200, want plaintext refused")
		}
	}
	wrong := &http.Client{Transport: &http.Transport{TLSClientConfig: other.ClientTLS()}, Timeout: 5 * time.Second}
	if _, err := wrong.Get("https://" + s.HTTPAddr() + "/healthz"); err == nil {
		t.Fatal("GET https /healthz trusting another CA = nil, want an error")
	}
}

// clock is an injected clock for identities.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// watchedIDs signals what the server does with identities.
type watchedIDs struct {
	*auth.Identities
	issued  chan string // Welcome tokens (a new stream)
	renewed chan string // TokenRefresh tokens
}

func (w watchedIDs) Issue(id string) (string, time.Time, error) {
	tok, exp, err := w.Identities.Issue(id)
	select {
	case w.issued <- tok:
	default:
	}
	return tok, exp, err
}

func (w watchedIDs) Renew(tok string) (string, time.Time, error) {
	fresh, exp, err := w.Identities.Renew(tok)
	if fresh != "" {
		select {
		case w.renewed <- fresh:
		default:
		}
	}
	return fresh, exp, err
}

func startIdentityServer(t *testing.T, certifier ...hwp.Certifier) (*secureServer, *clock, watchedIDs) {
	t.Helper()
	clk := &clock{t: time.Now()}
	w := watchedIDs{issued: make(chan string, 100), renewed: make(chan string, 100)}
	s := startSecureServerWith(t, 100*time.Millisecond, func(dir string, tokens *auth.Store) hwp.Identities {
		ids, err := auth.OpenIdentities(dir, clk.now, tokens.WorkerRevoked)
		if err != nil {
			t.Fatal(err)
		}
		w.Identities = ids
		return w
	}, certifier...)
	return s, clk, w
}

func next(t *testing.T, ctx context.Context, ch <-chan string, what string) string {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("no %s", what)
		return ""
	}
}

func TestIdentityIsRenewedAcrossExpiryAndCutWhenExpired(t *testing.T) {
	s, clk, w := startIdentityServer(t)
	jt, _, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, done := runAgent(t, s, jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	first := next(t, s.ctx, w.issued, "identity in Welcome")
	<-a.Welcomed()
	// 11 minutes on: within 5 minutes of expiry, the next tick renews.
	clk.add(11 * time.Minute)
	fresh := next(t, s.ctx, w.renewed, "renewal")
	if fresh == first {
		t.Fatal("renewed token = the first one")
	}
	// Past the first token's expiry: the stream lives on the renewed token
	// (a further renewal comes, no new Welcome).
	clk.add(11 * time.Minute)
	next(t, s.ctx, w.renewed, "second renewal")
	select {
	case tok := <-w.issued:
		t.Fatalf("a new stream was welcomed (%.12s…) though the identity was renewed", tok)
	default:
	}
	// A jump past every expiry: the stream is cut at the next tick; the
	// agent's identity is refused, so it enrols again with its join token
	// (it is recorded on it) and gets a new identity in a new Welcome.
	clk.add(time.Hour)
	next(t, s.ctx, w.issued, "a new Welcome after the expired identity was cut")
	select {
	case err := <-done:
		t.Fatalf("agent Run() = %v, want it still running", err)
	default:
	}
}

func TestRevokedJoinTokenCutsItsWorkers(t *testing.T) {
	s, _, w := startIdentityServer(t)
	jt, tok, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, done := runAgent(t, s, jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	next(t, s.ctx, w.issued, "identity in Welcome")
	<-a.Welcomed()
	if err := s.tokens.Revoke(tok.ID); err != nil {
		t.Fatal(err)
	}
	var refused *agent.RefusedError
	select {
	case err := <-done:
		if !errors.As(err, &refused) || refused.Code != hwppb.Refused_UNAUTHENTICATED {
			t.Fatalf("agent Run() = %v, want refused UNAUTHENTICATED", err)
		}
	case <-s.ctx.Done():
		t.Fatal("agent of a revoked join token still connected")
	}
}

// rawHello connects as an agent by hand and returns the server's answer to
// hello.
func rawHello(t *testing.T, s *secureServer, h *hwppb.Hello) *hwppb.ServerMessage {
	t.Helper()
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(s.bundle.ClientTLS())))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	st, err := hwppb.NewWorkerProtocolClient(cc).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h.ProtocolVersion = &hwppb.Version{Major: hwp.ProtocolVersion.Major, Minor: hwp.ProtocolVersion.Minor}
	h.Name, h.AgentVersion, h.Capacity = "raw", "test", &hwppb.Capacity{Slots: 1}
	if err := st.Send(&hwppb.AgentMessage{Msg: &hwppb.AgentMessage_Hello{Hello: h}}); err != nil {
		t.Fatal(err)
	}
	m, err := st.Recv()
	if err != nil {
		t.Fatalf("Recv() after hello = %v", err)
	}
	return m
}

// A copied join token, or an identity of another worker, never takes over a
// worker (and so never reports on its jobs).
func TestCopiedCredentialsCannotClaimAnotherWorker(t *testing.T) {
	s, _, w := startIdentityServer(t)
	jt, _, err := s.tokens.CreateJoin(s.bundle.Fingerprint(), "", time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}
	victim, _ := runAgent(t, s, jt.String(), agent.PinnedTLS(jt.CAFingerprint, "127.0.0.1", nil))
	next(t, s.ctx, w.issued, "victim's identity")
	<-victim.Welcomed()
	// The same join token, claiming the victim's worker id: enrolled as a
	// new worker instead.
	m := rawHello(t, s, &hwppb.Hello{AgentId: victim.WorkerID(), Credentials: &hwppb.Credentials{JoinToken: jt.String()}})
	welcome := m.GetWelcome()
	if welcome == nil || welcome.GetWorkerId() == victim.WorkerID() || welcome.GetWorkerId() == "" {
		t.Fatalf("hello with a copied join token and the victim's id = %v, want a Welcome for a new worker", m)
	}
	attackerIdentity := welcome.GetIdentityToken()
	// The attacker's own identity, claiming the victim's id: refused.
	m = rawHello(t, s, &hwppb.Hello{AgentId: victim.WorkerID(), Credentials: &hwppb.Credentials{IdentityToken: attackerIdentity}})
	if r := m.GetRefused(); r == nil || r.GetCode() != hwppb.Refused_UNAUTHENTICATED || !strings.Contains(r.GetMessage(), "another worker") {
		t.Fatalf("hello with another worker's identity = %v, want refused", m)
	}
	// A forged identity: refused.
	m = rawHello(t, s, &hwppb.Hello{AgentId: victim.WorkerID(), Credentials: &hwppb.Credentials{IdentityToken: attackerIdentity + "x"}})
	if r := m.GetRefused(); r == nil || r.GetCode() != hwppb.Refused_UNAUTHENTICATED {
		t.Fatalf("hello with a forged identity = %v, want refused", m)
	}
}
