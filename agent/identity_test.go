package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/hwp/hwppb"
	"github.com/hodei-jobs/hodei/pki"
)

// welcomeDialer is a server in a box: each Dial's stream answers Hello with
// a Welcome for worker "w-1" carrying an identity token and, when the Hello
// has a CSR, a client certificate from ca. Hellos are sent on hellos.
type welcomeDialer struct {
	ca     *pki.Bundle
	hellos chan *hwppb.Hello
}

type welcomeStream struct {
	d      *welcomeDialer
	ctx    context.Context
	resp   chan *hwppb.ServerMessage
	closed chan struct{}
}

func (d *welcomeDialer) Dial(ctx context.Context) (agent.Stream, func(), error) {
	return &welcomeStream{d: d, ctx: ctx, resp: make(chan *hwppb.ServerMessage, 1), closed: make(chan struct{})}, func() {}, nil
}

func (s *welcomeStream) Send(m *hwppb.AgentMessage) error {
	h := m.GetHello()
	if h == nil {
		return nil
	}
	s.d.hellos <- h
	w := &hwppb.Welcome{WorkerId: "w-1", IdentityToken: "jwt-1", IdentityExpiresAt: timestamppb.New(time.Now().Add(15 * time.Minute))}
	if len(h.GetCsr()) > 0 {
		r, err := pki.ParseCSR(h.GetCsr())
		if err != nil {
			return err
		}
		cc, err := s.d.ca.IssueClient(r.PublicKey.(*ecdsa.PublicKey), "w-1", time.Now())
		if err != nil {
			return err
		}
		w.ClientCertificate, w.ClientCertificateExpiresAt = cc.DER, timestamppb.New(cc.NotAfter)
	}
	s.resp <- &hwppb.ServerMessage{Msg: &hwppb.ServerMessage_Welcome{Welcome: w}}
	return nil
}

func (s *welcomeStream) Recv() (*hwppb.ServerMessage, error) {
	select {
	case m := <-s.resp:
		return m, nil
	case <-s.closed:
		return nil, io.EOF
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

func (s *welcomeStream) CloseSend() error { close(s.closed); return nil }

// runWelcomed runs an agent on workDir with token until its first Welcome
// and returns its Hello.
func runWelcomed(t *testing.T, d *welcomeDialer, workDir, token string) *hwppb.Hello {
	t.Helper()
	a, err := agent.New(agent.Config{Dialer: d, WorkDir: workDir, Token: token, Name: "a", Slots: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var h *hwppb.Hello
	select {
	case h = <-d.hellos:
	case <-time.After(waitLimit):
		t.Fatal("no hello")
	}
	select {
	case <-a.Welcomed():
	case <-time.After(waitLimit):
		t.Fatal("not welcomed")
	}
	return h
}

func TestIdentityIsSavedAndUsedAfterARestart(t *testing.T) {
	ca, err := pki.LoadOrCreate(t.TempDir(), pki.DefaultSANs(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	jt, err := pki.NewJoinToken(ca.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	d := &welcomeDialer{ca: ca, hellos: make(chan *hwppb.Hello, 10)}
	workDir := t.TempDir()

	first := runWelcomed(t, d, workDir, jt.String())
	if first.GetAgentId() != "" || first.GetCredentials().GetJoinToken() != jt.String() || len(first.GetCsr()) == 0 {
		t.Fatalf("first Hello = id %q creds %v csr %d bytes, want the join token and a CSR", first.GetAgentId(), first.GetCredentials(), len(first.GetCsr()))
	}
	dir := filepath.Join(workDir, agent.IdentityDir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("identity dir = %v, %v; want mode 0700", fi, err)
	}
	for _, f := range []string{"identity.json", "key.pem", "cert.pem"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s = %v, %v; want mode 0600", f, fi, err)
		}
	}
	id, err := agent.LoadIdentity(workDir)
	if err != nil || id.WorkerID != "w-1" || id.Token != "jwt-1" || id.CAFingerprint != ca.Fingerprint() {
		t.Fatalf("LoadIdentity() = %+v, %v", id, err)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")); err != nil {
		t.Fatalf("saved certificate and key do not match: %v", err)
	}

	// Restarted without a token: the same worker, its identity token, and
	// no CSR (the certificate is fresh).
	second := runWelcomed(t, d, workDir, "")
	if second.GetAgentId() != "w-1" || second.GetCredentials().GetIdentityToken() != "jwt-1" || len(second.GetCsr()) != 0 {
		t.Fatalf("Hello after restart = id %q creds %v csr %d bytes, want w-1 with its identity and no CSR",
			second.GetAgentId(), second.GetCredentials(), len(second.GetCsr()))
	}

	// A join token of another CA: another server; the agent enrols anew.
	other, err := pki.NewJoinToken(strings.Repeat("a", 64))
	if err != nil {
		t.Fatal(err)
	}
	third := runWelcomed(t, d, workDir, other.String())
	if third.GetAgentId() != "" || third.GetCredentials().GetJoinToken() != other.String() || len(third.GetCsr()) == 0 {
		t.Fatalf("Hello with another CA's token = id %q creds %v, want a fresh enrolment", third.GetAgentId(), third.GetCredentials())
	}
}

func TestCorruptIdentityIsAnError(t *testing.T) {
	workDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(workDir, agent.IdentityDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(workDir, agent.IdentityDir, "identity.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := agent.New(agent.Config{Server: "127.0.0.1:1", WorkDir: workDir})
	if err == nil || !strings.Contains(err.Error(), "identity") {
		t.Fatalf("New() with a corrupt identity = %v, want an error naming it", err)
	}
}
